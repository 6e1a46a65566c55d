// p_cache for a batch of query keys, with each query's nearest items — the one place that decides
// what p_cache sums over: every item (an exhaustive index of full keys, the paper's reference) or
// the k nearest (found with the search key, re-ranked with the full keys when kept).
import { TopK } from '../index/exact.js';
import { cacheProbabilities } from '../math/cache-model.js';
import { classLogSums, type ShardAnswer } from '../shards/merge.js';
import type { ItemTable } from './item-table.js';
import type { SearchIndex } from './search-index.js';

/** What p_cache was computed over, for one query, and its nearest items. */
export interface CacheScore {
  /** null when the cache holds no item */
  pCache: Float64Array | null;
  neighbours: { position: number; similarity: number }[];
}

export interface ScoreQuery {
  /** n full keys, L2-normalised */
  keys: Float32Array;
  n: number;
  theta: number;
  /** nearest items to return per query */
  wanted: number;
  /** neighbours p_cache sums over when it does not sum over every item */
  k: number;
  numClasses: number;
}

/** Call it under the cache's lock: it reads the index. */
export async function scoreQueries(search: SearchIndex, items: ItemTable, q: ScoreQuery): Promise<CacheScore[]> {
  const live = items.size;
  if (live === 0) return Array.from({ length: q.n }, () => ({ pCache: null, neighbours: [] }));
  if (search.scoresAllItems) {
    const used = items.positions;
    const all = await search.similaritiesAll(q.keys, q.n); // −∞ for deleted items: weight 0
    return all.map((sims) => {
      const top = new TopK(Math.min(q.wanted, live));
      top.offer(sims, 0, used, 0);
      const { positions, similarities } = top.result();
      return {
        pCache: cacheProbabilities(sims, items.allLabels(), q.theta, q.numClasses),
        neighbours: Array.from(positions, (position, j) => ({ position, similarity: similarities[j] })),
      };
    });
  }
  const found = await search.nearest(q.keys, q.n, Math.max(q.k, q.wanted));
  return found.map(({ positions, similarities }) => ({
    pCache: cacheProbabilities(
      similarities,
      Array.from(positions, (p) => items.labels[p]),
      q.theta,
      q.numClasses,
    ),
    neighbours: Array.from(positions.subarray(0, q.wanted), (position, j) => ({ position, similarity: similarities[j] })),
  }));
}

/**
 * What one shard of a cache answers for a batch of query keys (shards/merge.ts merges them): its
 * max(k, wanted) nearest items, best first, and, when it scores every item, the per-class
 * log-sum-exp of θ·s over all of them. Call it under the cache's lock.
 */
export async function answerQueries(search: SearchIndex, items: ItemTable, q: ScoreQuery): Promise<ShardAnswer[]> {
  if (items.size === 0) return Array.from({ length: q.n }, () => ({ candidates: [] }));
  const candidate = (position: number, similarity: number) => ({ id: items.ids[position], label: items.labels[position], similarity });
  const wanted = Math.max(q.k, q.wanted);
  if (search.scoresAllItems) {
    const used = items.positions;
    const labels = items.allLabels();
    return (await search.similaritiesAll(q.keys, q.n)).map((sims) => {
      const top = new TopK(Math.min(wanted, items.size));
      top.offer(sims, 0, used, 0);
      const { positions, similarities } = top.result();
      return {
        candidates: Array.from(positions, (p, j) => candidate(p, similarities[j])),
        classLogSums: classLogSums(sims.subarray(0, used), labels, q.theta, q.numClasses),
      };
    });
  }
  const found = await search.nearest(q.keys, q.n, wanted);
  return found.map(({ positions, similarities }) => ({ candidates: Array.from(positions, (p, j) => candidate(p, similarities[j])) }));
}
