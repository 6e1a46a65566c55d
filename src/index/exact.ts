// Exact index: every key kept in memory, search is a brute-force inner product
// over all of them (the reference the ANN index is measured against, and the
// default for small caches).
//
// Keys live in blocks of ≤ ~128 MB, never one giant ArrayBuffer (90,000 keys at
// 12,288 dims are 4.4 GB). Each block is one Gemm operand; queries go in
// batches of QUERY_BATCH so the Gemm output stays bounded too.
import { open, stat } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { innerProducts } from '../math/gemm.js';
import type { ExhaustiveIndex, Neighbours } from './types.js';
import { readRowBlocks, writeFully } from '../util/files.js';

export const KEYS_FILE = 'keys.f32';
const BLOCK_BYTES = 128 * 1024 * 1024;
/** also bounds a Gemm output at QUERY_BATCH × MAX_BLOCK_ROWS floats (16 MB) */
const MAX_BLOCK_ROWS = 65536;
const FIRST_BLOCK_ROWS = 1024;
const QUERY_BATCH = 64;

interface Block {
  data: Float32Array; // capacity rows × dimension; only the first `rows` are keys
  rows: number;
}

export interface ExactIndexOptions {
  /** rows per full block; default: as many as fit in 128 MB (at most 65,536) */
  blockRows?: number;
}

export class ExactIndex implements ExhaustiveIndex {
  readonly kind = 'exact' as const;
  readonly blockRows: number;
  private readonly blocks: Block[] = [];
  private count = 0;
  private readonly tombstones = new Set<number>();

  constructor(
    readonly dimension: number,
    options: ExactIndexOptions = {},
  ) {
    if (!Number.isInteger(dimension) || dimension < 1) throw new RangeError(`dimension must be a positive integer, got ${dimension}`);
    this.blockRows = options.blockRows ?? Math.max(1, Math.min(MAX_BLOCK_ROWS, Math.floor(BLOCK_BYTES / (4 * dimension))));
  }

  get size(): number {
    return this.count;
  }

  async add(keys: Float32Array, n: number): Promise<void> {
    const d = this.dimension;
    if (keys.length < n * d) throw new RangeError(`add: ${n} keys need ${n * d} floats, got ${keys.length}`);
    let done = 0;
    while (done < n) {
      const block = this.writableBlock();
      const take = Math.min(n - done, block.data.length / d - block.rows);
      block.data.set(keys.subarray(done * d, (done + take) * d), block.rows * d);
      block.rows += take;
      this.count += take;
      done += take;
    }
  }

  /** The last block if it has room (grown by doubling up to blockRows), else a new one. */
  private writableBlock(): Block {
    const d = this.dimension;
    const last = this.blocks[this.blocks.length - 1];
    if (last && last.rows * d < last.data.length) return last;
    if (last && last.data.length < this.blockRows * d) {
      const grown = new Float32Array(Math.min(this.blockRows, 2 * (last.data.length / d)) * d);
      grown.set(last.data);
      last.data = grown;
      return last;
    }
    const block = { data: new Float32Array(Math.min(this.blockRows, FIRST_BLOCK_ROWS) * d), rows: 0 };
    this.blocks.push(block);
    return block;
  }

  remove(position: number): void {
    if (!Number.isInteger(position) || position < 0 || position >= this.count) throw new RangeError(`position ${position} is outside 0…${this.count - 1}`);
    this.tombstones.add(position);
  }

  get removed(): number {
    return this.tombstones.size;
  }

  async search(queries: Float32Array, nq: number, k: number): Promise<Neighbours[]> {
    const kk = Math.max(0, Math.min(Math.floor(k), this.count - this.tombstones.size));
    const heaps = Array.from({ length: nq }, () => new TopK(kk));
    if (kk > 0) {
      await this.forEachProduct(queries, nq, (s, q0, b, rows, first) => {
        for (let i = 0; i < b; i++) heaps[q0 + i].offer(s, i * rows, rows, first);
      });
    }
    return heaps.map((h) => h.result());
  }

  /** Every item's similarity, for each query (−∞ for removed items): p_cache summed over the whole cache. */
  async similaritiesAll(queries: Float32Array, nq: number): Promise<Float32Array[]> {
    const out = Array.from({ length: nq }, () => new Float32Array(this.count));
    await this.forEachProduct(queries, nq, (s, q0, b, rows, first) => {
      for (let i = 0; i < b; i++) out[q0 + i].set(s.subarray(i * rows, (i + 1) * rows), first);
    });
    return out;
  }

  /** Runs the Gemm for each (query batch, block) pair; `s` is b × rows, row-major. */
  private async forEachProduct(
    queries: Float32Array,
    nq: number,
    use: (s: Float32Array, firstQuery: number, b: number, rows: number, firstPosition: number) => void,
  ): Promise<void> {
    const d = this.dimension;
    if (queries.length < nq * d) throw new RangeError(`search: ${nq} queries need ${nq * d} floats, got ${queries.length}`);
    for (let q0 = 0; q0 < nq; q0 += QUERY_BATCH) {
      const b = Math.min(QUERY_BATCH, nq - q0);
      const q = queries.subarray(q0 * d, (q0 + b) * d);
      let first = 0;
      for (const block of this.blocks) {
        if (block.rows === 0) continue;
        const s = await innerProducts(q, b, block.data.subarray(0, block.rows * d), block.rows, d);
        this.maskRemoved(s, b, block.rows, first);
        use(s, q0, b, block.rows, first);
        first += block.rows;
      }
    }
  }

  /** Removed items get similarity −∞: never among the k nearest, weight 0 in p_cache. */
  private maskRemoved(s: Float32Array, b: number, rows: number, first: number): void {
    if (this.tombstones.size === 0) return;
    for (const p of this.tombstones) {
      if (p < first || p >= first + rows) continue;
      for (let i = 0; i < b; i++) s[i * rows + p - first] = -Infinity;
    }
  }

  /** Every key is compared at search time: no setting applies. */
  applySearchSettings(): void {}

  key(position: number): Float32Array {
    if (!Number.isInteger(position) || position < 0 || position >= this.count) {
      throw new RangeError(`position ${position} is outside 0…${this.count - 1}`);
    }
    const d = this.dimension;
    const block = this.blocks[Math.floor(position / this.blockRows)];
    const row = position % this.blockRows;
    return block.data.subarray(row * d, (row + 1) * d);
  }

  /** Writes `keys.f32`: size × dimension little-endian float32, block by block. */
  async save(dir: string): Promise<void> {
    assertLittleEndian();
    const file = await open(join(dir, KEYS_FILE), 'w');
    try {
      let position = 0;
      for (const block of this.blocks) {
        const bytes = new Uint8Array(block.data.buffer, block.data.byteOffset, block.rows * this.dimension * 4);
        position += await writeFully(file, bytes, position);
      }
      await file.sync();
    } finally {
      await file.close();
    }
  }

  static async load(dir: string, dimension: number, options: ExactIndexOptions = {}): Promise<ExactIndex> {
    assertLittleEndian();
    const path = join(dir, KEYS_FILE);
    const rowBytes = 4 * dimension;
    const { size: bytes } = await stat(path);
    if (bytes % rowBytes !== 0) {
      throw new Error(`${path}: ${bytes} bytes is not a whole number of ${dimension}-float keys`);
    }
    const index = new ExactIndex(dimension, options);
    const total = bytes / rowBytes;
    index.blocks.push(...(await readRowBlocks(path, total, rowBytes, index.blockRows, (rows) => new Float32Array(rows * dimension))));
    index.count = total;
    return index;
  }

  params(): Record<string, number | string> {
    return {};
  }
}

function assertLittleEndian(): void {
  if (endianness() !== 'LE') throw new Error('keys.f32 is little-endian; big-endian hosts are not supported');
}

/**
 * The k largest similarities seen so far: a min-heap of size k whose root is the
 * worst kept item, so most candidates cost one comparison. On equal similarity
 * the earlier position wins (strict >), which keeps results deterministic.
 */
export class TopK {
  private readonly sims: Float32Array;
  private readonly pos: Int32Array;
  private n = 0;

  constructor(private readonly k: number) {
    this.sims = new Float32Array(k);
    this.pos = new Int32Array(k);
  }

  /** candidates s[offset … offset+count−1] have positions firstPosition … */
  offer(s: Float32Array, offset: number, count: number, firstPosition: number): void {
    const { k, sims, pos } = this;
    if (k === 0) return;
    for (let i = 0; i < count; i++) {
      const v = s[offset + i];
      if (this.n < k) {
        this.push(v, firstPosition + i);
      } else if (v > sims[0]) {
        sims[0] = v;
        pos[0] = firstPosition + i;
        this.siftDown(0);
      }
    }
  }

  private push(v: number, p: number): void {
    const { sims, pos } = this;
    let i = this.n++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.worse(v, p, sims[parent], pos[parent])) break;
      sims[i] = sims[parent];
      pos[i] = pos[parent];
      i = parent;
    }
    sims[i] = v;
    pos[i] = p;
  }

  private siftDown(i: number): void {
    const { sims, pos, n } = this;
    const v = sims[i];
    const p = pos[i];
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.worse(sims[r], pos[r], sims[l], pos[l]) ? r : l;
      if (!this.worse(sims[c], pos[c], v, p)) break;
      sims[i] = sims[c];
      pos[i] = pos[c];
      i = c;
    }
    sims[i] = v;
    pos[i] = p;
  }

  /** a ranks below b: lower similarity, or equal similarity and later position */
  private worse(av: number, ap: number, bv: number, bp: number): boolean {
    return av < bv || (av === bv && ap > bp);
  }

  result(): Neighbours {
    const order = Array.from({ length: this.n }, (_, i) => i);
    order.sort((a, b) => this.sims[b] - this.sims[a] || this.pos[a] - this.pos[b]);
    return {
      positions: Int32Array.from(order, (i) => this.pos[i]),
      similarities: Float32Array.from(order, (i) => this.sims[i]),
    };
  }
}
