// A sharded cache's answers, merged into what an unsharded cache returns (shards/merge.ts holds
// the math): one Classification per image for predict and eval, NeighbourScores for tune.
import { mixProbabilities } from '../math/cache-model.js';
import { mergeCandidates, mergedCacheProbabilities, type ShardAnswer } from '../shards/merge.js';
import type { CacheDefinition } from '../cache/definition.js';
import type { CacheInfo } from '../cache/info.js';
import type { Extractor } from '../model/types.js';
import type { Classification, NeighbourScores } from './types.js';

/** Per image: p_model (from this process's model run), p_cache merged over the shards' answers, p and the nearest items. */
export function mergeClassifications(
  answers: ShardAnswer[][],
  probs: Float32Array,
  numClasses: number,
  o: { theta: number; lambda: number; k: number; wanted: number },
): Classification[] {
  return answers.map((perShard, i) => {
    const pModel = Array.from(probs.subarray(i * numClasses, (i + 1) * numClasses));
    const pCache = mergedCacheProbabilities(perShard, o.theta, o.k, numClasses);
    return {
      pModel,
      pCache: pCache && Array.from(pCache),
      p: Array.from(mixProbabilities(pModel, pCache ?? pModel, o.lambda, pCache === null)),
      neighbours: mergeCandidates(perShard, o.wanted),
    };
  });
}

/** The k nearest of n queries over every shard, padded with similarity −∞ (weight 0). */
export function mergeNeighbourScores(answers: ShardAnswer[][], probs: Float32Array, n: number, k: number): NeighbourScores {
  const similarities = new Float32Array(n * k).fill(-Infinity);
  const labels = new Uint16Array(n * k);
  answers.forEach((perShard, q) =>
    mergeCandidates(perShard, k).forEach((c, j) => {
      similarities[q * k + j] = c.similarity;
      labels[q * k + j] = c.label;
    }),
  );
  // positions index one process's item table: a sharded cache has none here (−1)
  return { k, pModel: probs, similarities, labels, positions: new Int32Array(n * k).fill(-1) };
}

/** What GET /v1/caches/:name shows of a sharded cache on a replica that holds none of its shards (sizes added by the caller). */
export function infoOfUnheld(d: CacheDefinition, extractor: Extractor): CacheInfo {
  const dimension = d.searchKey.reduce === 'none' ? extractor.keyDimension : d.searchKey.dimension;
  const exact = d.index.type === 'exact';
  return {
    name: d.name,
    model: d.model,
    modelHash: extractor.modelHash,
    keyLayers: d.keyLayers,
    dimension,
    classes: extractor.spec.classes,
    size: 0,
    theta: d.theta,
    lambda: d.lambda,
    k: d.k,
    index: { type: exact ? 'exact' : 'hnsw', policy: d.index.type, scoring: exact ? 'all-items' : 'k-nearest', params: {} },
    searchKey: { reduce: d.searchKey.reduce, dimension, projection: null, rerank: d.searchKey.rerank, fullKeysBytes: 0, pending: null },
    logPosition: 0,
    snapshotPosition: 0,
    history: d.history,
    damage: [],
  };
}
