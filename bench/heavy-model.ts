// A CIFAR-sized classifier with the cost of a production model, for the throughput benchmark:
// how much of bare onnxruntime's throughput the service keeps depends on the model's cost
// beside the cache's search, and ResNet-20 (41 MFLOPs) is unusually cheap. This network has
// ResNet-20's input, output and classes, random (He-initialised, seeded) weights and three 3×3
// convolutions at 32×32 of C channels (C = 128: ~760 MFLOPs per image, 18× ResNet-20; C = 256:
// ~2.2 GFLOPs, about half a ResNet-50); its key layer `pooled` has the paper's key size,
// 8×8×192 = 12,288 values. Its predictions mean nothing: only its speed is measured.
//
//   node --import tsx bench/heavy-model.ts <out.onnx> [C]     (writes <out>.spec.json beside it)
//   npm run bench -- --model <out.onnx> --layers pooled
import { writeFileSync } from 'node:fs';
import { buildModel } from '../src/model/builder.js';
import { gaussian, rng } from '../test/fixtures/random.js';

const out = process.argv[2];
const C = Number(process.argv[3] ?? 128);
if (!out?.endsWith('.onnx') || !Number.isInteger(C) || C < 1) throw new Error('usage: heavy-model.ts <out.onnx> [channels]');

const random = rng(20181);
/** He initialisation: activations keep their scale through the ReLUs */
const he = (dims: number[], fanIn: number) => {
  const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
  const sd = Math.sqrt(2 / fanIn);
  for (let i = 0; i < data.length; i++) data[i] = sd * gaussian(random);
  return data;
};
const conv = (name: string, cin: number, cout: number) => [
  { name: `${name}_w`, dims: [cout, cin, 3, 3], data: he([cout, cin, 3, 3], cin * 9) },
  { name: `${name}_b`, dims: [cout], data: new Float32Array(cout) },
];
const CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

const bytes = buildModel({
  inputs: [{ name: 'image', dims: ['N', 32, 32, 3] }],
  outputs: [{ name: 'probs', dims: ['N', CLASSES.length] }],
  initializers: [
    ...conv('conv1', 3, C),
    ...conv('conv2', C, C),
    ...conv('conv3', C, 192),
    { name: 'fc_w', dims: [CLASSES.length, 192], data: he([CLASSES.length, 192], 192) },
    { name: 'fc_b', dims: [CLASSES.length], data: new Float32Array(CLASSES.length) },
  ],
  nodes: [
    { opType: 'Transpose', inputs: ['image'], outputs: ['nchw'], attributes: { perm: [0, 3, 1, 2] } },
    { opType: 'Conv', inputs: ['nchw', 'conv1_w', 'conv1_b'], outputs: ['conv1'], attributes: { pads: [1, 1, 1, 1] } },
    { opType: 'Relu', inputs: ['conv1'], outputs: ['relu1'] },
    { opType: 'Conv', inputs: ['relu1', 'conv2_w', 'conv2_b'], outputs: ['conv2'], attributes: { pads: [1, 1, 1, 1] } },
    { opType: 'Relu', inputs: ['conv2'], outputs: ['relu2'] },
    { opType: 'Conv', inputs: ['relu2', 'conv3_w', 'conv3_b'], outputs: ['conv3'], attributes: { pads: [1, 1, 1, 1] } },
    { opType: 'Relu', inputs: ['conv3'], outputs: ['relu3'] },
    { opType: 'AveragePool', inputs: ['relu3'], outputs: ['pooled'], attributes: { kernel_shape: [4, 4], strides: [4, 4] } },
    { opType: 'GlobalAveragePool', inputs: ['relu3'], outputs: ['gap'] },
    { opType: 'Flatten', inputs: ['gap'], outputs: ['flat'] },
    { opType: 'Gemm', inputs: ['flat', 'fc_w', 'fc_b'], outputs: ['logits'], attributes: { transB: 1 } },
    { opType: 'Softmax', inputs: ['logits'], outputs: ['probs'], attributes: { axis: 1 } },
  ],
});
writeFileSync(out, bytes);
const spec = {
  input: 'image',
  layout: 'NHWC',
  height: 32,
  width: 32,
  channelOrder: 'RGB',
  scale: 1 / 255,
  mean: [0, 0, 0],
  std: [1, 1, 1],
  output: 'probs',
  outputKind: 'probabilities',
  classes: CLASSES,
};
writeFileSync(out.replace(/\.onnx$/, '.spec.json'), JSON.stringify(spec, null, 2) + '\n');
const flops = 2 * 32 * 32 * 9 * (3 * C + C * C + C * 192);
console.log(
  `wrote ${out} (${(bytes.length / 2 ** 20).toFixed(1)} MiB, ${(flops / 1e9).toFixed(2)} GFLOPs per image) and its spec; key layer "pooled" (12,288 values)`,
);
