// The tune job: choose θ and λ on labelled validation images, as the paper does, and k (the
// neighbours p_cache sums over) for caches that search. Keys, p_model and the largest k's
// neighbours are computed once (the expensive part); then the whole k × θ × λ grid is scored in
// memory with the one cache math (a smaller k is a prefix of the neighbours, best first). Best
// top-1 accuracy wins, log-loss breaks ties, then the smaller k (faster). Unless it is a dry run,
// the choice is stored in the cache, and the previous θ and λ go into its history.
import { ServingApi } from '../engine/client.js';
import { forEachBatch } from './pipeline.js';
import { SourceItem } from '../sources/sources.js';
import { JobContext, ProcessorSettings } from './types.js';
import { TuneResult } from './results.js';

export interface TuneJobData {
  cache: string;
  items: SourceItem[];
  /** also score each image's mirror image (the paper's validation set has flips) */
  flip: boolean;
  thetas: number[];
  lambdas: number[];
  /** the k values to try (caches that search); default DEFAULT_KS and the cache's own k */
  ks?: number[];
  dryRun: boolean;
}

/** The k values tried by default, up to the cache's size (the paper's code used 50). */
export const DEFAULT_KS = [10, 20, 50, 100, 200];

export const linspace = (from: number, to: number, steps: number) =>
  Array.from({ length: steps }, (_, i) => (steps === 1 ? from : round(from + ((to - from) * i) / (steps - 1))));

/** The paper's grid: θ ∈ linspace(10, 90, 33), λ ∈ linspace(0.1, 0.9, 33). */
export const PAPER_THETAS = linspace(10, 90, 33);
export const PAPER_LAMBDAS = linspace(0.1, 0.9, 33);

/** Neighbours kept per query for caches that sum over every item: beyond them, weights are negligible at the θ of interest. */
const ALL_ITEMS_K = 1000;

export async function runTuneJob(engine: ServingApi, settings: ProcessorSettings, data: TuneJobData, ctx: JobContext): Promise<TuneResult> {
  const info = await engine.getCache(data.cache);
  const spec = await engine.modelSpec(data.cache);
  const C = spec.classes.length;
  const allItems = info.index.scoring === 'all-items';
  // ascending, distinct, at most the cache's size; a cache that sums over every item has one "k"
  const ks = allItems
    ? [Math.min(ALL_ITEMS_K, Math.max(1, info.size))]
    : [...new Set((data.ks ?? [...DEFAULT_KS, info.k]).map((k) => Math.min(k, Math.max(1, info.size))))].sort((a, b) => a - b);
  const k = ks[ks.length - 1];

  // 1. Extract once: p_model and the k nearest (similarity, label) of every query.
  const t0 = performance.now();
  const capacity = data.items.length * (data.flip ? 2 : 1);
  const pModel = new Float32Array(capacity * C);
  const sims = new Float32Array(capacity * k);
  const nLabels = new Uint16Array(capacity * k);
  const truth: number[] = [];
  await forEachBatch(
    data.items,
    { spec, flip: data.flip, signal: ctx.signal, overlap: 2, ...settings }, // the model runs on one batch while the other is searched
    async ({ items, tensor }) => {
      const r = await engine.neighbourScores(data.cache, tensor, items.length, k);
      const q = truth.length;
      pModel.set(r.pModel, q * C);
      sims.set(r.similarities, q * k);
      nLabels.set(r.labels, q * k);
      for (const it of items) truth.push(it.label!);
    },
    (done, errors) => {
      if (errors.length) ctx.itemErrors(errors);
      ctx.progress(done, data.items.length);
    },
  );
  const n = truth.length;
  if (n === 0) throw new Error('no validation image could be decoded: nothing to tune on');
  const extractSeconds = (performance.now() - t0) / 1000;

  // 2. The grid, in memory.
  const t1 = performance.now();
  // mixProbabilities' arithmetic, inline: this runs k × θ × λ × images times, and an array per
  // call made the grid 10× slower
  const score = (pCaches: Float64Array[], lambda: number) => {
    let correct = 0;
    let loss = 0;
    for (let q = 0; q < n; q++) {
      const pc = pCaches[q];
      const o = q * C;
      let best = 0;
      let bestP = -Infinity;
      for (let c = 0; c < C; c++) {
        const p = (1 - lambda) * pModel[o + c] + lambda * pc[c];
        if (p > bestP) {
          bestP = p;
          best = c;
        }
      }
      const t = truth[q];
      if (best === t) correct++;
      loss -= Math.log(Math.max((1 - lambda) * pModel[o + t] + lambda * pc[t], 1e-12));
    }
    return { accuracy: correct / n, logLoss: loss / n };
  };
  /** p_cache at θ for each k of ks, per query: [kIndex][query] */
  const pCachesFor = (theta: number) => {
    const out = ks.map(() => new Array<Float64Array>(n));
    for (let q = 0; q < n; q++)
      pCachesByK(sims.subarray(q * k, (q + 1) * k), nLabels.subarray(q * k, (q + 1) * k), theta, C, ks).forEach((p, i) => (out[i][q] = p));
    return out;
  };
  const grids = ks.map(() => ({ accuracy: [] as number[][], logLoss: [] as number[][] }));
  let best = { k: ks[0], theta: NaN, lambda: NaN, accuracy: -1, logLoss: Infinity };
  const bestByK = ks.map((kk) => ({ k: kk, theta: NaN, lambda: NaN, accuracy: -1, logLoss: Infinity }));
  let cacheOnly: TuneResult['cacheOnly'] = null;
  const better = (a: { accuracy: number; logLoss: number }, b: { accuracy: number; logLoss: number }) =>
    a.accuracy > b.accuracy || (a.accuracy === b.accuracy && a.logLoss < b.logLoss);
  for (const theta of data.thetas) {
    await new Promise((resolve) => setImmediate(resolve)); // a row takes tens of ms: let HTTP in between
    const byK = pCachesFor(theta);
    byK.forEach((pc, i) => {
      const row = data.lambdas.map((lambda) => score(pc, lambda));
      grids[i].accuracy.push(row.map((r) => r.accuracy));
      grids[i].logLoss.push(row.map((r) => r.logLoss));
      row.forEach((r, j) => {
        const point = { k: ks[i], theta, lambda: data.lambdas[j], ...r };
        if (better(r, bestByK[i])) bestByK[i] = point;
        if (better(r, best)) best = point; // ks ascend: a tie keeps the smaller k
      });
      const alone = score(pc, 1);
      if (!cacheOnly || alone.accuracy > cacheOnly.accuracy) cacheOnly = alone;
    });
  }
  const chosen = ks.indexOf(best.k);
  const model = score(pCachesFor(data.thetas[0])[0], 0);
  const previousK = ks.includes(info.k) || allItems ? (allItems ? k : info.k) : null;
  const previous = {
    theta: info.theta,
    lambda: info.lambda,
    accuracy: previousK === null ? null : score(pCachesFor(info.theta)[ks.indexOf(previousK)], info.lambda).accuracy,
  };
  const gridSeconds = (performance.now() - t1) / 1000;

  // 3. Store the choice (the previous values go into the cache's history).
  if (!data.dryRun) {
    await engine.updateCache(data.cache, { theta: best.theta, lambda: best.lambda, ...(!allItems && { k: best.k }), reason: `tune job ${ctx.jobId}` });
  }
  const { k: _, ...bestThetaLambda } = best;
  return {
    cache: data.cache,
    images: n,
    k: allItems ? k : best.k,
    ks: allItems ? null : ks,
    byK: allItems ? null : bestByK,
    thetas: data.thetas,
    lambdas: data.lambdas,
    accuracy: grids[chosen].accuracy,
    logLoss: grids[chosen].logLoss,
    best: bestThetaLambda,
    model,
    cacheOnly,
    previous,
    applied: !data.dryRun,
    seconds: { extract: round(extractSeconds), grid: round(gridSeconds) },
  };
}

/**
 * p_cache at θ over the first k neighbours (sorted best first) for each k of `ks` (ascending), in one
 * pass: the same sums as cacheProbabilities over each prefix, in the same order.
 */
export function pCachesByK(similarities: ArrayLike<number>, labels: ArrayLike<number>, theta: number, C: number, ks: readonly number[]): Float64Array[] {
  const sums = new Float64Array(C);
  const max = similarities.length ? similarities[0] : 0;
  let total = 0;
  const out: Float64Array[] = [];
  let next = 0;
  for (let i = 0; i < similarities.length && next < ks.length; i++) {
    const w = Math.exp(theta * (similarities[i] - max));
    sums[labels[i]] += w;
    total += w;
    while (next < ks.length && ks[next] === i + 1) {
      out.push(sums.map((x) => x / total));
      next++;
    }
  }
  while (out.length < ks.length) out.push(total > 0 ? sums.map((x) => x / total) : new Float64Array(C));
  return out;
}

function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
