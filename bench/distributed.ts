// Benchmark of Cachet's distributed mode with real processes: a redis-server of its own,
// one api replica (`cachet serve --redis-url`) and `cachet worker` processes.
// Measures an index job's throughput with 1 and 2 workers (to the job completed and to
// the api replica having applied every record), the log-to-index lag during ingest
// (/readyz sampled every 100 ms), and the api's predict latency idle vs during ingest.
// Prints figures and ratios; it asserts nothing.
//
//   node --import tsx bench/distributed.ts [--images 2000] [--queries 300] [--layers activation_18]
//                    [--chunk-size 256] [--data <dir>] [--skip-unloaded] [--json]
//
// --data: a folder with cache/ and heldout/ (one subfolder per class), the default being
// samples/cifar10; or a folder with the manifests cache-45k.csv and val-5k.csv
// (e.g. ../shared/datasets/cifar10). Each set is made class-balanced by interleaving.
//
// Runs, each on a fresh hnsw cache (so no item is a duplicate), every image with its flip:
//   A  1 worker                                   (its cache is then the predict cache)
//   B  2 workers                                  (skipped with --skip-unloaded)
//   C  2 workers, while sequential predicts hit cache A on the api
// Workers are warmed up (model loaded) before they are timed.
import path from 'node:path';
import os from 'node:os';
import { spawn, ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, promises as fs } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { freePort, startRedis, TestRedis } from '../test/redis-harness.js';
import { queueNames } from '../src/redis/keys.js';
import { balanced, fmt, listFolder, listManifest, pct, printTable, type Img } from './common.js';
import { CachetClient } from '../src/cli/client.js';
import { withHugePages } from '../src/util/huge-pages.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = path.join(ROOT, 'src/cli/main.ts');
const MODEL = path.join(ROOT, 'models/cifar10-resnet20.onnx');
const SAMPLE_MS = 100; // /readyz and job polling period

const { values: flags } = parseArgs({
  options: {
    images: { type: 'string', default: '2000' },
    queries: { type: 'string', default: '300' },
    layers: { type: 'string', default: 'activation_18' },
    'chunk-size': { type: 'string', default: '256' },
    data: { type: 'string', default: path.join(ROOT, 'samples/cifar10') },
    'skip-unloaded': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const positiveInt = (name: string, v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
};
const opts = {
  images: positiveInt('images', flags.images),
  queries: positiveInt('queries', flags.queries),
  chunkSize: positiveInt('chunk-size', flags['chunk-size']),
  layers: flags.layers
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
  data: path.resolve(flags.data),
  skipUnloaded: flags['skip-unloaded'],
};

// ---------- helpers (as bench.ts) ----------

const now = () => performance.now();
function percentile(sortedMs: number[], p: number): number {
  return sortedMs[Math.min(sortedMs.length - 1, Math.max(0, Math.ceil((p / 100) * sortedMs.length) - 1))];
}
function stats(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), mean: s.reduce((a, b) => a + b, 0) / s.length, max: s[s.length - 1], n: s.length };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------- processes ----------

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachet-bench-dist-'));
const logDir = path.join(tmp, 'logs');
await fs.mkdir(logDir);

interface Proc {
  name: string;
  child: ChildProcess;
  url?: string;
  stopping?: boolean;
}
const procs: Proc[] = [];
let shuttingDown = false;
let childDied: string | null = null; // a child that exited while it was needed

function spawnCachet(name: string, args: string[]): Proc {
  const out = openSync(path.join(logDir, `${name}.log`), 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, stdio: ['ignore', out, out], env: withHugePages(process.env) });
  closeSync(out); // the child holds its own copy
  const proc: Proc = { name, child };
  procs.push(proc);
  child.once('exit', (code, signal) => {
    if (!shuttingDown && !proc.stopping) childDied ??= `${name} exited (code ${code}, signal ${signal}); log: ${path.join(logDir, `${name}.log`)}`;
  });
  return proc;
}

async function stopProc(p: Proc, graceMs = 10_000): Promise<void> {
  p.stopping = true;
  const { child } = p;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs: number, periodMs = SAMPLE_MS): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (childDied) throw new Error(childDied);
    if (shuttingDown) throw new Error('shutting down');
    if (await check().catch(() => false)) return;
    await sleep(periodMs);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; logs in ${logDir}`);
}

let redis: TestRedis | null = null;
let client: Redis | null = null;
let chunkQueue: Queue | null = null;

async function cleanup(): Promise<void> {
  shuttingDown = true;
  // startRedis leaves its directory (AOF, tens of MB here) behind: find it to remove it
  const redisDir = client ? ((await client.config('GET', 'dir').catch(() => [])) as string[])[1] : undefined;
  await chunkQueue?.close().catch(() => {});
  client?.disconnect();
  await Promise.all(procs.map((p) => stopProc(p)));
  await redis?.stop().catch(() => {});
  if (redisDir?.startsWith(path.join(os.tmpdir(), 'cachet-redis-'))) await fs.rm(redisDir, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping the workers, the api and redis-server…`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------- the api ----------

let API = '';
const api = <T = Record<string, unknown>>(method: string, route: string, body?: unknown) => new CachetClient(API).request<T>(method, route, body);
interface Job {
  id: string;
  state: string;
  failedReason: string | null;
  errorCount: number;
  errors: { id: string; error: string }[];
  progress: { done: number; total: number };
  result: { images: number; added: number; duplicates: number; failed: number; failedChunks: number; cacheSize: number } | null;
  finishedAt: string | null;
}
interface Ready {
  caches: { name: string; size: number | null; log: { appliedPosition: number; logEnd: number; lag: number } | null }[];
}
interface PredictAnswer {
  theta: number;
  lambda: number;
  cacheSize: number;
  predictions: { top: { label: number }[] }[];
}

// ---------- one index job, timed ----------

interface LagSample {
  t: number; // ms since submission, when the answer came
  ms: number; // how long /readyz took to answer
  lag: number;
  logEnd: number;
  size: number;
}

async function manifestFor(name: string, imgs: Img[]): Promise<string> {
  const file = path.join(tmp, `${name}.csv`);
  // ids r0 … r(n−1): distinct even when --images exceeds the sample and images repeat
  await fs.writeFile(file, ['path,label,id', ...imgs.map((img, i) => `${JSON.stringify(img.path)},${img.label},r${i}`)].join('\n') + '\n');
  return file;
}

async function createCache(name: string): Promise<void> {
  await api('POST', '/v1/caches', { name, model: MODEL, keyLayers: opts.layers, index: { type: 'hnsw' } });
}

async function indexRun(name: string, imgs: Img[], during?: (isDone: () => boolean) => Promise<void>) {
  const items = 2 * imgs.length;
  await createCache(name);
  const manifest = await manifestFor(name, imgs);
  const timeoutMs = 120_000 + 300 * imgs.length;

  const t0 = Date.now();
  const submitted = await api<Job>('POST', `/v1/caches/${name}/index-jobs`, { source: { type: 'manifest', path: manifest }, flip: true });
  let caughtUpAt = NaN;
  let job: Job = submitted;
  const samples: LagSample[] = [];

  const pollJob = until(
    async () => {
      job = await api<Job>('GET', `/v1/jobs/${submitted.id}`);
      if (job.state === 'failed') throw new Error(`index job of ${name} failed: ${job.failedReason}`);
      // (GET /v1/jobs can say "completed" with result and finishedAt still null: it reads the job before its state)
      return job.state === 'completed' && job.result !== null && job.finishedAt !== null;
    },
    `index job ${name}`,
    timeoutMs,
  );
  let failure: unknown = null;
  const sampleLag = (async () => {
    const end = Date.now() + timeoutMs;
    for (let next = Date.now(); Date.now() < end; next += SAMPLE_MS) {
      if (childDied) throw new Error(childDied);
      if (failure || shuttingDown) return;
      const asked = Date.now();
      const r = await api<Ready>('GET', '/readyz');
      const t = Date.now() - t0;
      const ms = Date.now() - asked;
      const c = r.caches.find((x) => x.name === name);
      if (c?.log) {
        samples.push({ t, ms, lag: c.log.lag, logEnd: c.log.logEnd, size: c.size ?? 0 });
        if (c.log.logEnd >= items && c.log.lag === 0 && c.size === items) {
          caughtUpAt = t;
          return;
        }
      }
      await sleep(Math.max(0, next + SAMPLE_MS - Date.now()));
    }
    throw new Error(`timed out waiting for the api to apply the log of ${name}; logs in ${logDir}`);
  })();
  const load = during?.(() => !Number.isNaN(caughtUpAt) || failure !== null || shuttingDown);
  const all = [pollJob, sampleLag, load];
  for (const p of all) p?.catch((err) => (failure ??= err)); // the first failure is the one reported
  await Promise.all(all);

  const result = job.result!;
  if (result.cacheSize !== items || job.errorCount > 0) {
    console.log(
      `\n  note: cache ${name} holds ${result.cacheSize} items, expected ${items} (${job.errorCount} errors${job.errors[0] ? `, e.g. ${job.errors[0].error}` : ''})`,
    );
  }
  const completedAt = Date.parse(job.finishedAt!) - t0; // BullMQ's timestamp of the parent's completion
  // The last append is the last thing a chunk does before BullMQ marks it completed.
  const chunks = (await chunkQueue!.getJobs(['completed'], 0, -1)).filter((c) => c.data?.cache === name);
  const lastAppendAt = Math.max(...chunks.map((c) => c.finishedOn ?? NaN)) - t0;
  const workers = new Set(chunks.map((c) => c.processedBy)).size;
  // lag while ingesting: from the first record in the log until lag 0
  const ingest = samples.filter((s) => s.logEnd > 0);
  const lags = ingest.map((s) => s.lag);
  // /readyz answers late while the api is busy, so samples are uneven: weight each by the time to the next
  let weighted = 0;
  for (let i = 0; i + 1 < ingest.length; i++) weighted += ingest[i].lag * (ingest[i + 1].t - ingest[i].t);
  const span = ingest.length > 1 ? ingest[ingest.length - 1].t - ingest[0].t : 0;
  return {
    images: imgs.length,
    items,
    cacheSize: result.cacheSize,
    chunks: chunks.length,
    workersThatTookChunks: workers,
    completedMs: completedAt,
    caughtUpMs: caughtUpAt,
    lastAppendMs: lastAppendAt,
    endOfJobLagMs: caughtUpAt - completedAt,
    lastAppendToLag0Ms: caughtUpAt - lastAppendAt,
    lag: {
      samples: lags.length,
      max: Math.max(0, ...lags),
      mean: lags.length ? lags.reduce((a, b) => a + b, 0) / lags.length : 0,
      timeWeightedMean: span > 0 ? weighted / span : 0,
      readyzMs: ingest.length ? stats(ingest.map((s) => s.ms)) : null,
    },
  };
}
type RunResult = Awaited<ReturnType<typeof indexRun>>;

// ---------- predict ----------

let queryB64: string[] = [];
let queryLabels: number[] = [];

async function predictOne(cache: string, i: number) {
  const q = i % queryB64.length;
  const t0 = now();
  const answer = await api<PredictAnswer>('POST', `/v1/caches/${cache}/predict`, { image: queryB64[q] });
  return { ms: now() - t0, wrong: answer.predictions[0].top[0].label !== queryLabels[q], answer };
}

async function predictSequential(cache: string, shouldStop: (i: number) => boolean) {
  const t0 = Date.now();
  let slowest = { ms: -1, atMs: NaN }; // the slowest request, and when it started (ms after the first)
  const ms: number[] = [];
  let wrong = 0;
  let answer: PredictAnswer | null = null;
  for (let i = 0; !shouldStop(i); i++) {
    if (childDied) throw new Error(childDied);
    const at = Date.now() - t0;
    const r = await predictOne(cache, i);
    if (r.ms > slowest.ms) slowest = { ms: r.ms, atMs: at };
    ms.push(r.ms);
    if (r.wrong) wrong++;
    answer = r.answer;
  }
  return { ...stats(ms), maxAtMs: slowest.atMs, error: wrong / ms.length, theta: answer?.theta, lambda: answer?.lambda, cacheSize: answer?.cacheSize };
}

// ---------- main ----------

const results: {
  runs: Record<string, RunResult>;
  predict: { idle?: Awaited<ReturnType<typeof predictSequential>>; duringIngest?: Awaited<ReturnType<typeof predictSequential>> };
} = { runs: {}, predict: {} };
const started = Date.now();
let cacheImgs: Img[] = [];
let queryImgs: Img[] = [];
let failed = false;
try {
  // data
  const manifestMode = existsSync(path.join(opts.data, 'cache-45k.csv'));
  const allCache = manifestMode ? await listManifest(path.join(opts.data, 'cache-45k.csv')) : await listFolder(path.join(opts.data, 'cache'));
  const allQueries = manifestMode ? await listManifest(path.join(opts.data, 'val-5k.csv')) : await listFolder(path.join(opts.data, 'heldout'));
  cacheImgs = balanced(allCache, opts.images);
  if (cacheImgs.length < opts.images) {
    console.log(`note: ${opts.data} has ${allCache.length} cache images; repeating them (with distinct ids) to make ${opts.images}`);
    cacheImgs = Array.from({ length: opts.images }, (_, i) => cacheImgs[i % cacheImgs.length]);
  }
  queryImgs = balanced(allQueries, opts.queries);
  queryB64 = (await Promise.all(queryImgs.map((i) => fs.readFile(i.path)))).map((b) => b.toString('base64'));

  console.log(`Cachet distributed benchmark — ${path.basename(MODEL)}, key layers ${opts.layers.join(',')}, hnsw caches`);
  console.log(
    `index job: ${cacheImgs.length} images + flips = ${2 * cacheImgs.length} items, chunks of ${opts.chunkSize}; predict queries: ${queryImgs.length} images; ` +
      `data: ${path.relative(process.cwd(), opts.data) || '.'}; ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}`,
  );

  // redis-server, the api replica, worker 1
  process.stdout.write('starting redis-server, the api replica and worker 1… ');
  redis = await startRedis();
  client = new Redis(redis.url, { maxRetriesPerRequest: null });
  chunkQueue = new Queue(queueNames.index, { connection: client });
  const port = await freePort();
  const apiProc = spawnCachet('api', [
    'serve',
    '--port',
    String(port),
    '--data-dir',
    path.join(tmp, 'api-data'),
    '--redis-url',
    redis.url,
    '--chunk-size',
    String(opts.chunkSize),
  ]);
  apiProc.url = API = `http://127.0.0.1:${port}`;
  const w1 = spawnCachet('worker-1', ['worker', '--redis-url', redis.url]);
  await until(async () => (await fetch(`${API}/readyz`)).status === 200, 'the api replica to be ready', 120_000);
  console.log('done');
  const classes = (
    await api<{ classes: string[] }>('POST', '/v1/caches', { name: 'bench-warmup', model: MODEL, keyLayers: opts.layers, index: { type: 'hnsw' } })
  ).classes;
  const classIndex = new Map(classes.map((c, i) => [c, i]));
  queryLabels = queryImgs.map((img) => classIndex.get(img.label) ?? -1);

  /** Warm a worker up (model loaded, first batch run) with tiny chunks until it has taken one. */
  let warmups = 0;
  async function warmUp(p: Proc) {
    const name = `${os.hostname()}:${p.child.pid}`;
    await until(
      async () => {
        const items = cacheImgs.slice(0, 4).map((img, i) => ({ id: `w${warmups}-${i}`, label: img.label, path: img.path }));
        const added = await Promise.all(
          [0, 1, 2, 3].map((k) => chunkQueue!.add('chunk', { cache: 'bench-warmup', flip: true, items: items.map((it) => ({ ...it, id: `${it.id}-${k}` })) })),
        );
        warmups++;
        const done = await Promise.all(
          added.map(async (j) => {
            for (let t = 0; t < 600; t++) {
              const state = await j.getState();
              if (state === 'completed' || state === 'failed') return (await chunkQueue!.getJob(j.id!))?.processedBy;
              if (childDied) throw new Error(childDied);
              await sleep(100);
            }
            throw new Error(`warm-up chunk ${j.id} did not finish in 60 s; logs in ${logDir}`);
          }),
        );
        return done.includes(name);
      },
      `${p.name} to take a warm-up chunk`,
      180_000,
      0,
    );
  }
  process.stdout.write('warming worker 1 up… ');
  await warmUp(w1);
  console.log('done');

  // A: 1 worker
  process.stdout.write(`run A, 1 worker: indexing… `);
  results.runs.oneWorker = await indexRun('bench-1w', cacheImgs);
  console.log(`${fmt(results.runs.oneWorker.caughtUpMs / 1000, 1)} s`);

  process.stdout.write('starting worker 2 and warming it up… ');
  const w2 = spawnCachet('worker-2', ['worker', '--redis-url', redis.url]);
  await warmUp(w2);
  console.log('done');

  // B: 2 workers, nothing else
  if (!opts.skipUnloaded) {
    process.stdout.write(`run B, 2 workers: indexing… `);
    results.runs.twoWorkers = await indexRun('bench-2w', cacheImgs);
    console.log(`${fmt(results.runs.twoWorkers.caughtUpMs / 1000, 1)} s`);
  }

  // predict on cache A, idle (both workers running but without work)
  process.stdout.write(`predict on cache A, idle: ${queryImgs.length} sequential requests… `);
  for (let i = 0; i < 10; i++) await predictOne('bench-1w', i); // warm-up
  results.predict.idle = await predictSequential('bench-1w', (i) => i >= queryImgs.length);
  console.log('done');

  // C: 2 workers while predicting on cache A
  process.stdout.write(`run C, 2 workers + sequential predicts on cache A: indexing… `);
  results.runs.twoWorkersUnderPredict = await indexRun('bench-2w-load', cacheImgs, async (isDone) => {
    results.predict.duringIngest = await predictSequential('bench-1w', () => isDone());
  });
  console.log(`${fmt(results.runs.twoWorkersUnderPredict.caughtUpMs / 1000, 1)} s`);
} catch (err) {
  failed = true;
  console.error(`\nbenchmark failed: ${(err as Error).stack ?? err}\nlogs of the api and workers: ${logDir}`);
  process.exitCode = 1;
} finally {
  process.stdout.write('stopping the workers, the api and redis-server… ');
  await cleanup();
  console.log('done');
  if (!failed) await fs.rm(tmp, { recursive: true, force: true });
}

// ---------- report ----------

if (!failed) {
  const { runs, predict } = results;
  const A = runs.oneWorker;
  const B = runs.twoWorkers;
  const C = runs.twoWorkersUnderPredict;
  const rate = (count: number, ms: number) => (1000 * count) / ms;
  const runRows: [string, RunResult | undefined][] = [
    ['A  1 worker', A],
    ['B  2 workers', B],
    ['C  2 workers + predicts on the api', C],
  ];
  const present = runRows.filter((r): r is [string, RunResult] => r[1] !== undefined);

  printTable(
    `1. Index job of ${A.images} images (+ flips = ${A.items} items), ${A.chunks} chunks; time from submission`,
    ['run', 'to job done s', 'images/s', 'items/s', 'to api lag 0 s', 'images/s', 'items/s', 'workers used'],
    present.map(([label, r]) => [
      label,
      fmt(r.completedMs / 1000),
      fmt(rate(r.images, r.completedMs), 0),
      fmt(rate(r.items, r.completedMs), 0),
      fmt(r.caughtUpMs / 1000),
      fmt(rate(r.images, r.caughtUpMs), 0),
      fmt(rate(r.items, r.caughtUpMs), 0),
      String(r.workersThatTookChunks),
    ]),
  );
  const ratios = {
    twoOverOneToJobDone: B ? A.completedMs / B.completedMs : NaN,
    twoOverOneToLag0: B ? A.caughtUpMs / B.caughtUpMs : NaN,
    twoUnderPredictOverOneToJobDone: A.completedMs / C.completedMs,
    twoUnderPredictOverOneToLag0: A.caughtUpMs / C.caughtUpMs,
    predictP50LoadOverIdle: predict.duringIngest!.p50 / predict.idle!.p50,
    predictP99LoadOverIdle: predict.duringIngest!.p99 / predict.idle!.p99,
  };
  if (B) console.log(`  throughput 2 workers / 1 worker: ${fmt(ratios.twoOverOneToJobDone)}× to job done, ${fmt(ratios.twoOverOneToLag0)}× to api lag 0`);
  console.log(
    `  throughput 2 workers with predicts on the api / 1 worker: ${fmt(ratios.twoUnderPredictOverOneToJobDone)}× to job done, ${fmt(ratios.twoUnderPredictOverOneToLag0)}× to api lag 0`,
  );
  console.log(`  (${os.cpus().length} cores shared by redis-server, the api and the workers: a second worker cannot double throughput here)`);

  printTable(
    `2. Log-to-index lag of the api replica (/readyz every ${SAMPLE_MS} ms, from the first record in the log to lag 0)`,
    ['run', 'max lag', 'mean lag', 'time-weighted mean', 'samples', 'readyz p50 ms', 'readyz max ms', 'job done → lag 0 s', 'last append → lag 0 s'],
    present.map(([label, r]) => [
      label,
      String(r.lag.max),
      fmt(r.lag.mean, 0),
      fmt(r.lag.timeWeightedMean, 0),
      String(r.lag.samples),
      fmt(r.lag.readyzMs?.p50 ?? NaN, 0),
      fmt(r.lag.readyzMs?.max ?? NaN, 0),
      fmt(r.endOfJobLagMs / 1000),
      fmt(r.lastAppendToLag0Ms / 1000),
    ]),
  );
  console.log(
    `  lag in records. Last append = the last chunk's completion (BullMQ finishedOn). A sample is taken ${SAMPLE_MS} ms after the previous one was asked for,\n` +
      `  or when it answers if later: fewer samples than the ingest time / ${SAMPLE_MS} ms means /readyz itself was slow (the api replica was busy).\n` +
      `  Job done comes after the parent job runs, so it can come after lag 0.`,
  );

  const p = predict;
  printTable(
    `3. Predict on cache A (${p.idle!.cacheSize} items, θ = ${p.idle!.theta}, λ = ${p.idle!.lambda}), one image per request, sequential, JSON base64`,
    ['when', 'requests', 'p50 ms', 'p99 ms', 'mean ms', 'max ms', 'max at s', 'top-1 error'],
    [
      [
        'idle (workers running, no job)',
        String(p.idle!.n),
        fmt(p.idle!.p50),
        fmt(p.idle!.p99),
        fmt(p.idle!.mean),
        fmt(p.idle!.max),
        fmt(p.idle!.maxAtMs / 1000),
        pct(p.idle!.error),
      ],
      [
        'during run C (2 workers indexing)',
        String(p.duringIngest!.n),
        fmt(p.duringIngest!.p50),
        fmt(p.duringIngest!.p99),
        fmt(p.duringIngest!.mean),
        fmt(p.duringIngest!.max),
        fmt(p.duringIngest!.maxAtMs / 1000),
        pct(p.duringIngest!.error),
      ],
    ],
  );
  if (p.duringIngest!.n < 100) console.log(`  note: with ${p.duringIngest!.n} requests during ingest, p99 is the slowest request`);
  console.log(`  predict under load / idle: p50 ${fmt(ratios.predictP50LoadOverIdle)}×, p99 ${fmt(ratios.predictP99LoadOverIdle)}×`);
  console.log(`\ntotal run time ${fmt((Date.now() - started) / 1000, 1)} s`);

  if (flags.json) {
    console.log(
      JSON.stringify({
        config: {
          ...opts,
          cacheImages: cacheImgs.length,
          cacheItems: 2 * cacheImgs.length,
          queryImages: queryImgs.length,
          cores: os.cpus().length,
          sampleMs: SAMPLE_MS,
        },
        runs,
        predict,
        ratios,
      }),
    );
  }
}
