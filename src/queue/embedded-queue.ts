// Embedded mode's queue: the job processors run in this process, one job at a time
// (first in, first out), so a bulk job cannot take all the memory of a small machine.
// Job records live in memory: a restart forgets them, while the items they
// added stay in the cache's key log.
import { randomUUID } from 'node:crypto';
import { JobContext, JobProcessor, JobQueue, JobType, JobView, MAX_ITEM_ERRORS, QueueDepth, UnfinishedJob } from '../jobs/types.js';

export class EmbeddedQueue implements JobQueue {
  private readonly jobs = new Map<string, JobView>();
  private chain: Promise<void> = Promise.resolve();
  private closing = false;
  private readonly shutdown = new AbortController();

  constructor(
    private readonly processors: Record<JobType, JobProcessor<unknown>>,
    /** called when a job completes or fails (metrics) */
    private readonly onFinished?: (job: JobView) => void,
  ) {}

  async submit(type: JobType, cache: string, data: unknown, total: number): Promise<JobView> {
    if (this.closing) throw new Error('the service is shutting down and takes no new jobs');
    const job: JobView = {
      id: randomUUID(),
      type,
      cache,
      state: 'waiting',
      progress: { done: 0, total },
      errors: [],
      errorCount: 0,
      result: null,
      failedReason: null,
      createdAt: new Date().toISOString(),
      startedAt: null,
      finishedAt: null,
    };
    this.jobs.set(job.id, job);
    this.chain = this.chain.then(() => this.run(job, data));
    return { ...job };
  }

  async get(id: string): Promise<JobView | null> {
    const job = this.jobs.get(id);
    return job ? { ...job, progress: { ...job.progress }, errors: [...job.errors] } : null;
  }

  async unfinished(cache: string): Promise<UnfinishedJob[]> {
    const out: UnfinishedJob[] = [];
    for (const j of this.jobs.values()) {
      if (j.cache === cache && (j.state === 'waiting' || j.state === 'active')) out.push({ id: j.id, type: j.type, cache: j.cache, state: j.state });
    }
    return out;
  }

  async depth(): Promise<QueueDepth[]> {
    const counts = new Map<string, QueueDepth>();
    for (const type of Object.keys(this.processors))
      for (const state of ['waiting', 'active'] as const) counts.set(`${type} ${state}`, { type, state, count: 0 });
    for (const j of this.jobs.values()) {
      if (j.state === 'waiting' || j.state === 'active') counts.get(`${j.type} ${j.state}`)!.count++;
    }
    return [...counts.values()];
  }

  async close(): Promise<void> {
    this.closing = true;
    this.shutdown.abort(
      new Error('the service shut down; the items added so far are kept: submit the job again to finish it (items already present are skipped)'),
    );
    await this.chain;
  }

  private async run(job: JobView, data: unknown): Promise<void> {
    const signal = this.shutdown.signal;
    job.state = 'active';
    job.startedAt = new Date().toISOString();
    const ctx: JobContext = {
      jobId: job.id,
      progress: (done, total) => void (job.progress = { done, total }),
      itemErrors: (errors) => {
        job.errorCount += errors.length;
        job.errors.push(...errors.slice(0, Math.max(0, MAX_ITEM_ERRORS - job.errors.length)));
      },
      signal,
    };
    try {
      signal.throwIfAborted();
      job.result = await this.processors[job.type](data, ctx);
      job.state = 'completed';
    } catch (err) {
      job.state = 'failed';
      job.failedReason = err instanceof Error ? err.message : String(err);
    } finally {
      job.finishedAt = new Date().toISOString();
      this.onFinished?.({ ...job });
    }
  }
}
