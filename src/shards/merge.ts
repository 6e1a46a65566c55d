// The exact merge of the shards' answers into the cache model of the whole cache (DESIGN.md's
// p_cache, split over disjoint sets of items):
// - a cache scored over its k nearest items: each shard returns its own k best candidates with
//   their exact (re-ranked) similarities; the global k best are among them;
// - a cache scored over every item: each shard returns, per class, log Σ exp(θ·s) over its items
//   of that class; log-sum-exp over shards combines them exactly (−∞: no item of that class).
import { cacheProbabilities } from '../math/cache-model.js';

export interface Candidate {
  id: string;
  label: number;
  similarity: number;
}

/** One shard's answer for one query. */
export interface ShardAnswer {
  /** best first: the shard's max(k, wanted) nearest items */
  candidates: Candidate[];
  /** per class, log Σ exp(θ·s) over the shard's items of that class; present when the shard scored every item */
  classLogSums?: number[];
}

/** Per class, log Σ exp(θ·s_i) over the items of that class (−∞ for a class with none). */
export function classLogSums(similarities: ArrayLike<number>, labels: ArrayLike<number>, theta: number, numClasses: number): number[] {
  const max = new Float64Array(numClasses).fill(-Infinity);
  for (let i = 0; i < similarities.length; i++) {
    const t = theta * similarities[i];
    if (t > max[labels[i]]) max[labels[i]] = t;
  }
  const sum = new Float64Array(numClasses);
  for (let i = 0; i < similarities.length; i++) {
    if (similarities[i] === -Infinity) continue; // a deleted item: weight 0
    sum[labels[i]] += Math.exp(theta * similarities[i] - max[labels[i]]);
  }
  return Array.from(max, (m, c) => (m === -Infinity || sum[c] === 0 ? -Infinity : m + Math.log(sum[c])));
}

/** The `k` best of every shard's candidates, best first (ties: by id, so every replica agrees). */
export function mergeCandidates(answers: ShardAnswer[], k: number): Candidate[] {
  return answers
    .flatMap((a) => a.candidates)
    .sort((a, b) => b.similarity - a.similarity || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .slice(0, k);
}

/**
 * p_cache of one query from its shards' answers: the log-sum-exp merge when every shard scored all
 * of its items, else p_cache over the k best candidates. null when no shard holds an item.
 */
export function mergedCacheProbabilities(answers: ShardAnswer[], theta: number, k: number, numClasses: number): Float64Array | null {
  if (answers.every((a) => a.candidates.length === 0)) return null;
  if (answers.every((a) => a.classLogSums)) {
    const perClass = Array.from({ length: numClasses }, (_, c) => logSumExp(answers.map((a) => a.classLogSums![c])));
    const total = logSumExp(perClass);
    return Float64Array.from(perClass, (l) => Math.exp(l - total));
  }
  const best = mergeCandidates(answers, k);
  return cacheProbabilities(
    best.map((c) => c.similarity),
    best.map((c) => c.label),
    theta,
    numClasses,
  );
}

function logSumExp(values: number[]): number {
  const max = Math.max(...values);
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (const v of values) sum += Math.exp(v - max);
  return max + Math.log(sum);
}
