// The tune job: choose θ and λ on labelled validation images, as the paper does.
// Keys, p_model and the neighbours are computed once (the expensive part); then the whole
// θ × λ grid is scored in memory with the one cache math. Best top-1 accuracy wins,
// log-loss breaks ties. Unless it is a dry run, the choice is stored in the cache, and
// the previous θ and λ go into its history.
import { ServingApi } from '../engine/client.js';
import { cacheProbabilities, mixProbabilities } from '../math/cache-model.js';
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
  dryRun: boolean;
}

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
  const k = info.index.scoring === 'all-items' ? Math.min(ALL_ITEMS_K, Math.max(1, info.size)) : info.k;

  // 1. Extract once: p_model and the k nearest (similarity, label) of every query.
  const t0 = performance.now();
  const capacity = data.items.length * (data.flip ? 2 : 1);
  const pModel = new Float32Array(capacity * C);
  const sims = new Float32Array(capacity * k);
  const nLabels = new Uint16Array(capacity * k);
  const truth: number[] = [];
  await forEachBatch(
    data.items,
    { spec, flip: data.flip, signal: ctx.signal, ...settings },
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
  const score = (pCaches: Float64Array[], lambda: number) => {
    let correct = 0;
    let loss = 0;
    for (let q = 0; q < n; q++) {
      const p = mixProbabilities(pModel.subarray(q * C, (q + 1) * C), pCaches[q], lambda);
      if (argmax(p) === truth[q]) correct++;
      loss -= Math.log(Math.max(p[truth[q]], 1e-12));
    }
    return { accuracy: correct / n, logLoss: loss / n };
  };
  const pCachesFor = (theta: number) =>
    Array.from({ length: n }, (_, q) => cacheProbabilities(sims.subarray(q * k, (q + 1) * k), nLabels.subarray(q * k, (q + 1) * k), theta, C));
  const accuracy: number[][] = [];
  const logLoss: number[][] = [];
  let best = { theta: NaN, lambda: NaN, accuracy: -1, logLoss: Infinity };
  let cacheOnly: TuneResult['cacheOnly'] = null;
  for (const theta of data.thetas) {
    await new Promise((resolve) => setImmediate(resolve)); // a row takes tens of ms: let HTTP in between
    const pc = pCachesFor(theta);
    const row = data.lambdas.map((lambda) => score(pc, lambda));
    accuracy.push(row.map((r) => r.accuracy));
    logLoss.push(row.map((r) => r.logLoss));
    row.forEach((r, j) => {
      if (r.accuracy > best.accuracy || (r.accuracy === best.accuracy && r.logLoss < best.logLoss)) best = { theta, lambda: data.lambdas[j], ...r };
    });
    const alone = score(pc, 1);
    if (!cacheOnly || alone.accuracy > cacheOnly.accuracy) cacheOnly = alone;
  }
  const model = score(pCachesFor(data.thetas[0]), 0);
  const previous = { theta: info.theta, lambda: info.lambda, accuracy: score(pCachesFor(info.theta), info.lambda).accuracy };
  const gridSeconds = (performance.now() - t1) / 1000;

  // 3. Store the choice (the previous values go into the cache's history).
  if (!data.dryRun) {
    await engine.updateCache(data.cache, { theta: best.theta, lambda: best.lambda, reason: `tune job ${ctx.jobId}` });
  }
  return {
    cache: data.cache,
    images: n,
    k,
    thetas: data.thetas,
    lambdas: data.lambdas,
    accuracy,
    logLoss,
    best,
    model,
    cacheOnly,
    previous,
    applied: !data.dryRun,
    seconds: { extract: round(extractSeconds), grid: round(gridSeconds) },
  };
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
