// Entry point of a worker process (`cachet worker`, or `node dist/workers/index-worker.js`
// with REDIS_URL set): takes index chunks from BullMQ until SIGTERM, then finishes
// the chunks in hand and exits 0.
import { startWorker } from '../src/worker-process.js';
import { redactUrl } from '../src/util/logging.js';
import { closeOnSignals } from '../src/util/signals.js';

export async function runWorkerProcess(opts: { redisUrl: string; concurrency: number; lockDuration?: number }): Promise<void> {
  const worker = await startWorker({ redisUrl: opts.redisUrl, concurrency: opts.concurrency, lockDurationMs: opts.lockDuration });
  console.log(`cachet worker: taking index chunks from ${redactUrl(opts.redisUrl)} (concurrency ${opts.concurrency})`);
  closeOnSignals('cachet worker', () => worker.close());
}

// Run directly: node dist/workers/index-worker.js
if (import.meta.url === `file://${process.argv[1]}`) {
  const redisUrl = process.env.REDIS_URL;
  if (!redisUrl) {
    console.error('cachet worker: set REDIS_URL');
    process.exit(2);
  }
  await runWorkerProcess({
    redisUrl,
    concurrency: Number(process.env.CACHET_WORKER_CONCURRENCY ?? 1),
    lockDuration: Number(process.env.CACHET_LOCK_DURATION_MS ?? 30_000),
  });
}
