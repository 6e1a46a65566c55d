// Benchmark of Cachet: indexing, predict latency and throughput through the real service
// (`cachet serve`, a process of its own, reached over HTTP as a user would), against bare key
// extraction and bare onnxruntime inference on the same images; exact vs hnsw search.
// Prints figures and ratios; it asserts nothing.
//
//   npm run bench -- [--items 2000] [--queries 500] [--clients 8] [--layers a,b,c]
//                    [--data <dir>] [--json] [--max-batch 64] [--max-wait-ms 2]
//                    [--throughput-images 2048] [--model <file.onnx>]
//
// --data: a folder with cache/ and heldout/ (one subfolder per class), the default being
// samples/cifar10; or a folder with the manifests cache-45k.csv and val-5k.csv
// (e.g. ../shared/datasets/cifar10). Each set is made class-balanced by interleaving.
// --max-batch, --max-wait-ms: the service's predict micro-batching (src/http/batcher.ts);
// --max-batch 1 turns it off (every request is its own engine call).
// --throughput-images: images sent per (cache, batch size) in the throughput comparison.
// --model: another classifier (its spec file beside it; name its key layers with --layers), e.g.
// the costlier one bench/heavy-model.ts writes. Default: the repo's ResNet-20.
import path from 'node:path';
import os from 'node:os';
import { existsSync, promises as fs } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import pLimit from 'p-limit';
import * as ort from 'onnxruntime-node';
import { KeyExtractor } from '../src/model/extractor.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import { INTRA_OP_THREADS } from '../src/model/threads.js';
import { DEFAULT_LIMIT_INPUT_PIXELS, imageToTensor, stackBatch } from '../src/preprocess/image.js';
import { ExactIndex } from '../src/index/exact.js';
import { HnswIndex } from '../src/index/hnsw.js';
import { DEFAULT_INDEX_OPTIONS, hnswParams } from '../src/index/factory.js';
import type { ModelSpec } from '../src/model/spec.js';
import { DEFAULT_K } from '../src/cache/definition.js';
import { balanced, fmt, listFolder, listManifest, pct, printTable, type Img } from './common.js';
import { startService } from './service.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BATCH = 64; // the service's batch size for index jobs
const K = DEFAULT_K; // the cache definition's default k

const { values: flags } = parseArgs({
  options: {
    items: { type: 'string', default: '2000' },
    queries: { type: 'string', default: '500' },
    clients: { type: 'string', default: '8' },
    layers: { type: 'string', default: 'activation_14,activation_16,activation_18' },
    data: { type: 'string', default: path.join(ROOT, 'samples/cifar10') },
    json: { type: 'boolean', default: false },
    'max-batch': { type: 'string', default: '64' },
    'max-wait-ms': { type: 'string', default: '2' },
    'throughput-images': { type: 'string', default: '2048' },
    model: { type: 'string', default: path.join(ROOT, 'models/cifar10-resnet20.onnx') },
  },
});
const positiveInt = (name: string, v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
};
const MODEL = path.resolve(flags.model);
const opts = {
  items: positiveInt('items', flags.items),
  queries: positiveInt('queries', flags.queries),
  clients: positiveInt('clients', flags.clients),
  layers: flags.layers
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
  data: path.resolve(flags.data),
  maxBatch: positiveInt('max-batch', flags['max-batch']),
  maxWaitMs: Number(flags['max-wait-ms']),
  throughputImages: positiveInt('throughput-images', flags['throughput-images']),
};
/** images per request in the throughput comparison, each against bare onnxruntime at the same batch size */
const BATCH_SIZES = [1, 8, BATCH];
/** concurrent clients: single images need many to keep the engine busy; for batches, two keep one in the engine while the other travels */
const clientsFor = (b: number) => (b === 1 ? opts.clients : 2);

// ---------- helpers ----------

const now = () => performance.now();
async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = now();
  const value = await fn();
  return { ms: now() - t0, value };
}
function percentile(sortedMs: number[], p: number): number {
  return sortedMs[Math.min(sortedMs.length - 1, Math.max(0, Math.ceil((p / 100) * sortedMs.length) - 1))];
}
function stats(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), mean: s.reduce((a, b) => a + b, 0) / s.length, n: s.length };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const argmax = (v: ArrayLike<number>) => {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
};

async function decodeAll(imgs: Img[], spec: ModelSpec, flip: boolean): Promise<Float32Array[]> {
  const limit = pLimit(4); // as the index job's pipeline
  const decode = (img: Img, f: boolean) => imageToTensor(img.path, spec, { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS, flip: f });
  const views = await Promise.all(
    imgs.map((img) => limit(async () => (flip ? [await decode(img, false), await decode(img, true)] : [await decode(img, false)]))),
  );
  return views.flat();
}

// ---------- data ----------

const manifestMode = existsSync(path.join(opts.data, 'cache-45k.csv'));
const allCache = manifestMode ? await listManifest(path.join(opts.data, 'cache-45k.csv')) : await listFolder(path.join(opts.data, 'cache'));
const allQueries = manifestMode ? await listManifest(path.join(opts.data, 'val-5k.csv')) : await listFolder(path.join(opts.data, 'heldout'));
const cacheImgs = balanced(allCache, opts.items);
const queryImgs = balanced(allQueries, opts.queries);
const spec = await loadModelSpec(MODEL);
const classIndex = new Map(spec.classes.map((c, i) => [c, i]));
const queryLabels = queryImgs.map((img) => classIndex.get(img.label) ?? -1);
const items = 2 * cacheImgs.length;

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachet-bench-'));
// The whole sample folder goes in as a `folder` source; a subset as a `manifest` of absolute paths.
let source: { type: 'folder' | 'manifest'; path: string };
if (!manifestMode && cacheImgs.length === allCache.length) {
  source = { type: 'folder', path: path.join(opts.data, 'cache') };
} else {
  source = { type: 'manifest', path: path.join(tmp, 'cache.csv') };
  await fs.writeFile(source.path, ['path,label', ...cacheImgs.map((i) => `${JSON.stringify(i.path)},${i.label}`)].join('\n') + '\n');
}

console.log(`Cachet benchmark — ${path.basename(MODEL)}, key layers ${opts.layers.join(',')}`);
console.log(
  `cache: ${cacheImgs.length} images + flips = ${items} items (${source.type} source); queries: ${queryImgs.length} images; ` +
    `clients: ${opts.clients}; data: ${path.relative(process.cwd(), opts.data) || '.'}; ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}`,
);
const queryBytes = await Promise.all(queryImgs.map((i) => fs.readFile(i.path)));
const queryB64 = queryBytes.map((b) => b.toString('base64'));

// ---------- 1, 3, 4: through the service ----------

// The service in a process of its own (bench/service.ts), micro-batching predicts as the flags say.
const service = await startService(tmp, ['--predict-max-batch', String(opts.maxBatch), '--predict-max-wait-ms', String(opts.maxWaitMs)]);
const serviceUrl = service.url;
const stopService = () => service.stop();
const client = service.api;
const api = <T = Record<string, unknown>>(method: string, route: string, body?: unknown) => client.request<T>(method, route, body);
interface Job {
  id: string;
  state: string;
  failedReason: string | null;
  errorCount: number;
  result: { added: number; failed: number; cacheSize: number } | null;
}
interface PredictAnswer {
  theta: number;
  lambda: number;
  predictions: { top: { label: number }[] }[];
}

/** The caches compared through the service: full keys exact and hnsw, and a PCA search key re-ranked with full keys. */
const KINDS = ['exact', 'hnsw', 'pca'] as const;
type Kind = (typeof KINDS)[number];
const CACHE_OPTIONS: Record<Kind, object> = {
  exact: { index: { type: 'exact' } },
  hnsw: { index: { type: 'hnsw' } },
  pca: { index: { type: 'hnsw' }, searchKey: { reduce: 'pca', dimension: 128, fitSample: Math.max(100, Math.min(5000, Math.floor(items / 2))), rerank: true } },
};
const LABEL: Record<Kind, string> = { exact: 'exact', hnsw: 'hnsw', pca: 'hnsw on PCA-128 + re-rank' };

async function indexCache(name: string, kind: Kind) {
  await api('POST', '/v1/caches', { name, model: MODEL, keyLayers: opts.layers, ...CACHE_OPTIONS[kind] });
  const { ms, value: job } = await timed(async () => {
    let job = await api<Job>('POST', `/v1/caches/${name}/index-jobs`, { source, flip: true });
    while (job.state !== 'completed' && job.state !== 'failed') {
      await sleep(25);
      job = await api<Job>('GET', `/v1/jobs/${job.id}`);
    }
    return job;
  });
  if (job.state === 'failed' || !job.result) throw new Error(`index job of ${name} failed: ${job.failedReason}`);
  if (job.result.cacheSize !== items) console.log(`  note: cache ${name} holds ${job.result.cacheSize} items, expected ${items} (${job.errorCount} errors)`);
  return { ms, cacheSize: job.result.cacheSize };
}

const predictOne = async (cache: string, i: number) => {
  const t0 = now();
  const answer = await api<PredictAnswer>('POST', `/v1/caches/${cache}/predict`, { image: queryB64[i] });
  return { ms: now() - t0, label: answer.predictions[0].top[0].label, answer };
};

async function predictSequential(cache: string) {
  for (let i = 0; i < Math.min(10, queryImgs.length); i++) await predictOne(cache, i); // warm-up
  const ms: number[] = [];
  const labels: number[] = [];
  let answer: PredictAnswer | null = null;
  for (let i = 0; i < queryImgs.length; i++) {
    const r = await predictOne(cache, i);
    ms.push(r.ms);
    labels.push(r.label);
    answer = r.answer;
  }
  return { ...stats(ms), labels, theta: answer!.theta, lambda: answer!.lambda };
}

/** Totals so far, from /metrics: the predict batcher's engine runs and their images; the cache's model and search seconds. */
async function serviceTotals(cache: string): Promise<{ batches: number; images: number; modelS: number; searchS: number }> {
  const text = await (await fetch(`${serviceUrl}/metrics`)).text();
  const value = (series: string) =>
    Number(
      text
        .split('\n')
        .find((l) => l.startsWith(`${series} `))
        ?.slice(series.length + 1) ?? 0,
    );
  return {
    batches: value('cachet_predict_batch_size_count'),
    images: value('cachet_predict_batch_size_sum'),
    modelS: value(`cachet_model_inference_seconds_sum{cache="${cache}"}`),
    searchS: value(`cachet_index_search_seconds_sum{cache="${cache}"}`),
  };
}

/**
 * `clients` concurrent clients, each sending requests of `batch` images (bodies built
 * beforehand: the client's own work stays small) until `total` images have been sent.
 */
async function predictLoad(cache: string, batch: number, clients: number, total: number) {
  const requests = Math.ceil(total / batch);
  const bodies = Array.from({ length: requests }, (_, r) => {
    const images = Array.from({ length: batch }, (_, j) => queryB64[(r * batch + j) % queryB64.length]);
    return JSON.stringify(batch === 1 ? { image: images[0] } : { images });
  });
  const post = async (body: string) => {
    const res = await fetch(`${serviceUrl}/v1/caches/${cache}/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    if (!res.ok) throw new Error(`predict on ${cache}: HTTP ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  };
  for (let i = 0; i < Math.min(clients, requests); i++) await post(bodies[i]); // warm-up
  const before = await serviceTotals(cache);
  let next = 0;
  const ms: number[] = [];
  const { ms: wall } = await timed(() =>
    Promise.all(
      Array.from({ length: clients }, async () => {
        for (let r = next++; r < requests; r = next++) {
          const t0 = now();
          await post(bodies[r]);
          ms.push(now() - t0);
        }
      }),
    ),
  );
  const after = await serviceTotals(cache);
  const batches = after.batches - before.batches;
  const images = requests * batch;
  return {
    ...stats(ms),
    imagesPerSecond: (1000 * images) / wall,
    batches,
    meanBatch: (after.images - before.images) / batches,
    /** per image, as the service timed them: the model run (on the inference thread), and search + p_cache (on the engine thread) */
    modelMsPerImage: (1000 * (after.modelS - before.modelS)) / images,
    searchMsPerImage: (1000 * (after.searchS - before.searchS)) / images,
  };
}

const svc = { exact: {}, hnsw: {}, pca: {} } as Record<
  Kind,
  {
    index: Awaited<ReturnType<typeof indexCache>>;
    sequential: Awaited<ReturnType<typeof predictSequential>>;
    concurrent: Awaited<ReturnType<typeof predictLoad>>;
    /** by images per request */
    throughput: Record<number, Awaited<ReturnType<typeof predictLoad>>>;
  }
>;
try {
  for (const type of KINDS) {
    process.stdout.write(`indexing ${type} cache through the service… `);
    const index = await indexCache(`bench-${type}`, type);
    console.log(`${fmt(index.ms / 1000, 1)} s`);
    svc[type] = { index } as (typeof svc)[typeof type];
  }
  for (const type of KINDS) {
    process.stdout.write(`predict on ${type} cache: sequential… `);
    svc[type].sequential = await predictSequential(`bench-${type}`);
    process.stdout.write(`${opts.clients} clients… `);
    svc[type].concurrent = await predictLoad(`bench-${type}`, 1, opts.clients, queryImgs.length);
    svc[type].throughput = {};
    for (const b of BATCH_SIZES) {
      process.stdout.write(`${opts.throughputImages} images in requests of ${b}… `);
      svc[type].throughput[b] = await predictLoad(`bench-${type}`, b, clientsFor(b), opts.throughputImages);
    }
    console.log('done');
  }
} finally {
  await stopService();
}

// ---------- 2, 5: bare decoding, key extraction, onnxruntime ----------

process.stdout.write('bare decoding, key extraction and inference… ');
const extractor = await KeyExtractor.create(MODEL, spec, opts.layers, { intraOpNumThreads: INTRA_OP_THREADS });
const dim = extractor.keyDimension;
const decodeTime = await timed(() => decodeAll(cacheImgs, spec, true));
const cacheTensors = decodeTime.value;
const cacheKeys = new Float32Array(cacheTensors.length * dim);
await extractor.run(stackBatch(cacheTensors.slice(0, BATCH)), Math.min(BATCH, cacheTensors.length)); // warm-up
const extractTime = await timed(async () => {
  for (let s = 0; s < cacheTensors.length; s += BATCH) {
    const batch = cacheTensors.slice(s, s + BATCH);
    cacheKeys.set((await extractor.run(stackBatch(batch), batch.length)).keys, s * dim);
  }
});

const queryTensors = await decodeAll(queryImgs, spec, false);
const Q = queryTensors.length;
const queryKeys = new Float32Array(queryTensors.length * dim);
const modelLabels: number[] = [];
const extract1: number[] = [];
for (let i = 0; i < queryTensors.length; i++) {
  const t0 = now();
  const r = await extractor.run(queryTensors[i], 1);
  extract1.push(now() - t0);
  queryKeys.set(r.keys, i * dim);
  modelLabels.push(argmax(r.probs));
}
await extractor.release();

// The plain model: no key layers fetched.
const session = await ort.InferenceSession.create(MODEL, { graphOptimizationLevel: 'all' });
const shape = (n: number) => (spec.layout === 'NHWC' ? [n, spec.height, spec.width, 3] : [n, 3, spec.height, spec.width]);
const infer = (data: Float32Array, n: number) => session.run({ [spec.input]: new ort.Tensor('float32', data, shape(n)) }, [spec.output]);
for (let i = 0; i < 10; i++) await infer(queryTensors[i % queryTensors.length], 1); // warm-up
const bare1: number[] = [];
for (const t of queryTensors) {
  const t0 = now();
  await infer(t, 1);
  bare1.push(now() - t0);
}
const cacheBatches = Array.from({ length: Math.ceil(cacheTensors.length / BATCH) }, (_, b) => cacheTensors.slice(b * BATCH, (b + 1) * BATCH));
const bareBatch = await timed(async () => {
  for (const batch of cacheBatches) await infer(stackBatch(batch), batch.length);
});
await session.release();

// The plain model at each batch size of the throughput comparison, on the query images the
// service got (cycled to the same count), with the service's onnxruntime threads
// (CACHET_INTRA_OP_THREADS, default 1), with onnxruntime's default session options (the bare
// onnxruntime a user gets: one thread per physical core the machine reports, 1 or 2 on our 2-vCPU VMs)
// and with one thread per core; and what a user's own script would do: decode the same JPEG
// bytes with sharp, then run.
const CORES = os.cpus().length;
const bareThroughput: Record<number, { serviceThreads: number; defaults: number; everyCore: number; decodeAndRun: number }> = {};
{
  const sessions = {
    service: await ort.InferenceSession.create(MODEL, { graphOptimizationLevel: 'all', intraOpNumThreads: INTRA_OP_THREADS }),
    defaults: await ort.InferenceSession.create(MODEL),
    everyCore: await ort.InferenceSession.create(MODEL, { graphOptimizationLevel: 'all', intraOpNumThreads: CORES }),
  };
  const run = (s: ort.InferenceSession, data: Float32Array, m: number) => s.run({ [spec.input]: new ort.Tensor('float32', data, shape(m)) }, [spec.output]);
  for (const b of BATCH_SIZES) {
    const requests = Math.ceil(opts.throughputImages / b);
    const pick = (r: number) => Array.from({ length: b }, (_, j) => (r * b + j) % Q);
    const batches = Array.from({ length: requests }, (_, r) => stackBatch(pick(r).map((i) => queryTensors[i])));
    const rate = async (s: ort.InferenceSession) => {
      await run(s, batches[0], b); // warm-up
      const { ms } = await timed(async () => {
        for (const batch of batches) await run(s, batch, b);
      });
      return (1000 * requests * b) / ms;
    };
    const decodeAndRun = await timed(async () => {
      for (let r = 0; r < requests; r++) {
        const decoded = await Promise.all(pick(r).map((i) => imageToTensor(queryBytes[i], spec, { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS })));
        await run(sessions.everyCore, stackBatch(decoded), b);
      }
    });
    bareThroughput[b] = {
      serviceThreads: await rate(sessions.service),
      defaults: await rate(sessions.defaults),
      everyCore: await rate(sessions.everyCore),
      decodeAndRun: (1000 * requests * b) / decodeAndRun.ms,
    };
  }
  await sessions.service.release();
  await sessions.defaults.release();
  await sessions.everyCore.release();
}
console.log('done');

// ---------- 6: the indexes alone ----------

process.stdout.write('exact and hnsw indexes alone… ');
const n = cacheTensors.length;
const exact = new ExactIndex(dim);
const exactBuild = await timed(() => exact.add(cacheKeys, n));
const hnsw = HnswIndex.create(dim, hnswParams(DEFAULT_INDEX_OPTIONS), n);
const hnswBuild = await timed(() => hnsw.add(cacheKeys, n));
const query = (i: number) => queryKeys.subarray(i * dim, (i + 1) * dim);
await exact.search(query(0), 1, K); // warm-up (creates the Gemm session)

async function perQuery<T>(fn: (i: number) => Promise<T>) {
  const ms: number[] = [];
  const out: T[] = [];
  for (let i = 0; i < Q; i++) {
    const t0 = now();
    out.push(await fn(i));
    ms.push(now() - t0);
  }
  return { time: stats(ms), out };
}
const exactSearch = await perQuery((i) => exact.search(query(i), 1, K));
const exactAll = await perQuery((i) => exact.similaritiesAll(query(i), 1).then(() => null));
const exactBatched = await timed(() => exact.search(queryKeys, Q, K));
const hnswSearch = await perQuery((i) => hnsw.search(query(i), 1, K));
let overlap = 0;
for (let i = 0; i < Q; i++) {
  const truth = new Set(exactSearch.out[i][0].positions);
  overlap += Array.from(hnswSearch.out[i][0].positions).filter((p) => truth.has(p)).length;
}
const recall = overlap / (Q * Math.min(K, n));
console.log('done');
await fs.rm(tmp, { recursive: true, force: true });

// ---------- report ----------

const error = (labels: number[]) => labels.filter((l, i) => l !== queryLabels[i]).length / Q;
const agreement = svc.exact.sequential.labels.filter((l, i) => l === svc.hnsw.sequential.labels[i]).length / Q;
const bareAll = decodeTime.ms + extractTime.ms;
const rate = (count: number, ms: number) => (1000 * count) / ms;
const b1 = stats(bare1);
const e1 = stats(extract1);

printTable(
  `1–2. Indexing ${cacheImgs.length} images (+ flips = ${n} items), batch ${BATCH}`,
  ['what', 'time s', 'images/s', 'items/s'],
  [
    ...KINDS.map((t) => [
      `index job via HTTP, ${LABEL[t]} cache`,
      fmt(svc[t].index.ms / 1000),
      fmt(rate(cacheImgs.length, svc[t].index.ms), 0),
      fmt(rate(n, svc[t].index.ms), 0),
    ]),
    ['bare decode (sharp, + flip)', fmt(decodeTime.ms / 1000), fmt(rate(cacheImgs.length, decodeTime.ms), 0), fmt(rate(n, decodeTime.ms), 0)],
    ['bare key extraction (KeyExtractor.run)', fmt(extractTime.ms / 1000), fmt(rate(cacheImgs.length, extractTime.ms), 0), fmt(rate(n, extractTime.ms), 0)],
    ['bare decode + key extraction', fmt(bareAll / 1000), fmt(rate(cacheImgs.length, bareAll), 0), fmt(rate(n, bareAll), 0)],
    ['bare model only (ORT, no key layers)', fmt(bareBatch.ms / 1000), fmt(rate(cacheImgs.length, bareBatch.ms), 0), fmt(rate(n, bareBatch.ms), 0)],
    ['index add alone, exact', fmt(exactBuild.ms / 1000), '', fmt(rate(n, exactBuild.ms), 0)],
    ['index add alone, hnsw', fmt(hnswBuild.ms / 1000), '', fmt(rate(n, hnswBuild.ms), 0)],
  ],
);
const ratios = {
  indexExactOverBare: svc.exact.index.ms / bareAll,
  indexHnswOverBare: svc.hnsw.index.ms / bareAll,
  indexExactOverExtract: svc.exact.index.ms / extractTime.ms,
  indexHnswOverExtract: svc.hnsw.index.ms / extractTime.ms,
};
console.log(
  `  ratio index-job time / bare decode+extraction: exact ${fmt(ratios.indexExactOverBare)}×, hnsw ${fmt(ratios.indexHnswOverBare)}×` +
    `   (/ extraction alone: exact ${fmt(ratios.indexExactOverExtract)}×, hnsw ${fmt(ratios.indexHnswOverExtract)}×)`,
);

printTable(
  `3–5. Predict latency, one image per request (${Q} query images; θ = ${svc.exact.sequential.theta}, λ = ${svc.exact.sequential.lambda}, hnsw k = ${K})`,
  ['what', 'p50 ms', 'p99 ms', 'mean ms', 'images/s'],
  [
    ...KINDS.flatMap((t) => [
      [
        `predict via HTTP, ${LABEL[t]}, sequential`,
        fmt(svc[t].sequential.p50),
        fmt(svc[t].sequential.p99),
        fmt(svc[t].sequential.mean),
        fmt(1000 / svc[t].sequential.mean, 0),
      ],
      [
        `predict via HTTP, ${LABEL[t]}, ${opts.clients} clients`,
        fmt(svc[t].concurrent.p50),
        fmt(svc[t].concurrent.p99),
        fmt(svc[t].concurrent.mean),
        fmt(svc[t].concurrent.imagesPerSecond, 0),
      ],
    ]),
    ['bare ORT model, batch 1, sequential', fmt(b1.p50), fmt(b1.p99), fmt(b1.mean), fmt(1000 / b1.mean, 0)],
    ['bare KeyExtractor, batch 1, sequential', fmt(e1.p50), fmt(e1.p99), fmt(e1.mean), fmt(1000 / e1.mean, 0)],
  ],
);
console.log(
  `  micro-batching (max ${opts.maxBatch} images, wait ≤ ${opts.maxWaitMs} ms), ${opts.clients} clients: ` +
    KINDS.map((t) => `${t} ${svc[t].concurrent.batches} engine runs, mean ${fmt(svc[t].concurrent.meanBatch)} images/run`).join('; '),
);

// Throughput against bare onnxruntime at the same batch sizes, on the same images.
const throughputRatios = Object.fromEntries(
  KINDS.map((t) => [
    t,
    Object.fromEntries(
      BATCH_SIZES.map((b) => {
        const got = svc[t].throughput[b].imagesPerSecond;
        const bare = bareThroughput[b];
        return [
          b,
          {
            overDefaults: got / bare.defaults,
            overServiceThreads: got / bare.serviceThreads,
            overEveryCore: got / bare.everyCore,
            overDecodeAndRun: got / bare.decodeAndRun,
          },
        ];
      }),
    ),
  ]),
);
printTable(
  `3, 6. Predict throughput against bare onnxruntime, same images, same batch sizes (${opts.throughputImages} images per row; ` +
    `service: requests of B images from ${clientsFor(1)} clients for B = 1, ${clientsFor(BATCH)} otherwise)`,
  ['what', ...BATCH_SIZES.map((b) => `B=${b} img/s`), ...BATCH_SIZES.map((b) => `B=${b} p99 ms`)],
  [
    ...KINDS.map((t) => [
      `predict via HTTP, ${LABEL[t]}`,
      ...BATCH_SIZES.map((b) => fmt(svc[t].throughput[b].imagesPerSecond, 0)),
      ...BATCH_SIZES.map((b) => fmt(svc[t].throughput[b].p99, 1)),
    ]),
    ['bare ORT model, default session options', ...BATCH_SIZES.map((b) => fmt(bareThroughput[b].defaults, 0)), '', '', ''],
    [`bare ORT model, ${INTRA_OP_THREADS} intra-op thread(s) (the service's)`, ...BATCH_SIZES.map((b) => fmt(bareThroughput[b].serviceThreads, 0)), '', '', ''],
    [`bare ORT model, ${CORES} intra-op threads (one per core)`, ...BATCH_SIZES.map((b) => fmt(bareThroughput[b].everyCore, 0)), '', '', ''],
    [`bare sharp decode + ORT model (${CORES} threads)`, ...BATCH_SIZES.map((b) => fmt(bareThroughput[b].decodeAndRun, 0)), '', '', ''],
  ],
);
console.log(
  `  per image at B=${BATCH}, timed by the service: ` +
    KINDS.map((t) => `${t} model ${fmt(svc[t].throughput[BATCH].modelMsPerImage, 3)} ms + search ${fmt(svc[t].throughput[BATCH].searchMsPerImage, 3)} ms`).join(
      '; ',
    ) +
    `; bare model ${fmt(1000 / bareThroughput[BATCH].serviceThreads, 3)} ms (${INTRA_OP_THREADS} thread). ` +
    `The service can reach bare throughput only where search is small beside the model.`,
);
for (const t of KINDS) {
  const r = throughputRatios[t];
  console.log(
    `  ${t}: predict throughput / bare ORT (defaults · service's threads · one per core · decode + run): ` +
      BATCH_SIZES.map(
        (b) => `B=${b} ${fmt(r[b].overDefaults)}× · ${fmt(r[b].overServiceThreads)}× · ${fmt(r[b].overEveryCore)}× · ${fmt(r[b].overDecodeAndRun)}×`,
      ).join(';  '),
  );
}

printTable(
  `6. Index search alone, ${n} items × ${dim} dims, k = ${K}, ${Q} queries`,
  ['what', 'p50 ms', 'p99 ms', 'mean ms', 'recall@k'],
  [
    ['ExactIndex.search, 1 query per call', fmt(exactSearch.time.p50, 3), fmt(exactSearch.time.p99, 3), fmt(exactSearch.time.mean, 3), '1'],
    [`ExactIndex.search, all ${Q} in one call`, '', '', fmt(exactBatched.ms / Q, 3) + '/q', '1'],
    ['ExactIndex.similaritiesAll (exact cache), 1/call', fmt(exactAll.time.p50, 3), fmt(exactAll.time.p99, 3), fmt(exactAll.time.mean, 3), ''],
    ['HnswIndex.search, 1 query per call', fmt(hnswSearch.time.p50, 3), fmt(hnswSearch.time.p99, 3), fmt(hnswSearch.time.mean, 3), fmt(recall, 3)],
  ],
);
const errors = {
  model: error(modelLabels),
  exactCacheModel: error(svc.exact.sequential.labels),
  hnswCacheModel: error(svc.hnsw.sequential.labels),
  pcaCacheModel: error(svc.pca.sequential.labels),
};
const agreementPca = svc.exact.sequential.labels.filter((l, i) => l === svc.pca.sequential.labels[i]).length / Q;
console.log(`  search time ratio exact (1/call) / hnsw: ${fmt(exactSearch.time.mean / hnswSearch.time.mean)}×`);
console.log(
  `  top-1 error on ${Q} queries: model alone ${pct(errors.model)}, exact cache model ${pct(errors.exactCacheModel)}, hnsw cache model ${pct(errors.hnswCacheModel)},` +
    ` PCA-128 + re-rank cache model ${pct(errors.pcaCacheModel)}; top-1 agreement with exact: hnsw ${pct(agreement)}, PCA-128 + re-rank ${pct(agreementPca)}`,
);

if (flags.json) {
  const drop = <T extends { labels: unknown }>({ labels: _, ...rest }: T) => rest;
  console.log(
    JSON.stringify({
      config: { ...opts, cacheImages: cacheImgs.length, cacheItems: n, queryImages: Q, keyDimension: dim, source: source.type, batch: BATCH, k: K },
      service: Object.fromEntries(
        KINDS.map((t) => [
          t,
          { index: svc[t].index, sequential: drop(svc[t].sequential), concurrent: svc[t].concurrent, throughputByBatchSize: svc[t].throughput },
        ]),
      ),
      bare: {
        decodeMs: decodeTime.ms,
        extractMs: extractTime.ms,
        modelBatchMs: bareBatch.ms,
        modelBatch1: b1,
        extractorBatch1: e1,
        throughputByBatchSize: bareThroughput,
      },
      index: {
        exactBuildMs: exactBuild.ms,
        hnswBuildMs: hnswBuild.ms,
        exactSearch: exactSearch.time,
        exactSimilaritiesAll: exactAll.time,
        exactBatchedPerQueryMs: exactBatched.ms / Q,
        hnswSearch: hnswSearch.time,
        recallAtK: recall,
      },
      ratios: { ...ratios, predictThroughput: throughputRatios },
      errors,
      agreement,
    }),
  );
}
