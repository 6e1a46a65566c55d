// What it takes to operate the service, wired in one place: request ids and access logs,
// metrics, API keys, limits, the address to bind and a graceful close of the HTTP server.
// service.ts builds an Operations; createApp() calls install() before any route.
import type http from 'node:http';
import type express from 'express';
import type { ServingApi } from '../engine/client.js';
import type { JobQueue, JobView } from '../jobs/types.js';
import type { ApiLimits } from './limits.js';
import { authenticate, compileRoutes, findRoute, isLoopback, KeyMatcher, loadApiKeys, type RouteRole } from './auth.js';
import { routeRoles } from './route-table.js';
import { LimitedQueue, minimumBodyRate, PredictLimiter } from './limits.js';
import type { Logger } from '../util/logging.js';
import { requestLogging } from './request-log.js';
import { ServiceMetrics } from './metrics.js';

export interface OperationsOptions {
  logger: Logger;
  /** CACHET_API_KEYS-style text: `role:key[:name]`, separated by commas or newlines */
  apiKeys?: string;
  /** a keys file: `role key [name]` per line */
  apiKeysFile?: string;
  limits: ApiLimits;
  /** each route's role (and the metrics' route names for requests refused before routing); default openapi.ts's table */
  routes?: readonly RouteRole[];
}

export class Operations {
  readonly logger: Logger;
  readonly keys: KeyMatcher;
  readonly predicts: PredictLimiter;
  private readonly routes: readonly RouteRole[];
  private stopping = false;
  private metricsOf: ServiceMetrics | null = null;

  /** Reads and checks the API keys: a bad key stops the start here, with a message. */
  constructor(private readonly opts: OperationsOptions) {
    this.logger = opts.logger;
    this.keys = new KeyMatcher(loadApiKeys({ keys: opts.apiKeys, keysFile: opts.apiKeysFile }));
    this.predicts = new PredictLimiter(opts.limits.maxConcurrentPredicts);
    this.routes = opts.routes ?? routeRoles;
  }

  get authEnabled(): boolean {
    return this.keys.size > 0;
  }

  get metrics(): ServiceMetrics {
    if (!this.metricsOf) throw new Error('Operations.attach() first');
    return this.metricsOf;
  }

  /**
   * The address to listen on. Without API keys every route is open, so the service listens on
   * loopback only, whatever was asked, and says so loudly.
   */
  bindHost(asked: string): string {
    if (this.authEnabled) {
      this.logger.info({ keys: this.keys.size }, `API keys: ${this.keys.size} configured; every /v1 route needs one`);
      return asked;
    }
    const host = isLoopback(asked) ? asked : '127.0.0.1';
    const moved = host === asked ? '' : ` Asked to listen on ${asked}: listening on 127.0.0.1 instead.`;
    this.logger.warn(
      { askedHost: asked, host },
      `NO API KEYS CONFIGURED: every route is open to anyone who can reach the port, so the service listens on localhost only.${moved} Set CACHET_API_KEYS (role:key,…) or --api-keys-file to serve other hosts.`,
    );
    return host;
  }

  /**
   * The queue with the jobs-per-cache limit, and the metrics reading it and the engine.
   * Returns the queue the app must use.
   */
  attach(engine: Pick<ServingApi, 'listCaches' | 'logStatus'>, queue: JobQueue): JobQueue {
    this.metricsOf = new ServiceMetrics({ engine, queue, predictsInFlight: () => this.predicts.current });
    return new LimitedQueue(queue, this.opts.limits.maxJobsPerCache);
  }

  /** The engine as the predict batcher sees it: each call's batch size and engine-thread timings observed. */
  instrumentClassify(engine: Pick<ServingApi, 'classify'>): Pick<ServingApi, 'classify'> {
    const m = this.metrics;
    return {
      classify: async (name, images, n, options) => {
        m.batchSize.observe(n);
        const r = await engine.classify(name, images, n, options);
        if (r.timings) {
          m.inference.observe({ cache: name }, r.timings.inferenceMs / 1000);
          m.search.observe({ cache: name }, r.timings.searchMs / 1000);
        }
        return r;
      },
    };
  }

  jobFinished(job: Pick<JobView, 'type' | 'state'>): void {
    this.metricsOf?.jobsFinished.inc({ type: job.type, outcome: job.state === 'completed' ? 'completed' : 'failed' });
  }

  /** Middleware that goes before every route: request id and access log, timing, /metrics, API keys, body rate. */
  install(app: express.Express): void {
    const compiled = compileRoutes(this.routes);
    app.use(requestLogging(this.logger));
    app.use(this.metrics.httpTimer((req) => findRoute(compiled, req.method, req.path)?.path ?? null));
    app.use((_req, res, next) => {
      if (this.stopping) res.set('Connection', 'close'); // let clients' pools drop this replica
      next();
    });
    app.get('/metrics', this.metrics.handler());
    if (this.authEnabled) app.use(authenticate(this.keys, this.routes));
    app.use(minimumBodyRate(this.opts.limits.minBodyBytesPerSecond, this.opts.limits.bodyRateGraceMs));
  }

  /** The predict limit: the route installs it once the body is in, so a slow upload holds no slot. */
  predictSlot(): express.RequestHandler {
    return this.predicts.middleware();
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  /**
   * For `drainMs`, keep serving (with `Connection: close`) while /readyz says 503; then stop
   * accepting connections and wait for the requests in flight to be answered, closing kept-alive
   * connections as soon as they are idle. After `timeoutMs` more, every connection is cut.
   */
  async closeServer(server: http.Server, { drainMs, timeoutMs }: { drainMs: number; timeoutMs: number }): Promise<void> {
    this.stopping = true;
    if (drainMs > 0) await new Promise((r) => setTimeout(r, drainMs));
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const idle = setInterval(() => server.closeIdleConnections(), 50);
    const force = setTimeout(() => {
      this.logger.warn(`requests still in flight after ${timeoutMs} ms: closing their connections`);
      server.closeAllConnections();
    }, timeoutMs);
    try {
      await closed;
    } finally {
      clearInterval(idle);
      clearTimeout(force);
    }
  }
}
