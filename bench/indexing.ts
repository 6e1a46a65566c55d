// Indexing against bare work (issue 15): the time `cachet serve` takes to index a PCA cache (the
// paper's: hnsw on a 128-d PCA key, float16 full keys for re-ranking) of a manifest's images with
// their mirror images, against bare decode + key extraction of the same images in this process
// (the job pipeline's decoding, onnxruntime's default session options, nothing stored). The service
// runs as a process of its own, with huge pages as the Dockerfile starts it. Prints figures and
// the ratio; asserts nothing.
//
//   npm run bench:indexing -- --data ../shared/datasets/cifar10 [--per-class 4500] [--search-dim 128]
//
// --data: a folder with cache-45k.csv; --per-class: the first N images of each class in it.
import { spawn } from 'node:child_process';
import { closeSync, openSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CachetClient } from '../src/cli/client.js';
import { forEachBatch } from '../src/jobs/pipeline.js';
import { KeyExtractor } from '../src/model/extractor.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import { DEFAULT_LIMIT_INPUT_PIXELS } from '../src/preprocess/image.js';
import { resolveSource } from '../src/sources/sources.js';
import { withHugePages } from '../src/util/huge-pages.js';
import { freePort } from '../test/redis-harness.js';
import { fmt, printTable } from './common.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values: o } = parseArgs({
  options: {
    data: { type: 'string', default: '../shared/datasets/cifar10' },
    'per-class': { type: 'string', default: '4500' },
    'search-dim': { type: 'string', default: '128' },
    layers: { type: 'string', default: 'activation_14,activation_16,activation_18' },
  },
});
const perClass = Number(o['per-class']);
if (!Number.isInteger(perClass) || perClass < 1) throw new Error(`--per-class must be a positive integer, got ${o['per-class']}`);
const MODEL = path.join(ROOT, 'models/cifar10-resnet20.onnx');
const layers = o.layers!.split(',');
const data = path.resolve(o.data!);
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachet-bench-indexing-'));

// the manifest: the first perClass rows of each class, paths made absolute
const [head, ...rows] = (await fs.readFile(path.join(data, 'cache-45k.csv'), 'utf8')).trim().split('\n');
const taken = new Map<string, number>();
const picked = rows.filter((row) => {
  const label = row.split(',')[1];
  const n = taken.get(label) ?? 0;
  taken.set(label, n + 1);
  return n < perClass;
});
const manifest = path.join(tmp, 'cache.csv');
await fs.writeFile(manifest, [head, ...picked.map((row) => `${path.join(data, row.split(',')[0])},${row.split(',').slice(1).join(',')}`)].join('\n') + '\n');
const images = picked.length;
console.log(`${images} images with their mirror images (${2 * images} items), ${layers.join('+')}, PCA-${o['search-dim']} + re-rank`);

// 1. bare: decode (the job pipeline) + extraction, nothing stored
const spec = await loadModelSpec(MODEL);
const extractor = await KeyExtractor.create(MODEL, spec, layers);
const items = await resolveSource({ type: 'manifest', path: manifest }, { classes: spec.classes, requireLabels: true });
let t = performance.now();
let extracted = 0;
await forEachBatch(
  items,
  { spec, flip: true, batchSize: 64, limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS },
  async (b) => void (extracted += (await extractor.run(b.tensor, b.items.length)).probs.length / spec.classes.length),
  () => {},
);
const bareS = (performance.now() - t) / 1000;
await extractor.release();

// 2. the service: a PCA cache indexed by an index job
const port = await freePort();
const log = openSync(path.join(tmp, 'service.log'), 'a');
const service = spawn(
  process.execPath,
  ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'serve', '--port', String(port), '--data-dir', path.join(tmp, 'indexes')],
  {
    cwd: ROOT,
    stdio: ['ignore', log, log],
    env: { ...withHugePages(process.env), LOG_LEVEL: 'warn' },
  },
);
closeSync(log);
process.once('exit', () => service.kill());
const url = `http://127.0.0.1:${port}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
while (
  !(await fetch(`${url}/readyz`).then(
    (r) => r.ok,
    () => false,
  ))
) {
  if (service.exitCode !== null) throw new Error(`cachet serve exited; its log: ${tmp}/service.log`);
  await sleep(100);
}
const api = new CachetClient(url);
await api.request('POST', '/v1/caches', {
  name: 'paper',
  model: MODEL,
  keyLayers: layers,
  index: { type: 'hnsw' },
  searchKey: { reduce: 'pca', dimension: Number(o['search-dim']), rerank: true },
});
interface Job {
  id: string;
  state: string;
  failedReason: string | null;
  result: { cacheSize: number } | null;
}
t = performance.now();
let job = await api.request<Job>('POST', '/v1/caches/paper/index-jobs', { source: { type: 'manifest', path: manifest }, flip: true });
while (job.state !== 'completed' && job.state !== 'failed') {
  await sleep(50);
  job = await api.request<Job>('GET', `/v1/jobs/${job.id}`);
}
const serviceS = (performance.now() - t) / 1000;
service.kill('SIGTERM');
if (job.state === 'failed') throw new Error(`the index job failed: ${job.failedReason}`);

printTable(
  'Indexing',
  ['what', 'items', 's', 'items / s'],
  [
    ['bare decode + extraction (this process)', String(extracted), fmt(bareS, 1), fmt(extracted / bareS, 0)],
    ['cachet serve: index job of a PCA cache', String(job.result?.cacheSize), fmt(serviceS, 1), fmt((job.result?.cacheSize ?? 0) / serviceS, 0)],
    ['service / bare', '', `${fmt(serviceS / bareS)}×`, ''],
  ],
);
await fs.rm(tmp, { recursive: true, force: true });
