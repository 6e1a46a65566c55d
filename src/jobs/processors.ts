// The job processors: index (bulk ingest) and eval (error of model, cache model, cache alone).
import { EngineApi } from '../engine/client.js';
import { forEachBatch } from './pipeline.js';
import { SourceItem } from './sources.js';
import { JobContext } from './types.js';
import { ModelSpec } from '../model/spec.js';

export interface ProcessorSettings {
  batchSize: number;
  limitInputPixels: number;
}

export interface IndexJobData {
  cache: string;
  items: SourceItem[];
  flip: boolean;
}

export interface IndexJobResult {
  images: number;
  added: number;
  duplicates: number;
  failed: number;
  cacheSize: number;
}

export async function runIndexJob(engine: EngineApi, settings: ProcessorSettings, data: IndexJobData, ctx: JobContext): Promise<IndexJobResult> {
  const spec = await engine.modelSpec(data.cache);
  const totals = { added: 0, duplicates: 0, failed: 0 };
  await forEachBatch(
    data.items,
    { spec, flip: data.flip, signal: ctx.signal, ...settings },
    async ({ items, tensor }) => {
      const r = await engine.indexBatch(data.cache, tensor, items.map((i) => i.id), items.map((i) => i.label ?? -1));
      totals.added += r.added;
      totals.duplicates += r.duplicates;
      totals.failed += r.failed.length;
      if (r.failed.length) ctx.itemErrors(r.failed);
    },
    (done, errors) => {
      totals.failed += errors.length;
      if (errors.length) ctx.itemErrors(errors);
      ctx.progress(done, data.items.length);
    },
  );
  const { cacheSize } = await engine.flush(data.cache);
  return { images: data.items.length, ...totals, cacheSize };
}

export interface EvalJobData {
  cache: string;
  items: SourceItem[];
  theta?: number;
  lambda?: number;
}

export interface EvalJobResult {
  cache: string;
  images: number;
  failed: number;
  cacheSize: number;
  theta: number;
  lambda: number;
  /** top-1 error, as a fraction */
  error: { model: number; cacheModel: number; cacheOnly: number };
  correct: { model: number; cacheModel: number; cacheOnly: number };
}

export async function runEvalJob(engine: EngineApi, settings: ProcessorSettings, data: EvalJobData, ctx: JobContext): Promise<EvalJobResult> {
  const spec: ModelSpec = await engine.modelSpec(data.cache);
  const correct = { model: 0, cacheModel: 0, cacheOnly: 0 };
  let scored = 0;
  let failed = 0;
  let used = { theta: data.theta ?? NaN, lambda: data.lambda ?? NaN, cacheSize: 0 };
  await forEachBatch(
    data.items,
    { spec, flip: false, signal: ctx.signal, ...settings },
    async ({ items, tensor }) => {
      const r = await engine.classify(data.cache, tensor, items.length, { theta: data.theta, lambda: data.lambda });
      used = { theta: r.theta, lambda: r.lambda, cacheSize: r.cacheSize };
      r.results.forEach((c, i) => {
        const label = items[i].label;
        if (label === null) return;
        scored++;
        if (argmax(c.pModel) === label) correct.model++;
        if (argmax(c.p) === label) correct.cacheModel++;
        if (argmax(c.pCache ?? c.pModel) === label) correct.cacheOnly++;
      });
    },
    (done, errors) => {
      failed += errors.length;
      if (errors.length) ctx.itemErrors(errors);
      ctx.progress(done, data.items.length);
    },
  );
  const error = (n: number) => (scored ? 1 - n / scored : NaN);
  return {
    cache: data.cache,
    images: scored,
    failed,
    cacheSize: used.cacheSize,
    theta: used.theta,
    lambda: used.lambda,
    error: { model: error(correct.model), cacheModel: error(correct.cacheModel), cacheOnly: error(correct.cacheOnly) },
    correct,
  };
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}
