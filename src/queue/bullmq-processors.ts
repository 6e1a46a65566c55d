// BullMQ processors: the same job code as embedded mode (runIndexJob, runEvalJob),
// fed from the documented job data.
import { Job, UnrecoverableError } from 'bullmq';
import type { IndexingApi, ServingApi } from '../engine/client.js';
import { runIndexJob } from '../jobs/index-job.js';
import { runEvalJob } from '../jobs/eval-job.js';
import { itemName, labelResolver, SourceItem } from '../sources/sources.js';
import { ItemError, JobContext, MAX_ITEM_ERRORS, ProcessorSettings } from '../jobs/types.js';
import { describeZodError } from '../errors/zod.js';
import { ChunkJobSchema, ChunkResult, EvalJobSchema, IndexParentSchema, ItemRef, RobustnessJobSchema, TuneJobSchema } from './job-schema.js';
import { runRobustnessJob } from '../robustness/job.js';
import type { RobustnessResult } from '../robustness/result.js';
import { runTuneJob } from '../jobs/tune-job.js';
import { processLayersJob } from './layers-job.js';
import { LayerAdvice } from '../advisor/advice.js';
import { EvalJobResult, TuneResult } from '../jobs/results.js';

/** Errors kept per chunk: the parent shows at most MAX_ITEM_ERRORS in all. */
const CHUNK_ERRORS = 100;

function parse<T>(
  schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } },
  job: Job,
): T {
  const r = schema.safeParse(job.data);
  // Bad job data will not get better with a retry.
  if (!r.success) throw new UnrecoverableError(`job ${job.id} in ${job.queueName}: invalid data: ${describeZodError(r.error)}`);
  return r.data;
}

/** Item refs → source items; a label that is not a class is that item's error, not the chunk's. */
function toItems(refs: ItemRef[], classes: string[], errors: ItemError[]): SourceItem[] {
  const labelOf = labelResolver(classes);
  const items: SourceItem[] = [];
  for (const ref of refs) {
    const item: SourceItem = { id: ref.id ?? null, label: null, image: ref.path ?? Buffer.from(ref.image!, 'base64') };
    try {
      items.push({ ...item, label: labelOf(ref.label, `item ${itemName(item)}`) });
    } catch (err) {
      errors.push({ id: itemName(item), error: (err as Error).message });
    }
  }
  return items;
}

/** cachet-index / chunk: decode, extract keys, append to the cache's key log. */
export function chunkProcessor(engine: IndexingApi, settings: ProcessorSettings) {
  return async (job: Job): Promise<ChunkResult> => {
    const data = parse(ChunkJobSchema, job);
    const spec = await engine.modelSpec(data.cache);
    const errors: ItemError[] = [];
    const items = toItems(data.items, spec.classes, errors);
    const labelErrors = errors.length;
    const ctx: JobContext = {
      jobId: String(job.id),
      progress: (done, total) => void job.updateProgress({ done, total }).catch(() => {}),
      itemErrors: (e) => errors.push(...e),
      signal: new AbortController().signal, // a chunk is short: on SIGTERM the worker finishes it
    };
    const r = await runIndexJob(engine, settings, { cache: data.cache, items, flip: data.flip }, ctx);
    return { images: data.items.length, added: r.added, duplicates: r.duplicates, failed: r.failed + labelErrors, errors: errors.slice(0, CHUNK_ERRORS) };
  };
}

export interface IndexJobSummary {
  images: number;
  added: number;
  duplicates: number;
  failed: number;
  failedChunks: number;
  cacheSize: number;
}

/** cachet-jobs / index: runs once every chunk has finished; sums them. */
export function parentProcessor(engine: IndexingApi) {
  return async (job: Job): Promise<IndexJobSummary> => {
    const data = parse(IndexParentSchema, job);
    const values = Object.values(await job.getChildrenValues()) as ChunkResult[];
    const failedChunks = Object.keys(await job.getIgnoredChildrenFailures()).length;
    const sum = (f: (v: ChunkResult) => number) => values.reduce((s, v) => s + f(v), 0);
    const { cacheSize } = await engine.flush(data.cache);
    return { images: data.total, added: sum((v) => v.added), duplicates: sum((v) => v.duplicates), failed: sum((v) => v.failed), failedChunks, cacheSize };
  };
}

/** Items and a job context (progress with its item errors) for a job run on an api replica. */
async function replicaJob(engine: ServingApi, job: Job, data: { cache: string; items: ItemRef[] }) {
  const spec = await engine.modelSpec(data.cache);
  const errors: ItemError[] = [];
  const items = toItems(data.items, spec.classes, errors);
  let errorCount = errors.length;
  const ctx: JobContext = {
    jobId: String(job.id),
    progress: (done, total) => void job.updateProgress({ done, total, errors: errors.slice(0, MAX_ITEM_ERRORS), errorCount }).catch(() => {}),
    itemErrors: (e) => {
      errorCount += e.length;
      errors.push(...e);
    },
    signal: new AbortController().signal,
  };
  return { items, ctx };
}

/** cachet-eval / eval, tune and robustness: on an api replica, which holds the index; and layers (layers-job.ts). */
export function evalProcessor(engine: ServingApi, settings: ProcessorSettings) {
  return async (job: Job): Promise<EvalJobResult | TuneResult | LayerAdvice | RobustnessResult> => {
    if (job.name === 'layers') return processLayersJob(job, settings); // needs no cache: in a thread of its own
    if (job.name === 'robustness') {
      const data = parse(RobustnessJobSchema, job);
      const { items, ctx } = await replicaJob(engine, job, data);
      return runRobustnessJob(engine, settings, { ...data, items }, ctx);
    }
    if (job.name === 'tune') {
      const data = parse(TuneJobSchema, job);
      const { items, ctx } = await replicaJob(engine, job, data);
      return runTuneJob(engine, settings, { ...data, items }, ctx);
    }
    const data = parse(EvalJobSchema, job);
    const { items, ctx } = await replicaJob(engine, job, data);
    return runEvalJob(engine, settings, { ...data, items }, ctx);
  };
}
