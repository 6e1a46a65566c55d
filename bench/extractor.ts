// The model thread's own work per batch — KeyExtractor.run: the model, the key layers, softmax and
// L2 normalisation — against bare onnxruntime on the same batch (one intra-op thread each), when
// fresh and again after many batches, as a service runs after an index job. Its first use: a
// slowdown that came only once the run was hot (src/math/cache-model.ts). Prints figures; asserts nothing.
//
//   node --import tsx bench/extractor.ts [--model models/cifar10-resnet20.onnx] [--layers a,b,c] [--batch 64] [--runs 1000]
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { KeyExtractor, inputShape } from '../src/model/extractor.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import { fmt, printTable } from './common.js';

const { values: o } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/cifar10-resnet20.onnx' },
    layers: { type: 'string', default: 'activation_14,activation_16,activation_18' },
    batch: { type: 'string', default: '64' },
    runs: { type: 'string', default: '1000' },
  },
});
const n = Number(o.batch);
const spec = await loadModelSpec(o.model!);
const batch = new Float32Array(n * spec.height * spec.width * 3).map(() => Math.random());
const bare = await ort.InferenceSession.create(o.model!, { intraOpNumThreads: 1 });
const extractor = await KeyExtractor.create(o.model!, spec, o.layers!.split(','), { intraOpNumThreads: 1 });

/** ms per image over `times` runs */
async function time(run: () => Promise<unknown>, times = 60): Promise<number> {
  const t = performance.now();
  for (let i = 0; i < times; i++) await run();
  return (performance.now() - t) / times / n;
}
const runBare = () => bare.run({ [spec.input]: new ort.Tensor('float32', batch, inputShape(spec, n)) });
const runExtractor = () => extractor.run(batch, n);

await time(runBare, 5);
await time(runExtractor, 5);
const fresh = { bare: await time(runBare), extractor: await time(runExtractor) };
await time(runExtractor, Number(o.runs));
const hot = { bare: await time(runBare), extractor: await time(runExtractor) };
printTable(
  `${o.model}, keys ${o.layers} (${extractor.keyDimension} values), batch ${n}: ms per image`,
  ['when', 'bare onnxruntime', 'KeyExtractor.run', 'ratio'],
  [
    ['fresh', fmt(fresh.bare, 3), fmt(fresh.extractor, 3), `${fmt(fresh.extractor / fresh.bare)}×`],
    [`after ${o.runs} more runs`, fmt(hot.bare, 3), fmt(hot.extractor, 3), `${fmt(hot.extractor / hot.bare)}×`],
  ],
);
await extractor.release();
await bare.release();
