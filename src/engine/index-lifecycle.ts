// How a cache's search index changes over its life, each time built beside the live one (which
// keeps serving, the engine thread yielding between slices) and swapped in under the cache's lock:
// - a PCA search key waits for `fitSample` items in an exact index of full keys, then is fitted
//   and the index rebuilt on the projected keys (with the full keys kept for re-ranking);
// - an 'auto' index moves from exact to hnsw once it outgrows `exactThreshold`.
import type { CacheDefinition } from '../cache/definition.js';
import { createIndex, isExhaustive, migrateToHnsw, shouldMigrate } from '../index/factory.js';
import { FullKeyStore } from '../index/full-keys.js';
import { fitPca, type Projection } from '../index/projection.js';
import type { Mutex } from '../util/mutex.js';
import type { ItemTable } from './item-table.js';
import { SearchIndex } from './search-index.js';

/** keys copied per step between yields */
export const APPLY_SLICE = 32;
export const yieldToMessages = () => new Promise<void>((resolve) => setImmediate(resolve));

/** What the lifecycle needs of a cache. */
export interface GrowingCache {
  readonly definition: CacheDefinition;
  search: SearchIndex;
  readonly items: ItemTable;
  /** serialises index changes and searches */
  readonly lock: Mutex;
  /** the projection every process of the cache uses: this one if it is the first, else the stored one */
  publishProjection(make: () => Promise<Projection>): Promise<Projection>;
}

/** A PCA search key still waiting for its sample (full keys in an exact index meanwhile). */
export function waitsForPca(cache: GrowingCache): boolean {
  return cache.definition.searchKey.reduce === 'pca' && !cache.search.projection;
}

/** The PCA's sample is there: fit it now. */
export function pcaDue(cache: GrowingCache): boolean {
  return waitsForPca(cache) && isExhaustive(cache.search.index) && cache.search.size >= cache.definition.searchKey.fitSample;
}

/** After records were applied: fit the PCA if its sample is complete, else move to hnsw if due. */
export async function growIfDue(cache: GrowingCache): Promise<void> {
  if (pcaDue(cache)) await fitProjection(cache);
  else if (!waitsForPca(cache) && shouldMigrate(cache.search.index, cache.definition.index)) await moveToHnsw(cache);
}

/**
 * Fit the PCA on the first fitSample full keys, build the projected index (and the full-key
 * store) beside the exact one while it keeps serving, then swap them in.
 */
export async function fitProjection(cache: GrowingCache): Promise<void> {
  const exact = cache.search.index;
  const sk = cache.definition.searchKey;
  const D = exact.dimension;
  const m = sk.fitSample;
  // every process would fit the same PCA (the same first fitSample keys, seed 0): the first to
  // get there fits and stores it, the others take it
  const projection = await cache.publishProjection(async () => {
    const sample = new Float32Array(m * D);
    for (let p = 0; p < m; p++) sample.set(exact.key(p), p * D);
    return fitPca(sample, m, D, sk.dimension, { seed: 0 });
  });
  const rebuilt = new SearchIndex(
    createIndex(sk.dimension, cache.definition.index, exact.size),
    projection,
    sk.rerank ? new FullKeyStore(D, sk.fullKeys) : null,
  );
  const copy = async (from: number, to: number) => {
    for (let p = from; p < to; p += APPLY_SLICE) {
      const n = Math.min(APPLY_SLICE, to - p);
      const keys = new Float32Array(n * D);
      for (let i = 0; i < n; i++) keys.set(exact.key(p + i), i * D);
      await rebuilt.addFull(keys, n);
      await yieldToMessages();
    }
  };
  await copy(0, exact.size);
  await cache.lock.run(async () => {
    await copy(rebuilt.size, exact.size);
    swapIn(cache, rebuilt);
  });
}

/** Build the hnsw index beside the exact one, then swap it in with whatever the exact one gained meanwhile. */
export async function moveToHnsw(cache: GrowingCache): Promise<void> {
  const exact = cache.search.index;
  const hnsw = await migrateToHnsw(exact, cache.definition.index, yieldToMessages);
  await cache.lock.run(async () => {
    for (let p = hnsw.size; p < exact.size; p++) await hnsw.add(exact.key(p), 1);
    swapIn(cache, new SearchIndex(hnsw, cache.search.projection, cache.search.fullKeys));
  });
}

function swapIn(cache: GrowingCache, rebuilt: SearchIndex): void {
  for (const p of cache.items.deleted) rebuilt.remove(p);
  rebuilt.applySettings(cache.definition.index);
  cache.search = rebuilt;
}
