// `cachet worker`: takes chunk jobs (and finishes parent jobs) from BullMQ.
// Decoding runs on libuv's pool and inference on the engine thread, so this
// thread's event loop stays free to renew BullMQ's job locks.
import os from 'node:os';
import { Worker } from 'bullmq';
import { ReadRoots } from './sources/read-roots.js';
import { startEngine, engineLogTo } from './engine/client.js';
import { connectRedis, queuePrefix } from './redis/connection.js';
import { RedisOutage } from './redis/outage.js';
import { queueNames } from './redis/keys.js';
import { chunkProcessor, parentProcessor } from './queue/bullmq-processors.js';
import { DEFAULT_LIMIT_INPUT_PIXELS } from './preprocess/image.js';
import { createLogger, redactUrl, type Logger } from './util/logging.js';

export interface WorkerOptions {
  redisUrl: string;
  /** chunk jobs in hand at once */
  concurrency: number;
  batchSize?: number;
  /** BullMQ lock: a worker that dies loses its chunk to another after this long */
  lockDurationMs?: number;
  /** default: JSON lines on stdout at LOG_LEVEL */
  logger?: Logger;
}

export interface RunningWorker {
  /** stop taking jobs, finish the ones in hand, disconnect */
  close(): Promise<void>;
}

export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const logger = opts.logger ?? createLogger();
  const engine = startEngine({ role: 'worker', dataDir: 'indexes', redisUrl: opts.redisUrl }, engineLogTo(logger));
  await engine.open();
  const connection = connectRedis(opts.redisUrl);
  // the same read roots and URL prefixes as the api replicas (checked there at submission, here at open)
  const readRoots = ReadRoots.of(process.env.CACHET_READ_ROOTS).withUrls(process.env.CACHET_URL_PREFIXES);
  const settings = { batchSize: opts.batchSize ?? 64, limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS, readRoots };
  const lockDuration = opts.lockDurationMs ?? 30_000;
  // A job records the name of the worker that processed it (job.processedBy).
  const name = `${os.hostname()}:${process.pid}`;
  const common = { connection, prefix: queuePrefix(connection), name, lockDuration, stalledInterval: lockDuration };
  const workers = [
    new Worker(queueNames.index, chunkProcessor(engine, settings), { ...common, concurrency: opts.concurrency }),
    new Worker(queueNames.jobs, parentProcessor(engine), { ...common, concurrency: 1 }),
  ];
  const outage = new RedisOutage(
    (level, msg) => logger[level]({ redis: redactUrl(opts.redisUrl) }, `cachet worker: ${msg}`),
    'no chunk is taken meanwhile',
    () => connection.ping(),
  );
  outage.watch(connection, (err) => logger.error({ err }, `cachet worker: redis: ${err.message}`));
  for (const w of workers) outage.watch(w, (err) => logger.error({ err }, `cachet worker: ${err.message}`));
  return {
    close: async () => {
      await Promise.all(workers.map((w) => w.close()));
      await engine.close();
      await engine.terminate();
      connection.disconnect();
    },
  };
}
