// Embedded mode's queue: the job processors run in this process, one job at a time per lane
// (first in, first out), so a bulk job cannot take all the memory of a small machine. Two lanes:
// the cache's own work (index, eval, tune) and long analyses (layers, robustness: up to an hour),
// so that an index job does not wait behind an analysis.
// With a JobStore, jobs are kept on disk: after a restart their ids still answer, and the jobs a
// stop interrupted run again (restore()); an index job skips the items it had already added.
import { randomUUID } from 'node:crypto';
import { JobContext, JobProcessor, JobQueue, JobType, JobView, MAX_ITEM_ERRORS, QueueDepth, UnfinishedJob } from '../jobs/types.js';
import type { JobStore } from './job-store.js';

/** finished jobs kept (in memory and on disk), newest; older ones are forgotten */
const KEEP_FINISHED = 1000;
/** progress is written to disk at most this often */
const PROGRESS_WRITE_MS = 1000;

type Lane = 'cache' | 'analysis';
const laneOf = (type: JobType): Lane => (type === 'layers' || type === 'robustness' ? 'analysis' : 'cache');

export class EmbeddedQueue implements JobQueue {
  private readonly jobs = new Map<string, JobView>();
  private readonly lanes: Record<Lane, Promise<void>> = { cache: Promise.resolve(), analysis: Promise.resolve() };
  private closing = false;
  private readonly shutdown = new AbortController();

  constructor(
    private readonly processors: Record<JobType, JobProcessor<unknown>>,
    /** called when a job completes or fails (metrics) */
    private readonly onFinished?: (job: JobView) => void,
    /** where jobs are kept across restarts; none: in memory only */
    private readonly store?: JobStore,
    private readonly report: (msg: string) => void = (msg) => console.error(msg),
  ) {}

  /** Take the stored jobs back: finished ones answer again, unfinished ones run again, in order. */
  async restore(): Promise<{ resumed: number; finished: number }> {
    if (!this.store) return { resumed: 0, finished: 0 };
    let resumed = 0;
    let finished = 0;
    for (const { view, data } of await this.store.load(this.report)) {
      if (view.state === 'completed' || view.state === 'failed') {
        this.jobs.set(view.id, view);
        finished++;
        continue;
      }
      // interrupted (or never started): from the start; an index job skips what it had added
      const job: JobView = { ...view, state: 'waiting', progress: { done: 0, total: view.progress.total }, startedAt: null };
      this.jobs.set(job.id, job);
      await this.persist(job);
      this.enqueue(job, data);
      resumed++;
    }
    return { resumed, finished };
  }

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
    await this.store?.create(job, data); // before it is acknowledged: a restart keeps it
    this.jobs.set(job.id, job);
    this.enqueue(job, data);
    return { ...job };
  }

  private enqueue(job: JobView, data: unknown): void {
    const lane = laneOf(job.type);
    this.lanes[lane] = this.lanes[lane].then(() => this.run(job, data));
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
      new Error(
        this.store
          ? 'the service is stopping: the job goes on at its next start'
          : 'the service shut down; the items added so far are kept: submit the job again to finish it (items already present are skipped)',
      ),
    );
    await Promise.all(Object.values(this.lanes));
  }

  private async run(job: JobView, data: unknown): Promise<void> {
    const signal = this.shutdown.signal;
    if (signal.aborted && this.store) return; // stopping: it stays waiting, on disk, for the next start
    job.state = 'active';
    job.startedAt = new Date().toISOString();
    await this.persist(job);
    let written = Date.now();
    const ctx: JobContext = {
      jobId: job.id,
      progress: (done, total) => {
        job.progress = { done, total };
        if (Date.now() - written < PROGRESS_WRITE_MS) return;
        written = Date.now();
        void this.persist(job);
      },
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
      if (signal.aborted && this.store) {
        // stopped by a shutdown: it runs again at the next start
        job.state = 'waiting';
        await this.persist(job);
        return;
      }
      job.state = 'failed';
      job.failedReason = err instanceof Error ? err.message : String(err);
    }
    job.finishedAt = new Date().toISOString();
    await this.persist(job);
    this.onFinished?.({ ...job });
    await this.forgetOldJobs();
  }

  private async persist(job: JobView): Promise<void> {
    await this.store?.update(job).catch((err: Error) => this.report(`job ${job.id}: cannot record it on disk: ${err.message}`));
  }

  private async forgetOldJobs(): Promise<void> {
    const finished = [...this.jobs.values()].filter((j) => j.state === 'completed' || j.state === 'failed');
    for (const j of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) {
      this.jobs.delete(j.id);
      await this.store?.remove(j.id);
    }
  }
}
