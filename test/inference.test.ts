// The inference thread: the engine's model sessions run there, so that the engine thread can
// search one batch while the model runs on the next. Same results as in-process, errors that
// stay UserErrors, and whole-buffer batches moved rather than copied.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UserError } from '../src/errors/user-error.js';
import { KeyExtractor } from '../src/model/extractor.js';
import { InferenceThread } from '../src/model/inference.js';
import type { Extractor } from '../src/model/types.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import type { ModelSpec } from '../src/model/spec.js';
import { DEFAULT_LIMIT_INPUT_PIXELS, imageToTensor, stackBatch } from '../src/preprocess/image.js';
import { PAPER_KEY_LAYERS, RESNET, SAMPLE } from './harness.js';

describe('inference thread', () => {
  let thread: InferenceThread;
  let spec: ModelSpec;
  let remote: Extractor;
  let local: KeyExtractor;
  let images: Float32Array[];

  before(async () => {
    spec = await loadModelSpec(RESNET);
    thread = InferenceThread.start();
    remote = await thread.load(RESNET, spec, PAPER_KEY_LAYERS, { intraOpNumThreads: 1 });
    local = await KeyExtractor.create(RESNET, spec, PAPER_KEY_LAYERS, { intraOpNumThreads: 1 });
    const dir = path.join(SAMPLE, 'heldout', 'cat');
    const files = readdirSync(dir)
      .slice(0, 5)
      .map((f) => path.join(dir, f));
    images = await Promise.all(files.map((f) => imageToTensor(f, spec, { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS })));
  });
  after(async () => {
    await local.release();
    await thread.terminate();
  });

  test('gives the same keys and probabilities as the model run in-process', async () => {
    assert.equal(remote.keyDimension, 3 * 8 * 8 * 64);
    assert.deepEqual(
      { hash: remote.modelHash, classes: remote.numClasses, layers: remote.keyLayers, spec: remote.spec },
      { hash: local.modelHash, classes: local.numClasses, layers: local.keyLayers, spec: local.spec },
    );
    const mine = await local.run(stackBatch(images), images.length);
    const theirs = await remote.run(stackBatch(images), images.length);
    assert.deepEqual(theirs.keys, mine.keys);
    assert.deepEqual(theirs.probs, mine.probs);
    assert.deepEqual(theirs.zeroKeys, []);
    assert.ok(theirs.runMs > 0 && Number.isFinite(theirs.runMs), 'the run is timed where it ran');
  });

  test("the thread returns the layers' raw keys; the caller normalises them, and reports a key that cannot be", async () => {
    const nan = new Float32Array(stackBatch(images.slice(0, 1)).length).fill(NaN);
    const r = await remote.run(stackBatch([images[0], nan, images[1]]), 3);
    assert.deepEqual(r.zeroKeys, [1]);
    const D = remote.keyDimension;
    for (const row of [0, 2]) {
      let ss = 0;
      for (let j = 0; j < D; j++) ss += r.keys[row * D + j] ** 2;
      assert.ok(Math.abs(ss - 1) < 1e-5, `row ${row}: |key|² = ${ss}`);
    }
  });

  test('a batch that owns its buffer is moved to the thread; a view of a larger buffer is copied', async () => {
    const batch = stackBatch(images);
    await remote.run(batch, images.length);
    assert.equal(batch.byteLength, 0, 'moved: detached here');
    const whole = stackBatch([...images, ...images]);
    const view = whole.subarray(0, whole.length / 2);
    const r = await remote.run(view, images.length);
    assert.equal(view.length, whole.length / 2, 'copied: the view and its buffer are intact');
    assert.equal(r.probs.length, images.length * remote.numClasses);
  });

  test('concurrent runs each get their own results', async () => {
    const one = await Promise.all(images.map((img) => remote.run(img.slice(), 1)));
    const all = await local.run(stackBatch(images), images.length);
    one.forEach((r, i) => assert.deepEqual(r.probs, all.probs.subarray(i * 10, (i + 1) * 10)));
  });

  test('errors cross the thread as UserErrors, and the thread goes on serving', async () => {
    const err = await thread.load(RESNET, spec, ['activaton_14']).then(
      () => assert.fail('an unknown layer must be refused'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof UserError);
    assert.deepEqual([err.status, err.code], [400, 'unknown_layer']);
    assert.match(err.message, /activation_14/, 'names the nearest layers');
    const bad = await remote.run(new Float32Array(7), 1).then(
      () => assert.fail('a batch of the wrong size must be refused'),
      (e: unknown) => e,
    );
    assert.ok(bad instanceof UserError && bad.code === 'bad_batch');
    assert.equal((await remote.run(images[0].slice(), 1)).probs.length, 10);
  });

  test('a released session is gone', async () => {
    const other = await thread.load(RESNET, spec, ['activation_18']);
    await other.release();
    await assert.rejects(other.run(images[0].slice(), 1), /released/);
  });
});
