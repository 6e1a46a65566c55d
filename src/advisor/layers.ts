// The layer advisor: which inner layers should make the cache key? Orhan (2018) chose them
// by validation error; this does the same, cheaply.
//
// 1. Every candidate layer is extracted in ONE pass over the train and val images (one ORT
//    session with all candidates as extra outputs), kept raw (flattened, un-normalised).
// 2. Per layer L: raw dot products val×train (Gemm) and squared norms. The single-layer key
//    similarity is dot_L / (|a_L| |b_L|).
// 3. A concatenated key normalised once has similarity
//      (Σ_L dot_L) / sqrt(Σ_L |a_L|² · Σ_L |b_L|²)
//    so concatenations of the best single layers are scored from the per-layer products,
//    without extracting again.
// Each key is scored by the cache model's top-1 validation error over a θ × λ grid, with
// p_cache summed over every train item (exact), using the one cache math.
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors/user-error.js';
import { cacheProbabilities, mixProbabilities, softmaxRows } from '../math/cache-model.js';
import { innerProducts } from '../math/gemm.js';
import { inputShape, loadModelBytes } from '../model/extractor.js';
import { inspectModel } from '../model/inspect.js';
import { nearestNames } from '../model/names.js';
import { withExtraOutputs } from '../model/onnx-graph.js';
import { loadModelSpec } from '../model/spec-file.js';
import type { ModelSpec } from '../model/spec.js';
import { forEachBatch } from '../jobs/pipeline.js';
import { resolveSource, type Source, type SourceItem } from '../sources/sources.js';
import { PAPER_LAMBDAS, PAPER_THETAS } from '../jobs/tune-job.js';
import type { ItemError } from '../jobs/types.js';
import { DEFAULT_LIMIT_INPUT_PIXELS } from '../preprocess/image.js';
import { LayerAdvice, LayerScore } from './advice.js';

/** A coarse version of the paper's grid: every 4th value, θ ∈ {10, 20, …, 90}, λ ∈ {0.1, 0.2, …, 0.9}. */
export const ADVISOR_THETAS = PAPER_THETAS.filter((_, i) => i % 4 === 0);
export const ADVISOR_LAMBDAS = PAPER_LAMBDAS.filter((_, i) => i % 4 === 0);

/** Op types whose outputs are offered as candidates by default. */
export const CANDIDATE_OP_TYPES = ['Relu', 'Add', 'Flatten', 'GlobalAveragePool', 'AveragePool', 'MatMul', 'Gemm'];
const MIN_CANDIDATE_SIZE = 16;

export interface AdviseOptions {
  model: string;
  /** a source, or a path (a folder, or a .csv/.jsonl manifest) */
  train: Source | string;
  val: Source | string;
  /** layer names; default: from the graph (see CANDIDATE_OP_TYPES) */
  candidates?: string[];
  /** layers with larger keys are not scored (default 20,000) */
  maxDimension?: number;
  /** concatenations are tried of this many best single layers (default 3) */
  top?: number;
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

const toSource = (s: Source | string): Source => (typeof s !== 'string' ? s : /\.(csv|jsonl|ndjson)$/i.test(s) ? { type: 'manifest', path: s } : { type: 'folder', path: s });

export function capPerClass(items: SourceItem[], perClass: number | undefined): SourceItem[] {
  if (perClass === undefined) return items;
  const count = new Map<number, number>();
  return items.filter((it) => {
    const c = count.get(it.label!) ?? 0;
    count.set(it.label!, c + 1);
    return c < perClass;
  });
}

/** Raw activations of some layers, p_model and labels of one set of images. */
export interface ExtractedSet {
  n: number;
  labels: Int32Array;
  /** n × classes, p_model (softmax applied for 'logits' models) */
  probs: Float32Array;
  /** per layer, its per-image size */
  sizes: number[];
  /** per layer: n × size, raw (flattened, not normalised) */
  acts: Float32Array[];
  /** per layer: n squared L2 norms */
  sqNorms: Float64Array[];
  /** the items that could not be decoded */
  failed: ItemError[];
}

/**
 * Runs the model once per image set with every layer of `layers` fetched at the same time
 * (one session; the layers are added to the graph outputs), keeping raw activations.
 * `onProgress` gets the number of source items handled so far over all sets.
 */
export async function extractLayers(
  modelPath: string,
  spec: ModelSpec,
  layers: string[],
  sets: { items: SourceItem[]; flip: boolean }[],
  opts: { batchSize?: number; onProgress?: (done: number) => void; signal?: AbortSignal } = {},
): Promise<ExtractedSet[]> {
  const C = spec.classes.length;
  const { bytes, graph } = await loadModelBytes(modelPath);
  const singleImageBatches = graph.inputs.find((v) => v.name === spec.input)?.dims[0] === 1;
  const fetches = [...new Set([spec.output, ...layers])];
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(withExtraOutputs(bytes, fetches), { graphOptimizationLevel: 'all' });
  } catch (err) {
    throw new UserError('bad_model', `onnxruntime cannot load ${modelPath}: ${(err as Error).message}`);
  }
  const imageSize = spec.height * spec.width * 3;
  let sizes: number[] | null = null;
  const results: ExtractedSet[] = [];
  let doneBefore = 0;
  try {
    if (layers.length > 0) {
      const probe = await session.run({ [spec.input]: new ort.Tensor('float32', new Float32Array(imageSize), inputShape(spec, 1)) }, fetches);
      sizes = layers.map((l) => probe[l].data.length);
    }
    const layerSizes = sizes ?? [];
    for (const { items, flip } of sets) {
      const cap = items.length * (flip ? 2 : 1);
      const acts = layerSizes.map((s) => new Float32Array(cap * s));
      const probs = new Float32Array(cap * C);
      const labels = new Int32Array(cap);
      const failed: ItemError[] = [];
      let n = 0;
      await forEachBatch(
        items,
        { spec, flip, batchSize: opts.batchSize ?? 64, limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS, signal: opts.signal },
        async ({ items: batchItems, tensor }) => {
          const m = batchItems.length;
          const step = singleImageBatches ? 1 : m;
          for (let s = 0; s < m; s += step) {
            const k = Math.min(step, m - s);
            const input = new ort.Tensor('float32', tensor.subarray(s * imageSize, (s + k) * imageSize), inputShape(spec, k));
            const out = await session.run({ [spec.input]: input }, fetches);
            probs.set(out[spec.output].data as Float32Array, (n + s) * C);
            layers.forEach((l, j) => {
              const data = out[l].data as Float32Array;
              if (data.length !== k * layerSizes[j]) throw new Error(`layer ${l} gave ${data.length} values for ${k} images, expected ${k * layerSizes[j]}`);
              acts[j].set(data, (n + s) * layerSizes[j]);
            });
          }
          batchItems.forEach((it, i) => (labels[n + i] = it.label ?? -1));
          n += m;
        },
        (done, errors) => {
          failed.push(...errors);
          opts.onProgress?.(doneBefore + done);
        },
      );
      doneBefore += items.length;
      if (spec.outputKind === 'logits') softmaxRows(probs, n, C);
      const trimmed = acts.map((a, j) => a.subarray(0, n * layerSizes[j]));
      const sqNorms = trimmed.map((a, j) => {
        const size = layerSizes[j];
        const norms = new Float64Array(n);
        for (let r = 0; r < n; r++) {
          let ss = 0;
          for (let d = r * size; d < (r + 1) * size; d++) ss += a[d] * a[d];
          norms[r] = ss;
        }
        return norms;
      });
      results.push({ n, labels: labels.subarray(0, n), probs: probs.subarray(0, n * C), sizes: layerSizes, acts: trimmed, sqNorms, failed });
    }
  } finally {
    await session.release();
  }
  return results;
}

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
      throw new UserError('unknown_layer', `candidate layer "${c}" is not a tensor of ${opts.model}. Nearest names: ${nearestNames(c, [...byName.keys()]).join(', ')}`);
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
  if (layers.length === 0) throw new UserError('no_candidates', `no candidate layer has a key of at most ${maxDimension} dims; raise maxDimension or name later layers`);

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
    { batchSize: opts.batchSize, signal: opts.signal, onProgress: (done) => onProgress?.({ phase: 'extract', done, total: trainItems.length + valItems.length }) },
  );
  const failedImages = [...train.failed, ...val.failed];
  if (train.n === 0) throw new UserError('bad_source', 'no train image could be decoded');
  if (val.n === 0) throw new UserError('bad_source', 'no val image could be decoded');
  const extractSeconds = (performance.now() - t0) / 1000;
  const sizes = train.sizes;

  // 3. Score single layers, then concatenations of the best `top`.
  const t1 = performance.now();
  const modelError = errorOf(val.probs, val.labels, val.n, C);
  const dotsOf = (j: number) => layerDots(val.acts[j], val.n, train.acts[j], train.n, sizes[j]);
  const score = (js: number[], dots: Float32Array[]): LayerScore => {
    const sims = concatSimilarity(
      dots,
      js.map((j) => val.sqNorms[j]),
      js.map((j) => train.sqNorms[j]),
      val.n,
      train.n,
    );
    const best = scoreGrid(sims, val.n, train.labels, val.probs, val.labels, C, thetas, lambdas);
    const names = js.map((j) => layers[j]).sort((a, b) => graphOrder.get(a)! - graphOrder.get(b)!);
    return {
      layers: names,
      dimension: js.reduce((s, j) => s + sizes[j], 0),
      ...best,
      modelError,
      kind: js.length === 1 ? 'single' : 'concatenation',
    };
  };
  const subsets = combinations(Math.min(top, layers.length));
  const totalScores = layers.length + subsets.length;
  const singles: LayerScore[] = [];
  for (let j = 0; j < layers.length; j++) {
    singles.push(score([j], [await dotsOf(j)]));
    onProgress?.({ phase: 'score', done: j + 1, total: totalScores });
    await new Promise((resolve) => setImmediate(resolve));
    opts.signal?.throwIfAborted();
  }
  const bestSingles = singles
    .map((s, j) => ({ s, j }))
    .sort((a, b) => compareScores(a.s, b.s))
    .slice(0, top)
    .map((x) => x.j);
  const keptDots = new Map<number, Float32Array>();
  for (const j of bestSingles) keptDots.set(j, await dotsOf(j));
  const concatenations: LayerScore[] = [];
  for (const subset of subsets) {
    const js = subset.map((i) => bestSingles[i]);
    concatenations.push(
      score(
        js,
        js.map((j) => keptDots.get(j)!),
      ),
    );
    onProgress?.({ phase: 'score', done: layers.length + concatenations.length, total: totalScores });
    await new Promise((resolve) => setImmediate(resolve));
    opts.signal?.throwIfAborted();
  }
  const ranking = [...singles, ...concatenations].sort(compareScores);
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
    recommendation: ranking[0],
    tooLarge,
    failedImages,
    seconds: { extract: round(extractSeconds, 3), score: round((performance.now() - t1) / 1000, 3) },
  };
}

/** Lower error first; ties: fewer dims, then lower log-loss. */
export function compareScores(a: LayerScore, b: LayerScore): number {
  return a.error - b.error || a.dimension - b.dimension || a.logLoss - b.logLoss;
}

/** Index subsets of {0..k-1} with at least two members (pairs, triples, …), smaller first. */
function combinations(k: number): number[][] {
  const out: number[][] = [];
  for (let mask = 1; mask < 1 << k; mask++) {
    const s = [...Array(k).keys()].filter((i) => mask & (1 << i));
    if (s.length >= 2) out.push(s);
  }
  return out.sort((a, b) => a.length - b.length);
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
): { error: number; theta: number; lambda: number; logLoss: number; cacheOnlyError: number; cacheOnlyTheta: number } {
  const nt = trainLabels.length;
  let best = { error: Infinity, theta: NaN, lambda: NaN, logLoss: Infinity };
  let cacheOnly = { error: Infinity, theta: NaN };
  for (const theta of thetas) {
    const pCaches = Array.from({ length: nv }, (_, q) => cacheProbabilities(sims.subarray(q * nt, (q + 1) * nt), trainLabels, theta, C));
    let wrongAlone = 0;
    for (let q = 0; q < nv; q++) if (argmax(pCaches[q]) !== truth[q]) wrongAlone++;
    if (wrongAlone / nv < cacheOnly.error) cacheOnly = { error: wrongAlone / nv, theta };
    for (const lambda of lambdas) {
      let wrong = 0;
      let loss = 0;
      for (let q = 0; q < nv; q++) {
        const p = mixProbabilities(pModel.subarray(q * C, (q + 1) * C), pCaches[q], lambda);
        if (argmax(p) !== truth[q]) wrong++;
        loss -= Math.log(Math.max(p[truth[q]], 1e-12));
      }
      const error = wrong / nv;
      const logLoss = loss / nv;
      if (error < best.error || (error === best.error && logLoss < best.logLoss)) best = { error, theta, lambda, logLoss };
    }
  }
  return {
    error: round(best.error, 6),
    theta: best.theta,
    lambda: best.lambda,
    logLoss: round(best.logLoss, 6),
    cacheOnlyError: round(cacheOnly.error, 6),
    cacheOnlyTheta: cacheOnly.theta,
  };
}

function errorOf(probs: Float32Array, truth: ArrayLike<number>, n: number, C: number): number {
  let wrong = 0;
  for (let q = 0; q < n; q++) if (argmax(probs.subarray(q * C, (q + 1) * C)) !== truth[q]) wrong++;
  return round(wrong / n, 6);
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
