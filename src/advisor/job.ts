// The layer advisor as a job (POST /v1/layer-jobs, BullMQ cachet-eval/layers): its data, the
// plan checked at submission (model, sources, candidate layers, memory), and the processor,
// which runs the advisor in a thread of its own (run-in-thread.ts): it runs onnxruntime and big
// Gemms synchronously, which would stall the HTTP thread, and on the engine thread every
// prediction would wait for the whole job.
import { promises as fs } from 'node:fs';
import { UserError } from '../errors/user-error.js';
import type { InspectedTensor } from '../model/inspect.js';
import { nearestNames } from '../model/names.js';
import type { ModelSpec } from '../model/spec.js';
import { loadModelSpec } from '../model/spec-file.js';
import { capPerClass, resolveSource } from '../sources/sources.js';
import { ReadRoots } from '../sources/read-roots.js';
import type { JobContext } from '../jobs/types.js';
import { concatPoolSize, defaultCandidates, type LayerJobData } from './layers.js';
export type { LayerJobData } from './layers.js';
import { adviseInThread } from './run-in-thread.js';
import { LayerAdvice } from './advice.js';

export const DEFAULT_MAX_DIMENSION = 20_000;
export const DEFAULT_TOP = 3;
/** The default memory budget of a layers job. */
export const DEFAULT_LAYERS_MEMORY = 8 * 2 ** 30;
/** The environment variable with the hard cap of a layers job's memory budget (bytes, or e.g. "32GiB"). */
export const LAYERS_MEMORY_ENV = 'CACHET_LAYERS_MAX_MEMORY';

export interface MemoryEstimate {
  /** activations + products */
  bytes: number;
  /** every scored layer's raw activations of every cache item and val image (float32) */
  activations: number;
  /** the val × cache-item products held at once: the kept best layers' dot products, one more, and the similarities */
  products: number;
}

export interface LayerJobPlan {
  /** the model's spec (from the file beside it) */
  spec: ModelSpec;
  /** train images after perClass (source items) */
  trainImages: number;
  /** cache items: train images, and their mirror images with flip */
  cacheItems: number;
  valImages: number;
  /** images to extract (cache items + val images): the job's progress total */
  total: number;
  /** the layers that will be scored (at most maxDimension values each), with their sizes */
  layers: { name: string; dimension: number }[];
  /** candidates over maxDimension: reported, not scored */
  tooLarge: { name: string; dimension: number }[];
  memory: MemoryEstimate;
}

/** The tensors of a model, with their per-image sizes (inspectModel, run where it may run ORT). */
export type InspectTensors = (model: string, spec: ModelSpec) => Promise<InspectedTensor[]>;

/**
 * What a layers job will do, checked as the advisor will check it, so that a bad job is a 400
 * at submission: the model file, the sources (resolved, with perClass and valPerClass), the
 * candidate layers (an unknown name comes with the nearest ones) and the memory estimate.
 */
export async function planLayerJob(data: LayerJobData, inspect: InspectTensors, readRoots = ReadRoots.anywhere()): Promise<LayerJobPlan> {
  await readRoots.check(data.model, 'model');
  await checkModelFile(data.model);
  const spec = await loadModelSpec(data.model);
  const classes = spec.classes;
  const train = capPerClass(await resolveSource(data.train, { classes, requireLabels: true, readRoots }), data.perClass);
  const val = capPerClass(await resolveSource(data.val, { classes, requireLabels: true, readRoots }), data.valPerClass);
  const tensors = await inspect(data.model, spec);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const candidates = data.candidates ?? defaultCandidates(tensors, spec.output);
  for (const c of candidates) {
    if (!byName.has(c))
      throw new UserError(
        'unknown_layer',
        `candidate layer "${c}" is not a tensor of ${data.model}. Nearest names: ${nearestNames(c, [...byName.keys()]).join(', ')}`,
      );
  }
  if (new Set(candidates).size !== candidates.length) throw new UserError('bad_key_layers', `a candidate layer is named twice: ${candidates.join(', ')}`);
  const maxDimension = data.maxDimension ?? DEFAULT_MAX_DIMENSION;
  const sized = candidates.map((name) => ({ name, dimension: byName.get(name)!.size }));
  const layers = sized.filter((l) => l.dimension <= maxDimension);
  if (layers.length === 0)
    throw new UserError('no_candidates', `no candidate layer has a key of at most ${maxDimension} dims; raise maxDimension or name later layers`);
  const cacheItems = train.length * (data.flip ? 2 : 1);
  return {
    spec,
    trainImages: train.length,
    cacheItems,
    valImages: val.length,
    total: cacheItems + val.length,
    layers,
    tooLarge: sized.filter((l) => l.dimension > maxDimension),
    memory: estimateMemory(
      layers.map((l) => l.dimension),
      cacheItems,
      val.length,
      data.top ?? DEFAULT_TOP,
    ),
  };
}

/**
 * What the advisor holds in memory: every scored layer's activations of every cache item and
 * val image (float32), and the val × cache-item products: the dot products of the layers
 * concatenations are drawn from (concatPoolSize), the layer being scored and the similarities.
 */
export function estimateMemory(dims: number[], cacheItems: number, valImages: number, top: number): MemoryEstimate {
  const activations = dims.reduce((s, d) => s + d, 0) * (cacheItems + valImages) * 4;
  const products = (concatPoolSize(dims.length, top, valImages, cacheItems) + 2) * valImages * cacheItems * 4;
  return { bytes: activations + products, activations, products };
}

/** The hard cap of a job's memory budget: $CACHET_LAYERS_MAX_MEMORY, or DEFAULT_LAYERS_MEMORY. */
export function layersMemoryCap(env: NodeJS.ProcessEnv = process.env): number {
  const text = env[LAYERS_MEMORY_ENV]?.trim();
  if (!text) return DEFAULT_LAYERS_MEMORY;
  const bytes = parseBytes(text);
  if (bytes === null) throw new Error(`${LAYERS_MEMORY_ENV}=${JSON.stringify(text)}: give bytes, e.g. 17179869184 or 16GiB`);
  return bytes;
}

/** "17179869184", "16GiB", "16G", "512 MiB" → bytes (binary units); null if not of that form. */
export function parseBytes(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])i?b?|b)?$/i.exec(text.trim());
  if (!m) return null;
  const unit = m[2] ? 1024 ** ('kmgt'.indexOf(m[2].toLowerCase()) + 1) : 1;
  const bytes = Math.floor(Number(m[1]) * unit);
  return bytes > 0 ? bytes : null;
}

export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

/** How the memory guard's message names the options: the job's fields, or the CLI's flags. */
export const JOB_FIELDS = {
  perClass: 'perClass',
  valPerClass: 'valPerClass',
  candidates: 'candidates',
  maxDimension: 'maxDimension',
  maxMemory: 'maxMemoryBytes',
};

/**
 * The memory guard: a 400 when the estimate is over the job's budget (maxMemoryBytes, default
 * 8 GiB, at most the cap: the service's, or none for `cachet layers` run locally), saying what would fit better.
 */
export function checkLayersMemory(plan: LayerJobPlan, maxMemoryBytes: number | undefined, cap = layersMemoryCap(), names = JOB_FIELDS): void {
  if (maxMemoryBytes !== undefined && maxMemoryBytes > cap)
    throw new UserError(
      'memory_over_cap',
      `maxMemoryBytes ${maxMemoryBytes} (${formatBytes(maxMemoryBytes)}) is over this service's cap of ${cap} (${formatBytes(cap)}; ${LAYERS_MEMORY_ENV})`,
      { details: { maxMemoryBytes, capBytes: cap } },
    );
  const budget = maxMemoryBytes ?? Math.min(DEFAULT_LAYERS_MEMORY, cap);
  const m = plan.memory;
  if (m.bytes <= budget) return;
  const largest = [...plan.layers].sort((a, b) => b.dimension - a.dimension).slice(0, 3);
  throw new UserError(
    'too_much_memory',
    `the layer advisor would hold about ${formatBytes(m.bytes)} in memory, over this job's budget of ${formatBytes(budget)}: ` +
      `${formatBytes(m.activations)} of activations (${plan.layers.length} layers, ${sum(plan.layers.map((l) => l.dimension))} values per image, ` +
      `${plan.cacheItems} cache items + ${plan.valImages} val images, float32) and ${formatBytes(m.products)} of val × cache products. ` +
      `Take fewer images with ${names.perClass} (train images per class) and ${names.valPerClass}, fewer ${names.candidates} (the largest: ${largest.map((l) => `${l.name} ${l.dimension}`).join(', ')}) or a smaller ${names.maxDimension}` +
      (budget < cap ? `, or raise ${names.maxMemory}${Number.isFinite(cap) ? ` (up to ${formatBytes(cap)})` : ''}` : ''),
    { details: { estimateBytes: m.bytes, activationBytes: m.activations, productBytes: m.products, budgetBytes: budget, capBytes: cap } },
  );
}

const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);

async function checkModelFile(model: string): Promise<void> {
  const stat = await fs.stat(model).catch((err: NodeJS.ErrnoException) => {
    throw new UserError('bad_model', err.code === 'ENOENT' ? `model file not found: ${model}` : `cannot read model file ${model}: ${err.message}`);
  });
  if (!stat.isFile()) throw new UserError('bad_model', `${model} is not a file: give the path of an .onnx model`);
}

export interface LayersJobSettings {
  /** images per ORT run */
  batchSize?: number;
}

/** The processor of a layers job (embedded mode, and api replicas in distributed mode). */
export async function runLayersJob(data: LayerJobData, ctx: JobContext, settings: LayersJobSettings = {}): Promise<LayerAdvice> {
  const advice = await adviseInThread(data, {
    batchSize: settings.batchSize,
    signal: ctx.signal,
    onProgress: (done, total) => ctx.progress(done, total),
  });
  if (advice.failedImages.length > 0) ctx.itemErrors(advice.failedImages);
  return advice;
}
