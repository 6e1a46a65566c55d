// Starts the service in embedded mode: the engine thread, the in-process job
// queue and the HTTP API, with a graceful shutdown that snapshots every cache.
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { startEngine, EngineClient } from '../engine/client.js';
import { EmbeddedQueue } from '../jobs/embedded-queue.js';
import { runEvalJob, runIndexJob, IndexJobData, EvalJobData, ProcessorSettings } from '../jobs/processors.js';
import { JobQueue } from '../jobs/types.js';
import { runTuneJob, TuneJobData } from '../jobs/tune.js';
import { DEFAULT_LIMIT_INPUT_PIXELS } from '../preprocess/image.js';
import { createApp, ApiLimits } from './app.js';
import { BatcherOptions, PredictBatcher } from './batcher.js';
import { CacheStatus } from '../engine/engine.js';
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { connectRedis } from '../distributed/redis.js';
import { DistributedQueue } from '../distributed/queue.js';
import { evalProcessor } from '../distributed/processors.js';
import { queueNames } from '../distributed/keys.js';

export interface ServeOptions {
  port: number;
  host: string;
  dataDir: string;
  limits?: Partial<ApiLimits>;
  /** micro-batching of concurrent predict requests; defaults: DEFAULT_BATCHER_OPTIONS */
  batcher?: Partial<BatcherOptions>;
  /** images per model run when indexing or evaluating */
  batchSize?: number;
  /** distributed mode: this process is an api replica coordinated through this Redis */
  redisUrl?: string;
  /** distributed mode: images per chunk job */
  chunkSize?: number;
}

export interface RunningService {
  url: string;
  engine: EngineClient;
  batcher: PredictBatcher;
  queue: JobQueue;
  caches: CacheStatus[];
  close(): Promise<void>;
}

export const DEFAULT_LIMITS: ApiLimits = {
  maxBodyBytes: 16 * 1024 * 1024,
  maxImagesPerRequest: 64,
  limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS,
};

export async function startService(opts: ServeOptions): Promise<RunningService> {
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const engine = startEngine();
  let ready = false;
  const settings: ProcessorSettings = { batchSize: opts.batchSize ?? 64, limitInputPixels: limits.limitInputPixels };
  let queue: JobQueue;
  let evalWorker: Worker | null = null;
  let redis: Redis | null = null;
  if (opts.redisUrl) {
    redis = connectRedis(opts.redisUrl);
    queue = new DistributedQueue(redis, { chunkSize: opts.chunkSize ?? 256, attempts: 5 });
    // api replicas hold the indexes, so they take the eval jobs
    evalWorker = new Worker(queueNames.eval, evalProcessor(engine, settings), { connection: redis, concurrency: 1, autorun: false });
    evalWorker.on('error', (err) => console.error(`cachet: eval worker: ${err.message}`));
  } else {
    queue = new EmbeddedQueue({
      index: (data, ctx) => runIndexJob(engine, settings, data as IndexJobData, ctx),
      eval: (data, ctx) => runEvalJob(engine, settings, data as EvalJobData, ctx),
      tune: (data, ctx) => runTuneJob(engine, settings, data as TuneJobData, ctx),
    });
  }
  const log = (err: unknown) => console.error(err);
  const mode = opts.redisUrl ? 'distributed' : 'embedded';
  const batcher = new PredictBatcher(engine, opts.batcher);
  const app = createApp({ engine, batcher, queue, limits, mode, isReady: () => ready, log });
  const server = http.createServer(app);
  // Longer than the usual 60 s of load balancers and clients' pools, so that the server is
  // not the side that closes an idle kept-alive connection just as a request arrives.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const caches = await engine.open({ role: opts.redisUrl ? 'api' : 'embedded', dataDir: opts.dataDir, redisUrl: opts.redisUrl });
  evalWorker?.run().catch((err: Error) => console.error(`cachet: eval worker: ${err.message}`));
  ready = true;
  const { port } = server.address() as AddressInfo;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    engine,
    batcher,
    queue,
    caches,
    close: () =>
      (closing ??= (async () => {
        ready = false;
        await new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await evalWorker?.close();
        await queue.close();
        await engine.close();
        await engine.terminate();
        redis?.disconnect();
      })()),
  };
}
