// How close is hnsw to exact search on a real cache? For the snapshots of an exact
// and an hnsw cache of the same items, and labelled query images, prints the top-1
// agreement of the cache model (and the cache alone) for several efSearch and k,
// against exact search summed over every item.
//
//   node --import tsx bench/hnsw-agreement.ts --exact <dir>/snapshot --hnsw <dir>/snapshot \
//     --queries ../shared/datasets/cifar10/val-5k.csv [--model models/cifar10-resnet20.onnx] [--layers a,b,c]
import { parseArgs } from 'node:util';
import { readSnapshot } from '../src/index/snapshot.js';
import { ExactIndex } from '../src/index/exact.js';
import { HnswIndex } from '../src/index/hnsw.js';
import { KeyExtractor } from '../src/model/extractor.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import { resolveSource } from '../src/sources/sources.js';
import { forEachBatch } from '../src/jobs/pipeline.js';
import { cacheProbabilities, mixProbabilities } from '../src/math/cache-model.js';
import path from 'node:path';

const { values: args } = parseArgs({
  options: {
    exact: { type: 'string' },
    hnsw: { type: 'string' },
    queries: { type: 'string' },
    model: { type: 'string', default: 'models/cifar10-resnet20.onnx' },
    layers: { type: 'string', default: 'activation_14,activation_16,activation_18' },
    theta: { type: 'string', default: '80' },
    lambda: { type: 'string', default: '0.5111' },
    ef: { type: 'string', default: '64,128,256,512' },
    k: { type: 'string', default: '50,200' },
  },
});
if (!args.exact || !args.hnsw || !args.queries) throw new Error('give --exact, --hnsw (cache snapshot folders) and --queries (folder or manifest)');
const theta = Number(args.theta);
const lambda = Number(args.lambda);

const spec = await loadModelSpec(args.model!);
const extractor = await KeyExtractor.create(args.model!, spec, args.layers!.split(','));
const dim = extractor.keyDimension;
const C = extractor.numClasses;
const exactSnap = (await readSnapshot(path.dirname(args.exact)))!;
const hnswSnap = (await readSnapshot(path.dirname(args.hnsw)))!;
let t = performance.now();
const exact = await ExactIndex.load(exactSnap.dir, dim);
console.log(`loaded exact (${exact.size} items) in ${((performance.now() - t) / 1000).toFixed(1)} s`);
t = performance.now();
const hnsw = await HnswIndex.load(hnswSnap.dir, dim, { m: 16, efConstruction: 100, efSearch: 128 });
console.log(`loaded hnsw (${hnsw.size} items) in ${((performance.now() - t) / 1000).toFixed(1)} s`);

const items = await resolveSource(
  /\.(csv|jsonl)$/.test(args.queries) ? { type: 'manifest', path: path.resolve(args.queries) } : { type: 'folder', path: path.resolve(args.queries) },
  { classes: spec.classes, requireLabels: true },
);
const keys: Float32Array[] = [];
const probs: Float32Array[] = [];
const labels: number[] = [];
await forEachBatch(
  items,
  { spec, flip: false, batchSize: 64, limitInputPixels: 1e7 },
  async (b) => {
    const r = await extractor.run(b.tensor, b.items.length);
    for (let i = 0; i < b.items.length; i++) {
      keys.push(r.keys.slice(i * dim, (i + 1) * dim));
      probs.push(r.probs.slice(i * C, (i + 1) * C));
      labels.push(b.items[i].label!);
    }
  },
  () => {},
);
const n = keys.length;
const argmax = (v: ArrayLike<number>) => {
  let b = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[b]) b = i;
  return b;
};
const decide = (sims: ArrayLike<number>, labs: ArrayLike<number>, q: number) => {
  const pc = cacheProbabilities(sims, labs, theta, C);
  return { model: argmax(mixProbabilities(probs[q], pc, lambda)), cache: argmax(pc) };
};

t = performance.now();
const reference: { model: number; cache: number }[] = [];
const exactTop: Int32Array[] = [];
for (let q0 = 0; q0 < n; q0 += 64) {
  const b = Math.min(64, n - q0);
  const Q = new Float32Array(b * dim);
  for (let i = 0; i < b; i++) Q.set(keys[q0 + i], i * dim);
  const all = await exact.similaritiesAll(Q, b);
  const top = await exact.search(Q, b, 200);
  all.forEach((sims, i) => reference.push(decide(sims, exactSnap.labels.subarray(0, exact.size), q0 + i)));
  top.forEach((t1) => exactTop.push(t1.positions));
}
const exactMs = (performance.now() - t) / n;
const error = (d: { model: number; cache: number }[], f: 'model' | 'cache') => d.filter((x, i) => x[f] !== labels[i]).length / n;
console.log(
  `\n${n} queries; exact over all ${exact.size} items: ${exactMs.toFixed(1)} ms/query (batches of 64); error cache model ${(100 * error(reference, 'model')).toFixed(2)} %, cache alone ${(100 * error(reference, 'cache')).toFixed(2)} %`,
);

for (const k of args.k!.split(',').map(Number)) {
  const d = exactTop.map((pos, q) => {
    const p = pos.subarray(0, k);
    const sims = Array.from(p, (x) => {
      let s = 0;
      const key = exact.key(x);
      for (let j = 0; j < dim; j++) s += key[j] * keys[q][j];
      return s;
    });
    return decide(
      sims,
      Array.from(p, (x) => exactSnap.labels[x]),
      q,
    );
  });
  const agree = d.filter((x, i) => x.model === reference[i].model).length / n;
  console.log(`exact k=${k} nearest: agreement with all-items ${(100 * agree).toFixed(2)} %, error ${(100 * error(d, 'model')).toFixed(2)} %`);
}
console.log('\n  ef    k   ms/query  recall@k  agree(cache model)  agree(cache alone)  error(cache model)');
for (const ef of args.ef!.split(',').map(Number)) {
  for (const k of args.k!.split(',').map(Number)) {
    if (k > ef) continue;
    hnsw.applySearchSettings({ efSearch: ef });
    let hits = 0;
    const d: { model: number; cache: number }[] = [];
    const t0 = performance.now();
    for (let q = 0; q < n; q++) {
      const [r] = await hnsw.search(keys[q], 1, k);
      const truth = new Set(exactTop[q].subarray(0, k));
      for (const p of r.positions) if (truth.has(p)) hits++;
      d.push(
        decide(
          r.similarities,
          Array.from(r.positions, (x) => hnswSnap.labels[x]),
          q,
        ),
      );
    }
    const ms = (performance.now() - t0) / n;
    const agree = (f: 'model' | 'cache') => (100 * d.filter((x, i) => x[f] === reference[i][f]).length) / n;
    console.log(
      `${String(ef).padStart(4)} ${String(k).padStart(4)} ${ms.toFixed(2).padStart(10)} ${(hits / (n * k)).toFixed(4).padStart(9)} ${agree('model').toFixed(2).padStart(18)} % ${agree('cache').toFixed(2).padStart(18)} % ${(100 * error(d, 'model')).toFixed(2).padStart(18)} %`,
    );
  }
}
