// A 1,000,000-item cache on one machine (issue 4): realistic synthetic keys with the
// statistics of the real model's keys, built through the cache's own key log and index,
// then served by the real service and measured over HTTP.
//
//   npm run bench:scale -- [--items 1000000] [--layers flatten_1] [--data samples/cifar10/cache]
//   npm run bench:scale -- --layers activation_14,activation_16,activation_18 --reduce pca --search-dim 128
//
// Full keys (--reduce none): synthetic item = the real key of a random image of its class,
// jittered per dimension with the class's own spread (like an augmented view), clamped at 0
// (the layers are ReLU outputs) and L2-normalised.
// Reduced search keys (--reduce pca, for the paper's 12,288-d keys): the real keys of the seed
// images are the cache's first items (full records: the PCA sample), the PCA is fitted on them
// and stored where the cache keeps its projection, and each synthetic item is a seed's search
// key jittered with its class's spread in the search-key space: a reduced key-log record, as a
// writer logs once the projection exists (no re-ranking: 1M float16 full keys of 12,288 floats
// would be 24.5 GB).
// Written straight into the cache's key log; the service replays it into hnsw on start (that
// is the build), then serves predictions of real held-out images.
import { parseArgs } from 'node:util';
import path from 'node:path';
import os from 'node:os';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { fitPca, type Projection } from '../src/index/projection.js';
import type { FullKeyRecord } from '../src/keylog/types.js';
import { KeyExtractor } from '../src/model/extractor.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import { resolveSource } from '../src/sources/sources.js';
import { forEachBatch } from '../src/jobs/pipeline.js';
import { CacheDefinitionSchema } from '../src/cache/definition.js';
import { FileDefinitions } from '../src/engine/definitions.js';
import { FileKeyLog } from '../src/keylog/file-log.js';
import { l2NormaliseRows } from '../src/math/cache-model.js';
import { startService } from '../src/server.js';
import { createLogger } from '../src/util/logging.js';

const { values: args } = parseArgs({
  options: {
    items: { type: 'string', default: '1000000' },
    layers: { type: 'string', default: 'flatten_1' },
    reduce: { type: 'string', default: 'none' },
    'search-dim': { type: 'string', default: '128' },
    data: { type: 'string', default: 'samples/cifar10/cache' },
    queries: { type: 'string', default: 'samples/cifar10/heldout' },
    model: { type: 'string', default: 'models/cifar10-resnet20.onnx' },
    requests: { type: 'string', default: '500' },
    keep: { type: 'boolean', default: false },
  },
});
const N = Number(args.items);
const log = (s: string) => process.stderr.write(s + '\n');
const secs = (t: number) => ((performance.now() - t) / 1000).toFixed(1);
const model = path.resolve(args.model!);
const spec = await loadModelSpec(model);
const layers = args.layers!.split(',');
const reduce = args.reduce === 'pca';
if (!['none', 'pca'].includes(args.reduce!)) throw new Error('--reduce is none or pca');
const extractor = await KeyExtractor.create(model, spec, layers);
const D = extractor.keyDimension;
const C = extractor.numClasses;

// 1. Real keys of the seed images, per class.
const seeds = await resolveSource({ type: 'folder', path: path.resolve(args.data!) }, { classes: spec.classes, requireLabels: true });
const byClass: Float32Array[][] = Array.from({ length: C }, () => []);
const seedRecords: FullKeyRecord[] = [];
await forEachBatch(
  seeds,
  { spec, flip: true, batchSize: 128, limitInputPixels: 1e7 },
  async (b) => {
    const r = await extractor.run(b.tensor, b.items.length);
    b.items.forEach((it, i) => {
      const key = r.keys.slice(i * D, (i + 1) * D);
      byClass[it.label!].push(key);
      seedRecords.push({ id: `seed-${it.id}`, label: it.label!, key });
    });
  },
  () => {},
);
log(`${seedRecords.length} seed keys (${D}-d, ${layers.join(' + ')}) from ${args.data}`);

// With a search key, synthetic items live in its space: project the seeds with a PCA fitted on them.
const d = reduce ? Number(args['search-dim']) : D;
let projection: Projection | null = null;
if (reduce) {
  const t0 = performance.now();
  const sample = new Float32Array(seedRecords.length * D);
  seedRecords.forEach((r, i) => sample.set(r.key, i * D));
  projection = await fitPca(sample, seedRecords.length, D, d, { seed: 0 });
  for (let c = 0; c < C; c++) {
    const all = new Float32Array(byClass[c].length * D);
    byClass[c].forEach((k, i) => all.set(k, i * D));
    const projected = await projection.project(all, byClass[c].length);
    byClass[c] = byClass[c].map((_, i) => projected.slice(i * d, (i + 1) * d));
  }
  log(`PCA ${D} → ${d} fitted on the ${seedRecords.length} seed keys in ${secs(t0)} s`);
}
const spread = byClass.map((keys) => {
  const mean = new Float64Array(d),
    sq = new Float64Array(d);
  for (const k of keys) {
    for (let j = 0; j < d; j++) {
      mean[j] += k[j];
      sq[j] += k[j] * k[j];
    }
  }
  return Float32Array.from(mean, (m, j) => Math.sqrt(Math.max(0, sq[j] / keys.length - (m / keys.length) ** 2)));
});

// 2. N synthetic items into the cache's key log.
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'cachet-scale-'));
const searchKey = reduce ? { reduce: 'pca', dimension: d, fitSample: seedRecords.length, rerank: false } : undefined;
const definition = CacheDefinitionSchema.parse({ name: 'scale', model, keyLayers: layers, theta: 50, lambda: 0.5, index: { type: 'hnsw' }, searchKey });
await new FileDefinitions(dataDir).create(definition);
const keyLog = await FileKeyLog.open(path.join(dataDir, 'scale', 'keylog.bin'), D);
if (projection) {
  // where the engine keeps a cache's projection (engine.ts, publishProjection): the service takes this one
  const dir = path.join(dataDir, 'scale', 'projection');
  mkdirSync(dir, { recursive: true });
  await projection.save(dir);
  await keyLog.append(seedRecords); // the cache's first items: the PCA sample, as full records
}
let seed = 12345;
const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const gaussian = () => Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(2 * Math.PI * random());
let t = performance.now();
const BATCH = 10_000;
for (let start = 0; start < N; start += BATCH) {
  const n = Math.min(BATCH, N - start);
  const keys = new Float32Array(n * d);
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const label = (start + i) % C;
    const base = byClass[label][Math.floor(random() * byClass[label].length)];
    for (let j = 0; j < d; j++) {
      const v = base[j] + 0.5 * spread[label][j] * gaussian();
      keys[i * d + j] = reduce ? v : Math.max(0, v); // full keys are ReLU outputs; PCA coordinates are signed
    }
    labels.push(label);
  }
  l2NormaliseRows(keys, n, d);
  const key = (i: number) => keys.subarray(i * d, (i + 1) * d);
  await keyLog.append(
    labels.map((label, i) => (reduce ? { id: `synthetic-${start + i}`, label, searchKey: key(i) } : { id: `synthetic-${start + i}`, label, key: key(i) })),
  );
}
const logBytes = statSync(path.join(dataDir, 'scale', 'keylog.bin')).size;
await keyLog.close();
log(`wrote ${N} synthetic items to the key log in ${secs(t)} s (${(logBytes / 2 ** 20).toFixed(0)} MiB)`);

// 3. The service replays the log into hnsw (the build), then serves.
const rssBefore = process.memoryUsage().rss;
t = performance.now();
const service = await startService({ port: 0, host: '127.0.0.1', dataDir, logger: createLogger({ level: process.env.LOG_LEVEL ?? 'warn' }) });
const buildS = secs(t);
const info = (await (await fetch(`${service.url}/v1/caches/scale`)).json()) as { size: number; index: { type: string; params: Record<string, number> } };
const rssAfter = process.memoryUsage().rss;
log(`service up with ${info.size} items (${info.index.type}) after ${buildS} s`);

// 4. Single-image predicts of real held-out images, sequential.
const queries = readdirSync(path.resolve(args.queries!)).flatMap((c) =>
  readdirSync(path.join(path.resolve(args.queries!), c)).map((f) => path.join(path.resolve(args.queries!), c, f)),
);
const latencies: number[] = [];
for (let i = 0; i < Number(args.requests); i++) {
  const image = readFileSync(queries[i % queries.length]).toString('base64');
  const t0 = performance.now();
  const res = await fetch(`${service.url}/v1/caches/scale/predict`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ image, neighbours: 5 }),
  });
  await res.json();
  latencies.push(performance.now() - t0);
}
latencies.sort((a, b) => a - b);
const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(2);
await service.close();
if (!args.keep) rmSync(dataDir, { recursive: true, force: true });

const perItem = (rssAfter - rssBefore) / info.size;
const keyText = reduce ? `${D}-d keys (${layers.join(' + ')}) searched by a ${d}-d PCA key, no re-ranking` : `${D}-d keys (${layers.join(' + ')})`;
console.log(
  `\n${info.size} items, ${keyText}, hnsw ${JSON.stringify(info.index.params)}; ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, load ${os.loadavg()[0].toFixed(1)}`,
);
console.log(`  key log on disk before the build               ${(logBytes / 2 ** 20).toFixed(0)} MiB  (${(logBytes / info.size).toFixed(0)} bytes per item)`);
console.log(`  build (service start: log replay into hnsw)   ${buildS} s`);
console.log(
  `  resident memory of the service's cache        ${((rssAfter - rssBefore) / 2 ** 20).toFixed(0)} MiB  (${perItem.toFixed(0)} bytes per item; process RSS ${(rssAfter / 2 ** 30).toFixed(2)} GiB)`,
);
console.log(`  predict, 1 image per request, sequential      p50 ${q(0.5)} ms   p99 ${q(0.99)} ms   (${latencies.length} requests)`);
