// Jobs: bulk indexing and evaluation. The processors are plain functions of
// (data, context) so that the embedded queue and (later) BullMQ workers run the same code.
export type JobType = 'index' | 'eval' | 'tune' | 'layers';
export type JobStateName = 'waiting' | 'active' | 'completed' | 'failed';

export interface JobProgress {
  done: number;
  total: number;
}

export interface ItemError {
  id: string;
  error: string;
}

export interface JobView {
  id: string;
  type: JobType;
  cache: string;
  state: JobStateName;
  progress: JobProgress;
  /** the first MAX_ITEM_ERRORS per-item errors; errorCount counts them all */
  errors: ItemError[];
  errorCount: number;
  result: unknown;
  failedReason: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
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
