import { KeyExtractor } from '/work/main/src/model/extractor.ts';
import { loadModelSpec } from '/work/main/src/model/spec-file.ts';
import { imageToTensor, stackBatch } from '/work/main/src/preprocess/image.ts';
import { cacheProbabilities, mixProbabilities } from '/work/main/src/cache/math.ts';
const root = '/work/shared/datasets/cifar10/train';
const classes = ['airplane','automobile','bird','cat','deer','dog','frog','horse','ship','truck'];
const spec = await loadModelSpec('/work/main/models/cifar10-resnet20.onnx');
const ex = await KeyExtractor.create('/work/main/models/cifar10-resnet20.onnx', spec, ['activation_14','activation_16','activation_18']);
async function keys(from: number, count: number, flip: boolean) {
  const ks: Float32Array[] = []; const ps: Float32Array[] = []; const labels: number[] = [];
  for (let c = 0; c < 10; c++) for (let s = from; s < from + count; s += 50) {
    const ts: Float32Array[] = [];
    for (let i = s; i < Math.min(s + 50, from + count); i++) {
      const f = `${root}/${classes[c]}/${String(i).padStart(4, '0')}.jpg`;
      ts.push(await imageToTensor(f, spec, { limitInputPixels: 1e6 })); labels.push(c);
      if (flip) { ts.push(await imageToTensor(f, spec, { limitInputPixels: 1e6, flip: true })); labels.push(c); }
    }
    const r = await ex.run(stackBatch(ts), ts.length); ks.push(r.keys); ps.push(r.probs);
  }
  const D = ex.keyDimension; const n = labels.length; const K = new Float32Array(n * D); let o = 0; for (const k of ks) { K.set(k, o); o += k.length; }
  const P = new Float32Array(n * 10); o = 0; for (const p of ps) { P.set(p, o); o += p.length; }
  return { K, P, labels, n };
}
const N = Number(process.argv[2] ?? 200);
const cache = await keys(0, N, true);
const val = await keys(4500, 100, false);
const D = ex.keyDimension;
for (const [theta, lambda] of [[80, 0.5111], [50, 0.5], [30, 0.3]]) {
  let m = 0, cm = 0, co = 0;
  for (let q = 0; q < val.n; q++) {
    const sims = new Float32Array(cache.n);
    for (let i = 0; i < cache.n; i++) { let s = 0; for (let j = 0; j < D; j++) s += val.K[q * D + j] * cache.K[i * D + j]; sims[i] = s; }
    const pc = cacheProbabilities(sims, cache.labels, theta, 10); const pm = val.P.subarray(q * 10, q * 10 + 10);
    const p = mixProbabilities(pm, pc, lambda);
    const am = (v: ArrayLike<number>) => { let b = 0; for (let i = 1; i < v.length; i++) if (v[i] > v[b]) b = i; return b; };
    if (am(pm) === val.labels[q]) m++; if (am(p) === val.labels[q]) cm++; if (am(pc) === val.labels[q]) co++;
  }
  console.log(`N/class=${N} θ=${theta} λ=${lambda}: model err ${(1 - m / val.n).toFixed(3)} cache-model ${(1 - cm / val.n).toFixed(3)} cache-only ${(1 - co / val.n).toFixed(3)}`);
}
