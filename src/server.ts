// Starts the service in embedded mode: the engine thread, the in-process job
// queue and the HTTP API, with a graceful shutdown that snapshots every cache.
import http from 'node:http';
import path from 'node:path';
import { JobStore } from './queue/job-store.js';
import type express from 'express';
import { AddressInfo } from 'node:net';
import { ReadRoots } from './sources/read-roots.js';
import { startEngine, engineLogTo, type ServingApi } from './engine/client.js';
import { EmbeddedQueue } from './queue/embedded-queue.js';
import { runIndexJob, type IndexJobData } from './jobs/index-job.js';
import { runEvalJob, type EvalJobData } from './jobs/eval-job.js';
import type { ProcessorSettings } from './jobs/types.js';
import { JobQueue } from './jobs/types.js';
import { runTuneJob, TuneJobData } from './jobs/tune-job.js';
import { runRobustnessJob, type RobustnessJobData } from './robustness/job.js';
import { runLayersJob, type LayerJobData } from './advisor/job.js';
import { abortLayerJobs } from './queue/layers-job.js';
import { replicaJobType } from './queue/job-schema.js';
import { DEFAULT_LIMIT_INPUT_PIXELS } from './preprocess/image.js';
import { createApp } from './http/app.js';
import type { ApiLimits } from './http/limits.js';
import { BatcherOptions, PredictBatcher } from './http/batcher.js';
import { Worker } from 'bullmq';
import type { RedisConnection } from './redis/connection.js';
import { connectRedis, queuePrefix } from './redis/connection.js';
import { RedisOutage } from './redis/outage.js';
import { DistributedQueue } from './queue/bullmq-queue.js';
import { evalProcessor } from './queue/bullmq-processors.js';
import { queueNames } from './redis/keys.js';
import { Operations } from './http/operations.js';
import { checkLimits } from './http/limits.js';
import { createLogger, redactUrl, type Logger } from './util/logging.js';
import { CacheStatus } from './engine/status.js';
import type { EngineOptions } from './engine/types.js';
import { loadApiKeys } from './http/auth.js';
import os from 'node:os';
import { hugePagesStatus } from './util/huge-pages.js';

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
  /** distributed mode: the shards of sharded caches this replica holds (default: all) */
  shards?: number[];
  /** structured logs; default JSON on stdout at LOG_LEVEL (info) */
  logger?: Logger;
  /** API keys as in CACHET_API_KEYS: `role:key[:name]`, separated by commas or newlines */
  apiKeys?: string;
  /** a file of API keys: `role key [name]` per line, `#` comments */
  apiKeysFile?: string;
  /** the folders models and images may be read from on a caller's behalf (a string: separated by ':'); default: anywhere */
  readRoots?: string[] | string;
  /** the URL prefixes images may be fetched from (a string: comma-separated); default: none, URL sources are off */
  urlPrefixes?: string[] | string;
  /** close(): how long /readyz answers 503 while requests are still taken, for load balancers to drain (default 0) */
  drainDelayMs?: number;
  /** close(): how long to wait for requests in flight before cutting their connections (default 30 s) */
  shutdownTimeoutMs?: number;
  /**
   * distributed mode: where peers reach this replica to fetch its snapshots (CACHET_ADVERTISE_URL;
   * default http://<hostname>:<port>)
   */
  advertiseUrl?: string;
  /** distributed mode: the replicas' snapshot and log-trimming settings (default: CACHET_SNAPSHOT_EVERY, CACHET_LOG_KEEP, CACHET_REPLICA_TTL_MS) */
  replication?: Pick<EngineOptions, 'snapshotEvery' | 'logKeep' | 'replicaTtlMs' | 'replicaId'>;
}

export interface RunningService {
  url: string;
  engine: ServingApi & { terminate(): Promise<void> };
  batcher: PredictBatcher;
  queue: JobQueue;
  caches: CacheStatus[];
  logger: Logger;
  /** metrics (ops.metrics.registry), API keys, limits */
  ops: Operations;
  /** the express app (test/openapi.test.ts lists its routes) */
  app: express.Express;
  close(): Promise<void>;
}

/** where embedded jobs are kept, under the data directory (not a cache name: those start with a letter or digit) */
const JOBS_DIR = '.jobs';

export const DEFAULT_LIMITS: ApiLimits = {
  maxBodyBytes: 16 * 1024 * 1024,
  maxImagesPerRequest: 64,
  limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS,
  maxJobsPerCache: 4,
  maxConcurrentPredicts: 64,
  maxImportBytes: 64 * 2 ** 30,
  minBodyBytesPerSecond: 16 * 1024,
  bodyRateGraceMs: 10_000,
};

export async function startService(opts: ServeOptions): Promise<RunningService> {
  const limits = checkLimits({ ...DEFAULT_LIMITS, ...opts.limits });
  const logger = opts.logger ?? createLogger();
  // API keys are read (and a bad one refused) before anything starts
  const ops = new Operations({ logger, apiKeys: opts.apiKeys, apiKeysFile: opts.apiKeysFile, limits });
  const readRoots = ReadRoots.of(opts.readRoots).withUrls(opts.urlPrefixes); // a root that does not exist stops the start
  if (readRoots.roots) logger.info({ readRoots: readRoots.roots }, `models and images are read only under ${readRoots.roots.join(', ')}`);
  const hugePages = hugePagesStatus();
  logger[hugePages.fixable ? 'warn' : 'info']({ hugePages: hugePages.on }, `memory: ${hugePages.detail}`);
  const engineOptions: Omit<EngineOptions, 'role'> = { dataDir: opts.dataDir, redisUrl: opts.redisUrl, shards: opts.shards };
  if (opts.redisUrl) {
    // peers fetch each other's snapshots with an admin key, when the service asks for keys
    const peerKey = process.env.CACHET_PEER_KEY || loadApiKeys({ keys: opts.apiKeys, keysFile: opts.apiKeysFile }).find((k) => k.role === 'admin')?.key;
    Object.assign(engineOptions, replicationFromEnv(), opts.replication, peerKey && { peerKey });
  }
  let ready = false;
  let opened = false;
  const settings: ProcessorSettings = { batchSize: opts.batchSize ?? 64, limitInputPixels: limits.limitInputPixels, readRoots };
  let queue: JobQueue;
  let evalWorker: Worker | null = null;
  let redis: RedisConnection | null = null;
  let engine: RunningService['engine'];
  let embeddedQueue: EmbeddedQueue | null = null;
  let redisOutage: RedisOutage | null = null;
  if (opts.redisUrl) {
    engine = startEngine({ ...engineOptions, role: 'api' }, engineLogTo(logger));
    redis = connectRedis(opts.redisUrl);
    const outage = new RedisOutage(
      (level, msg) => logger[level]({ redis: redactUrl(opts.redisUrl!) }, msg),
      'predictions go on from the indexes in memory; job submissions and new items wait',
      () => redis!.ping(),
    );
    redisOutage = outage;
    outage.watch(redis, (err) => logger.error({ err }, `redis: ${err.message}`));
    queue = new DistributedQueue(
      redis,
      { chunkSize: opts.chunkSize ?? 256, attempts: 5 },
      outage.onError((err) => logger.error({ err }, `job queue: ${err.message}`)),
    );
    // api replicas hold the indexes, so they take the eval jobs
    evalWorker = new Worker(queueNames.eval, evalProcessor(engine, settings), {
      connection: redis,
      prefix: queuePrefix(redis),
      concurrency: 1,
      autorun: false,
    });
    outage.watch(evalWorker, (err) => logger.error({ err }, `eval worker: ${err.message}`));
    // jobs this replica ran (index jobs finish on workers: not counted here)
    const type = replicaJobType;
    evalWorker.on('completed', (job) => ops.jobFinished({ type: type(job.name), state: 'completed' }));
    evalWorker.on('failed', (job) => {
      if (job && job.attemptsMade >= (job.opts.attempts ?? 1)) ops.jobFinished({ type: type(job.name), state: 'failed' });
    });
  } else {
    const embedded = startEngine({ ...engineOptions, role: 'embedded' }, engineLogTo(logger));
    engine = embedded;
    embeddedQueue = new EmbeddedQueue(
      {
        index: (data, ctx) => runIndexJob(embedded, settings, data as IndexJobData, ctx),
        eval: (data, ctx) => runEvalJob(engine, settings, data as EvalJobData, ctx),
        tune: (data, ctx) => runTuneJob(engine, settings, data as TuneJobData, ctx),
        layers: (data, ctx) => runLayersJob(data as LayerJobData, ctx, settings), // in a thread of its own
        robustness: (data, ctx) => runRobustnessJob(engine, settings, data as RobustnessJobData, ctx),
      },
      (job) => ops.jobFinished(job),
      new JobStore(path.join(opts.dataDir, JOBS_DIR)),
      (msg) => logger.error(msg),
    );
    queue = embeddedQueue;
  }
  queue = ops.attach(engine, queue); // + the jobs-per-cache limit
  const log = (err: unknown, req?: express.Request) =>
    (req?.log ?? logger).error({ err }, `internal error: ${err instanceof Error ? err.message : String(err)}`);
  const mode = opts.redisUrl ? 'distributed' : 'embedded';
  const batcher = new PredictBatcher(ops.instrumentClassify(engine), opts.batcher);
  const app = createApp({
    engine,
    batcher,
    queue,
    limits,
    readRoots,
    mode,
    isReady: () => ready,
    isStarting: () => !opened,
    redisOutage: () => redisOutage?.state ?? null,
    log,
    ops,
  });
  const server = http.createServer(app);
  // Longer than the usual 60 s of load balancers and clients' pools, so that the server is
  // not the side that closes an idle kept-alive connection just as a request arrives.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  // No cap on a whole request's time (Node's default cuts at 300 s, which would cut a large cache
  // import): a body is instead held to a minimum rate (http/limits.ts minimumBodyRate).
  server.requestTimeout = 0;
  const bindHost = ops.bindHost(opts.host); // loopback only without API keys
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, bindHost, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await engine.advertise(opts.advertiseUrl ?? process.env.CACHET_ADVERTISE_URL ?? `http://${os.hostname()}:${port}`);
  const caches = await engine.open();
  opened = true;
  const restored = await embeddedQueue?.restore(); // the caches are open: interrupted jobs go on
  if (restored?.resumed) logger.info({ jobs: restored.resumed }, `resuming ${restored.resumed} job(s) a stop interrupted`);
  evalWorker?.run().catch((err: Error) => logger.error({ err }, `eval worker: ${err.message}`));
  ready = true;
  const host = bindHost.includes(':') ? `[${bindHost}]` : bindHost;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    engine,
    batcher,
    queue,
    caches,
    logger,
    ops,
    app,
    // In this order: /readyz answers 503 at once (load balancers drain); the server takes no new
    // connection and answers the requests in flight; the jobs stop; the engine snapshots every cache.
    close: () =>
      (closing ??= (async () => {
        ready = false;
        logger.info('stopping: finishing the requests in flight, then snapshotting every cache');
        await ops.closeServer(server, { drainMs: opts.drainDelayMs ?? 0, timeoutMs: opts.shutdownTimeoutMs ?? 30_000 });
        abortLayerJobs(); // a layers job may run for hours: stop it, BullMQ retries it elsewhere
        await evalWorker?.close();
        await queue.close();
        await engine.close();
        await engine.terminate();
        redis?.disconnect();
        logger.info('stopped');
      })()),
  };
}

/** The replicas' settings from the environment (CACHET_SNAPSHOT_EVERY, CACHET_LOG_KEEP, CACHET_REPLICA_TTL_MS). */
function replicationFromEnv(): Partial<EngineOptions> {
  const read = (name: string, min: number): number | undefined => {
    const raw = process.env[name];
    if (raw === undefined || raw === '') return undefined;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`${name}=${raw}: expected a whole number ≥ ${min}`);
    return n;
  };
  const out: Partial<EngineOptions> = {};
  const every = read('CACHET_SNAPSHOT_EVERY', 1);
  const keep = read('CACHET_LOG_KEEP', 0);
  const ttl = read('CACHET_REPLICA_TTL_MS', 1000);
  if (every !== undefined) out.snapshotEvery = every;
  if (keep !== undefined) out.logKeep = keep;
  if (ttl !== undefined) out.replicaTtlMs = ttl;
  return out;
}
