// Approximate index: hnswlib-node's HNSW graph in inner-product space. The
// item's position is its hnswlib label.
//
// hnswlib-node has no locking and its calls are synchronous on the calling
// thread, except readIndex/writeIndex, which run in the background. Changes
// (add, remove) must not overlap anything; reads (search, key) may overlap a save,
// which only reads the graph (hnswlib's saveIndex writes nothing to it, and its
// searches share only a locked visited-list pool): the engine's cache lock lets
// searches run while a snapshot is written. A change or a second save made while
// a save is in flight throws instead of corrupting the graph.
import hnswlib from 'hnswlib-node';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { HnswParams, IndexKind, Neighbours, SearchSettings, VectorIndex } from './types.js';
import { KEYS_FILE } from './exact.js';
import { writeFully } from '../util/files.js';

const { HierarchicalNSW } = hnswlib;
type Graph = InstanceType<typeof HierarchicalNSW>;

export const HNSW_FILE = 'hnsw.bin';
/**
 * Snapshots of hnsw indexes of at most this many dimensions (reduced search keys) also hold their
 * keys, to rebuild the graph from; above it the copy would double the snapshot, and the graph is
 * rebuilt from the full keys (re-ranking) or the key log instead.
 */
export const KEYS_COPY_MAX_DIMENSION = 1024;
const MIN_CAPACITY = 1024;
/** queries searched between two yields of the thread (8 × ~1.5 ms of a 90,000-item cache) */
const YIELD_EVERY = 8;

export class HnswIndex implements VectorIndex {
  readonly kind: IndexKind = 'hnsw';
  private saving = false;
  /** positions marked deleted in the graph (hnswlib keeps the marks in its file, not their count) */
  private readonly tombstones = new Set<number>();
  /** whether the graph outgrew its room since it was made or read: hnswlib then reallocated its arrays */
  private grown = false;

  private constructor(
    readonly dimension: number,
    readonly hnswParams: HnswParams,
    private readonly graph: Graph,
  ) {}

  /** efSearch is a search-time setting: it can change without a rebuild. */
  applySearchSettings({ efSearch }: SearchSettings): void {
    this.hnswParams.efSearch = efSearch;
  }

  /** An empty index with room for `capacity` items before its first resize. */
  static create(dimension: number, params: HnswParams, capacity = MIN_CAPACITY): HnswIndex {
    const graph = new HierarchicalNSW('ip', dimension);
    graph.initIndex({
      maxElements: Math.max(MIN_CAPACITY, Math.ceil(capacity)),
      m: params.m,
      efConstruction: params.efConstruction,
    });
    graph.setEf(params.efSearch);
    return new HnswIndex(dimension, { ...params }, graph);
  }

  /** M and efConstruction come from the file; efSearch is a search-time setting. */
  static async load(dir: string, dimension: number, params: HnswParams): Promise<HnswIndex> {
    const path = join(dir, HNSW_FILE);
    const stored = await readHeader(path);
    // hnswlib would load a file of another dimension without complaint and read garbage.
    if (stored.dimension !== dimension) {
      throw new Error(`${path} holds keys of dimension ${stored.dimension}, expected ${dimension}`);
    }
    const graph = new HierarchicalNSW('ip', dimension);
    await graph.readIndex(path);
    graph.setEf(params.efSearch);
    return new HnswIndex(dimension, { m: stored.m, efConstruction: stored.efConstruction, efSearch: params.efSearch }, graph);
  }

  get size(): number {
    return this.graph.getCurrentCount();
  }

  /**
   * Whether the graph was resized since it was made or read. Grown by hnswlib's reallocations, the
   * same graph searched 8–17 % slower than read back from its file in one allocation (60,000 items
   * of 128-d, 137–140 vs 152–164 µs per query, scratch timing): its memory is no longer in huge pages.
   */
  get resized(): boolean {
    return this.grown;
  }

  get capacity(): number {
    return this.graph.getMaxElements();
  }

  async add(keys: Float32Array, n: number): Promise<void> {
    this.assertIdle();
    const d = this.dimension;
    if (keys.length < n * d) throw new RangeError(`add: ${n} keys need ${n * d} floats, got ${keys.length}`);
    for (let i = 0; i < n; i++) {
      const position = this.size;
      // Doubling keeps the number of resizes (each a full reallocation) logarithmic.
      if (position >= this.capacity) {
        this.graph.resizeIndex(2 * this.capacity);
        this.grown = true;
      }
      this.graph.addPoint(Array.from(keys.subarray(i * d, (i + 1) * d)), position);
    }
  }

  remove(position: number): void {
    this.assertIdle();
    if (this.tombstones.has(position)) return;
    if (!Number.isInteger(position) || position < 0 || position >= this.size) throw new RangeError(`position ${position} is outside 0…${this.size - 1}`);
    try {
      this.graph.markDelete(position);
    } catch (err) {
      // a graph loaded from a snapshot already holds the mark
      if (!/already deleted/i.test((err as Error).message)) throw err;
    }
    this.tombstones.add(position);
  }

  get removed(): number {
    return this.tombstones.size;
  }

  async search(queries: Float32Array, nq: number, k: number): Promise<Neighbours[]> {
    const d = this.dimension;
    if (queries.length < nq * d) throw new RangeError(`search: ${nq} queries need ${nq * d} floats, got ${queries.length}`);
    // hnswlib throws when asked for more neighbours than it holds.
    const kk = Math.max(0, Math.min(Math.floor(k), this.size - this.tombstones.size));
    const results: Neighbours[] = [];
    if (kk === 0) {
      for (let q = 0; q < nq; q++) results.push({ positions: new Int32Array(0), similarities: new Float32Array(0) });
      return results;
    }
    for (let q = 0; q < nq; q++) {
      // hnswlib searches synchronously: a job's batch would hold the engine thread for ~100 ms, so a
      // predict arriving meanwhile could not even start its model run. Every few queries, let it in.
      if (q > 0 && q % YIELD_EVERY === 0) await new Promise((resolve) => setImmediate(resolve));
      this.graph.setEf(Math.max(this.hnswParams.efSearch, kk)); // again after a yield: another search may have set it
      // Results come nearest first: ascending distance, and 'ip' distance is 1 − dot.
      const { distances, neighbors } = this.graph.searchKnn(Array.from(queries.subarray(q * d, (q + 1) * d)), kk);
      results.push({
        positions: Int32Array.from(neighbors),
        similarities: Float32Array.from(distances, (dist) => 1 - dist),
      });
    }
    return results;
  }

  key(position: number): Float32Array {
    if (!Number.isInteger(position) || position < 0 || position >= this.size) {
      throw new RangeError(`position ${position} is outside 0…${this.size - 1}`);
    }
    return Float32Array.from(this.graph.getPoint(position));
  }

  async save(dir: string): Promise<void> {
    this.assertIdle();
    this.saving = true;
    try {
      await this.graph.writeIndex(join(dir, HNSW_FILE));
      if (this.dimension <= KEYS_COPY_MAX_DIMENSION) await this.saveKeys(dir);
    } finally {
      this.saving = false;
    }
  }

  params(): Record<string, number | string> {
    return { ...this.hnswParams };
  }

  /**
   * A copy of the keys as keys.f32 (the exact index's format; zeros at deleted positions), from
   * which the graph can be rebuilt if its file is ever damaged: hnswlib's file cannot be repaired.
   */
  private async saveKeys(dir: string): Promise<void> {
    const d = this.dimension;
    const file = await open(join(dir, KEYS_FILE), 'w');
    try {
      const rows = Math.max(1, Math.floor((1 << 20) / (4 * d)));
      let offset = 0;
      for (let p0 = 0; p0 < this.size; p0 += rows) {
        const n = Math.min(rows, this.size - p0);
        const block = new Float32Array(n * d);
        for (let i = 0; i < n; i++) if (!this.tombstones.has(p0 + i)) block.set(this.graph.getPoint(p0 + i), i * d);
        offset += await writeFully(file, new Uint8Array(block.buffer), offset);
      }
      await file.sync();
    } finally {
      await file.close();
    }
  }

  private assertIdle(): void {
    if (this.saving) throw new Error('hnsw index is being saved; index operations must be serialised');
  }
}

/**
 * The start of hnswlib's index file (hnswalg.h saveIndex): size_t offsetLevel0,
 * maxElements, count, sizeDataPerElement, labelOffset, offsetData; int maxLevel;
 * u32 enterPoint; size_t maxM, maxM0, M; double mult; size_t efConstruction.
 * A point's vector occupies labelOffset − offsetData bytes.
 */
async function readHeader(path: string): Promise<{ dimension: number; m: number; efConstruction: number }> {
  const file = await open(path, 'r');
  try {
    const h = Buffer.alloc(96);
    const { bytesRead } = await file.read(h, 0, h.length, 0);
    if (bytesRead < h.length) throw new Error(`${path} is too short to be an hnsw index`);
    const u64 = (o: number) => Number(h.readBigUInt64LE(o));
    return { dimension: (u64(32) - u64(40)) / 4, m: u64(72), efConstruction: u64(88) };
  } finally {
    await file.close();
  }
}
