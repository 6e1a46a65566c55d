// The layer advisor: which inner layers should make the cache key? Orhan (2018) chose them
// by validation error; this does the same, cheaply.
//
// 1. Every candidate layer is extracted in ONE pass over the train and val images (one ORT
//    session with all candidates as extra outputs), kept raw (flattened, un-normalised).
// 2. Per layer L: raw dot products val×train (Gemm) and squared norms. The single-layer key
//    similarity is dot_L / (|a_L| |b_L|).
// 3. A concatenated key normalised once has similarity
//      (Σ_L dot_L) / sqrt(Σ_L |a_L|² · Σ_L |b_L|²)
//    so concatenations are scored from the per-layer products, without extracting again: greedy
//    forward selection adds, to the best key so far, the layer that lowers the error most.
// Layers that compute the same values (a Flatten of a pooling output) are one candidate; every
// error comes with a bootstrap interval, and keys the validation set cannot tell apart are tied.
// Each key is scored by the cache model's top-1 validation error over a θ × λ grid, with
// p_cache summed over every train item (exact), using the one cache math.
import { UserError } from '../errors/user-error.js';
import { inspectModel } from '../model/inspect.js';
import { nearestNames } from '../model/names.js';
import { loadModelSpec } from '../model/spec-file.js';
import type { ModelSpec } from '../model/spec.js';
import { capPerClass, resolveSource, type Source } from '../sources/sources.js';
import { PAPER_LAMBDAS, PAPER_THETAS } from '../jobs/tune-job.js';
import { LayerAdvice, LayerScore } from './advice.js';
import { extractLayers } from './extract-layers.js';
import { distinctKeys } from './distinct-keys.js';
import { extrapolate, pick, subColumns } from './learning-curve.js';
import { bootstrapIntervals, compareScores, concatSimilarity, errorOf, layerDots, round, scoreGrid } from './layer-scores.js';
export { compareScores, concatSimilarity, layerDots, scoreGrid } from './layer-scores.js';
export { extractLayers, type ExtractedSet } from './extract-layers.js';
export { fitLearningCurve } from './learning-curve.js';

/** A coarse version of the paper's grid: every 4th value, θ ∈ {10, 20, …, 90}, λ ∈ {0.1, 0.2, …, 0.9}. */
export const ADVISOR_THETAS = PAPER_THETAS.filter((_, i) => i % 4 === 0);
export const ADVISOR_LAMBDAS = PAPER_LAMBDAS.filter((_, i) => i % 4 === 0);

/** Op types whose outputs are offered as candidates by default. */
export const CANDIDATE_OP_TYPES = ['Relu', 'Add', 'Flatten', 'GlobalAveragePool', 'AveragePool', 'MatMul', 'Gemm'];
const MIN_CANDIDATE_SIZE = 16;
/** memory for the val × train products of the layers that concatenations are drawn from */
const CONCAT_POOL_BYTES = 2 ** 30;

/** How many layers concatenations are drawn from: every distinct one whose val × train products fit in CONCAT_POOL_BYTES (at least `top`). */
export function concatPoolSize(distinct: number, top: number, valImages: number, cacheItems: number): number {
  return Math.min(distinct, Math.max(top, Math.floor(CONCAT_POOL_BYTES / Math.max(1, 4 * valImages * cacheItems))));
}

/** Keys whose error is extrapolated to the cache size (the best of the ranking, and every tied one). */
const CURVE_KEYS = 8;

export interface AdviseOptions {
  model: string;
  /** a source, or a path (a folder, or a .csv/.jsonl manifest) */
  train: Source | string;
  val: Source | string;
  /** layer names; default: from the graph (see CANDIDATE_OP_TYPES) */
  candidates?: string[];
  /** layers with larger keys are not scored (default 20,000) */
  maxDimension?: number;
  /** concatenations of up to this many layers are tried, by greedy forward selection (default 3) */
  top?: number;
  /**
   * the number of items the cache will hold: when larger than the train sample, the best keys'
   * errors are extrapolated to it along learning curves, and the recommendation is for that size
   */
  cacheSize?: number;
  /** use at most this many train images per class */
  perClass?: number;
  /** use at most this many val images per class */
  valPerClass?: number;
  /** also put each train image mirrored left-right in the cache, as the paper does */
  flip?: boolean;
  thetas?: number[];
  lambdas?: number[];
  /** images per ORT run (default 64) */
  batchSize?: number;
  spec?: ModelSpec;
  /** stops the extraction between batches and the scoring between keys (the promise rejects with its reason) */
  signal?: AbortSignal;
}

/** A layers job: the advisor's options (AdviseOptions), with sources, not paths, and a memory budget. */
export type LayerJobData = Omit<AdviseOptions, 'train' | 'val' | 'batchSize' | 'spec'> & {
  /** the .onnx file, read by the process that runs the job (an absolute path) */
  model: string;
  train: Source;
  val: Source;
  /** the memory budget of this job (default DEFAULT_LAYERS_MEMORY, at most layersMemoryCap()) */
  maxMemoryBytes?: number;
};

export interface AdviseProgress {
  phase: 'extract' | 'score';
  done: number;
  total: number;
}

/** Default candidates from an inspection: batch dim, size ≥ 16, op types of CANDIDATE_OP_TYPES, not the output. */
export function defaultCandidates(tensors: { name: string; opType: string; shape: number[]; size: number }[], output: string): string[] {
  return tensors
    .filter((t) => t.shape.length >= 2 && t.shape[0] === 1 && t.size >= MIN_CANDIDATE_SIZE && CANDIDATE_OP_TYPES.includes(t.opType) && t.name !== output)
    .map((t) => t.name);
}

const toSource = (s: Source | string): Source =>
  typeof s !== 'string' ? s : /\.(csv|jsonl|ndjson)$/i.test(s) ? { type: 'manifest', path: s } : { type: 'folder', path: s };

export async function adviseLayers(opts: AdviseOptions, onProgress?: (p: AdviseProgress) => void): Promise<LayerAdvice> {
  const maxDimension = opts.maxDimension ?? 20_000;
  const top = opts.top ?? 3;
  const thetas = opts.thetas ?? ADVISOR_THETAS;
  const lambdas = opts.lambdas ?? ADVISOR_LAMBDAS;
  const flip = Boolean(opts.flip);
  if (!(maxDimension > 0)) throw new UserError('bad_request', `maxDimension must be positive (got ${maxDimension})`);
  if (!Number.isInteger(top) || top < 1) throw new UserError('bad_request', `top must be a positive integer (got ${top})`);
  if (thetas.length === 0 || lambdas.length === 0) throw new UserError('bad_request', 'the θ and λ grids must not be empty');
  const spec = opts.spec ?? (await loadModelSpec(opts.model));
  const C = spec.classes.length;

  // 1. Candidates and their sizes (one probe run of every tensor).
  const inspection = await inspectModel(opts.model, spec);
  const byName = new Map(inspection.tensors.map((t) => [t.name, t]));
  const candidates = opts.candidates ?? defaultCandidates(inspection.tensors, spec.output);
  for (const c of candidates) {
    if (!byName.has(c))
      throw new UserError(
        'unknown_layer',
        `candidate layer "${c}" is not a tensor of ${opts.model}. Nearest names: ${nearestNames(c, [...byName.keys()]).join(', ')}`,
      );
  }
  if (new Set(candidates).size !== candidates.length) throw new UserError('bad_key_layers', `a candidate layer is named twice: ${candidates.join(', ')}`);
  const graphOrder = new Map(inspection.tensors.map((t, i) => [t.name, i]));
  const tooLarge = candidates
    .filter((c) => byName.get(c)!.size > maxDimension)
    .map((layer) => {
      const dimension = byName.get(layer)!.size;
      return { layer, dimension, message: `too large to index (${dimension} dims): pick a later layer or use a reduced search key` };
    });
  const layers = candidates.filter((c) => byName.get(c)!.size <= maxDimension);
  if (layers.length === 0)
    throw new UserError('no_candidates', `no candidate layer has a key of at most ${maxDimension} dims; raise maxDimension or name later layers`);

  // 2. Extract once: every candidate layer, train and val.
  const classes = spec.classes;
  const trainItems = capPerClass(await resolveSource(toSource(opts.train), { classes, requireLabels: true }), opts.perClass);
  const valItems = capPerClass(await resolveSource(toSource(opts.val), { classes, requireLabels: true }), opts.valPerClass);
  const t0 = performance.now();
  const [train, val] = await extractLayers(
    opts.model,
    spec,
    layers,
    [
      { items: trainItems, flip },
      { items: valItems, flip: false },
    ],
    {
      batchSize: opts.batchSize,
      signal: opts.signal,
      onProgress: (done) => onProgress?.({ phase: 'extract', done, total: trainItems.length + valItems.length }),
    },
  );
  const failedImages = [...train.failed, ...val.failed];
  if (train.n === 0) throw new UserError('bad_source', 'no train image could be decoded');
  if (val.n === 0) throw new UserError('bad_source', 'no val image could be decoded');
  const extractSeconds = (performance.now() - t0) / 1000;
  const sizes = train.sizes;

  // 3. One candidate per distinct key: a layer that computes the same values as an earlier one
  //    (a Flatten or Reshape of it) is scored once, under the earlier name.
  const t1 = performance.now();
  const { distinct, sameKeys } = distinctKeys(layers, graphOrder, sizes, train.acts, val.acts);

  // 4. Single layers, then concatenations by greedy forward selection: starting from the best
  //    single layer, add the layer that most lowers the validation error, while one does.
  const modelError = errorOf(val.probs, val.labels, val.n, C);
  const dotsOf = (j: number) => layerDots(val.acts[j], val.n, train.acts[j], train.n, sizes[j]);
  const correctOf = new Map<LayerScore, Uint8Array>();
  const score = (js: number[], dots: Float32Array[]): LayerScore => {
    const sims = concatSimilarity(
      dots,
      js.map((j) => val.sqNorms[j]),
      js.map((j) => train.sqNorms[j]),
      val.n,
      train.n,
    );
    const { correct, ...best } = scoreGrid(sims, val.n, train.labels, val.probs, val.labels, C, thetas, lambdas);
    const names = js.map((j) => layers[j]).sort((a, b) => graphOrder.get(a)! - graphOrder.get(b)!);
    const scored: LayerScore = {
      layers: names,
      dimension: js.reduce((s, j) => s + sizes[j], 0),
      ...best,
      modelError,
      kind: js.length === 1 ? 'single' : 'concatenation',
    };
    correctOf.set(scored, correct);
    return scored;
  };
  // the val × train products of the layers concatenations are drawn from, kept within a budget
  const poolSize = concatPoolSize(distinct.length, top, val.n, train.n);
  let totalScores = distinct.length + (top - 1) * Math.max(0, poolSize - 1);
  let done = 0;
  const step = async () => {
    onProgress?.({ phase: 'score', done: ++done, total: (totalScores = Math.max(totalScores, done)) });
    await new Promise((resolve) => setImmediate(resolve));
    opts.signal?.throwIfAborted();
  };
  const kept = new Map<number, Float32Array>();
  const singles = new Map<number, LayerScore>();
  for (const j of distinct) {
    const dots = await dotsOf(j);
    singles.set(j, score([j], [dots]));
    // keep the best poolSize so far; a pool member evicted before the end is recomputed below
    kept.set(j, dots);
    if (kept.size > poolSize) kept.delete([...kept.keys()].reduce((w, x) => (compareScores(singles.get(x)!, singles.get(w)!) > 0 ? x : w)));
    await step();
  }
  const pool = [...singles]
    .sort((a, b) => compareScores(a[1], b[1]))
    .slice(0, poolSize)
    .map(([j]) => j);
  for (const j of [...kept.keys()]) if (!pool.includes(j)) kept.delete(j);
  for (const j of pool) if (!kept.has(j)) kept.set(j, await dotsOf(j));
  const concatenations: LayerScore[] = [];
  let chosen = pool.slice(0, 1);
  let chosenScore = singles.get(pool[0])!;
  for (let size = 2; size <= Math.min(top, pool.length); size++) {
    let stepBest: { js: number[]; scored: LayerScore } | null = null;
    for (const j of pool) {
      if (chosen.includes(j)) continue;
      const js = [...chosen, j];
      const scored = score(
        js,
        js.map((x) => kept.get(x)!),
      );
      concatenations.push(scored);
      if (!stepBest || compareScores(scored, stepBest.scored) < 0) stepBest = { js, scored };
      await step();
    }
    if (!stepBest || compareScores(stepBest.scored, chosenScore) >= 0) break; // no layer lowers the error: stop
    chosen = stepBest.js;
    chosenScore = stepBest.scored;
  }
  const ranking = [...singles.values(), ...concatenations].sort(compareScores);

  // 5. How sure: bootstrap intervals over the validation images; keys the set cannot tell from the best are tied.
  const intervals = bootstrapIntervals(
    ranking.map((r) => correctOf.get(r)!),
    val.n,
  );
  ranking.forEach((r, i) => {
    r.interval = intervals[i];
    r.tied = i > 0 && intervals[i][0] <= intervals[0][1] && intervals[0][0] <= intervals[i][1];
  });

  // 6. Advice for the cache's real size: error against sample size per key, extrapolated.
  const forCacheSize =
    opts.cacheSize !== undefined && opts.cacheSize > train.n
      ? await extrapolate(
          ranking.filter((r, i) => i < CURVE_KEYS || r.tied),
          opts.cacheSize,
          async (r) => {
            const js = r.layers.map((l) => layers.indexOf(l));
            const dots = await Promise.all(js.map(async (j) => kept.get(j) ?? (await dotsOf(j))));
            return concatSimilarity(
              dots,
              js.map((j) => val.sqNorms[j]),
              js.map((j) => train.sqNorms[j]),
              val.n,
              train.n,
            );
          },
          (sims, columns) =>
            scoreGrid(subColumns(sims, val.n, train.n, columns), val.n, pick(train.labels, columns), val.probs, val.labels, C, thetas, lambdas).error,
          train.n,
        )
      : null;
  const search =
    `greedy forward selection of up to ${top} layers over the ${pool.length} best distinct single layers` +
    (pool.length < distinct.length ? ` (of ${distinct.length}; the val × train products of more would not fit in ${CONCAT_POOL_BYTES / 2 ** 30} GiB)` : '') +
    `: ${concatenations.length} concatenations scored`;
  return {
    model: opts.model,
    trainImages: trainItems.length - train.failed.length,
    cacheItems: train.n,
    valImages: val.n,
    flip,
    maxDimension,
    thetas,
    lambdas,
    modelError,
    ranking,
    recommendation: forCacheSize ? ranking.find((r) => r.layers.join() === forCacheSize.ranking[0].layers.join())! : ranking[0],
    sameKeys,
    search,
    ...(forCacheSize && { forCacheSize }),
    tooLarge,
    failedImages,
    seconds: { extract: round(extractSeconds, 3), score: round((performance.now() - t1) / 1000, 3) },
  };
}
