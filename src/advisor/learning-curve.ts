// Advice for the cache's real size: each key's validation error at growing samples of the train
// set, fitted by a learning curve and read at the size the cache will have. Small caches favour
// compact late layers, large ones larger inner keys, so a ranking at the sample size can mislead.
import type { LayerAdvice, LayerScore } from './advice.js';
import { xorshift32 } from '../math/rng.js';
import { round } from './layer-scores.js';

/** the train sample sizes a learning curve is scored at, as fractions of the train set */
const CURVE_FRACTIONS = [0.125, 0.25, 0.5, 1];

/**
 * Each key's validation error at 1/8, 1/4, 1/2 and all of the train sample (nested, class-mixed
 * subsets: one seeded permutation), fitted by error(n) = a + b·n^(−c) (c on a grid of 0.1…1, a and
 * b by least squares, b ≥ 0), and read at the cache's size. Keys ranked by that error.
 */
export async function extrapolate(
  keys: LayerScore[],
  cacheSize: number,
  simsOf: (key: LayerScore) => Promise<Float32Array>,
  errorAt: (sims: Float32Array, columns: Uint32Array) => number,
  trainItems: number,
): Promise<NonNullable<LayerAdvice['forCacheSize']>> {
  const permutation = seededPermutation(trainItems, 12345);
  const sizes = CURVE_FRACTIONS.map((f) => Math.max(1, Math.round(f * trainItems)));
  const ranking = [];
  for (const key of keys) {
    const sims = await simsOf(key);
    // the whole sample is the score the ranking already holds: only the smaller samples are scored here
    const curve = sizes.map((n) => ({ items: n, error: n === trainItems ? key.error : round(errorAt(sims, permutation.subarray(0, n)), 6) }));
    const fit = fitLearningCurve(curve);
    ranking.push({ layers: key.layers, dimension: key.dimension, error: round(Math.min(1, Math.max(0, fit.at(cacheSize))), 6), curve, fit: fit.params });
    await new Promise((resolve) => setImmediate(resolve));
  }
  ranking.sort((a, b) => a.error - b.error || a.dimension - b.dimension);
  return {
    cacheSize,
    method: `learning curves: each key scored at ${sizes.join(', ')} cache items, error(n) = a + b·n^(−c) fitted and read at ${cacheSize} items`,
    ranking,
  };
}

/** error(n) = a + b·n^(−c), least squares over c ∈ {0.1, …, 1}; b ≥ 0 (more items never hurt), else a flat line. */
export function fitLearningCurve(points: { items: number; error: number }[]): { at: (n: number) => number; params: { a: number; b: number; c: number } } {
  let best = { a: mean(points.map((p) => p.error)), b: 0, c: 0.5, sse: Infinity };
  best.sse = points.reduce((s, p) => s + (p.error - best.a) ** 2, 0);
  for (let c = 0.1; c <= 1.0001; c += 0.1) {
    const xs = points.map((p) => p.items ** -c);
    const mx = mean(xs);
    const my = mean(points.map((p) => p.error));
    const sxx = xs.reduce((s, x) => s + (x - mx) ** 2, 0);
    if (sxx === 0) continue;
    const b = xs.reduce((s, x, i) => s + (x - mx) * (points[i].error - my), 0) / sxx;
    if (b < 0) continue;
    const a = my - b * mx;
    const sse = xs.reduce((s, x, i) => s + (a + b * x - points[i].error) ** 2, 0);
    if (sse < best.sse) best = { a, b, c: round(c, 1), sse };
  }
  const { a, b, c } = best;
  return { at: (n) => a + b * n ** -c, params: { a: round(a, 6), b: round(b, 6), c } };
}

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

/** the columns `columns` of an nv × nt matrix, as an nv × columns.length one */
export function subColumns(sims: Float32Array, nv: number, nt: number, columns: Uint32Array): Float32Array {
  const m = columns.length;
  const out = new Float32Array(nv * m);
  for (let q = 0; q < nv; q++) for (let i = 0; i < m; i++) out[q * m + i] = sims[q * nt + columns[i]];
  return out;
}

export function pick(values: ArrayLike<number>, columns: Uint32Array): number[] {
  return Array.from(columns, (c) => values[c]);
}

/** 0 … n−1 in a seeded random order (Fisher–Yates, xorshift32) */
function seededPermutation(n: number, seed: number): Uint32Array {
  const out = Uint32Array.from({ length: n }, (_, i) => i);
  const next = xorshift32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
