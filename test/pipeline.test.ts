// The decode pipeline of jobs (src/jobs/pipeline.ts): with `overlap`, a job hands the engine the
// next batch while the current one is still being added, yet batches finish and report progress
// in order, and a failure or a cancellation returns only once nothing of the job runs.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { forEachBatch, type DecodedBatch } from '../src/jobs/pipeline.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import type { SourceItem } from '../src/sources/sources.js';
import { DEFAULT_LIMIT_INPUT_PIXELS } from '../src/preprocess/image.js';

const ROOT = path.join(import.meta.dirname, '..');
const CATS = path.join(ROOT, 'samples/cifar10/cache/cat');
const items: SourceItem[] = readdirSync(CATS)
  .slice(0, 40)
  .map((f) => ({ image: path.join(CATS, f), label: 3, id: f }));
const spec = await loadModelSpec(path.join(ROOT, 'models/cifar10-resnet20.onnx'));
const options = { spec, flip: false, batchSize: 8, limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('job pipeline', () => {
  for (const overlap of [1, 2, 3]) {
    test(`overlap ${overlap}: at most ${overlap} batches in the engine, each item once, progress in order`, async () => {
      let running = 0;
      let most = 0;
      const seen: string[] = [];
      const progress: number[] = [];
      await forEachBatch(
        items,
        { ...options, overlap },
        async (batch: DecodedBatch) => {
          running++;
          most = Math.max(most, running);
          await sleep(100); // longer than decoding a batch, so that the next batches arrive meanwhile
          seen.push(...batch.items.map((i) => i.id));
          running--;
        },
        (done) => progress.push(done),
      );
      assert.equal(most, overlap);
      assert.deepEqual(
        seen,
        items.map((i) => i.id),
      ); // handlers that take equal time finish in order
      assert.deepEqual(progress, [8, 16, 24, 32, 40]);
    });
  }

  test('a failing batch fails the job, after the batch beside it has finished', async () => {
    const finished: number[] = [];
    let calls = 0;
    await assert.rejects(
      forEachBatch(
        items,
        { ...options, overlap: 2 },
        async () => {
          const call = calls++;
          if (call === 1) throw new Error('disk full');
          await sleep(call === 2 ? 60 : 5); // batch 2 is under way when batch 1 fails
          finished.push(call);
        },
        () => {},
      ),
      /disk full/,
    );
    assert.deepEqual(finished, [0, 2], 'the batch in flight finished before the job returned; none started after');
    assert.equal(calls, 3);
  });

  test('a cancelled job stops between batches and waits for the batch in flight', async () => {
    const controller = new AbortController();
    const finished: number[] = [];
    let calls = 0;
    await assert.rejects(
      forEachBatch(
        items,
        { ...options, overlap: 2, signal: controller.signal },
        async () => {
          const call = calls++;
          if (call === 1) controller.abort();
          await sleep(40);
          finished.push(call);
        },
        () => {},
      ),
      { name: 'AbortError' },
    );
    assert.deepEqual(finished, [0, 1]);
  });
});
