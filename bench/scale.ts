// A 1,000,000-item cache on one machine (issue 4): realistic synthetic keys with the
// statistics of the real model's keys, built through the cache's own key log and index,
// then served by the real service and measured over HTTP.
//
//   npm run bench:scale -- [--items 1000000] [--layer flatten_1] [--data samples/cifar10/cache]
//
// Synthetic item = the real key of a random image of its class, jittered per dimension with
// the class's own spread (like an augmented view), clamped at 0 (the layers are ReLU outputs)
// and L2-normalised. Written straight into the cache's key log; the service replays it into
// hnsw on start (that is the build), then serves predictions of real held-out images.
import { parseArgs } from 'node:util';
import path from 'node:path';
import os from 'node:os';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { KeyExtractor } from '../src/model/extractor.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import { resolveSource } from '../src/jobs/sources.js';
import { forEachBatch } from '../src/jobs/pipeline.js';
import { CacheDefinitionSchema } from '../src/cache/definition.js';
import { FileDefinitions } from '../src/engine/definitions.js';
import { FileKeyLog } from '../src/keylog/file-log.js';
import { l2NormaliseRows } from '../src/cache/math.js';
import { startService } from '../src/api/service.js';

const { values: args } = parseArgs({
  options: {
    items: { type: 'string', default: '1000000' },
    layer: { type: 'string', default: 'flatten_1' },
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
const extractor = await KeyExtractor.create(model, spec, [args.layer!]);
const D = extractor.keyDimension;
const C = extractor.numClasses;

// 1. Real keys of the seed images, per class.
const seeds = await resolveSource({ type: 'folder', path: path.resolve(args.data!) }, { classes: spec.classes, requireLabels: true });
const byClass: Float32Array[][] = Array.from({ length: C }, () => []);
await forEachBatch(seeds, { spec, flip: true, batchSize: 128, limitInputPixels: 1e7 }, async (b) => {
  const r = await extractor.run(b.tensor, b.items.length);
  b.items.forEach((it, i) => byClass[it.label!].push(r.keys.slice(i * D, (i + 1) * D)));
}, () => {});
const spread = byClass.map((keys) => {
  const mean = new Float64Array(D), sq = new Float64Array(D);
  for (const k of keys) for (let j = 0; j < D; j++) (mean[j] += k[j]), (sq[j] += k[j] * k[j]);
  return Float32Array.from(mean, (m, j) => Math.sqrt(Math.max(0, sq[j] / keys.length - (m / keys.length) ** 2)));
});
log(`${seeds.length * 2} seed keys (${D}-d, layer ${args.layer}) from ${args.data}`);

// 2. N synthetic items into the cache's key log.
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'cachet-scale-'));
const definition = CacheDefinitionSchema.parse({ name: 'scale', model, keyLayers: [args.layer], theta: 50, lambda: 0.5, index: { type: 'hnsw' } });
await new FileDefinitions(dataDir).create(definition);
const keyLog = await FileKeyLog.open(path.join(dataDir, 'scale', 'keylog.bin'), D);
let seed = 12345;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const gaussian = () => Math.sqrt(-2 * Math.log(random() + 1e-12)) * Math.cos(2 * Math.PI * random());
let t = performance.now();
const BATCH = 10_000;
for (let start = 0; start < N; start += BATCH) {
  const n = Math.min(BATCH, N - start);
  const keys = new Float32Array(n * D);
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const label = (start + i) % C;
    const base = byClass[label][Math.floor(random() * byClass[label].length)];
    for (let j = 0; j < D; j++) keys[i * D + j] = Math.max(0, base[j] + 0.5 * spread[label][j] * gaussian());
    labels.push(label);
  }
  l2NormaliseRows(keys, n, D);
  await keyLog.append(labels.map((label, i) => ({ id: `synthetic-${start + i}`, label, key: keys.subarray(i * D, (i + 1) * D) })));
}
await keyLog.close();
log(`wrote ${N} synthetic items to the key log in ${secs(t)} s`);

// 3. The service replays the log into hnsw (the build), then serves.
const rssBefore = process.memoryUsage().rss;
t = performance.now();
const service = await startService({ port: 0, host: '127.0.0.1', dataDir });
const buildS = secs(t);
const info = await (await fetch(`${service.url}/v1/caches/scale`)).json() as { size: number; index: { type: string; params: Record<string, number> } };
const rssAfter = process.memoryUsage().rss;
log(`service up with ${info.size} items (${info.index.type}) after ${buildS} s`);

// 4. Single-image predicts of real held-out images, sequential.
const queries = readdirSync(path.resolve(args.queries!)).flatMap((c) => readdirSync(path.join(path.resolve(args.queries!), c)).map((f) => path.join(path.resolve(args.queries!), c, f)));
const latencies: number[] = [];
for (let i = 0; i < Number(args.requests); i++) {
  const image = readFileSync(queries[i % queries.length]).toString('base64');
  const t0 = performance.now();
  const res = await fetch(`${service.url}/v1/caches/scale/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image, neighbours: 5 }) });
  await res.json();
  latencies.push(performance.now() - t0);
}
latencies.sort((a, b) => a - b);
const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(2);
await service.close();
if (!args.keep) rmSync(dataDir, { recursive: true, force: true });

const perItem = (rssAfter - rssBefore) / info.size;
console.log(`\n${info.size} items, ${D}-d keys (layer ${args.layer}), hnsw ${JSON.stringify(info.index.params)}; ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, load ${os.loadavg()[0].toFixed(1)}`);
console.log(`  build (service start: log replay into hnsw)   ${buildS} s`);
console.log(`  resident memory of the service's cache        ${((rssAfter - rssBefore) / 2 ** 20).toFixed(0)} MiB  (${perItem.toFixed(0)} bytes per item; process RSS ${(rssAfter / 2 ** 30).toFixed(2)} GiB)`);
console.log(`  predict, 1 image per request, sequential      p50 ${q(0.5)} ms   p99 ${q(0.99)} ms   (${latencies.length} requests)`);
