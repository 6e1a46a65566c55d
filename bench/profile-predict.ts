// Where the time of a predict goes (issue 15), on a running service and one of its caches: single
// images sent one at a time, then requests of 64 images from 2 clients, each against the engine's own
// timings (the metrics' model-run and search histograms) and bare onnxruntime on the same decoded
// images (one intra-op thread). Prints figures; asserts nothing.
//
//   node --import tsx bench/profile-predict.ts --url http://127.0.0.1:8080 --cache paper --images <folder or manifest> [--n 300]
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { loadModelSpec } from '../src/model/spec-file.js';
import { DEFAULT_LIMIT_INPUT_PIXELS, imageToTensor, stackBatch } from '../src/preprocess/image.js';
import { fmt, listFolder, listManifest, printTable } from './common.js';

const { values: o } = parseArgs({
  options: { url: { type: 'string' }, cache: { type: 'string' }, images: { type: 'string' }, n: { type: 'string', default: '300' } },
});
const n = Number(o.n);
const imgs = (o.images!.endsWith('.csv') ? await listManifest(o.images!) : await listFolder(o.images!)).slice(0, Math.max(n, 128));
const bytes = imgs.map((i) => readFileSync(i.path));
const info = (await (await fetch(`${o.url}/v1/caches/${o.cache}`)).json()) as { model: string; k: number; index: { type: string } };
const spec = await loadModelSpec(info.model);

const metric = async () => {
  const text = await (await fetch(`${o.url}/metrics`)).text();
  const read = (name: string) => {
    const sum = Number(new RegExp(`^${name}_sum\\{[^}]*cache="${o.cache}"[^}]*\\} (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
    const count = Number(new RegExp(`^${name}_count\\{[^}]*cache="${o.cache}"[^}]*\\} (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
    return { sum, count };
  };
  return { inference: read('cachet_model_inference_seconds'), search: read('cachet_index_search_seconds') };
};
const predict = async (images: Buffer[]) => {
  const r = await fetch(`${o.url}/v1/caches/${o.cache}/predict`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ images: images.map((b) => b.toString('base64')), topK: 1 }),
  });
  if (r.status !== 200) throw new Error(`predict: ${r.status} ${await r.text()}`);
  await r.arrayBuffer();
};

// bare onnxruntime, one intra-op thread, on the same images decoded once
const session = await ort.InferenceSession.create(info.model, { intraOpNumThreads: 1 });
const tensors = await Promise.all(bytes.slice(0, 128).map((b) => imageToTensor(b, spec, { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS })));
const run = async (count: number) => {
  const batch = stackBatch(tensors.slice(0, count));
  await session.run({
    [spec.input]: new ort.Tensor('float32', batch, [count, ...(spec.layout === 'NCHW' ? [3, spec.height, spec.width] : [spec.height, spec.width, 3])]),
  });
};
await run(1);
await run(64);
let t = performance.now();
for (let i = 0; i < 200; i++) await run(1);
const bare1 = (performance.now() - t) / 200;
t = performance.now();
for (let i = 0; i < 20; i++) await run(64);
const bare64 = (performance.now() - t) / 20 / 64;

// single images, one at a time
for (let i = 0; i < 20; i++) await predict([bytes[i]]); // warm
let before = await metric();
const ms: number[] = [];
for (let i = 0; i < n; i++) {
  const t0 = performance.now();
  await predict([bytes[i % bytes.length]]);
  ms.push(performance.now() - t0);
}
let after = await metric();
ms.sort((a, b) => a - b);
const per = (m: 'inference' | 'search') => ((after[m].sum - before[m].sum) / (after[m].count - before[m].count)) * 1000;
const single = { p50: ms[Math.floor(ms.length / 2)], inference: per('inference'), search: per('search') };

// requests of 64 images, 2 clients
before = await metric();
const requests = 40;
t = performance.now();
await Promise.all(
  [0, 1].map(async (c) => {
    for (let i = c; i < requests; i += 2) await predict(Array.from({ length: 64 }, (_, j) => bytes[(i * 64 + j) % bytes.length]));
  }),
);
const batchMsPerImage = (performance.now() - t) / (requests * 64);
after = await metric();
const calls = after.inference.count - before.inference.count;
const batch = {
  inference: ((after.inference.sum - before.inference.sum) * 1000) / (requests * 64),
  search: ((after.search.sum - before.search.sum) * 1000) / (requests * 64),
};

console.log(`cache ${o.cache} (${info.index.type}, k ${info.k}), ${info.model}`);
printTable(
  'One image per request, one request at a time (ms)',
  ['what', 'ms'],
  [
    ['request, client side (p50)', fmt(single.p50)],
    ['  model run in the engine (mean)', fmt(single.inference)],
    ['  search + p_cache (mean, with the lock wait)', fmt(single.search)],
    ['  the rest: HTTP, JSON, decode, thread hops', fmt(single.p50 - single.inference - single.search)],
    ['bare onnxruntime, batch 1', fmt(bare1)],
    ['p50 / bare inference', `${fmt(single.p50 / bare1)}×`],
  ],
);
printTable(
  `Requests of 64 images, 2 clients (${requests} requests, ${calls} engine calls), ms per image`,
  ['what', 'ms / image'],
  [
    ['wall clock', fmt(batchMsPerImage)],
    ['  model runs in the engine', fmt(batch.inference)],
    ['  search + p_cache', fmt(batch.search)],
    ['bare onnxruntime, batch 64', fmt(bare64)],
    ['throughput vs bare', `${fmt(bare64 / batchMsPerImage)}×`],
  ],
);
