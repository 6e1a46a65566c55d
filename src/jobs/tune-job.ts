// The tune job: choose θ and λ on labelled validation images, as the paper does, and k (the
// neighbours p_cache sums over) for caches that search. Keys, p_model and the largest k's
// neighbours are computed once (the expensive part), and each batch is scored on the whole k × θ × λ
// grid as it arrives (TuneGrid: a smaller k is a prefix of the neighbours, best first). Best
// top-1 accuracy wins, log-loss breaks ties, then the smaller k (faster). Unless it is a dry run,
// the choice is stored in the cache, and the previous θ and λ go into its history.
import { ServingApi } from '../engine/client.js';
import { forEachBatch } from './pipeline.js';
import { SourceItem } from '../sources/sources.js';
import { JobContext, ProcessorSettings } from './types.js';
import { TuneResult } from './results.js';
import { TuneGrid } from './tune-grid.js';

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

  // 1. Extract once: p_model and the k nearest (similarity, label) of every query, each batch
  // scored on the whole grid as it comes back, while the model and the search work on the next.
  const t0 = performance.now();
  const previousK = allItems ? k : ks.includes(info.k) ? info.k : null;
  const grid = new TuneGrid(ks, data.thetas, data.lambdas, C, { theta: info.theta, lambda: info.lambda, k: previousK });
  let gridMs = 0;
  await forEachBatch(
    data.items,
    { spec, flip: data.flip, signal: ctx.signal, overlap: 2, ...settings },
    async ({ items, tensor }) => {
      const r = await engine.neighbourScores(data.cache, tensor, items.length, k);
      const t = performance.now();
      grid.add(
        r.pModel,
        r.similarities,
        r.labels,
        items.map((it) => it.label!),
        items.length,
      );
      gridMs += performance.now() - t;
    },
    (done, errors) => {
      if (errors.length) ctx.itemErrors(errors);
      ctx.progress(done, data.items.length);
    },
  );
  if (grid.images === 0) throw new Error('no validation image could be decoded: nothing to tune on');
  const extractSeconds = (performance.now() - t0) / 1000;

  // 2. The best point of the grid.
  const { best, bestByK, accuracy, logLoss, cacheOnly, model, currentAccuracy } = grid.outcome();
  const chosen = ks.indexOf(best.k);
  const previous = { theta: info.theta, lambda: info.lambda, accuracy: currentAccuracy };

  // 3. Store the choice (the previous values go into the cache's history).
  if (!data.dryRun) {
    await engine.updateCache(data.cache, { theta: best.theta, lambda: best.lambda, ...(!allItems && { k: best.k }), reason: `tune job ${ctx.jobId}` });
  }
  const { k: _, ...bestThetaLambda } = best;
  return {
    cache: data.cache,
    images: grid.images,
    k: allItems ? k : best.k,
    ks: allItems ? null : ks,
    byK: allItems ? null : bestByK,
    thetas: data.thetas,
    lambdas: data.lambdas,
    accuracy: accuracy[chosen],
    logLoss: logLoss[chosen],
    best: bestThetaLambda,
    model,
    cacheOnly,
    previous,
    applied: !data.dryRun,
    seconds: { extract: round(extractSeconds), grid: round(gridMs / 1000) },
  };
}

function round(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}
