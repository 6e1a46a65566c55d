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
import { gramSchmidt64, normaliseRow } from '../math/orthonormal.js';
import { randomizedPca, type PcaOptions } from '../math/pca.js';
import { Rng } from '../math/rng.js';

export type { PcaOptions } from '../math/pca.js';

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
      throw new RangeError(`a ${outputDimension}×${inputDimension} projection needs ${inputDimension * outputDimension} floats, got ${components.length}`);
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
 * The top-`outputDimension` principal directions of the uncentred n × inputDimension sample, as a
 * projection (math/pca.ts says how). Deterministic for a seed.
 */
export async function fitPca(sample: Float32Array, n: number, inputDimension: number, outputDimension: number, opts: PcaOptions = {}): Promise<Projection> {
  checkDimension('inputDimension', inputDimension);
  checkDimension('outputDimension', outputDimension);
  checkDimension('n', n);
  const { components, info } = await randomizedPca(sample, n, inputDimension, outputDimension, opts);
  return new Projection('pca', inputDimension, outputDimension, components, { ...info });
}
