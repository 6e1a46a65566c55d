// onnxruntime's default session options start a pool of intra-op threads, one per physical core,
// that spin between runs; beside the model's thread they doubled the service's CPU per predicted
// image on 2 cores. Every session the service creates sets its threads, so none adds a thread to
// the process. (On a machine that reports one core the default makes no pool either: there this
// test cannot tell the two apart.)
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { extractLayers } from '../src/advisor/layers.js';
import { FullKeyStore } from '../src/index/full-keys.js';
import { castToFloat16 } from '../src/math/float16.js';
import { innerProducts } from '../src/math/gemm.js';
import { KeyExtractor } from '../src/model/extractor.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import type { ModelSpec } from '../src/model/spec.js';
import { INTRA_OP_THREADS } from '../src/model/threads.js';
import { SEARCH_THREADS, threadCount } from '../src/math/arithmetic-session.js';
import { resolveSource } from '../src/sources/sources.js';
import { RESNET, SAMPLE } from './harness.js';

const threads = () => readdirSync('/proc/self/task').length;

describe('onnxruntime sessions add no threads', () => {
  let spec: ModelSpec;
  before(async () => {
    spec = await loadModelSpec(RESNET);
    // whatever the first run of any session starts (onnxruntime-node's own worker) comes first
    const warm = await ort.InferenceSession.create(RESNET, { intraOpNumThreads: 1 });
    await warm.run({ [spec.input]: new ort.Tensor('float32', new Float32Array(3 * 32 * 32), [1, 32, 32, 3]) }); // the model takes NHWC
    await warm.release();
  });

  test('inner products, float16 casts and full-key similarities', async () => {
    const before = threads();
    await innerProducts(new Float32Array(4 * 16).fill(0.25), 4, new Float32Array(100 * 16).fill(0.25), 100, 16);
    await castToFloat16(new Float32Array(100).fill(0.5));
    for (const format of ['float32', 'float16'] as const) {
      const store = new FullKeyStore(16, format);
      store.add(new Float32Array(10 * 16).fill(0.25), 10);
      const [s] = await store.similaritiesBatch(new Float32Array(16).fill(0.25), 1, [Int32Array.from([0, 3, 9])]);
      assert.equal(s.length, 3); // it ran
    }
    assert.equal(threads(), before);
  });

  test('the model session of the service and of the layer advisor', async () => {
    assert.equal(INTRA_OP_THREADS, 1, 'the default, unless CACHET_INTRA_OP_THREADS says otherwise');
    const before = threads();
    const extractor = await KeyExtractor.create(RESNET, spec, ['activation_18'], { intraOpNumThreads: INTRA_OP_THREADS });
    await extractor.run(new Float32Array(2 * 3 * 32 * 32), 2);
    const items = (await resolveSource({ type: 'folder', path: path.join(SAMPLE, 'heldout') }, { classes: spec.classes, requireLabels: true })).slice(0, 4);
    let during = 0; // counted while the advisor's session is alive: it releases it at the end
    const [set] = await extractLayers(RESNET, spec, ['activation_18'], [{ items, flip: false }], { batchSize: 2, onProgress: () => (during = threads()) });
    assert.equal(set.n, 4);
    assert.equal(during, before);
    assert.equal(threads(), before);
  });
});

describe('thread counts from the environment', () => {
  test('unset or empty: 1; a whole number from 1 to 1024: itself; anything else stops the process, naming the variable', () => {
    assert.equal(SEARCH_THREADS, 1);
    const name = 'CACHET_TEST_THREADS';
    const withValue = (v: string | undefined) => {
      if (v === undefined) delete process.env[name];
      else process.env[name] = v;
      try {
        return threadCount(name);
      } finally {
        delete process.env[name];
      }
    };
    assert.equal(withValue(undefined), 1);
    assert.equal(withValue(' '), 1);
    assert.equal(withValue('3'), 3);
    for (const bad of ['abc', '0', '-2', '1.5', '1e9', 'Infinity']) assert.throws(() => withValue(bad), /CACHET_TEST_THREADS=.*whole number/, bad);
  });
});
