// Benchmark of sharded caches (issue 18), with real processes on a 3-master Redis Cluster of its
// own: the same images in a cache of 1, 2 and 4 shards, each shard held by one api replica of its
// own, all on this machine (so the fan-out's cost shows, not the gain of more machines). For each:
// single-image predict latency and throughput of requests of 64 images (2 clients) through
// replica 0, which asks the others; and each replica's memory (RSS, once it holds its shard) against
// the unsharded one's.
// Prints figures; it asserts nothing.
//
//   node --import tsx bench/shards.ts [--images 3000] [--queries 300] [--shards 1,2,4] [--index hnsw|exact] [--data <dir>]
//
// --data: a folder with cache/ and heldout/ (the default, samples/cifar10), or one with the
// manifests cache-45k.csv and val-5k.csv (e.g. ../shared/datasets/cifar10).
import path from 'node:path';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { startRedisCluster } from '../test/redis-harness.js';
import { finished, startApi, startWorker, stop, until, type Proc } from '../test/distributed-harness.js';
import { call, RESNET, SAMPLE, tempDir } from '../test/harness.js';
import { balanced, fmt, listFolder, listManifest, printTable, type Img } from './common.js';

const { values: args } = parseArgs({
  options: {
    images: { type: 'string', default: '3000' },
    queries: { type: 'string', default: '300' },
    shards: { type: 'string', default: '1,2,4' },
    index: { type: 'string', default: 'hnsw' },
    data: { type: 'string', default: SAMPLE },
  },
});

const manifests = existsSync(path.join(args.data, 'cache-45k.csv'));
const cacheImgs = balanced(
  manifests ? await listManifest(path.join(args.data, 'cache-45k.csv')) : await listFolder(path.join(args.data, 'cache')),
  Number(args.images),
);
const queryImgs = balanced(manifests ? await listManifest(path.join(args.data, 'val-5k.csv')) : await listFolder(path.join(args.data, 'heldout')), 640);
const queryB64 = queryImgs.map((q) => readFileSync(q.path).toString('base64'));

async function manifestOf(imgs: Img[]): Promise<string> {
  const file = path.join(tempDir('cachet-bench-shards-'), 'items.csv');
  await fs.writeFile(file, `path,label,id\n${imgs.map((m, i) => `${m.path},${m.label},item-${i}`).join('\n')}\n`);
  return file;
}

const rssMb = (p: Proc) => {
  const status = readFileSync(`/proc/${p.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
};

const cluster = await startRedisCluster(3);
const manifest = await manifestOf(cacheImgs);
const rows: string[][] = [];
let baseline: { p50: number; perSec: number; rss: number } | null = null;
try {
  for (const S of args.shards.split(',').map(Number)) {
    const replicas = await Promise.all(
      Array.from({ length: S }, (_, s) => startApi(cluster, tempDir(), `bench-shards-${S}-${s}`, S > 1 ? { CACHET_SHARDS: String(s) } : {})),
    );
    const worker = startWorker(cluster, `bench-shards-${S}-w`);
    const front = replicas[0];
    const name = `bench${S}`;
    try {
      const created = await call(front.url!, 'POST', '/v1/caches', {
        name,
        model: RESNET,
        keyLayers: ['activation_18'],
        index: { type: args.index },
        shards: S,
      });
      if (created.status !== 201) throw new Error(JSON.stringify(created.body));
      const t0 = performance.now();
      const job = await call(front.url!, 'POST', `/v1/caches/${name}/index-jobs`, { source: { type: 'manifest', path: manifest } });
      if ((await finished(front, job.body.id)).state !== 'completed') throw new Error('the index job failed');
      await until(async () => (await call(front.url!, 'GET', `/v1/caches/${name}`)).body.size === cacheImgs.length, 'indexed', 600_000);
      await until(async () => {
        type Held = { log: { lag: number } | null };
        const lags = await Promise.all(replicas.map(async (r) => ((await call(r.url!, 'GET', '/readyz')).body.caches as Held[]).filter((c) => c.log)));
        return lags.every((cs) => cs.length > 0 && cs.every((c) => c.log!.lag === 0));
      }, 'replicas caught up');
      const indexS = (performance.now() - t0) / 1000;
      const rss = replicas.map(rssMb); // holding the cache, before the requests' own allocations

      const single: number[] = [];
      for (let i = 0; i < Number(args.queries); i++) {
        const t = performance.now();
        const r = await call(front.url!, 'POST', `/v1/caches/${name}/predict`, { image: queryB64[i % queryB64.length] });
        if (r.status !== 200) throw new Error(JSON.stringify(r.body));
        single.push(performance.now() - t);
      }
      single.sort((a, b) => a - b);
      const p50 = single[Math.floor(single.length / 2)];
      const p99 = single[Math.floor(single.length * 0.99)];

      const batches = 10; // per client, 64 images each
      const t1 = performance.now();
      await Promise.all(
        [0, 1].map(async (c) => {
          for (let b = 0; b < batches; b++) {
            const images = Array.from({ length: 64 }, (_, i) => queryB64[(c * 320 + b * 64 + i) % queryB64.length]);
            const r = await call(front.url!, 'POST', `/v1/caches/${name}/predict`, { images });
            if (r.status !== 200) throw new Error(JSON.stringify(r.body));
          }
        }),
      );
      const perSec = (2 * batches * 64) / ((performance.now() - t1) / 1000);
      const maxRss = Math.max(...rss);
      const frontAfter = rssMb(front);
      baseline ??= { p50, perSec, rss: maxRss };
      rows.push([
        String(S),
        fmt(indexS, 1),
        fmt(p50, 1),
        fmt(p99, 1),
        fmt(p50 / baseline.p50),
        fmt(perSec, 0),
        fmt(perSec / baseline.perSec),
        rss.map((m) => fmt(m, 0)).join(' / '),
        fmt(maxRss / baseline.rss),
        fmt(frontAfter, 0),
      ]);
    } finally {
      await Promise.all([...replicas, worker].map((p) => stop(p, 'SIGKILL')));
    }
  }
} finally {
  await cluster.destroy();
}

printTable(
  `Sharded caches: ${cacheImgs.length} items (${args.index}, activation_18), ${args.queries} single-image predicts and 2 clients × 10 requests of 64 through replica 0; one replica per shard, all on this machine`,
  [
    'shards',
    'index s',
    'single p50 ms',
    'p99 ms',
    '× 1 shard',
    'images/s (64s)',
    '× 1 shard',
    'RSS per replica MB',
    'max RSS × 1 shard',
    'replica 0 after requests MB',
  ],
  rows,
);
