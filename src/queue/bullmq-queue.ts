// Distributed mode's queue: an index job is a BullMQ flow, a parent in
// cachet-jobs with its images split into chunks in cachet-index, so that every
// worker shares it. Eval jobs go to cachet-eval, where api replicas take them.
import { randomUUID } from 'node:crypto';
import { FlowProducer, Job, Queue } from 'bullmq';
import { queuePrefix, type RedisConnection } from '../redis/connection.js';
import { JobQueue, JobType, JobView, MAX_ITEM_ERRORS, ItemError, JobStateName, QueueDepth, UnfinishedJob } from '../jobs/types.js';
import type { SourceItem } from '../sources/sources.js';
import type { IndexJobData } from '../jobs/index-job.js';
import type { EvalJobData as EmbeddedEvalData } from '../jobs/eval-job.js';
import { queueNames } from '../redis/keys.js';
import type { ChunkJobData, ChunkResult, EvalJobData, IndexParentData, ItemRef, RobustnessJobData, TuneJobData } from './job-schema.js';
import type { RobustnessJobData as EmbeddedRobustnessData } from '../robustness/job.js';
import { replicaJobType, type LayersJobData } from './job-schema.js';
import type { LayerJobData } from '../advisor/job.js';
import type { TuneJobData as EmbeddedTuneData } from '../jobs/tune-job.js';

export interface DistributedQueueOptions {
  /** images per chunk job */
  chunkSize: number;
  /** attempts per chunk, with exponential backoff */
  attempts: number;
}

/** Retries with exponential backoff; finished jobs are kept a day for GET /v1/jobs/:id. */
export const chunkJobOptions = (attempts: number) => ({
  attempts,
  backoff: { type: 'exponential', delay: 1000 },
  ignoreDependencyOnFailure: true, // a chunk that fails for good does not fail the whole job
  removeOnComplete: { age: 24 * 3600 },
  removeOnFail: { age: 7 * 24 * 3600 },
});

export class DistributedQueue implements JobQueue {
  private readonly flows: FlowProducer;
  private readonly parents: Queue;
  private readonly evals: Queue;

  /** chunk jobs: only counted here (metrics); workers take them */
  private readonly chunks: Queue;

  constructor(
    connection: RedisConnection,
    private readonly opts: DistributedQueueOptions,
    /** where the BullMQ objects' errors go (without a listener BullMQ prints each one, every retry) */
    onError: (err: Error) => void,
  ) {
    const prefix = queuePrefix(connection);
    this.flows = new FlowProducer({ connection, prefix });
    this.parents = new Queue(queueNames.jobs, { connection, prefix });
    this.evals = new Queue(queueNames.eval, { connection, prefix });
    this.chunks = new Queue(queueNames.index, { connection, prefix });
    this.flows.on('error', onError);
    for (const q of [this.parents, this.evals, this.chunks]) q.on('error', onError);
  }

  async submit(type: JobType, cache: string, data: unknown, total: number): Promise<JobView> {
    const id = randomUUID();
    const onReplica = { jobId: id, attempts: 3, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: { age: 24 * 3600 } };
    if (type === 'eval') {
      const d = data as EmbeddedEvalData;
      const job: EvalJobData = { cache, items: d.items.map(toRef), theta: d.theta, lambda: d.lambda, compareWith: d.compareWith, cacheSizes: d.cacheSizes };
      await this.evals.add('eval', job, onReplica);
    } else if (type === 'tune') {
      const d = data as EmbeddedTuneData;
      const job: TuneJobData = { cache, items: d.items.map(toRef), flip: d.flip, thetas: d.thetas, lambdas: d.lambdas, ks: d.ks, dryRun: d.dryRun };
      await this.evals.add('tune', job, onReplica);
    } else if (type === 'robustness') {
      const { items, ...settings } = data as EmbeddedRobustnessData;
      const job: RobustnessJobData = { ...settings, cache, items: items.map(toRef), total };
      await this.evals.add('robustness', job, onReplica);
    } else if (type === 'layers') {
      const job: LayersJobData = { ...(data as LayerJobData), total }; // no cache: api replicas take it like eval jobs
      await this.evals.add('layers', job, onReplica);
    } else {
      const d = data as IndexJobData;
      const parent: IndexParentData = { cache, total, flip: d.flip };
      const children = [];
      for (let i = 0; i < d.items.length; i += this.opts.chunkSize) {
        const chunk: ChunkJobData = { cache, flip: d.flip, items: d.items.slice(i, i + this.opts.chunkSize).map(toRef) };
        children.push({ name: 'chunk', queueName: queueNames.index, data: chunk, opts: chunkJobOptions(this.opts.attempts) });
      }
      await this.flows.add({ name: 'index', queueName: queueNames.jobs, data: parent, opts: { jobId: id, removeOnComplete: { age: 24 * 3600 } }, children });
    }
    return (await this.get(id))!;
  }

  async get(id: string): Promise<JobView | null> {
    // State first, then the job: read the other way round, a job that completes in
    // between would show state "completed" without its result.
    for (const [queue, describe] of [
      [this.parents, indexJobView],
      [this.evals, evalJobView],
    ] as const) {
      const state = await queue.getJobState(id);
      if (state === 'unknown') continue;
      const job = await Job.fromId(queue, id);
      if (job) return describe(job, state);
    }
    return null;
  }

  /** Reads the data of every unfinished index, eval and tune job (a handful: the limit per cache keeps them few). */
  async unfinished(cache: string): Promise<UnfinishedJob[]> {
    const out: UnfinishedJob[] = [];
    const groups = [
      ['active', ['active', 'waiting-children']],
      ['waiting', ['waiting', 'delayed', 'prioritized']],
    ] as const;
    for (const queue of [this.parents, this.evals]) {
      for (const [state, types] of groups) {
        for (const job of await queue.getJobs([...types])) {
          if (!job || ((job.data as { cache?: string }).cache ?? '') !== cache) continue; // layers jobs: cache ''
          const type: JobType = queue === this.parents ? 'index' : replicaJobType(job.name);
          out.push({ id: String(job.id), type, cache, state });
        }
      }
    }
    return out;
  }

  /** Counted in Redis: index (parent jobs), chunk (their chunks, taken by workers), eval (eval and tune jobs). */
  async depth(): Promise<QueueDepth[]> {
    const out: QueueDepth[] = [];
    for (const [type, queue] of [
      ['index', this.parents],
      ['chunk', this.chunks],
      ['eval', this.evals],
    ] as const) {
      const c = await queue.getJobCounts('waiting', 'delayed', 'prioritized', 'active', 'waiting-children');
      out.push({ type, state: 'waiting', count: (c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0) });
      out.push({ type, state: 'active', count: (c.active ?? 0) + (c['waiting-children'] ?? 0) });
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.all([this.flows.close(), this.parents.close(), this.evals.close(), this.chunks.close()]);
  }
}

function toRef(item: SourceItem): ItemRef {
  const label = item.label ?? -1;
  const id = item.id ?? undefined; // none: the worker gives it its content id
  return typeof item.image === 'string' ? { id, label, path: item.image } : { id, label, image: item.image.toString('base64') };
}

/** An index job's view: progress and errors are the sums of its finished chunks. */
async function indexJobView(parent: Job, state: string): Promise<JobView> {
  const data = parent.data as IndexParentData;
  const values = Object.values(await parent.getChildrenValues()) as ChunkResult[];
  const failures = Object.entries(await parent.getIgnoredChildrenFailures());
  const errors: ItemError[] = [];
  let done = 0;
  let errorCount = 0;
  for (const v of values) {
    done += v.images;
    errorCount += v.failed;
    errors.push(...v.errors.slice(0, Math.max(0, MAX_ITEM_ERRORS - errors.length)));
  }
  for (const [chunk, reason] of failures) {
    errorCount++;
    if (errors.length < MAX_ITEM_ERRORS) errors.push({ id: `chunk ${chunk}`, error: `the whole chunk failed after its retries: ${reason}` });
  }
  return view(parent, 'index', data.cache, mapState(state, done > 0), { done, total: data.total }, errors, errorCount);
}

interface EvalProgress {
  done: number;
  total: number;
  errors?: ItemError[];
  errorCount?: number;
}

async function evalJobView(job: Job, state: string): Promise<JobView> {
  const data = job.data as EvalJobData;
  // a layers job has no items; a robustness job counts its images once per corruption and attack
  const total = (job.data as { total?: number }).total ?? data.items?.length ?? 0;
  const p = (typeof job.progress === 'object' ? job.progress : { done: 0, total }) as EvalProgress;
  return view(
    job,
    replicaJobType(job.name),
    data.cache ?? '',
    mapState(state, p.done > 0),
    { done: p.done, total: p.total },
    p.errors ?? [],
    p.errorCount ?? 0,
  );
}

function mapState(state: string, started: boolean): JobStateName {
  if (state === 'completed' || state === 'failed' || state === 'active') return state;
  if (state === 'waiting-children') return started ? 'active' : 'waiting';
  return 'waiting';
}

function view(job: Job, type: JobType, cache: string, state: JobStateName, progress: JobView['progress'], errors: ItemError[], errorCount: number): JobView {
  const iso = (t: number | undefined) => (t ? new Date(t).toISOString() : null);
  return {
    id: String(job.id),
    type,
    cache,
    state,
    progress,
    errors,
    errorCount,
    result: job.returnvalue ?? null,
    failedReason: job.failedReason ?? null,
    createdAt: new Date(job.timestamp).toISOString(),
    startedAt: iso(job.processedOn),
    finishedAt: iso(job.finishedOn),
  };
}
