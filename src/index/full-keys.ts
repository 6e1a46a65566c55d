// Full keys for re-ranking: when the index searches a reduced key (a 64–1024-dim
// projection), the candidates it returns are re-scored exactly with their full
// keys (12,288 dims for the paper's ResNet-20). This store holds those full keys
// compactly, off the JS heap, and computes exact inner products with them.
//
// Keys live in typed-array blocks of ≤ ~128 MB (off the JS heap), as float32 or
// float16 (Uint16Array: 90,000 × 12,288 keys take 2.2 GB instead of 4.4 GB), read once
// and checked against their checksums at load: a memory-mapped file could change under
// the search after it was verified.
//
// Similarities: the project's native addon (math/inner-products.ts) reads each candidate's row
// where it lies and multiplies it with its query as it reads, float16 converted in registers: for
// 64 queries × 50 candidates × 12,288 float16 dims over 90,000 keys, 0.14 ms per query, against
// 0.28 for onnxruntime (gather the rows, Cast to float32, MatMul: three passes over rows that come
// from RAM), and 4–15 ms for a JS loop.
import { link, open, readFile, stat, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import type { FileChecksum } from '../util/checksum.js';
import type { PreviousSnapshot } from './snapshot.js';
import { readRowBlocks, writeFully } from '../util/files.js';
import { float16ToFloat32, float32ToFloat16 } from '../math/float16.js';
import { innerProducts } from '../math/inner-products.js';

export type KeyFormat = 'float32' | 'float16';

/** format 1: every key in one file */
export const FULL_KEYS_FILE = 'fullkeys.bin';
export const FULL_KEYS_META = 'fullkeys.json';
/** format 2: keys in segments of `segmentRows` rows, `fullkeys-<segment>.bin`; a full segment never changes */
const segmentFile = (segment: number) => `fullkeys-${String(segment).padStart(6, '0')}.bin`;

const BLOCK_BYTES = 128 * 1024 * 1024;
const MAX_BLOCK_ROWS = 65536;
const FIRST_BLOCK_ROWS = 1024;
const BYTES: Record<KeyFormat, number> = { float32: 4, float16: 2 };

type KeyArray = Float32Array | Uint16Array;

interface Block {
  data: KeyArray; // capacity rows × dimension; only the first `rows` are keys
  rows: number;
}

export interface FullKeyStoreOptions {
  /** rows per full block; default: as many as fit in 128 MB (at most 65,536) */
  blockRows?: number;
}

interface Meta {
  version: 1 | 2;
  dimension: number;
  format: KeyFormat;
  size: number;
  /** version 2: rows per segment file */
  segmentRows?: number;
}

export class FullKeyStore {
  readonly blockRows: number;
  private readonly blocks: Block[] = [];
  private count = 0;

  constructor(
    readonly dimension: number,
    readonly format: KeyFormat,
    options: FullKeyStoreOptions = {},
  ) {
    if (!Number.isInteger(dimension) || dimension < 1) throw new RangeError(`dimension must be a positive integer, got ${dimension}`);
    if (format !== 'float32' && format !== 'float16') throw new RangeError(`format must be float32 or float16, got ${String(format)}`);
    const rows = options.blockRows ?? Math.max(1, Math.min(MAX_BLOCK_ROWS, Math.floor(BLOCK_BYTES / (BYTES[format] * dimension))));
    if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`blockRows must be a positive integer, got ${rows}`);
    this.blockRows = rows;
  }

  get size(): number {
    return this.count;
  }

  /** bytes held for keys (allocated block capacity) */
  get memoryBytes(): number {
    let bytes = 0;
    for (const block of this.blocks) bytes += block.data.byteLength;
    return bytes;
  }

  /**
   * n rows of `dimension` keys (L2-normalised) appended at positions size … size+n−1: float32,
   * or float16 bits (a Uint16Array, as reduced key-log records carry them) into a float16 store.
   */
  add(keys: Float32Array | Uint16Array, n: number): void {
    if (keys instanceof Uint16Array && this.format !== 'float16') throw new TypeError('float16 rows go only into a float16 store');
    const d = this.dimension;
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`add: n must be a non-negative integer, got ${n}`);
    if (keys.length < n * d) throw new RangeError(`add: ${n} keys need ${n * d} floats, got ${keys.length}`);
    let done = 0;
    while (done < n) {
      const block = this.writableBlock();
      const take = Math.min(n - done, block.data.length / d - block.rows);
      const src = keys.subarray(done * d, (done + take) * d);
      const dst = block.data.subarray(block.rows * d, (block.rows + take) * d);
      if (dst instanceof Float32Array || src instanceof Uint16Array) dst.set(src);
      else float32ToFloat16(src, dst);
      block.rows += take;
      this.count += take;
      done += take;
    }
  }

  private newArray(length: number): KeyArray {
    return this.format === 'float16' ? new Uint16Array(length) : new Float32Array(length);
  }

  /**
   * The last block if it has room, else a new one. The first block grows by doubling up to
   * blockRows (a small cache holds little); once a store fills one, it is growing, and later
   * blocks are allocated whole (doubling them would copy each key again ~1.3 times).
   */
  private writableBlock(): Block {
    const d = this.dimension;
    const last = this.blocks[this.blocks.length - 1];
    if (last && last.rows * d < last.data.length) return last;
    if (last && last.data.length < this.blockRows * d) {
      const grown = this.newArray(Math.min(this.blockRows, 2 * (last.data.length / d)) * d);
      grown.set(last.data.subarray(0, last.rows * d));
      last.data = grown;
      return last;
    }
    const rows = this.blocks.length === 0 ? Math.min(this.blockRows, FIRST_BLOCK_ROWS) : this.blockRows;
    const block = { data: this.newArray(rows * d), rows: 0 };
    this.blocks.push(block);
    return block;
  }

  private checkPosition(position: number): void {
    if (!Number.isInteger(position) || position < 0 || position >= this.count) {
      throw new RangeError(`position ${position} is outside 0…${this.count - 1}`);
    }
  }

  /** the stored row at a position (a view, in the storage format) */
  private row(position: number): KeyArray {
    const d = this.dimension;
    const block = this.blocks[Math.floor(position / this.blockRows)];
    const r = position % this.blockRows;
    return block.data.subarray(r * d, (r + 1) * d);
  }

  /** the key at a position, as float32 (a copy) */
  key(position: number): Float32Array {
    this.checkPosition(position);
    const row = this.row(position);
    if (row instanceof Float32Array) return row.slice();
    const out = new Float32Array(this.dimension);
    float16ToFloat32(row, out);
    return out;
  }

  /** exact inner products of one full query key with the keys at `positions` (any order, may repeat) */
  async similarities(query: Float32Array, positions: Int32Array): Promise<Float32Array> {
    const [out] = await this.similaritiesBatch(query, 1, [positions]);
    return out;
  }

  /** The same for nq queries, each with its own candidate list, in one call of the native addon. */
  async similaritiesBatch(queries: Float32Array, nq: number, candidates: Int32Array[]): Promise<Float32Array[]> {
    const d = this.dimension;
    if (!Number.isInteger(nq) || nq < 0) throw new RangeError(`similarities: nq must be a non-negative integer, got ${nq}`);
    if (queries.length < nq * d) throw new RangeError(`similarities: ${nq} queries need ${nq * d} floats, got ${queries.length}`);
    if (candidates.length !== nq) throw new RangeError(`similarities: ${nq} queries but ${candidates.length} candidate lists`);
    let total = 0;
    for (const list of candidates) {
      for (let i = 0; i < list.length; i++) this.checkPosition(list[i]);
      total += list.length;
    }
    const queryOf = new Int32Array(total);
    const blockOf = new Int32Array(total);
    const rowOf = new Int32Array(total);
    for (let q = 0, i = 0; q < nq; q++) {
      const list = candidates[q];
      for (let j = 0; j < list.length; j++, i++) {
        queryOf[i] = q;
        blockOf[i] = Math.floor(list[j] / this.blockRows);
        rowOf[i] = list[j] % this.blockRows;
      }
    }
    const products = new Float32Array(total);
    innerProducts(
      queries.subarray(0, nq * d),
      d,
      this.blocks.map((b) => b.data),
      queryOf,
      blockOf,
      rowOf,
      products,
    );
    let at = 0;
    return candidates.map((list) => products.slice(at, (at += list.length)));
  }

  /**
   * Writes the keys in segments of `blockRows` rows (fullkeys-<n>.bin, little-endian), then
   * fullkeys.json. Keys never change once added, so a full segment that `previous` holds with the
   * same layout is hard-linked from it instead of written again: a snapshot writes only what is new
   * (at the paper's 12,288 dims, 128 MB segments instead of GBs). Returns the checksums of the
   * linked files, as `previous` recorded them (a linked file damaged since is caught when loaded).
   */
  async save(dir: string, previous?: PreviousSnapshot): Promise<Record<string, FileChecksum>> {
    assertLittleEndian();
    const S = this.blockRows;
    const rowBytes = BYTES[this.format] * this.dimension;
    const reusable = previous && (await sameLayout(previous.dir, this.dimension, this.format, S));
    const linked: Record<string, FileChecksum> = {};
    for (let segment = 0; segment * S < this.count; segment++) {
      const name = segmentFile(segment);
      const rows = Math.min(S, this.count - segment * S);
      const known = previous?.files[name];
      if (reusable && rows === S && known?.bytes === rows * rowBytes) {
        const ok = await link(join(previous.dir, name), join(dir, name)).then(
          () => true,
          () => false, // gone or not linkable: written below
        );
        if (ok) {
          linked[name] = known;
          continue;
        }
      }
      const file = await open(join(dir, name), 'w');
      try {
        await writeFully(file, this.rowBytes(segment * S, rows), 0);
        await file.sync();
      } finally {
        await file.close();
      }
    }
    const meta: Meta = { version: 2, dimension: this.dimension, format: this.format, size: this.count, segmentRows: S };
    await writeFile(join(dir, FULL_KEYS_META), JSON.stringify(meta) + '\n');
    return linked;
  }

  /** rows first … first+rows−1 as bytes (they lie in one block: segments are blocks) */
  private rowBytes(first: number, rows: number): Uint8Array {
    const block = this.blocks[Math.floor(first / this.blockRows)];
    const from = (first % this.blockRows) * this.dimension;
    const bytes = BYTES[this.format];
    return new Uint8Array(block.data.buffer, block.data.byteOffset + from * bytes, rows * this.dimension * bytes);
  }

  /** null if the directory holds no full keys (no fullkeys.json) */
  static async load(dir: string, options: FullKeyStoreOptions = {}): Promise<FullKeyStore | null> {
    assertLittleEndian();
    const metaPath = join(dir, FULL_KEYS_META);
    const meta = await readMeta(metaPath);
    if (!meta) return null;
    const store = new FullKeyStore(meta.dimension, meta.format, options);
    const total = meta.size;
    const rowBytes = BYTES[meta.format] * store.dimension;
    // the files and the rows each holds
    const files =
      meta.version === 1
        ? [{ path: join(dir, FULL_KEYS_FILE), rows: total }]
        : Array.from({ length: Math.ceil(total / meta.segmentRows!) }, (_, i) => ({
            path: join(dir, segmentFile(i)),
            rows: Math.min(meta.segmentRows!, total - i * meta.segmentRows!),
          }));
    for (const f of files) {
      const { size: bytes } = await stat(f.path);
      if (bytes !== f.rows * rowBytes) throw new Error(`${f.path}: ${bytes} bytes, but ${metaPath} says ${f.rows} keys of ${rowBytes} bytes`);
    }
    if (files.length === 1 || meta.segmentRows === store.blockRows) {
      for (const f of files)
        store.blocks.push(...(await readRowBlocks(f.path, f.rows, rowBytes, store.blockRows, (rows) => store.newArray(rows * store.dimension))));
      store.count = total;
    } else {
      // segments of another size than this store's blocks: through add()
      for (const f of files) {
        for (const b of await readRowBlocks(f.path, f.rows, rowBytes, f.rows, (rows) => store.newArray(rows * store.dimension))) store.add(b.data, b.rows);
      }
    }
    return store;
  }
}

/** fullkeys.json, checked; null when there is none. */
async function readMeta(metaPath: string): Promise<(Meta & { segmentRows?: number }) | null> {
  let metaText: string;
  try {
    metaText = await readFile(metaPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const meta = JSON.parse(metaText) as Partial<Meta>;
  const { dimension, format, size, segmentRows } = meta;
  const count = (x: unknown, min: number) => Number.isInteger(x) && (x as number) >= min;
  if (
    (meta.version !== 1 && meta.version !== 2) ||
    !count(dimension, 1) ||
    (format !== 'float32' && format !== 'float16') ||
    !count(size, 0) ||
    (meta.version === 2 && !count(segmentRows, 1))
  ) {
    throw new Error(`${metaPath}: not a version 1 or 2 full-key header: ${metaText.trim()}`);
  }
  return meta as Meta;
}

/** Whether `dir` holds full keys of this layout (so that its full segments are this store's). */
async function sameLayout(dir: string, dimension: number, format: KeyFormat, segmentRows: number): Promise<boolean> {
  const meta = await readMeta(join(dir, FULL_KEYS_META)).catch(() => null);
  return meta !== null && meta.version === 2 && meta.dimension === dimension && meta.format === format && meta.segmentRows === segmentRows;
}

function assertLittleEndian(): void {
  if (endianness() !== 'LE') throw new Error(`${FULL_KEYS_FILE} is little-endian; big-endian hosts are not supported`);
}
