// Scoring keys from per-layer products: single layers, their concatenations, over a θ × λ grid,
// with the one cache math.
import { argmax, cacheProbabilities, mixProbabilities } from '../math/cache-model.js';
import { innerProducts } from '../math/gemm.js';
import { xorshift32 } from '../math/rng.js';
import { LayerScore } from './advice.js';

/** Lower error first; ties: fewer dims, then lower log-loss. */
export function compareScores(a: LayerScore, b: LayerScore): number {
  return a.error - b.error || a.dimension - b.dimension || a.logLoss - b.logLoss;
}

/** Raw dot products val×train of one layer (nv × nt), by Gemm, in blocks of val rows to bound the output. */
export async function layerDots(val: Float32Array, nv: number, train: Float32Array, nt: number, dim: number): Promise<Float32Array> {
  const out = new Float32Array(nv * nt);
  const rows = Math.max(1, Math.floor((1 << 24) / Math.max(nt, 1)));
  for (let r = 0; r < nv; r += rows) {
    const b = Math.min(rows, nv - r);
    out.set(await innerProducts(val.subarray(r * dim, (r + b) * dim), b, train, nt, dim), r * nt);
  }
  return out;
}

/**
 * Similarities of the normalise-once concatenated key from per-layer raw dot products and
 * squared norms: (Σ_L dot_L) / sqrt(Σ_L |a_L|² · Σ_L |b_L|²). With one layer, the cosine.
 * A zero key (zero norm) has similarity 0 with everything.
 */
export function concatSimilarity(dots: Float32Array[], valSq: Float64Array[], trainSq: Float64Array[], nv: number, nt: number): Float32Array {
  const sims = new Float32Array(nv * nt);
  const tn = new Float64Array(nt);
  for (const sq of trainSq) for (let i = 0; i < nt; i++) tn[i] += sq[i];
  for (let i = 0; i < nt; i++) tn[i] = Math.sqrt(tn[i]);
  for (let q = 0; q < nv; q++) {
    let vq = 0;
    for (const sq of valSq) vq += sq[q];
    const vn = Math.sqrt(vq);
    const o = q * nt;
    for (let i = 0; i < nt; i++) {
      let d = 0;
      for (const dl of dots) d += dl[o + i];
      const denom = vn * tn[i];
      sims[o + i] = denom > 0 ? d / denom : 0;
    }
  }
  return sims;
}

/** Best (error, log-loss) point of the θ × λ grid, p_cache summed over every train item. */
export function scoreGrid(
  sims: Float32Array,
  nv: number,
  trainLabels: ArrayLike<number>,
  pModel: Float32Array,
  truth: ArrayLike<number>,
  C: number,
  thetas: number[],
  lambdas: number[],
): { error: number; theta: number; lambda: number; logLoss: number; cacheOnlyError: number; cacheOnlyTheta: number; correct: Uint8Array } {
  const nt = trainLabels.length;
  let best = { error: Infinity, theta: NaN, lambda: NaN, logLoss: Infinity };
  let correct = new Uint8Array(nv);
  let cacheOnly = { error: Infinity, theta: NaN };
  for (const theta of thetas) {
    const pCaches = Array.from({ length: nv }, (_, q) => cacheProbabilities(sims.subarray(q * nt, (q + 1) * nt), trainLabels, theta, C));
    let wrongAlone = 0;
    for (let q = 0; q < nv; q++) if (argmax(pCaches[q]) !== truth[q]) wrongAlone++;
    if (wrongAlone / nv < cacheOnly.error) cacheOnly = { error: wrongAlone / nv, theta };
    for (const lambda of lambdas) {
      let wrong = 0;
      let loss = 0;
      const right = new Uint8Array(nv);
      for (let q = 0; q < nv; q++) {
        const p = mixProbabilities(pModel.subarray(q * C, (q + 1) * C), pCaches[q], lambda);
        if (argmax(p) !== truth[q]) wrong++;
        else right[q] = 1;
        loss -= Math.log(Math.max(p[truth[q]], 1e-12));
      }
      const error = wrong / nv;
      const logLoss = loss / nv;
      if (error < best.error || (error === best.error && logLoss < best.logLoss)) {
        best = { error, theta, lambda, logLoss };
        correct = right;
      }
    }
  }
  return {
    error: round(best.error, 6),
    theta: best.theta,
    lambda: best.lambda,
    logLoss: round(best.logLoss, 6),
    cacheOnlyError: round(cacheOnly.error, 6),
    cacheOnlyTheta: cacheOnly.theta,
    correct,
  };
}

/**
 * 95 % bootstrap intervals of each key's error over the validation images (resampled with
 * replacement, the same resamples for every key; seeded), from each image's right/wrong at the
 * key's best grid point. The differences a ranking rests on are often a handful of images.
 */
export function bootstrapIntervals(correct: Uint8Array[], nv: number, resamples = 1000, seed = 1): [number, number][] {
  const errors = correct.map(() => new Float64Array(resamples));
  const next = xorshift32(seed);
  const picks = new Uint32Array(nv);
  for (let b = 0; b < resamples; b++) {
    for (let i = 0; i < nv; i++) picks[i] = next() % nv;
    correct.forEach((c, k) => {
      let wrong = 0;
      for (let i = 0; i < nv; i++) wrong += 1 - c[picks[i]];
      errors[k][b] = wrong / nv;
    });
  }
  return errors.map((e) => {
    e.sort();
    return [round(e[Math.floor(0.025 * (resamples - 1))], 6), round(e[Math.ceil(0.975 * (resamples - 1))], 6)];
  });
}

export function errorOf(probs: Float32Array, truth: ArrayLike<number>, n: number, C: number): number {
  let wrong = 0;
  for (let q = 0; q < n; q++) if (argmax(probs.subarray(q * C, (q + 1) * C)) !== truth[q]) wrong++;
  return round(wrong / n, 6);
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
