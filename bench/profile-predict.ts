// Where the time of a predict goes (issue 15), on a running service and one of its caches: single
// images sent one at a time, then requests of 64 images from 2 clients, each against the engine's own
// timings (the metrics' model-run and search histograms) and bare onnxruntime on the same decoded
// images (one intra-op thread). Prints figures; asserts nothing.
//
//   node --import tsx bench/profile-predict.ts --url http://127.0.0.1:8080 --cache paper --images <folder or manifest> [--n 300]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadModelSpec } from '../src/model/spec-file.js';
import { fmt, listFolder, listManifest, printTable } from './common.js';
import { bareInference, predictTimings } from './predict-timing.js';

const { values: o } = parseArgs({
  options: { url: { type: 'string' }, cache: { type: 'string' }, images: { type: 'string' }, n: { type: 'string', default: '300' } },
});
const n = Number(o.n);
const imgs = (o.images!.endsWith('.csv') ? await listManifest(o.images!) : await listFolder(o.images!)).slice(0, Math.max(n, 128));
const bytes = imgs.map((i) => readFileSync(i.path));
const info = (await (await fetch(`${o.url}/v1/caches/${o.cache}`)).json()) as { model: string; k: number; index: { type: string } };
const spec = await loadModelSpec(info.model);

const bare = await bareInference(info.model, spec, bytes);
const { single, batch } = await predictTimings(o.url!, o.cache!, bytes, n);

console.log(`cache ${o.cache} (${info.index.type}, k ${info.k}), ${info.model}`);
printTable(
  'One image per request, one request at a time (ms)',
  ['what', 'ms'],
  [
    ['request, client side (p50)', fmt(single.p50)],
    ['  model run in the engine (mean)', fmt(single.inference)],
    ['  search + p_cache (mean, with the lock wait)', fmt(single.search)],
    ['  the rest: HTTP, JSON, decode, thread hops', fmt(single.p50 - single.inference - single.search)],
    ['bare onnxruntime, batch 1', fmt(bare.batch1)],
    ['p50 / bare inference', `${fmt(single.p50 / bare.batch1)}×`],
  ],
);
printTable(
  `Requests of 64 images, 2 clients (${batch.requests} requests, ${batch.calls} engine calls), ms per image`,
  ['what', 'ms / image'],
  [
    ['wall clock', fmt(batch.msPerImage)],
    ['  model runs in the engine', fmt(batch.inference)],
    ['  search + p_cache', fmt(batch.search)],
    ['bare onnxruntime, batch 64', fmt(bare.batch64)],
    ['throughput vs bare', `${fmt(bare.batch64 / batch.msPerImage)}×`],
  ],
);
