// The table behind the search-key defaults (issue 4): for the paper's ResNet-20
// CIFAR-10 cache (cache-45k.csv + flips = 90,000 items, 12,288-d keys, θ=80,
// λ=0.5111), each reduced dimension with and without exact re-ranking against
// full-dimension exact search: validation and held-out error, build time, search
// time and memory.
//
//   npm run bench:search-keys -- --data ../shared/datasets/cifar10 [--dims 64,128,256,512,1024] [--limit 45000]
//
// Validation = files 4500–4749 of each class, held-out = 4750–4999 (val-5k.csv split in two).
import { parseArgs } from 'node:util';
import path from 'node:path';
import os from 'node:os';
import { KeyExtractor } from '../src/model/extractor.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import { resolveSource, SourceItem } from '../src/sources/sources.js';
import { forEachBatch } from '../src/jobs/pipeline.js';
import { cacheProbabilities, mixProbabilities } from '../src/math/cache-model.js';
import { ExactIndex } from '../src/index/exact.js';
import { HnswIndex } from '../src/index/hnsw.js';
import { FullKeyStore } from '../src/index/full-keys.js';
import { fitPca } from '../src/index/projection.js';
import { DEFAULT_INDEX_OPTIONS } from '../src/index/factory.js';
import { DEFAULT_K } from '../src/cache/definition.js';

const { values: args } = parseArgs({
  options: {
    data: { type: 'string', default: '../shared/datasets/cifar10' },
    model: { type: 'string', default: 'models/cifar10-resnet20.onnx' },
    layers: { type: 'string', default: 'activation_14,activation_16,activation_18' },
    dims: { type: 'string', default: '64,128,256,512,1024' },
    limit: { type: 'string', default: '45000' },
    theta: { type: 'string', default: '80' },
    lambda: { type: 'string', default: '0.5111' },
    'fit-sample': { type: 'string', default: '5000' },
  },
});
const theta = Number(args.theta);
const lambda = Number(args.lambda);
const k = DEFAULT_K;
const { m, efConstruction, efSearch } = DEFAULT_INDEX_OPTIONS;
const secs = (t: number) => (performance.now() - t) / 1000;
const log = (s: string) => process.stderr.write(s + '\n');

const spec = await loadModelSpec(args.model!);
const extractor = await KeyExtractor.create(args.model!, spec, args.layers!.split(','));
const D = extractor.keyDimension;
const C = extractor.numClasses;

/** Class-balanced first `limit` rows: manifests are sorted by class. */
function balanced(items: SourceItem[], limit: number): SourceItem[] {
  const byClass = new Map<number, SourceItem[]>();
  for (const it of items) byClass.set(it.label!, [...(byClass.get(it.label!) ?? []), it]);
  const out: SourceItem[] = [];
  for (let i = 0; out.length < Math.min(limit, items.length); i++) for (const list of byClass.values()) if (list[i] && out.length < limit) out.push(list[i]);
  return out;
}

async function extract(items: SourceItem[], flip: boolean) {
  const n = items.length * (flip ? 2 : 1);
  const keys = new Float32Array(n * D);
  const probs = new Float32Array(n * C);
  const labels = new Uint16Array(n);
  let o = 0;
  await forEachBatch(
    items,
    { spec, flip, batchSize: 128, limitInputPixels: 1e7 },
    async (b) => {
      const r = await extractor.run(b.tensor, b.items.length);
      keys.set(r.keys, o * D);
      probs.set(r.probs, o * C);
      b.items.forEach((it, i) => (labels[o + i] = it.label!));
      o += b.items.length;
    },
    () => {},
  );
  return { n: o, keys, probs, labels };
}

const data = path.resolve(args.data!);
let t = performance.now();
const cacheItems = balanced(
  await resolveSource({ type: 'manifest', path: path.join(data, 'cache-45k.csv') }, { classes: spec.classes, requireLabels: true }),
  Number(args.limit),
);
const cache = await extract(cacheItems, true);
log(`extracted ${cache.n} cache keys (${D}-d) in ${secs(t).toFixed(1)} s`);
const valItems = await resolveSource({ type: 'manifest', path: path.join(data, 'val-5k.csv') }, { classes: spec.classes, requireLabels: true });
const fileNumber = (it: SourceItem) => Number(path.basename(String(it.image)).replace(/\D/g, ''));
const splits = {
  validation: await extract(
    valItems.filter((it) => fileNumber(it) < 4750),
    false,
  ),
  heldout: await extract(
    valItems.filter((it) => fileNumber(it) >= 4750),
    false,
  ),
};
log(`extracted ${splits.validation.n} validation and ${splits.heldout.n} held-out query keys`);

const argmax = (v: ArrayLike<number>) => {
  let b = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[b]) b = i;
  return b;
};
type Split = typeof splits.validation;
function error(split: Split, pCaches: Float64Array[]): number {
  let wrong = 0;
  for (let q = 0; q < split.n; q++) {
    const p = mixProbabilities(split.probs.subarray(q * C, (q + 1) * C), pCaches[q], lambda);
    if (argmax(p) !== split.labels[q]) wrong++;
  }
  return wrong / split.n;
}
const rows: string[][] = [];
const pct = (x: number) => (100 * x).toFixed(2);
const mb = (b: number) => (b / 1e6).toFixed(0);

// Full dimension, exact, over every item: the reference.
{
  t = performance.now();
  const exact = new ExactIndex(D);
  await exact.add(cache.keys, cache.n);
  const build = secs(t);
  const errs: number[] = [];
  let searchMs = 0;
  for (const split of [splits.validation, splits.heldout]) {
    const pc: Float64Array[] = [];
    const t0 = performance.now();
    for (let q0 = 0; q0 < split.n; q0 += 64) {
      const b = Math.min(64, split.n - q0);
      const all = await exact.similaritiesAll(split.keys.subarray(q0 * D, (q0 + b) * D), b);
      for (const sims of all) pc.push(cacheProbabilities(sims, cache.labels, theta, C));
    }
    searchMs += (performance.now() - t0) / split.n / 2;
    errs.push(error(split, pc));
  }
  const one = performance.now();
  await exact.similaritiesAll(splits.heldout.keys.subarray(0, D), 1);
  rows.push([
    `full ${D}`,
    'exact, all items',
    pct(errs[0]),
    pct(errs[1]),
    build.toFixed(1),
    searchMs.toFixed(2),
    (performance.now() - one).toFixed(2),
    mb(cache.n * D * 4),
    '—',
  ]);
  log(rows[rows.length - 1].join(' | '));
}

const fitN = Math.min(Number(args['fit-sample']), cache.n);
for (const d of args.dims!.split(',').map(Number)) {
  t = performance.now();
  const projection = await fitPca(cache.keys.subarray(0, fitN * D), fitN, D, d, { seed: 0 });
  const fit = secs(t);
  t = performance.now();
  const reduced = await projection.project(cache.keys, cache.n);
  const hnsw = HnswIndex.create(d, { m, efConstruction, efSearch }, cache.n);
  await hnsw.add(reduced, cache.n);
  const build = secs(t) + fit;
  const full = new FullKeyStore(D, 'float16');
  full.add(cache.keys, cache.n);
  for (const rerank of [false, true]) {
    const errs: number[] = [];
    let searchMs = 0;
    const single: number[] = [];
    for (const split of [splits.validation, splits.heldout]) {
      const queries = await projection.project(split.keys, split.n);
      const pc: Float64Array[] = [];
      for (let q = 0; q < split.n; q++) {
        const t0 = performance.now();
        const [f] = await hnsw.search(queries.subarray(q * d, (q + 1) * d), 1, k);
        const sims = rerank ? await full.similarities(split.keys.subarray(q * D, (q + 1) * D), f.positions) : f.similarities;
        const ms = performance.now() - t0;
        searchMs += ms / split.n / 2;
        single.push(ms);
        pc.push(
          cacheProbabilities(
            sims,
            Array.from(f.positions, (p) => cache.labels[p]),
            theta,
            C,
          ),
        );
      }
      errs.push(error(split, pc));
    }
    single.sort((a, b) => a - b);
    const memory = cache.n * (d * 4 + m * 2 * 4 + 8) + (rerank ? full.memoryBytes : 0);
    rows.push([
      `pca ${d}`,
      rerank ? `hnsw + re-rank (float16 full keys)` : 'hnsw, reduced similarities',
      pct(errs[0]),
      pct(errs[1]),
      build.toFixed(1),
      searchMs.toFixed(2),
      single[Math.floor(single.length / 2)].toFixed(2),
      mb(memory),
      (projection.info.energyFraction ?? NaN).toFixed(3),
    ]);
    log(rows[rows.length - 1].join(' | '));
  }
}

const head = ['search key', 'scoring', 'val err %', 'held-out err %', 'build s', 'search ms/q', 'p50 ms', 'memory MB', 'PCA energy'];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r: string[]) => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
console.log(
  `\nSearch keys on ${cache.n} items (${path.basename(args.model!)}, ${args.layers}, ${D}-d), θ=${theta}, λ=${lambda}, k=${k}, hnsw M=${m} efC=${efConstruction} ef=${efSearch}; ` +
    `${splits.validation.n} validation / ${splits.heldout.n} held-out queries; PCA fitted on ${fitN} keys; ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}`,
);
console.log(line(head));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows) console.log(line(r));
console.log(
  'build = PCA fit + projecting every key + hnsw inserts (not key extraction); memory = index (keys + graph links, estimated) + float16 full keys when re-ranking',
);
