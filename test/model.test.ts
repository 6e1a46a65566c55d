import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { UserError } from '../src/errors/user-error.js';
import { inputShape, KeyExtractor } from '../src/model/extractor.js';
import { inspectModel } from '../src/model/inspect.js';
import { modelHash, readGraph, withExtraOutputs, withKeyOutput } from '../src/model/onnx-graph.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import type { ModelSpec } from '../src/model/spec.js';
import { imageToTensor, stackBatch, DEFAULT_LIMIT_INPUT_PIXELS } from '../src/preprocess/image.js';
import { TINY_SPEC, writeTinyModel } from './fixtures/tiny-model.js';

const RESNET = new URL('../models/cifar10-resnet20.onnx', import.meta.url).pathname;
const CIFAR = new URL('../samples/cifar10/cache', import.meta.url).pathname;
const PAPER_KEY_LAYERS = ['activation_14', 'activation_16', 'activation_18'];

async function rejectsWith(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<UserError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof UserError, `expected UserError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return err;
  }
  assert.fail(`expected UserError ${code}`);
}

function argmax(a: ArrayLike<number>, from = 0, n = a.length): number {
  let best = from;
  for (let i = from; i < from + n; i++) if (a[i] > a[best]) best = i;
  return best - from;
}

function rowNorm(a: Float32Array, r: number, dim: number): number {
  let s = 0;
  for (let j = 0; j < dim; j++) s += a[r * dim + j] ** 2;
  return Math.sqrt(s);
}

describe('onnx-graph', () => {
  const bytes = readFileSync(RESNET);

  test('readGraph lists inputs, outputs, inner tensors and metadata', () => {
    const g = readGraph(bytes);
    assert.deepEqual(
      g.inputs.map((i) => [i.name, i.dims]),
      [['image', ['N', 32, 32, 3]]],
    );
    assert.deepEqual(g.outputs, ['probs']);
    assert.equal(g.opset, 13);
    assert.equal(g.irVersion, 8);
    assert.ok('keras_layers' in g.metadata);
    for (const name of PAPER_KEY_LAYERS) assert.equal(g.tensors.find((t) => t.name === name)?.opType, 'Relu');
    assert.ok(g.tensors.some((t) => t.name === 'probs'));
  });

  test('withExtraOutputs makes inner tensors fetchable and leaves the model unchanged', async () => {
    assert.equal(withExtraOutputs(bytes, ['probs']), bytes, 'existing outputs are skipped');
    const patched = withExtraOutputs(bytes, [...PAPER_KEY_LAYERS, 'probs']);
    assert.deepEqual(patched.subarray(0, bytes.length), bytes, 'original bytes untouched');
    assert.deepEqual(readGraph(patched).outputs, ['probs', ...PAPER_KEY_LAYERS]);
    assert.equal(readGraph(patched).tensors.length, readGraph(bytes).tensors.length, 'patched graph decodes merged');
    const twice = withExtraOutputs(patched, ['activation_14', 'flatten_1']);
    assert.deepEqual(readGraph(twice).outputs, ['probs', ...PAPER_KEY_LAYERS, 'flatten_1']);

    const plain = await ort.InferenceSession.create(bytes);
    const session = await ort.InferenceSession.create(patched);
    const x = new Float32Array(2 * 32 * 32 * 3).map((_, i) => ((i * 7919) % 256) / 255);
    const feeds = { image: new ort.Tensor('float32', x, [2, 32, 32, 3]) };
    const a = await plain.run(feeds);
    const b = await session.run(feeds);
    assert.deepEqual(b.probs.data, a.probs.data);
    for (const name of PAPER_KEY_LAYERS) assert.deepEqual(b[name].dims, [2, 64, 8, 8]);
    await plain.release();
    await session.release();
  });

  test('withKeyOutput adds the key layers, flattened and concatenated, as one more output; the original bytes untouched', async () => {
    const { bytes: patched, key } = withKeyOutput(bytes, readGraph(bytes), ['probs'], PAPER_KEY_LAYERS);
    assert.deepEqual(patched.subarray(0, bytes.length), bytes);
    assert.deepEqual(readGraph(patched).outputs, ['probs', ...PAPER_KEY_LAYERS, key]);
    assert.ok(!readGraph(bytes).tensors.some((t) => t.name === key), 'a name the model does not use');
    const again = withKeyOutput(patched, readGraph(patched), ['probs'], ['activation_18']);
    assert.notEqual(again.key, key, 'a second patch picks a fresh name');
    const session = await ort.InferenceSession.create(patched);
    const x = new Float32Array(2 * 32 * 32 * 3).map((_, i) => ((i * 7919) % 256) / 255);
    const out = await session.run({ image: new ort.Tensor('float32', x, [2, 32, 32, 3]) });
    await session.release();
    assert.deepEqual(out[key].dims, [2, 3 * 4096]);
    const k = out[key].data as Float32Array;
    for (let r = 0; r < 2; r++)
      PAPER_KEY_LAYERS.forEach((l, i) =>
        assert.deepEqual(k.subarray(r * 12288 + i * 4096, r * 12288 + (i + 1) * 4096), (out[l].data as Float32Array).subarray(r * 4096, (r + 1) * 4096)),
      );
  });

  test('modelHash is the sha256 of the bytes', () => {
    assert.equal(modelHash(bytes), createHash('sha256').update(bytes).digest('hex'));
  });
});

describe('spec file', () => {
  test('the shipped model has a valid spec', async () => {
    const spec = await loadModelSpec(RESNET);
    assert.equal(spec.input, 'image');
    assert.equal(spec.layout, 'NHWC');
    assert.equal(spec.classes[3], 'cat');
    assert.equal(spec.scale, 1 / 255);
  });

  test('overrides go on top; undefined overrides are ignored', async () => {
    const spec = await loadModelSpec(RESNET, { height: 64, width: undefined });
    assert.equal(spec.height, 64);
    assert.equal(spec.width, 32);
  });

  test('a bad spec lists every wrong or missing field and where the file is expected', async () => {
    const { dir } = writeTinyModel();
    writeFileSync(join(dir, 'tiny.spec.json'), JSON.stringify({ input: 'pixels', layout: 'CHW', height: 16, colour: 'x' }));
    const err = await rejectsWith(loadModelSpec(join(dir, 'tiny.onnx')), 'bad_model_spec');
    for (const s of ['tiny.spec.json', '"layout"', '"width" is missing', '"output" is missing', '"classes" is missing', 'colour'])
      assert.ok(err.message.includes(s), `${s} in ${err.message}`);
    const none = await rejectsWith(loadModelSpec(join(dir, 'other.onnx')), 'bad_model_spec');
    assert.match(none.message, /other\.spec\.json/);
    writeFileSync(join(dir, 'tiny.spec.json'), '{ not json');
    await rejectsWith(loadModelSpec(join(dir, 'tiny.onnx')), 'bad_model_spec', /not valid JSON/);
  });
});

describe('KeyExtractor on the CIFAR-10 ResNet-20', () => {
  let spec: ModelSpec;
  let extractor: KeyExtractor;
  before(async () => {
    spec = await loadModelSpec(RESNET);
    extractor = await KeyExtractor.create(RESNET, spec, PAPER_KEY_LAYERS, { intraOpNumThreads: 1 });
  });
  after(() => extractor.release());

  test('paper key layers give 12,288-dimensional keys', () => {
    assert.equal(extractor.keyDimension, 12288);
    assert.equal(extractor.numClasses, 10);
    assert.equal(extractor.modelHash, modelHash(readFileSync(RESNET)));
    assert.deepEqual(extractor.keyLayers, PAPER_KEY_LAYERS);
  });

  test('unit-norm keys, probabilities that sum to 1, right predictions', async () => {
    const files = ['cat/0000.jpg', 'airplane/0000.jpg', 'ship/0000.jpg', 'frog/0000.jpg'];
    const images = await Promise.all(files.map((f) => imageToTensor(join(CIFAR, f), spec, { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS })));
    const { keys, probs, zeroKeys } = await extractor.run(stackBatch(images), files.length);
    assert.deepEqual(zeroKeys, []);
    files.forEach((f, r) => {
      assert.ok(Math.abs(rowNorm(keys, r, 12288) - 1) < 1e-5);
      const sum = probs.subarray(r * 10, r * 10 + 10).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-5);
      assert.equal(spec.classes[argmax(probs, r * 10, 10)], f.split('/')[0], f);
    });

    // A batch gives the same rows as single images.
    const single = await extractor.run(images[2], 1);
    assert.ok(single.keys.every((v, j) => Math.abs(v - keys[2 * 12288 + j]) < 1e-5));
  });

  test('keys are the concatenated layers, normalised once, row by row in a batch (checked against unoptimised ORT)', async () => {
    const images = await Promise.all(
      ['cat/0000.jpg', 'ship/0000.jpg', 'frog/0000.jpg'].map((f) => imageToTensor(join(CIFAR, f), spec, { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS })),
    );
    const batch = stackBatch(images);
    const session = await ort.InferenceSession.create(withExtraOutputs(readFileSync(RESNET), PAPER_KEY_LAYERS), {
      graphOptimizationLevel: 'disabled',
    });
    const ref = await session.run({ image: new ort.Tensor('float32', batch, [3, 32, 32, 3]) });
    await session.release();
    const { keys } = await extractor.run(batch, 3);
    assert.equal(keys.length, 3 * 12288);
    for (let r = 0; r < 3; r++) {
      const concat = Float32Array.from(PAPER_KEY_LAYERS.flatMap((l) => [...(ref[l].data as Float32Array).subarray(r * 4096, (r + 1) * 4096)]));
      const norm = Math.sqrt(concat.reduce((s, v) => s + v * v, 0));
      let maxDiff = 0;
      concat.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v / norm - keys[r * 12288 + j]))));
      assert.ok(maxDiff < 1e-5, `image ${r}: max diff ${maxDiff}`);
    }
  });

  test('a zero key is reported, not normalised', async () => {
    // NaN pixels give NaN activations: the key cannot be normalised and must not enter a cache.
    const image = new Float32Array(32 * 32 * 3).fill(Number.NaN);
    const { zeroKeys } = await extractor.run(image, 1);
    assert.deepEqual(zeroKeys, [0]);
  });

  test('a batch of the wrong size is refused', async () => {
    await rejectsWith(extractor.run(new Float32Array(100), 1), 'bad_batch');
  });
});

describe('KeyExtractor validation', () => {
  test('unknown layer names the nearest real ones', async () => {
    const spec = await loadModelSpec(RESNET);
    const err = await rejectsWith(KeyExtractor.create(RESNET, spec, ['activaton_14']), 'unknown_layer');
    assert.match(err.message, /activation_14/);
    await rejectsWith(KeyExtractor.create(RESNET, spec, ['activation_99']), 'unknown_layer', /activation_1/);
  });

  test('bad inputs: empty keyLayers, wrong input/output names, class count, missing or non-ONNX file', async () => {
    const spec = await loadModelSpec(RESNET);
    await rejectsWith(KeyExtractor.create(RESNET, spec, []), 'bad_key_layers');
    await rejectsWith(KeyExtractor.create(RESNET, { ...spec, input: 'input_1' }, ['activation_14']), 'bad_model_spec', /image/);
    await rejectsWith(KeyExtractor.create(RESNET, { ...spec, output: 'prob' }, ['activation_14']), 'bad_model_spec', /probs/);
    await rejectsWith(KeyExtractor.create(RESNET, { ...spec, classes: ['a', 'b'] }, ['activation_14']), 'bad_model_spec', /10 values/);
    await rejectsWith(KeyExtractor.create(RESNET, { ...spec, layout: 'NCHW' }, ['activation_14']), 'bad_model_spec', /layout/);
    await rejectsWith(KeyExtractor.create('/nonexistent/model.onnx', spec, ['x']), 'bad_model', /not found/);
    const { dir } = writeTinyModel();
    const junk = join(dir, 'junk.onnx');
    writeFileSync(junk, 'this is not a model at all');
    await rejectsWith(KeyExtractor.create(junk, spec, ['x']), 'bad_model', /not an ONNX model/);
  });
});

describe('KeyExtractor on a tiny NCHW logits model', () => {
  test('probs are the softmax of the unmodified model’s logits; keyDimension from the probe', async () => {
    const { modelPath, bytes } = writeTinyModel();
    const spec = await loadModelSpec(modelPath);
    assert.deepEqual(spec, TINY_SPEC);
    const extractor = await KeyExtractor.create(modelPath, spec, ['relu2']);
    assert.equal(extractor.keyDimension, 8 * 16 * 16);
    assert.equal(extractor.numClasses, 4);

    const n = 3;
    const batch = new Float32Array(n * 3 * 16 * 16).map((_, i) => Math.sin(i * 0.37) * 2);
    const { probs, keys } = await extractor.run(batch, n);
    await extractor.release();

    const plain = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'disabled' });
    const logits = (await plain.run({ pixels: new ort.Tensor('float32', batch, inputShape(spec, n)) })).logits.data as Float32Array;
    await plain.release();
    for (let r = 0; r < n; r++) {
      const row = [...logits.subarray(r * 4, r * 4 + 4)];
      const max = Math.max(...row);
      const e = row.map((v) => Math.exp(v - max));
      const s = e.reduce((a, b) => a + b, 0);
      e.forEach((v, j) => assert.ok(Math.abs(v / s - probs[r * 4 + j]) < 1e-6, `row ${r} class ${j}`));
      assert.ok(Math.abs(rowNorm(keys, r, 2048) - 1) < 1e-5);
    }
  });

  test('a Conv→Relu pair stays fetchable under full graph optimisation', async () => {
    const { modelPath, bytes } = writeTinyModel();
    const extractor = await KeyExtractor.create(modelPath, TINY_SPEC, ['conv1', 'relu1', 'feat']);
    assert.equal(extractor.keyDimension, 8 * 256 * 2 + 8);
    const x = new Float32Array(3 * 256).map((_, i) => Math.cos(i));
    const { keys } = await extractor.run(x, 1);
    await extractor.release();
    const ref = await ort.InferenceSession.create(withExtraOutputs(bytes, ['conv1', 'relu1', 'feat']), { graphOptimizationLevel: 'disabled' });
    const out = await ref.run({ pixels: new ort.Tensor('float32', x, [1, 3, 16, 16]) });
    await ref.release();
    const concat = [...(out.conv1.data as Float32Array), ...(out.relu1.data as Float32Array), ...(out.feat.data as Float32Array)];
    const norm = Math.sqrt(concat.reduce((s, v) => s + v * v, 0));
    concat.forEach((v, j) => assert.ok(Math.abs(v / norm - keys[j]) < 1e-5, `value ${j}`));
  });
});

describe('inspectModel', () => {
  test('lists every tensor of the ResNet with shapes (spec optional)', async () => {
    const spec = await loadModelSpec(RESNET);
    for (const s of [spec, undefined]) {
      const info = await inspectModel(RESNET, s);
      assert.deepEqual(info.input, { name: 'image', dims: ['N', 32, 32, 3] });
      assert.equal(info.tensors.length, readGraph(readFileSync(RESNET)).tensors.length);
      const byName = new Map(info.tensors.map((t) => [t.name, t]));
      assert.deepEqual(byName.get('activation_14'), { name: 'activation_14', opType: 'Relu', shape: [1, 64, 8, 8], size: 4096 });
      assert.deepEqual(byName.get('activation_1')?.shape, [1, 16, 32, 32]);
      assert.deepEqual(byName.get('probs')?.shape, [1, 10]);
    }
  });

  test('lists every tensor of the tiny model; symbolic spatial dims need a spec', async () => {
    const { modelPath } = writeTinyModel();
    const info = await inspectModel(modelPath);
    assert.deepEqual(
      info.tensors.map((t) => [t.name, t.opType, t.shape.join('x')]),
      [
        ['conv1', 'Conv', '1x8x16x16'],
        ['relu1', 'Relu', '1x8x16x16'],
        ['conv2', 'Conv', '1x8x16x16'],
        ['relu2', 'Relu', '1x8x16x16'],
        ['gap', 'GlobalAveragePool', '1x8x1x1'],
        ['feat', 'Flatten', '1x8'],
        ['logits', 'Gemm', '1x4'],
      ],
    );
    const symbolic = writeTinyModel({ inputDims: ['N', 3, 'H', 'W'] });
    await rejectsWith(inspectModel(symbolic.modelPath), 'bad_model_spec', /symbolic.*give a model spec/);
    const withSpec = await inspectModel(symbolic.modelPath, { ...TINY_SPEC, height: 20, width: 24 });
    assert.deepEqual(withSpec.tensors.find((t) => t.name === 'relu2')?.shape, [1, 8, 20, 24]);
  });
});
