// What a cache answers for images — predict's classification (p_model, p_cache, p and the nearest
// items) and tune's neighbour scores — for a cache held here, and for a cache of several shards
// (the model runs here, each shard answers, sharded.ts merges). engine.ts picks which.
import { parseSetting, type CacheDefinition } from '../cache/definition.js';
import { mixProbabilities } from '../math/cache-model.js';
import type { Extractor } from '../model/types.js';
import type { ShardAnswer } from '../shards/merge.js';
import type { CacheState } from './cache-state.js';
import { mergeClassifications, mergeNeighbourScores } from './sharded.js';
import type { Classification, ClassifyOptions, ClassifyResult, NeighbourScores } from './types.js';

/** Every shard's answer to n query keys (engine.ts askShards). */
export type AskShards = (
  d: CacheDefinition,
  keys: Float32Array,
  n: number,
  theta: number,
  wanted: number,
  partial: boolean,
) => Promise<{ answers: ShardAnswer[][]; sizes: number[]; missing: number[] }>;

/** θ and λ of one request: its own, checked, or the cache's. */
function settings(d: CacheDefinition, options: ClassifyOptions): { theta: number; lambda: number } {
  return {
    theta: options.theta === undefined ? d.theta : parseSetting('theta', options.theta),
    lambda: options.lambda === undefined ? d.lambda : parseSetting('lambda', options.lambda),
  };
}

/** p_model, p_cache and p = (1 − λ)·p_model + λ·p_cache for n images, with their nearest cached items. */
export async function classifyHeld(cache: CacheState, images: Float32Array, n: number, options: ClassifyOptions): Promise<ClassifyResult> {
  const { theta, lambda } = settings(cache.definition, options);
  const { keys, probs, runMs } = await cache.extractor.run(images, n);
  const t1 = performance.now();
  const numClasses = cache.extractor.numClasses;
  const scores = await cache.score(keys, n, theta, options.neighbours ?? 0);
  const timings = { inferenceMs: runMs, searchMs: performance.now() - t1 };
  const { ids, labels } = cache.items;
  const results: Classification[] = scores.map(({ pCache, neighbours }, i) => {
    const pModel = Array.from(probs.subarray(i * numClasses, (i + 1) * numClasses));
    const p = mixProbabilities(pModel, pCache ?? pModel, lambda, pCache === null);
    return {
      pModel,
      pCache: pCache && Array.from(pCache),
      p: Array.from(p),
      neighbours: neighbours.map(({ position, similarity }) => ({ id: ids[position], label: labels[position], similarity })),
    };
  });
  return { cache: cache.definition.name, theta, lambda, cacheSize: cache.size, results, timings };
}

/** classifyHeld for a cache of several shards: the model runs here, each shard answers, the answers merge exactly. */
export async function classifySharded(
  d: CacheDefinition,
  extractor: Extractor,
  ask: AskShards,
  images: Float32Array,
  n: number,
  options: ClassifyOptions,
): Promise<ClassifyResult> {
  const { theta, lambda } = settings(d, options);
  const { keys, probs, runMs } = await extractor.run(images, n);
  const t1 = performance.now();
  const wanted = options.neighbours ?? 0;
  const { answers, sizes, missing } = await ask(d, keys, n, theta, wanted, options.partial === true);
  const results = mergeClassifications(answers, probs, extractor.numClasses, { theta, lambda, k: d.k, wanted });
  const cacheSize = sizes.reduce((a, b) => a + b, 0);
  const timings = { inferenceMs: runMs, searchMs: performance.now() - t1 };
  return { cache: d.name, theta, lambda, cacheSize, results, timings, ...(missing.length ? { missingShards: missing } : {}) };
}

/**
 * For tuning: p_model and the k nearest items (similarity, label) of n images, computed once so
 * that a whole θ × λ grid can be scored in memory. Rows with fewer than k neighbours are padded
 * with similarity −∞ (weight 0).
 */
export async function neighbourScoresHeld(cache: CacheState, images: Float32Array, n: number, k: number): Promise<NeighbourScores> {
  const { keys, probs } = await cache.extractor.run(images, n);
  const found = await cache.lock.read(() => (cache.size > 0 ? cache.search.nearest(keys, n, k) : Promise.resolve([])));
  const similarities = new Float32Array(n * k).fill(-Infinity);
  const labels = new Uint16Array(n * k);
  const itemPositions = new Int32Array(n * k).fill(-1);
  found.forEach(({ positions, similarities: sims }, q) => {
    similarities.set(sims, q * k);
    itemPositions.set(positions, q * k);
    positions.forEach((p, j) => (labels[q * k + j] = cache.items.labels[p]));
  });
  return { k, pModel: probs, similarities, labels, positions: itemPositions };
}

/** neighbourScoresHeld over the shards: the k nearest of each shard merge into the k nearest of the cache. */
export async function neighbourScoresSharded(
  d: CacheDefinition,
  extractor: Extractor,
  ask: AskShards,
  images: Float32Array,
  n: number,
  k: number,
): Promise<NeighbourScores> {
  const { keys, probs } = await extractor.run(images, n);
  const { answers } = await ask(d, keys, n, d.theta, k, false);
  return mergeNeighbourScores(answers, probs, n, k);
}
