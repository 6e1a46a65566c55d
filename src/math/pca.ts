// PCA by randomized SVD (Halko, Martinsson & Tropp 2011), every large product on onnxruntime's
// Gemm (innerProducts): the top principal directions of the UNCENTRED second moment of a sample,
// because centring would change the raw inner products the cache compares.
import { symmetricEigen } from './eigen.js';
import { innerProducts } from './gemm.js';
import { orthonormaliseRows } from './orthonormal.js';
import { Rng } from './rng.js';

/** rows projected per Gemm when measuring the energy captured */
const PROJECT_BATCH = 4096;

/** What a fit records about itself (kept in the projection's metadata). */
export interface PcaInfo {
  seed: number;
  oversample: number;
  powerIterations: number;
  sampleSize: number;
  /** Σ‖Cx‖² / Σ‖x‖² over the sample */
  energyFraction: number;
  eigenvalues: number[];
}

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
export async function randomizedPca(
  sample: Float32Array,
  n: number,
  inputDimension: number,
  outputDimension: number,
  opts: PcaOptions = {},
): Promise<{ components: Float32Array; info: PcaInfo }> {
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
  return {
    components,
    info: {
      seed,
      oversample,
      powerIterations,
      sampleSize: n,
      energyFraction,
      eigenvalues: Array.from(values.subarray(0, k), (v) => Math.max(0, v)),
    },
  };
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
