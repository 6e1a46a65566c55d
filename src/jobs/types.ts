// Jobs: bulk indexing and evaluation. The processors are plain functions of
// (data, context) so that the embedded queue and (later) BullMQ workers run the same code.
import { z } from 'zod';
import type { ReadRoots } from '../sources/read-roots.js';

const int = () => z.number().int();

export const JobTypeSchema = z.enum(['index', 'eval', 'tune', 'layers', 'robustness']);
export type JobType = z.infer<typeof JobTypeSchema>;
export const JobStateSchema = z.enum(['waiting', 'active', 'completed', 'failed']);
export type JobStateName = z.infer<typeof JobStateSchema>;

export const ItemErrorSchema = z.object({ id: z.string(), error: z.string() }).strict();
export type ItemError = z.infer<typeof ItemErrorSchema>;

/** A job as the queues describe it; `result` is typed loosely here (the API documents it per job type). */
export const JobViewSchema = z
  .object({
    id: z.string(),
    type: JobTypeSchema,
    cache: z.string(),
    state: JobStateSchema,
    progress: z.object({ done: int(), total: int() }).strict(),
    errors: z.array(ItemErrorSchema).describe('the first 1,000 per-item errors; errorCount counts them all'),
    errorCount: int(),
    result: z.unknown(),
    failedReason: z.string().nullable(),
    createdAt: z.iso.datetime(),
    startedAt: z.iso.datetime().nullable(),
    finishedAt: z.iso.datetime().nullable(),
  })
  .strict();
export type JobView = z.infer<typeof JobViewSchema>;
export type JobProgress = JobView['progress'];

/** How a process runs its jobs' batches. */
export interface ProcessorSettings {
  /** images per model run */
  batchSize: number;
  limitInputPixels: number;
  /** the files and URLs jobs may read, checked again when each is opened */
  readRoots?: ReadRoots;
}

export const MAX_ITEM_ERRORS = 1000;

export interface JobContext {
  jobId: string;
  progress(done: number, total: number): void;
  itemErrors(errors: ItemError[]): void;
  /** aborted when the service shuts down: stop at the next batch */
  signal: AbortSignal;
}

export type JobProcessor<D> = (data: D, ctx: JobContext) => Promise<unknown>;

/** A job that has not finished: for the jobs-per-cache limit and its message. */
export interface UnfinishedJob {
  id: string;
  type: JobType;
  cache: string;
  state: 'waiting' | 'active';
}

/** Jobs waiting or active, by type (distributed: by BullMQ queue), for metrics. */
export interface QueueDepth {
  type: string;
  state: 'waiting' | 'active';
  count: number;
}

export interface JobQueue {
  submit(type: JobType, cache: string, data: unknown, total: number): Promise<JobView>;
  get(id: string): Promise<JobView | null>;
  /** the jobs of a cache that are waiting or active */
  unfinished(cache: string): Promise<UnfinishedJob[]>;
  /** how many jobs wait and run, by type */
  depth(): Promise<QueueDepth[]>;
  /** stop taking jobs; the one in hand stops after its current batch */
  close(): Promise<void>;
}
