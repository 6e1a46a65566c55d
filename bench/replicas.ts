// Benchmark of replicas over the bounded key log (issue 13), with real processes: a redis-server
// of its own, api replica A, one worker, a PCA cache of the paper's keys (12,288-d → 128, re-ranked).
// Measures Redis's memory per item once the log is trimmed, predict latency on A while the cache
// is indexed (A snapshots every --every positions meanwhile), the time a new replica B takes to serve
// the whole cache from A's snapshot, and whether A killed and restarted predicts exactly as B.
// Prints figures; it asserts nothing.
//
//   node --import tsx bench/replicas.ts [--images 2000] [--queries 1000] [--every 10000] [--data <dir>]
//
// --data: a folder with cache/ and heldout/ (the default, samples/cifar10), or one with the
// manifests cache-45k.csv and val-5k.csv (e.g. ../shared/datasets/cifar10). Every image is
// indexed with its flip: --images 40000 makes an 80,000-item cache.
import path from 'node:path';
import os from 'node:os';
import { spawn, ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, promises as fs, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { freePort, startRedis } from '../test/redis-harness.js';
import { redisKeys } from '../src/redis/keys.js';
import { balanced, fmt, listFolder, listManifest, printTable } from './common.js';
import { CachetClient } from '../src/cli/client.js';
import { withHugePages } from '../src/util/huge-pages.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = path.join(ROOT, 'src/cli/main.ts');
const MODEL = path.join(ROOT, 'models/cifar10-resnet20.onnx');
const CACHE = 'paper';

const { values: flags } = parseArgs({
  options: {
    images: { type: 'string', default: '2000' },
    queries: { type: 'string', default: '1000' },
    every: { type: 'string', default: '10000' },
    data: { type: 'string', default: path.join(ROOT, 'samples/cifar10') },
  },
});
const n = (name: string, v: string) => {
  const x = Number(v);
  if (!Number.isInteger(x) || x < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return x;
};
const opts = { images: n('images', flags.images), queries: n('queries', flags.queries), every: n('every', flags.every), data: path.resolve(flags.data) };

const manifests = existsSync(path.join(opts.data, 'cache-45k.csv'));
const cacheImgs = balanced(await (manifests ? listManifest(path.join(opts.data, 'cache-45k.csv')) : listFolder(path.join(opts.data, 'cache'))), opts.images);
const queryImgs = balanced(await (manifests ? listManifest(path.join(opts.data, 'val-5k.csv')) : listFolder(path.join(opts.data, 'heldout'))), opts.queries);

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachet-bench-replicas-'));
const procs: ChildProcess[] = [];
const env = { ...withHugePages(process.env), CACHET_SNAPSHOT_EVERY: String(opts.every) };
const now = () => performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function spawnCachet(name: string, args: string[], extra: Record<string, string> = {}): ChildProcess {
  const out = openSync(path.join(tmp, `${name}.log`), 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, stdio: ['ignore', out, out], env: { ...env, ...extra } });
  closeSync(out);
  procs.push(child);
  return child;
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 3_600_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}; logs in ${tmp}`);
}

/** An api replica on `dir`; resolves with its URL and how long it took to answer /readyz 200. */
async function startApi(name: string, dir: string, redisUrl: string): Promise<{ url: string; child: ChildProcess; readyS: number }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const t0 = now();
  const child = spawnCachet(name, ['serve', '--port', String(port), '--data-dir', dir, '--redis-url', redisUrl], { CACHET_ADVERTISE_URL: url });
  await until(async () => (await fetch(`${url}/readyz`)).status === 200, `${name} ready`);
  return { url, child, readyS: (now() - t0) / 1000 };
}

const kill = (c: ChildProcess, signal: NodeJS.Signals = 'SIGKILL') =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => (c.once('exit', () => r()), c.kill(signal)));

const redis = await startRedis();
const client = new Redis(redis.url);
try {
  const a0 = await startApi('api-a', path.join(tmp, 'a'), redis.url);
  let A = a0.url;
  spawnCachet('worker', ['worker', '--redis-url', redis.url, '--concurrency', '1']);
  const api = (base: string) => new CachetClient(base);
  await api(A).request('POST', '/v1/caches', {
    name: CACHE,
    model: MODEL,
    keyLayers: ['activation_14', 'activation_16', 'activation_18'],
    index: { type: 'hnsw' },
    searchKey: { reduce: 'pca', dimension: 128 },
  });
  const baseline = await usedMemory(client);
  const manifest = path.join(tmp, 'cache.csv');
  await fs.writeFile(manifest, ['path,label,id', ...cacheImgs.map((img, i) => `${JSON.stringify(img.path)},${img.label},r${i}`)].join('\n') + '\n');
  const items = 2 * cacheImgs.length;

  // predict one image at a time on A while the cache is indexed
  const probe = { images: [readFileSync(queryImgs[0].path).toString('base64')] };
  const t0 = now();
  const job = await api(A).request<{ id: string }>('POST', `/v1/caches/${CACHE}/index-jobs`, { source: { type: 'manifest', path: manifest }, flip: true });
  let done = false;
  const latencies: number[] = [];
  const predicting = (async () => {
    while (!done) {
      const t = now();
      const r = await fetch(`${A}/v1/caches/${CACHE}/predict`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(probe),
      });
      await r.arrayBuffer();
      if (r.status === 200) latencies.push(now() - t);
      await sleep(50);
    }
  })();
  await until(async () => ['completed', 'failed'].includes((await api(A).request<{ state: string }>('GET', `/v1/jobs/${job.id}`)).state), 'the index job');
  await until(async () => (await api(A).request<{ size: number }>('GET', `/v1/caches/${CACHE}`)).size === items, 'A to apply every record');
  done = true;
  await predicting;
  const indexS = (now() - t0) / 1000;
  // steady state: A has written its last snapshot and the log is trimmed below it, keeping the floor
  const floor = Number(process.env.CACHET_LOG_KEEP ?? 1000);
  const lastBoundary = Math.floor(items / opts.every) * opts.every;
  await until(
    async () => Number(await client.get(redisKeys.base(CACHE))) >= Math.min(lastBoundary, items - floor),
    'the log trimmed to the last snapshot',
    300_000,
  );
  const memory = (await usedMemory(client)) - baseline;
  const [xlen, base, ids] = [
    await client.xlen(redisKeys.log(CACHE)),
    Number(await client.get(redisKeys.base(CACHE))),
    await client.scard(redisKeys.ids(CACHE)),
  ];

  // a new replica: starts from A's snapshot, replays the rest
  const b = await startApi('api-b', path.join(tmp, 'b'), redis.url);
  await until(async () => (await api(b.url).request<{ size: number }>('GET', `/v1/caches/${CACHE}`)).size === items, 'B to hold every item');
  const fromPeer = /started from (\S+)'s snapshot at log position (\d+)/.exec(readFileSync(path.join(tmp, 'api-b.log'), 'utf8'));

  // A killed and restarted from its own snapshot
  await kill(a0.child);
  const a1 = await startApi('api-a2', path.join(tmp, 'a'), redis.url);
  A = a1.url;
  await until(async () => (await api(A).request<{ size: number }>('GET', `/v1/caches/${CACHE}`)).size === items, 'A to hold every item again');
  let same = 0;
  let maxDiff = 0;
  for (let i = 0; i < queryImgs.length; i += 64) {
    const body = { images: queryImgs.slice(i, i + 64).map((img) => readFileSync(img.path).toString('base64')), topK: 10 };
    const [pa, pb] = await Promise.all(
      [A, b.url].map((u) => api(u).request<{ predictions: { top: { label: number; p: number }[] }[] }>('POST', `/v1/caches/${CACHE}/predict`, body)),
    );
    pa.predictions.forEach((p, j) => {
      const q = pb.predictions[j];
      const diff = Math.max(...p.top.map((t, k) => (t.label === q.top[k].label ? Math.abs(t.p - q.top[k].p) : Infinity)));
      maxDiff = Math.max(maxDiff, diff);
      if (diff === 0) same++;
    });
  }

  const sorted = [...latencies].sort((x, y) => x - y);
  const pctl = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
  console.log(
    `\nCachet replicas — ${items} items (${cacheImgs.length} images + flips) of ${opts.data}, paper keys → PCA 128 re-ranked, snapshots every ${opts.every}`,
  );
  printTable(
    'Redis and the key log after indexing',
    ['what', 'value'],
    [
      ['indexing (job + A applied everything)', `${fmt(indexS, 1)} s`],
      ['Redis used_memory above the empty cache', `${fmt(memory / 2 ** 20, 1)} MB`],
      ['  per item', `${fmt(memory / items / 1024, 2)} KB`],
      ['stream records kept (XLEN) / trimmed below', `${xlen} / ${base}`],
      ['ids in the idempotence set', String(ids)],
    ],
  );
  printTable(
    `Predict (1 image, sequential) on A while indexing: ${latencies.length} requests`,
    ['p50', 'p99', 'max'],
    [[`${fmt(pctl(50), 1)} ms`, `${fmt(pctl(99), 1)} ms`, `${fmt(sorted[sorted.length - 1], 1)} ms`]],
  );
  printTable(
    'Replicas',
    ['what', 'value'],
    [
      ['new replica B: start → /readyz 200', `${fmt(b.readyS, 1)} s (${fromPeer ? `from ${fromPeer[1]}'s snapshot at ${fromPeer[2]}` : 'replayed the log'})`],
      ['A killed, restarted → /readyz 200', `${fmt(a1.readyS, 1)} s`],
      [`identical predictions, A vs B (${queryImgs.length} images, top 10 p)`, `${same} / ${queryImgs.length} (max |Δp| ${maxDiff})`],
    ],
  );
} finally {
  await Promise.all(procs.map((c) => kill(c, 'SIGTERM')));
  client.disconnect();
  await redis.destroy();
  await fs.rm(tmp, { recursive: true, force: true });
}

async function usedMemory(c: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await c.info('memory'))![1]);
}
