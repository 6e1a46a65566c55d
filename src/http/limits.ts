// Limits that protect the service from its callers (the body, image and pixel limits are in
// app.ts): unfinished jobs per cache, and predict requests in flight per process.
import type { RequestHandler } from 'express';
import { UserError } from '../errors/user-error.js';
import { sendError } from '../errors/respond.js';
import type { JobQueue, JobType, JobView, QueueDepth, UnfinishedJob } from '../jobs/types.js';

/** What one process takes from its clients (ServeOptions.limits). */
export interface ApiLimits {
  /** bytes of a JSON body or of one uploaded file */
  maxBodyBytes: number;
  maxImagesPerRequest: number;
  limitInputPixels: number;
  /** unfinished (waiting or running) jobs per cache; beyond, 429 too_many_jobs */
  maxJobsPerCache: number;
  /** predict requests in flight in this process; beyond, 429 busy */
  maxConcurrentPredicts: number;
  /** bytes of a cache export archive POSTed to /v1/caches/import */
  maxImportBytes: number;
  /** a body slower than this on average (after bodyRateGraceMs) is cut with 408 */
  minBodyBytesPerSecond: number;
  bodyRateGraceMs: number;
}

/** The Retry-After header of a 429: when to try again, in seconds. */
export const retryAfter = (seconds: number) => ({ headers: { 'Retry-After': String(seconds) } });

/** Seconds a caller is told to wait when a cache has too many jobs. */
export const JOBS_RETRY_AFTER_S = 30;

/**
 * A JobQueue that refuses a job when its cache already has `max` jobs waiting or running
 * (429 too_many_jobs). Submissions of this process in progress count too, so that concurrent
 * requests cannot all pass the check; in distributed mode each replica checks what Redis holds,
 * so replicas racing at the same instant may let one or two more through.
 */
export class LimitedQueue implements JobQueue {
  private readonly submitting = new Map<string, number>();

  constructor(
    private readonly inner: JobQueue,
    private readonly maxPerCache: number,
  ) {}

  async submit(type: JobType, cache: string, data: unknown, total: number): Promise<JobView> {
    const pending = this.submitting.get(cache) ?? 0;
    this.submitting.set(cache, pending + 1);
    try {
      const unfinished = await this.inner.unfinished(cache);
      if (unfinished.length + pending >= this.maxPerCache) throw tooManyJobs(cache, unfinished, pending, this.maxPerCache);
      return await this.inner.submit(type, cache, data, total);
    } finally {
      const left = (this.submitting.get(cache) ?? 1) - 1;
      if (left > 0) this.submitting.set(cache, left);
      else this.submitting.delete(cache);
    }
  }

  get(id: string): Promise<JobView | null> {
    return this.inner.get(id);
  }

  unfinished(cache: string): Promise<UnfinishedJob[]> {
    return this.inner.unfinished(cache);
  }

  depth(): Promise<QueueDepth[]> {
    return this.inner.depth();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function tooManyJobs(cache: string, jobs: UnfinishedJob[], submitting: number, max: number): UserError {
  const shown = jobs.slice(0, 10).map((j) => `${j.type} job ${j.id} (${j.state})`);
  const more = jobs.length > shown.length ? ` and ${jobs.length - shown.length} more` : '';
  const also = submitting ? `${shown.length ? ', and ' : ''}${submitting} being submitted` : '';
  return new UserError(
    'too_many_jobs',
    `cache "${cache}" takes at most ${max} unfinished jobs at once and has ${jobs.length + submitting}: ${shown.join(', ')}${more}${also}; wait for one to finish (GET /v1/jobs/:id) and submit again`,
    retryAfter(JOBS_RETRY_AFTER_S),
  );
}

/**
 * A body that trickles in slower than `bytesPerSecond` (averaged, after `graceMs`) is cut with 408:
 * a slow client must not hold a connection, a parser and, for predicts, memory for minutes.
 */
export function minimumBodyRate(bytesPerSecond = 16 * 1024, graceMs = 10_000): RequestHandler {
  return (req, res, next) => {
    const length = req.headers['content-length'];
    if (!req.headers['transfer-encoding'] && (length === undefined || length === '0')) return next();
    // counted on the socket, not with a 'data' listener (which would start the body flowing
    // before its parser is there)
    const socket = req.socket;
    const base = socket.bytesRead;
    const started = Date.now();
    const timer = setInterval(() => {
      if (req.complete || req.destroyed) return stop();
      const elapsed = Date.now() - started;
      const received = socket.bytesRead - base;
      if (elapsed < graceMs || received >= (bytesPerSecond * elapsed) / 1000) return;
      stop();
      const rate = Math.round((received * 1000) / elapsed);
      if (!res.headersSent) {
        res.set('Connection', 'close');
        sendError(
          res,
          new UserError('request_timeout', `the body arrived at ${rate} bytes/s, under this service's minimum of ${bytesPerSecond}: send it faster`),
        );
      }
      res.once('finish', () => req.destroy());
    }, 1000);
    timer.unref();
    const stop = () => clearInterval(timer);
    req.once('end', stop);
    res.once('close', stop);
    next();
  };
}

/** Counts predict requests in flight; beyond `max`, 429 busy with Retry-After: 1. */
export class PredictLimiter {
  private inFlight = 0;

  constructor(readonly max: number) {}

  get current(): number {
    return this.inFlight;
  }

  middleware(): RequestHandler {
    return (_req, res, next) => {
      if (this.inFlight >= this.max) {
        const message = `this process is serving ${this.inFlight} predict requests, its limit: retry in a second, or send several images per request`;
        return next(new UserError('busy', message, retryAfter(1)));
      }
      this.inFlight++;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.inFlight--;
      };
      res.once('finish', release);
      res.once('close', release);
      next();
    };
  }
}

/** Every limit must be a positive integer: a zero or a typo would lock callers out. */
export function checkLimits<L extends object>(limits: L): L {
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || (value as number) < 1) throw new UserError('bad_limit', `limit ${name} must be a positive integer, got ${String(value)}`);
  }
  return limits;
}
