// What a cache searches: its vector index over search keys — the full keys, or their projection —
// and, when the index holds projected keys and the cache re-ranks, the full keys of every item, so
// that each candidate's similarity is exact. One object, so that a rebuilt index (the PCA fit, the
// move to hnsw) replaces all three at once.
import type { IndexOptions } from '../index/factory.js';
import { isExhaustive } from '../index/factory.js';
import type { FullKeyStore } from '../index/full-keys.js';
import type { Projection } from '../index/projection.js';
import type { Neighbours, VectorIndex } from '../index/types.js';
import type { ReducedKeyRecord } from '../keylog/types.js';
import type { SnapshotPart } from '../index/snapshot.js';

export class SearchIndex {
  constructor(
    readonly index: VectorIndex,
    /** the search key's projection; null for full keys, or while a PCA waits for its sample */
    readonly projection: Projection | null = null,
    /** full keys kept for exact re-ranking when the index holds projected keys */
    readonly fullKeys: FullKeyStore | null = null,
  ) {}

  get size(): number {
    return this.index.size;
  }

  /**
   * Whether p_cache sums over every item (the paper's reference): an exhaustive index of full
   * keys. Otherwise it sums over the k nearest.
   */
  get scoresAllItems(): boolean {
    return isExhaustive(this.index) && !this.projection;
  }

  /** Add n full keys (L2-normalised), projected when the cache searches by a projection. */
  async addFull(keys: Float32Array, n: number): Promise<void> {
    if (!this.projection) return this.index.add(keys, n);
    this.fullKeys?.add(keys, n);
    await this.index.add(await this.projection.project(keys, n), n);
  }

  /** Add records a writer already projected: the search keys go straight in, the float16 full keys beside them. */
  async addReduced(records: ReducedKeyRecord[], keyDimension: number, cache: string): Promise<void> {
    const projection = this.projection;
    if (!projection) throw new Error(`cache "${cache}": a reduced key record came before the cache has a projection`);
    const d = projection.outputDimension;
    const n = records.length;
    const searchKeys = new Float32Array(n * d);
    records.forEach((r, i) => {
      if (r.searchKey.length !== d) throw new Error(`cache "${cache}": item ${r.id} has a ${r.searchKey.length}-d search key; the projection gives ${d}`);
      searchKeys.set(r.searchKey, i * d);
    });
    if (this.fullKeys) {
      const missing = records.find((r) => r.fullKey16?.length !== keyDimension);
      if (missing) throw new Error(`cache "${cache}": item ${missing.id} was logged without the full key this cache re-ranks with`);
      for (const r of records) this.fullKeys.add(r.fullKey16!, 1); // straight into the store's blocks, no batch copy
    }
    await this.index.add(searchKeys, n);
  }

  remove(position: number): void {
    this.index.remove(position);
  }

  /** Similarities of n full query keys to every position (−∞ for deleted ones); only when scoresAllItems. */
  async similaritiesAll(keys: Float32Array, n: number): Promise<Float32Array[]> {
    if (!isExhaustive(this.index) || this.projection) throw new Error('similaritiesAll needs an exhaustive index of full keys');
    return this.index.similaritiesAll(keys, n);
  }

  /**
   * The k nearest items of each of n query keys (full keys, L2-normalised), best first, by the
   * cache's own measure: full keys, or the projected key's candidates re-ranked with the full keys.
   */
  async nearest(keys: Float32Array, n: number, k: number): Promise<Neighbours[]> {
    const queries = this.projection ? await this.projection.project(keys, n) : keys;
    const found = await this.index.search(queries, n, k);
    if (!this.fullKeys) return found;
    const exact = await this.fullKeys.similaritiesBatch(
      keys,
      n,
      found.map((f) => f.positions),
    );
    return found.map((f, q) => bestFirst(f.positions, exact[q]));
  }

  /** Search-time settings of the cache definition that the index holds itself (efSearch). */
  applySettings(options: IndexOptions): void {
    this.index.applySearchSettings(options);
  }

  /** What a snapshot saves beside the index's own files. */
  extras(): SnapshotPart[] {
    return [this.projection, this.fullKeys].filter((x): x is Projection | FullKeyStore => x !== null);
  }
}

/**
 * Candidates ordered by exact similarity, best first (ties: lower position first), sorted in place.
 * Insertion sort: the index found them by a close measure, so they are nearly in order already.
 */
export function bestFirst(positions: Int32Array, similarities: Float32Array): Neighbours {
  for (let i = 1; i < positions.length; i++) {
    const p = positions[i];
    const s = similarities[i];
    let j = i - 1;
    for (; j >= 0 && (similarities[j] < s || (similarities[j] === s && positions[j] > p)); j--) {
      positions[j + 1] = positions[j];
      similarities[j + 1] = similarities[j];
    }
    positions[j + 1] = p;
    similarities[j + 1] = s;
  }
  return { positions, similarities };
}
