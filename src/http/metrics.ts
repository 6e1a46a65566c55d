// Prometheus metrics (GET /metrics). One Registry per service instance, never prom-client's
// global one: tests run several services in one process.
//
// - http_request_duration_seconds {method, route, status}: route is the express route pattern
//   (`/v1/caches/:name/predict`), never the raw URL; a request no route matched is "unmatched".
// - cachet_predict_batch_size: images per engine.classify call the predict batcher makes.
// - cachet_model_inference_seconds {cache}, cachet_index_search_seconds {cache}: the onnxruntime
//   run of those calls, timed on the inference thread (no queueing), and their cache search, timed
//   on the engine thread.
// - cachet_predict_in_flight: predict requests being served by this process.
// - cachet_cache_items, cachet_cache_damaged, cachet_cache_lost_records, cachet_keylog_lag {cache}:
//   read from the engine at scrape time.
// - cachet_jobs {type, state}: jobs waiting or active, read from the queue at scrape time.
// - cachet_jobs_finished_total {type, outcome}: jobs this process saw finish (see README).
// - prom-client's default process metrics (CPU, memory, event loop lag, GC, handles).
import type { Request, RequestHandler } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ServingApi } from '../engine/client.js';
import type { JobQueue } from '../jobs/types.js';

export interface MetricSources {
  engine: Pick<ServingApi, 'listCaches' | 'logStatus'>;
  queue: Pick<JobQueue, 'depth'>;
  predictsInFlight: () => number;
}

export class ServiceMetrics {
  readonly registry = new Registry();
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly batchSize: Histogram;
  readonly inference: Histogram<'cache'>;
  readonly search: Histogram<'cache'>;
  readonly jobsFinished: Counter<'type' | 'outcome'>;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.httpDuration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP requests: time from the request to the end of the response',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.batchSize = new Histogram({
      name: 'cachet_predict_batch_size',
      help: 'images per engine call made by the predict batcher (concurrent requests merged)',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    const timeBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
    this.inference = new Histogram({
      name: 'cachet_model_inference_seconds',
      help: 'onnxruntime run (keys and p_model) of one predict batch, timed on the inference thread (without the wait for it)',
      labelNames: ['cache'],
      buckets: timeBuckets,
      registers,
    });
    this.search = new Histogram({
      name: 'cachet_index_search_seconds',
      help: 'cache search and p_cache of one predict batch, on the engine thread',
      labelNames: ['cache'],
      buckets: timeBuckets,
      registers,
    });
    this.jobsFinished = new Counter({
      name: 'cachet_jobs_finished_total',
      help: 'jobs this process saw finish (embedded: every job; distributed: the eval and tune jobs this replica ran)',
      labelNames: ['type', 'outcome'],
      registers,
    });
    new Gauge({
      name: 'cachet_predict_in_flight',
      help: 'predict requests being served by this process',
      registers,
      collect() {
        this.set(sources.predictsInFlight());
      },
    });
    new Gauge({
      name: 'cachet_cache_items',
      help: "items in each cache (this process's index)",
      labelNames: ['cache'],
      registers,
      async collect() {
        this.reset();
        const caches = await sources.engine.listCaches().catch(() => []);
        for (const c of caches) if (c.info) this.set({ cache: c.name }, c.info.size);
      },
    });
    new Gauge({
      name: 'cachet_cache_damaged',
      help: '1 for a cache whose stored data is damaged beyond repair (it answers 503 cache_damaged), else 0',
      labelNames: ['cache'],
      registers,
      async collect() {
        this.reset();
        const caches = await sources.engine.listCaches().catch(() => []);
        for (const c of caches) this.set({ cache: c.name }, c.status === 'damaged' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'cachet_cache_lost_records',
      help: 'key log records of each cache found damaged and skipped (see GET /v1/caches/:name damage): their images need indexing again',
      labelNames: ['cache'],
      registers,
      async collect() {
        this.reset();
        const caches = await sources.engine.listCaches().catch(() => []);
        for (const c of caches)
          if (c.info)
            this.set(
              { cache: c.name },
              c.info.damage.reduce((n, d) => n + d.lostRecords, 0),
            );
      },
    });
    new Gauge({
      name: 'cachet_keylog_lag',
      help: "records in each cache's key log that this process has not applied to its index yet",
      labelNames: ['cache'],
      registers,
      async collect() {
        this.reset();
        const logs = await sources.engine.logStatus().catch(() => []);
        for (const l of logs) this.set({ cache: l.name }, l.lag);
      },
    });
    new Gauge({
      name: 'cachet_jobs',
      help: 'jobs waiting or active in the queue (distributed: per BullMQ queue, counted in Redis)',
      labelNames: ['type', 'state'],
      registers,
      async collect() {
        this.reset();
        const depth = await sources.queue.depth().catch(() => []);
        for (const d of depth) this.set({ type: d.type, state: d.state }, d.count);
      },
    });
  }

  /** Times every request; `routeOf` names the route of a request no express route matched. */
  httpTimer(routeOf: (req: Request) => string | null): RequestHandler {
    return (req, res, next) => {
      const end = this.httpDuration.startTimer();
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        const pattern = req.route ? `${req.baseUrl}${String(req.route.path)}` : routeOf(req);
        end({ method: req.method, route: pattern ?? 'unmatched', status: String(res.statusCode) });
      };
      res.once('finish', finish);
      res.once('close', finish);
      next();
    };
  }

  /** GET /metrics */
  handler(): RequestHandler {
    return async (_req, res, next) => {
      try {
        const text = await this.registry.metrics();
        res.set('Content-Type', this.registry.contentType).send(text);
      } catch (err) {
        next(err);
      }
    };
  }
}
