// Full keys for re-ranking: when the index searches a reduced key (a 64–1024-dim
// projection), the candidates it returns are re-scored exactly with their full
// keys (12,288 dims for the paper's ResNet-20). This store holds those full keys
// compactly, off the JS heap, and computes exact inner products with them.
//
// Keys live in typed-array blocks of ≤ ~128 MB (off the JS heap), as float32 or
// float16 (Uint16Array: 90,000 × 12,288 keys take 2.2 GB instead of 4.4 GB); npm's
// mmap packages need a native build with node-gyp, so plain blocks it is.
//
// Similarities: the candidate rows are gathered (still float16 if stored so) into
// a reused scratch buffer and one onnxruntime run computes
//   s[b, n] = Σ_d k[b, n, d] · q[b, d]    (float16 keys: Cast → float first)
// for a batch of candidate lists at once. Measured on this 2-core machine (with
// other CPU-heavy work running, so noisy), 200 candidates × 12,288 dims: a JS dot
// loop 4–15 ms (float32) and 18–23 ms (float16 through the lookup table); gather
// + ORT 0.6–1.3 ms for either format (ORT's Cast converts float16 vectorised;
// converting with the JS lookup table first makes it 5 ms). 1,000 candidates:
// JS 50–110 ms, gather + ORT 3–10 ms. So ORT does the arithmetic, in runs of at
// most RUN_ELEMENTS values, which stay in the core's cache through Cast and MatMul:
// 64 queries × 50 candidates × 12,288 float16 dims, ms per query: 0.36 in runs of
// 2^20, 0.24 of 2^18, 0.215 of 2^17, 0.40 of 2^15 (float32 alike).
import { link, open, readFile, stat, writeFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import type { FileChecksum } from '../util/checksum.js';
import type { PreviousSnapshot } from './snapshot.js';
import onnxProto from 'onnx-proto';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { readRowBlocks, writeFully } from '../util/files.js';
import { float16ToFloat32, float32ToFloat16 } from '../math/float16.js';
import { ARITHMETIC_SESSION } from '../math/arithmetic-session.js';

const { onnx } = onnxProto;

export type KeyFormat = 'float32' | 'float16';

/** format 1: every key in one file */
export const FULL_KEYS_FILE = 'fullkeys.bin';
export const FULL_KEYS_META = 'fullkeys.json';
/** format 2: keys in segments of `segmentRows` rows, `fullkeys-<segment>.bin`; a full segment never changes */
const segmentFile = (segment: number) => `fullkeys-${String(segment).padStart(6, '0')}.bin`;

const BLOCK_BYTES = 128 * 1024 * 1024;
const MAX_BLOCK_ROWS = 65536;
const FIRST_BLOCK_ROWS = 1024;
/** key values gathered for one ORT run (256 KB as float16, 512 KB as float32; 10 rows of 12,288) */
const RUN_ELEMENTS = 1 << 17;
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
  /** gather buffers of RUN_ELEMENTS (or one list's worth, if longer), reused across calls */
  private readonly scratch: KeyArray[] = [];

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

  /**
   * The same for nq queries, each with its own candidate list. Lists are cut into
   * segments of at most RUN_ELEMENTS / dimension rows; segments, longest first,
   * are packed into runs of B × longest rows ≤ RUN_ELEMENTS (shorter segments
   * padded), one ORT batched MatMul per run.
   */
  async similaritiesBatch(queries: Float32Array, nq: number, candidates: Int32Array[]): Promise<Float32Array[]> {
    const d = this.dimension;
    if (!Number.isInteger(nq) || nq < 0) throw new RangeError(`similarities: nq must be a non-negative integer, got ${nq}`);
    if (queries.length < nq * d) throw new RangeError(`similarities: ${nq} queries need ${nq * d} floats, got ${queries.length}`);
    if (candidates.length !== nq) throw new RangeError(`similarities: ${nq} queries but ${candidates.length} candidate lists`);
    for (const list of candidates) for (let i = 0; i < list.length; i++) this.checkPosition(list[i]);

    const out = candidates.map((list) => new Float32Array(list.length));
    const segRows = Math.max(1, Math.floor(RUN_ELEMENTS / d));
    const segments: Segment[] = [];
    for (let q = 0; q < nq; q++) {
      const len = candidates[q].length;
      for (let first = 0; first < len; first += segRows) segments.push({ query: q, first, rows: Math.min(segRows, len - first) });
    }
    if (segments.length === 0) return out;
    segments.sort((a, b) => b.rows - a.rows);
    const session = await getSession(this.format);
    const capacity = Math.max(RUN_ELEMENTS, segRows * d);
    const gathered = this.scratch.pop() ?? this.newArray(capacity);
    const runQueries = (rows: number) => Math.min(segments.length, Math.max(1, Math.floor(capacity / (rows * d))));
    const queryBuffer = new Float32Array(runQueries(segments[segments.length - 1].rows) * d); // for every run: the shortest segment packs most
    try {
      for (let s0 = 0; s0 < segments.length;) {
        const rows = segments[s0].rows; // the longest in this run
        const b = Math.min(segments.length - s0, runQueries(rows));
        const q = queryBuffer.subarray(0, b * d);
        for (let i = 0; i < b; i++) {
          const seg = segments[s0 + i];
          q.set(queries.subarray(seg.query * d, (seg.query + 1) * d), i * d);
          const list = candidates[seg.query];
          const base = i * rows * d;
          for (let r = 0; r < seg.rows; r++) gathered.set(this.row(list[seg.first + r]), base + r * d);
          // padding rows (r ≥ seg.rows) keep whatever they held; their products are ignored
        }
        const k = new Tensor(this.format, gathered.subarray(0, b * rows * d), [b, rows, d]);
        const result = await session.run({ q: new Tensor('float32', q, [b, d, 1]), k });
        const s = result.s.data as Float32Array; // b × rows × 1
        for (let i = 0; i < b; i++) {
          const seg = segments[s0 + i];
          out[seg.query].set(s.subarray(i * rows, i * rows + seg.rows), seg.first);
        }
        s0 += b;
      }
    } finally {
      if (this.scratch.length < 2) this.scratch.push(gathered);
    }
    return out;
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

interface Segment {
  query: number;
  first: number; // index of the first candidate in the query's list
  rows: number;
}

function assertLittleEndian(): void {
  if (endianness() !== 'LE') throw new Error(`${FULL_KEYS_FILE} is little-endian; big-endian hosts are not supported`);
}

// ---------------------------------------------------------------------------
// ORT: a batched matrix-vector product, s[B,N,1] = k[B,N,D] · q[B,D,1], with a
// Cast to float first when the keys are float16. One session per format per
// process, created lazily and kept (re-creating ORT sessions leaks memory).

function productModel(format: KeyFormat): Uint8Array {
  const F = onnx.TensorProto.DataType.FLOAT;
  const keyType = format === 'float16' ? onnx.TensorProto.DataType.FLOAT16 : F;
  const valueInfo = (name: string, elemType: number, dims: string[]) => ({
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => ({ dimParam: d })) } } },
  });
  const node = [];
  if (format === 'float16') {
    node.push({
      opType: 'Cast',
      input: ['k'],
      output: ['kf'],
      attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: F }],
    });
  }
  node.push({ opType: 'MatMul', input: [format === 'float16' ? 'kf' : 'k', 'q'], output: ['s'] });
  return onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: `full-key-products-${format}`,
      node,
      input: [valueInfo('q', F, ['B', 'D', 'one']), valueInfo('k', keyType, ['B', 'N', 'D'])],
      output: [valueInfo('s', F, ['B', 'N', 'one'])],
    },
  }).finish();
}

const sessions = new Map<KeyFormat, Promise<InferenceSession>>();

function getSession(format: KeyFormat): Promise<InferenceSession> {
  let session = sessions.get(format);
  if (!session) {
    session = InferenceSession.create(productModel(format), ARITHMETIC_SESSION);
    sessions.set(format, session);
  }
  return session;
}
