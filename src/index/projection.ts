// Reduced search keys: a linear projection of the full key (e.g. 12,288 dims)
// to a few hundred dims, so hnsw works on small vectors. Each projected row is
// L2-normalised again, because the cache compares keys by inner product.
//
// Two kinds:
//   random — a seeded Gaussian matrix, rows orthonormalised (Gram–Schmidt in
//            float64 JS, bit-for-bit reproducible for a seed);
//   pca    — the top principal directions of the UNCENTRED second moment of a
//            sample (the top right singular vectors of the n×D sample matrix X):
//            centring would change the raw inner products the cache compares.
//            Computed by randomized SVD (Halko, Martinsson & Tropp 2011) with
//            every large product on onnxruntime's Gemm (innerProducts).
//
// A projection is a value: its fingerprint (sha256 of kind, dims and the
// component bytes) lets replicas check they hold the same one. Components are
// stored row-major, outputDimension × inputDimension, little-endian float32.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { innerProducts } from '../math/gemm.js';

export type ProjectionKind = 'pca' | 'random';

export const PROJECTION_JSON = 'projection.json';
export const PROJECTION_F32 = 'projection.f32';
const MAGIC = 'CPRJ';
const FORMAT_VERSION = 1;
/** rows per Gemm in project(): bounds the Gemm output and the input slice */
const PROJECT_BATCH = 4096;

/** What was fitted and how; recorded in projection.json (not part of the fingerprint). */
export interface ProjectionInfo {
  seed?: number;
  /** pca: oversampling p (the range finder uses d + p columns) */
  oversample?: number;
  powerIterations?: number;
  /** pca: rows in the fitting sample */
  sampleSize?: number;
  /** pca: Σ‖Cx‖² / Σ‖x‖² over the sample — the fraction of its energy the components capture */
  energyFraction?: number;
  /** pca: eigenvalues of XᵀX for the components, descending (σ², not normalised) */
  eigenvalues?: number[];
  /** random: whether rows were orthonormalised (outputDimension ≤ inputDimension) */
  orthonormal?: boolean;
  [k: string]: unknown;
}

interface ProjectionMeta {
  formatVersion: number;
  kind: ProjectionKind;
  inputDimension: number;
  outputDimension: number;
  fingerprint: string;
  info: ProjectionInfo;
}

export class Projection {
  /** a stable fingerprint (sha256 of kind, dims and the component bytes) */
  readonly fingerprint: string;

  constructor(
    readonly kind: ProjectionKind,
    readonly inputDimension: number,
    readonly outputDimension: number,
    /** rows: outputDimension × inputDimension, row-major (the components) */
    readonly components: Float32Array,
    readonly info: ProjectionInfo = {},
  ) {
    if (kind !== 'pca' && kind !== 'random') throw new RangeError(`unknown projection kind ${String(kind)}`);
    checkDimension('inputDimension', inputDimension);
    checkDimension('outputDimension', outputDimension);
    if (components.length !== inputDimension * outputDimension) {
      throw new RangeError(
        `a ${outputDimension}×${inputDimension} projection needs ${inputDimension * outputDimension} floats, got ${components.length}`,
      );
    }
    this.fingerprint = fingerprintOf(kind, inputDimension, outputDimension, components);
  }

  /** n rows of inputDimension → n rows of outputDimension, each row L2-normalised (a zero row stays zero) */
  async project(keys: Float32Array, n: number): Promise<Float32Array> {
    const D = this.inputDimension;
    const d = this.outputDimension;
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`project: n must be a non-negative integer, got ${n}`);
    if (keys.length < n * D) throw new RangeError(`project: ${n} keys need ${n * D} floats, got ${keys.length}`);
    const out = new Float32Array(n * d);
    for (let r0 = 0; r0 < n; r0 += PROJECT_BATCH) {
      const b = Math.min(PROJECT_BATCH, n - r0);
      const s = await innerProducts(keys.subarray(r0 * D, (r0 + b) * D), b, this.components, d, D);
      out.set(s.subarray(0, b * d), r0 * d);
    }
    for (let i = 0; i < n; i++) normaliseRow(out, i * d, d);
    return out;
  }

  private meta(): ProjectionMeta {
    return {
      formatVersion: FORMAT_VERSION,
      kind: this.kind,
      inputDimension: this.inputDimension,
      outputDimension: this.outputDimension,
      fingerprint: this.fingerprint,
      info: this.info,
    };
  }

  /** Writes projection.f32 (components) then projection.json (kind, dims, fingerprint, fit info), each atomically. */
  async save(dir: string): Promise<void> {
    assertLittleEndian();
    const c = this.components;
    await writeFileAtomic(join(dir, PROJECTION_F32), Buffer.from(c.buffer, c.byteOffset, c.byteLength));
    await writeFileAtomic(join(dir, PROJECTION_JSON), JSON.stringify(this.meta(), null, 2) + '\n');
  }

  /** null when either file is absent; throws when they are present but inconsistent. */
  static async load(dir: string): Promise<Projection | null> {
    assertLittleEndian();
    let json: string;
    let bytes: Buffer;
    try {
      json = await readFile(join(dir, PROJECTION_JSON), 'utf8');
      bytes = await readFile(join(dir, PROJECTION_F32));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return fromParts(JSON.parse(json) as unknown, bytes, join(dir, PROJECTION_JSON));
  }

  /** 'CPRJ', u32 format version, u32 JSON length, the JSON meta, zero padding to 4 bytes, the components (LE float32). */
  toBuffer(): Buffer {
    assertLittleEndian();
    const json = Buffer.from(JSON.stringify(this.meta()), 'utf8');
    const headerBytes = 12 + json.length;
    const offset = Math.ceil(headerBytes / 4) * 4;
    const buf = Buffer.alloc(offset + this.components.byteLength);
    buf.write(MAGIC, 0, 'latin1');
    buf.writeUInt32LE(FORMAT_VERSION, 4);
    buf.writeUInt32LE(json.length, 8);
    json.copy(buf, 12);
    const c = this.components;
    buf.set(new Uint8Array(c.buffer, c.byteOffset, c.byteLength), offset);
    return buf;
  }

  static fromBuffer(b: Buffer): Projection {
    assertLittleEndian();
    if (b.length < 12 || b.toString('latin1', 0, 4) !== MAGIC) throw new Error('not a serialised projection (bad magic)');
    const version = b.readUInt32LE(4);
    if (version !== FORMAT_VERSION) throw new Error(`serialised projection has format version ${version}, expected ${FORMAT_VERSION}`);
    const jsonLength = b.readUInt32LE(8);
    if (12 + jsonLength > b.length) throw new Error('serialised projection is truncated (header)');
    const meta = JSON.parse(b.toString('utf8', 12, 12 + jsonLength)) as unknown;
    const offset = Math.ceil((12 + jsonLength) / 4) * 4;
    return fromParts(meta, b.subarray(offset), 'serialised projection');
  }
}

/** The fingerprint recorded in the head of a serialised projection (its first bytes suffice), or null. */
export function serialisedFingerprint(head: Buffer): string | null {
  if (head.length < 12 || head.toString('latin1', 0, 4) !== MAGIC) return null;
  const jsonLength = head.readUInt32LE(8);
  if (12 + jsonLength > head.length) return null;
  const meta = JSON.parse(head.toString('utf8', 12, 12 + jsonLength)) as { fingerprint?: unknown };
  return typeof meta.fingerprint === 'string' ? meta.fingerprint : null;
}

function fromParts(metaIn: unknown, bytes: Uint8Array, where: string): Projection {
  const meta = metaIn as Partial<ProjectionMeta> | null;
  if (!meta || typeof meta !== 'object') throw new Error(`${where}: not a projection description`);
  if (meta.formatVersion !== FORMAT_VERSION) throw new Error(`${where}: format version ${String(meta.formatVersion)}, expected ${FORMAT_VERSION}`);
  const { kind, inputDimension: D, outputDimension: d } = meta;
  if (kind !== 'pca' && kind !== 'random') throw new Error(`${where}: unknown projection kind ${String(kind)}`);
  if (!Number.isInteger(D) || !Number.isInteger(d) || (D as number) < 1 || (d as number) < 1) {
    throw new Error(`${where}: bad dimensions ${String(D)} → ${String(d)}`);
  }
  const want = (D as number) * (d as number) * 4;
  if (bytes.length !== want) throw new Error(`${where}: components are ${bytes.length} bytes, expected ${want} (${d}×${D} float32)`);
  const components = new Float32Array((D as number) * (d as number));
  new Uint8Array(components.buffer).set(bytes); // a copy: aligned, and never aliasing the caller's buffer
  const p = new Projection(kind, D as number, d as number, components, (meta.info ?? {}) as ProjectionInfo);
  if (meta.fingerprint !== undefined && meta.fingerprint !== p.fingerprint) {
    throw new Error(`${where}: fingerprint mismatch (recorded ${String(meta.fingerprint)}, components give ${p.fingerprint})`);
  }
  return p;
}

function fingerprintOf(kind: ProjectionKind, D: number, d: number, components: Float32Array): string {
  assertLittleEndian();
  return createHash('sha256')
    .update(`cachet-projection\0${kind}\0${D}\0${d}\0`)
    .update(new Uint8Array(components.buffer, components.byteOffset, components.byteLength))
    .digest('hex');
}

function checkDimension(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
}

function assertLittleEndian(): void {
  if (endianness() !== 'LE') throw new Error('projection components are little-endian; big-endian hosts are not supported');
}

// ---------------------------------------------------------------------------
// Random projection

/**
 * A seeded Gaussian outputDimension × inputDimension matrix. When
 * outputDimension ≤ inputDimension its rows are orthonormalised (block
 * modified Gram–Schmidt, re-orthogonalised when needed, float64); otherwise
 * they are only scaled to unit length. Pure JS arithmetic (no Gemm), so a seed
 * gives the same bytes and fingerprint on any machine running the same V8.
 *
 * Synchronous and O(d²·D): ~1 s for 256 × 12,288 and ~8 s for 1024 × 12,288 on
 * a loaded 2-core machine, so large ones belong off a latency-sensitive thread.
 */
export function randomProjection(inputDimension: number, outputDimension: number, seed: number): Projection {
  checkDimension('inputDimension', inputDimension);
  checkDimension('outputDimension', outputDimension);
  const D = inputDimension;
  const d = outputDimension;
  const rng = new Rng(seed);
  const m = new Float64Array(d * D);
  for (let i = 0; i < m.length; i++) m[i] = rng.gaussian();
  const orthonormal = d <= D;
  if (orthonormal) gramSchmidt64(m, d, D, rng);
  else for (let i = 0; i < d; i++) normaliseRow(m, i * D, D);
  return new Projection('random', D, d, Float32Array.from(m), { seed, orthonormal, distribution: 'gaussian' });
}

/**
 * Orthonormalises the rows of m in place, in order: modified Gram–Schmidt over
 * blocks of 16 rows (each finished row is read from memory once per block and
 * applied to the block four rows at a time), repeated for a block whose rows lost more than
 * half their norm ("twice is enough"); a row that vanishes is replaced by a
 * fresh Gaussian one.
 */
function gramSchmidt64(m: Float64Array, rows: number, len: number, rng: Rng): void {
  const BS = 16;
  const before = new Float64Array(BS);
  for (let i0 = 0; i0 < rows; i0 += BS) {
    const bs = Math.min(BS, rows - i0);
    for (let attempt = 0; ; attempt++) {
      for (let k = 0; k < bs; k++) before[k] = Math.sqrt(dot64(m, (i0 + k) * len, m, (i0 + k) * len, len));
      let ok = true;
      for (let pass = 0; pass < 2; pass++) {
        for (let j = 0; j < i0; j++) {
          for (let g = 0; g < bs; g += 4) subtractProjections(m, len, j * len, (i0 + g) * len, Math.min(4, bs - g));
        }
        ok = true;
        let shrunk = false;
        for (let k = 0; k < bs; k++) {
          const o = (i0 + k) * len;
          for (let j = 0; j < k; j++) subtractProjections(m, len, (i0 + j) * len, o, 1);
          const after = Math.sqrt(dot64(m, o, m, o, len));
          if (!(after > 1e-10 * before[k] && after > 0)) ok = false;
          else {
            if (after < 0.5 * before[k]) shrunk = true;
            const inv = 1 / after;
            for (let t = 0; t < len; t++) m[o + t] *= inv;
            before[k] = 1;
          }
        }
        if (!ok || !shrunk) break;
      }
      if (ok) break;
      if (attempt >= 8) throw new Error('gram-schmidt: could not find independent rows');
      for (let t = i0 * len; t < (i0 + bs) * len; t++) m[t] = rng.gaussian();
    }
  }
}

/** For each of `count` consecutive rows at r0: row −= ⟨row, q⟩ q, with q the (unit) row at qo. */
function subtractProjections(m: Float64Array, len: number, qo: number, r0: number, count: number): void {
  if (count === 4) {
    const a = r0;
    const b = r0 + len;
    const c = r0 + 2 * len;
    const d = r0 + 3 * len;
    let sa = 0;
    let sb = 0;
    let sc = 0;
    let sd = 0;
    for (let t = 0; t < len; t++) {
      const q = m[qo + t];
      sa += q * m[a + t];
      sb += q * m[b + t];
      sc += q * m[c + t];
      sd += q * m[d + t];
    }
    for (let t = 0; t < len; t++) {
      const q = m[qo + t];
      m[a + t] -= sa * q;
      m[b + t] -= sb * q;
      m[c + t] -= sc * q;
      m[d + t] -= sd * q;
    }
    return;
  }
  for (let k = 0; k < count; k++) {
    const o = r0 + k * len;
    const s = dot64(m, qo, m, o, len);
    for (let t = 0; t < len; t++) m[o + t] -= s * m[qo + t];
  }
}

function dot64(a: Float64Array | Float32Array, ao: number, b: Float64Array | Float32Array, bo: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let t = 0;
  for (; t + 3 < n; t += 4) {
    s0 += a[ao + t] * b[bo + t];
    s1 += a[ao + t + 1] * b[bo + t + 1];
    s2 += a[ao + t + 2] * b[bo + t + 2];
    s3 += a[ao + t + 3] * b[bo + t + 3];
  }
  for (; t < n; t++) s0 += a[ao + t] * b[bo + t];
  return s0 + s1 + s2 + s3;
}

function normaliseRow(v: Float32Array | Float64Array, o: number, n: number): void {
  let ss = 0;
  for (let t = 0; t < n; t++) ss += v[o + t] * v[o + t];
  if (ss === 0) return;
  const inv = 1 / Math.sqrt(ss);
  for (let t = 0; t < n; t++) v[o + t] *= inv;
}

// ---------------------------------------------------------------------------
// PCA by randomized SVD

export interface PcaOptions {
  /** PRNG seed for the test matrix Ω (default 0); the result is deterministic for a seed */
  seed?: number;
  /** extra range-finder columns p, so it uses d + p (default 10) */
  oversample?: number;
  /** power iterations q: Y = (XXᵀ)^q XΩ, re-orthonormalised each half-step (default 2) */
  powerIterations?: number;
}

/**
 * The top-`outputDimension` right singular vectors of the n × inputDimension
 * sample X (the principal directions of the uncentred second moment XᵀX),
 * by randomized SVD:
 *   Ω: (d+p) × D seeded Gaussian;  Y = XΩᵀ;  q power iterations
 *   Q̃ = orth(XᵀQ), Q = orth(XQ̃);  Q = orth(Y);  B = QᵀX;
 *   BBᵀ = U Λ Uᵀ (symmetric eigen, float64);  components = rows of UᵀB, by Λ descending.
 * If the sample has fewer independent directions than outputDimension, the
 * missing components are seeded random directions orthogonal to the rest.
 * Each component's largest-magnitude entry is made positive (a fixed sign).
 */
export async function fitPca(
  sample: Float32Array,
  n: number,
  inputDimension: number,
  outputDimension: number,
  opts: PcaOptions = {},
): Promise<Projection> {
  checkDimension('inputDimension', inputDimension);
  checkDimension('outputDimension', outputDimension);
  checkDimension('n', n);
  const D = inputDimension;
  const d = outputDimension;
  const seed = opts.seed ?? 0;
  const oversample = opts.oversample ?? 10;
  const powerIterations = opts.powerIterations ?? 2;
  if (!Number.isInteger(oversample) || oversample < 0) throw new RangeError(`oversample must be a non-negative integer, got ${oversample}`);
  if (!Number.isInteger(powerIterations) || powerIterations < 0) {
    throw new RangeError(`powerIterations must be a non-negative integer, got ${powerIterations}`);
  }
  if (d > D) throw new RangeError(`PCA cannot give ${d} components in ${D} dimensions`);
  if (sample.length < n * D) throw new RangeError(`fitPca: ${n} rows need ${n * D} floats, got ${sample.length}`);
  const X = sample.length === n * D ? sample : sample.subarray(0, n * D);
  const rng = new Rng(seed);
  const l = Math.min(d + oversample, D, n);

  // Range finder. Matrices with a dimension of length n or D are kept with that
  // dimension innermost: Qt (l × n) holds Q's columns as rows, and so on.
  const omega = new Float32Array(l * D);
  for (let i = 0; i < omega.length; i++) omega[i] = rng.gaussian();
  let Qt = await innerProducts(omega, l, X, n, D); // (XΩᵀ)ᵀ: l × n
  await orthonormaliseRows(Qt, l, n, null);
  for (let it = 0; it < powerIterations; it++) {
    const Zt = transpose(await transposedTimes(X, n, D, Qt, l), D, l); // (XᵀQ)ᵀ: l × D
    await orthonormaliseRows(Zt, l, D, null);
    Qt = await innerProducts(Zt, l, X, n, D); // (X Q̃)ᵀ: l × n
    await orthonormaliseRows(Qt, l, n, null);
  }

  // B = QᵀX (l × D), kept as Bᵀ (D × l) for the final product and as B for BBᵀ.
  const Bt = await transposedTimes(X, n, D, Qt, l);
  const B = transpose(Bt, D, l);
  const G = await innerProducts(B, l, B, l, D); // l × l
  const sym = new Float64Array(l * l);
  for (let i = 0; i < l; i++) {
    for (let j = 0; j < l; j++) sym[i * l + j] = 0.5 * (G[i * l + j] + G[j * l + i]);
  }
  const { values, vectors } = symmetricEigen(sym, l); // descending; vectors as rows

  const k = Math.min(d, l);
  const Uk = new Float32Array(k * l);
  for (let i = 0; i < k * l; i++) Uk[i] = vectors[i];
  const components = new Float32Array(d * D);
  components.set(await innerProducts(Uk, k, Bt, D, l)); // UₖᵀB: k × D
  for (let i = k * D; i < d * D; i++) components[i] = rng.gaussian(); // only when the sample has < d directions
  await orthonormaliseRows(components, d, D, rng);
  for (let i = 0; i < d; i++) fixSign(components, i * D, D);

  // Energy captured: Σ‖Cx‖² / Σ‖x‖² over the sample, computed exactly.
  let total = 0;
  for (let i = 0; i < n * D; i++) total += X[i] * X[i];
  let captured = 0;
  for (let r0 = 0; r0 < n; r0 += PROJECT_BATCH) {
    const b = Math.min(PROJECT_BATCH, n - r0);
    const s = await innerProducts(X.subarray(r0 * D, (r0 + b) * D), b, components, d, D);
    for (let i = 0; i < b * d; i++) captured += s[i] * s[i];
  }
  const energyFraction = total > 0 ? captured / total : 0;
  return new Projection('pca', D, d, components, {
    seed,
    oversample,
    powerIterations,
    sampleSize: n,
    energyFraction,
    eigenvalues: Array.from(values.subarray(0, k), (v) => Math.max(0, v)),
  });
}

/** Xᵀ·Q as D × l, from X (n × D) and Qt (l × n): transposes X one column block at a time for the Gemm. */
async function transposedTimes(X: Float32Array, n: number, D: number, Qt: Float32Array, l: number): Promise<Float32Array> {
  const out = new Float32Array(D * l);
  const cw = Math.min(D, 256); // 256 × n floats of transposed X per Gemm

  const xt = new Float32Array(cw * n);
  for (let c0 = 0; c0 < D; c0 += cw) {
    const w = Math.min(cw, D - c0);
    transposeBlock(X, n, D, c0, w, xt);
    const s = await innerProducts(xt.subarray(0, w * n), w, Qt, l, n); // w × l
    out.set(s.subarray(0, w * l), c0 * l);
  }
  return out;
}

/** xt[c·n + i] = X[i·D + c0 + c] for c < w, tiled for the cache. */
function transposeBlock(X: Float32Array, n: number, D: number, c0: number, w: number, xt: Float32Array): void {
  const T = 32;
  for (let i0 = 0; i0 < n; i0 += T) {
    const i1 = Math.min(n, i0 + T);
    for (let j0 = 0; j0 < w; j0 += T) {
      const j1 = Math.min(w, j0 + T);
      for (let i = i0; i < i1; i++) {
        const src = i * D + c0;
        for (let j = j0; j < j1; j++) xt[j * n + i] = X[src + j];
      }
    }
  }
}

/** a (rows × cols) → aᵀ (cols × rows) */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const T = 64;
  for (let i0 = 0; i0 < rows; i0 += T) {
    const i1 = Math.min(rows, i0 + T);
    for (let j0 = 0; j0 < cols; j0 += T) {
      const j1 = Math.min(cols, j0 + T);
      for (let i = i0; i < i1; i++) {
        for (let j = j0; j < j1; j++) out[j * rows + i] = a[i * cols + j];
      }
    }
  }
  return out;
}

/** Flips a row so its largest-magnitude entry is positive. */
function fixSign(v: Float32Array, o: number, n: number): void {
  let best = 0;
  let at = 0;
  for (let t = 0; t < n; t++) {
    const a = Math.abs(v[o + t]);
    if (a > best) {
      best = a;
      at = t;
    }
  }
  if (v[o + at] < 0) for (let t = 0; t < n; t++) v[o + t] = -v[o + t];
}

const ORTH_BLOCK = 16;

/**
 * Orthonormalises the rows of m (rows × len, float32) in place, in order:
 * block classical Gram–Schmidt, twice (BCGS2), with the projections against
 * earlier blocks on the Gemm and modified Gram–Schmidt inside each block.
 * The finished rows are also kept transposed in t (len × rows, zero columns
 * for rows not finished yet), so both Gemms can run over all `rows`: the
 * unfinished rows' coefficients meet zero columns of t and drop out.
 * A row that is (numerically) in the span of the earlier ones is replaced by
 * a random one from `fill` when given, else set to zero.
 */
async function orthonormaliseRows(m: Float32Array, rows: number, len: number, fill: Rng | null): Promise<void> {
  if (fill && rows > len) throw new RangeError(`cannot fit ${rows} orthonormal rows in ${len} dimensions`);
  const t = new Float32Array(len * rows);
  const res = new Float64Array(ORTH_BLOCK);
  for (let j0 = 0; j0 < rows; j0 += ORTH_BLOCK) {
    const bs = Math.min(ORTH_BLOCK, rows - j0);
    const block = m.subarray(j0 * len, (j0 + bs) * len);
    for (let attempt = 0; ; attempt++) {
      await orthBlockPass(m, rows, len, j0, bs, t, res);
      await orthBlockPass(m, rows, len, j0, bs, t, res);
      // After a first pass every row is unit (or zero); a second pass that
      // removes most of a row means it had no independent direction left.
      let bad = 0;
      for (let i = 0; i < bs; i++) if (!(res[i] >= 0.5)) bad++;
      if (bad === 0) break;
      if (!fill || attempt >= 8) {
        for (let i = 0; i < bs; i++) if (!(res[i] >= 0.5)) block.fill(0, i * len, (i + 1) * len);
        break;
      }
      for (let i = 0; i < bs; i++) {
        if (!(res[i] >= 0.5)) for (let x = i * len; x < (i + 1) * len; x++) block[x] = fill.gaussian();
      }
    }
    for (let i = 0; i < bs; i++) {
      const o = i * len;
      for (let r = 0; r < len; r++) t[r * rows + j0 + i] = block[o + r];
    }
  }
}

/** One pass over block rows j0…j0+bs−1: subtract the projection on rows < j0 (Gemm), then MGS within the block. */
async function orthBlockPass(
  m: Float32Array,
  rows: number,
  len: number,
  j0: number,
  bs: number,
  t: Float32Array,
  res: Float64Array,
): Promise<void> {
  const block = m.subarray(j0 * len, (j0 + bs) * len);
  if (j0 > 0) {
    const c = await innerProducts(block, bs, m.subarray(0, rows * len), rows, len); // bs × rows; only < j0 count
    const p = await innerProducts(c, bs, t, len, rows); // bs × len: c · (finished rows)
    for (let x = 0; x < bs * len; x++) block[x] -= p[x];
  }
  for (let i = 0; i < bs; i++) {
    const o = i * len;
    for (let k = 0; k < i; k++) {
      const q = k * len;
      const c = dot64(block, o, block, q, len);
      if (c !== 0) for (let x = 0; x < len; x++) block[o + x] -= c * block[q + x];
    }
    const nrm = Math.sqrt(dot64(block, o, block, o, len));
    res[i] = nrm;
    if (nrm > 0 && Number.isFinite(nrm)) {
      const inv = 1 / nrm;
      for (let x = 0; x < len; x++) block[o + x] *= inv;
    } else {
      block.fill(0, o, o + len);
      res[i] = 0;
    }
  }
}

// ---------------------------------------------------------------------------
// Symmetric eigendecomposition (Householder tridiagonalisation + implicit QL,
// after EISPACK tred2/tql2 as in JAMA), float64.

/** a: n × n symmetric, row-major. Returns eigenvalues descending and the matching unit eigenvectors as rows. */
function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const V = Float64Array.from(a.subarray(0, n * n));
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  if (n === 1) return { values: Float64Array.of(V[0]), vectors: Float64Array.of(1) };
  tred2(V, d, e, n);
  const W = new Float64Array(n * n); // W = Vᵀ: eigenvectors become rows, so tql2's updates are contiguous
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) W[j * n + i] = V[i * n + j];
  tql2(W, d, e, n);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x] || x - y);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = d[src];
    vectors.set(W.subarray(src * n, (src + 1) * n), dst * n);
  });
  return { values, vectors };
}

function tred2(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j];
        V[j * n + i] = f;
        g = e[j] + V[j * n + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k * n + j] * d[k];
          e[k] += V[k * n + j] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) V[k * n + j] -= f * e[k] + g * d[k];
        d[j] = V[(i - 1) * n + j];
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i];
    V[i * n + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1] / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k * n + i + 1] * V[k * n + j];
        for (let k = 0; k <= i; k++) V[k * n + j] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j];
    V[(n - 1) * n + j] = 0;
  }
  V[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/** W holds the transformation transposed (row i = column i of JAMA's V). */
function tql2(W: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 100) throw new Error('symmetricEigen: QL iteration did not converge');
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          const a = i * n;
          const b = (i + 1) * n;
          for (let k = 0; k < n; k++) {
            h = W[b + k];
            W[b + k] = s * W[a + k] + c * h;
            W[a + k] = c * W[a + k] - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
}

// ---------------------------------------------------------------------------

/** Seeded PRNG (xoshiro128**, seeded by splitmix32 from the seed's low and high 32 bits); Box–Muller normals. */
class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | null = null;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`seed must be a finite number, got ${seed}`);
    const s = Math.trunc(seed);
    let x = (s >>> 0) ^ Math.imul(Math.floor(s / 4294967296) >>> 0, 0x9e3779b9);
    const next = (): number => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** uniform 32-bit integer */
  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** uniform in (0, 1) */
  uniform(): number {
    return (this.u32() + 0.5) / 4294967296;
  }

  gaussian(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const theta = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
