// The predict micro-batcher: unit tests against a tiny stand-in for its collaborator
// (an object with engine.classify), then end to end on the real service and ResNet-20.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PredictBatcher } from '../src/http/batcher.js';
import { UserError } from '../src/errors/user-error.js';
import { call, PAPER_KEY_LAYERS, RESNET, SAMPLE, sampleFolder, start, waitForJob } from './harness.js';
import { ClassifyOptions, ClassifyResult } from '../src/engine/types.js';
import type { ModelSpec } from '../src/model/spec.js';

/** An engine that answers each image with p = [its first value]; calls return when `release()` is called. */
function fakeEngine(fail?: Error) {
  const calls: { name: string; n: number; options: ClassifyOptions; firsts: number[] }[] = [];
  const gates: (() => void)[] = [];
  return {
    calls,
    /** let every call made so far return */
    release: () => gates.splice(0).forEach((open) => open()),
    async classify(name: string, images: Float32Array, n: number, options: ClassifyOptions = {}): Promise<ClassifyResult> {
      const size = images.length / n;
      const firsts = Array.from({ length: n }, (_, i) => images[i * size]);
      calls.push({ name, n, options, firsts });
      await new Promise<void>((open) => gates.push(open));
      if (fail) throw fail;
      const results = firsts.map((v) => ({ pModel: [v], pCache: null, p: [v], neighbours: [] }));
      return { cache: name, theta: options.theta ?? 50, lambda: options.lambda ?? 0.5, cacheSize: 0, results };
    },
  };
}

const img = (v: number) => [v, 0, 0]; // one pixel: with SPEC, its model input is [v, 0, 0]
const SPEC: ModelSpec = {
  input: 'x',
  output: 'y',
  outputKind: 'probabilities',
  layout: 'NHWC',
  width: 1,
  height: 1,
  channelOrder: 'RGB',
  scale: 1,
  mean: [0, 0, 0],
  std: [1, 1, 1],
  classes: ['a', 'b'],
};
const values = (r: ClassifyResult) => r.results.map((c) => c.p[0]);
const tick = () => new Promise((r) => setImmediate(r));

describe('PredictBatcher', () => {
  test('concurrent requests with equal options share one engine call; results go back in order', async () => {
    const engine = fakeEngine();
    const batcher = new PredictBatcher(engine, { maxWaitMs: 10_000 });
    const first = batcher.classify('c', [img(1)], SPEC, { neighbours: 2 }); // engine idle: sent at once
    const a = batcher.classify('c', [img(2), img(3)], SPEC, { neighbours: 2 });
    const b = batcher.classify('c', [img(4)], SPEC, { neighbours: 2 });
    const c = batcher.classify('c', [img(5), img(6), img(7)], SPEC, { neighbours: 2 });
    assert.equal(engine.calls.length, 1);
    engine.release(); // the engine frees up: the three waiting requests go as one batch
    await tick();
    assert.equal(engine.calls.length, 2);
    assert.deepEqual(engine.calls[1], { name: 'c', n: 6, options: { neighbours: 2 }, firsts: [2, 3, 4, 5, 6, 7] });
    engine.release();
    assert.deepEqual(values(await first), [1]);
    assert.deepEqual(values(await a), [2, 3]);
    assert.deepEqual(values(await b), [4]);
    assert.deepEqual(values(await c), [5, 6, 7]);
    assert.deepEqual(batcher.stats(), { batches: 2, requests: 4, images: 7, largestBatch: 6, waiting: 0 });
  });

  test('requests with different options or caches are not merged', async () => {
    const engine = fakeEngine();
    const batcher = new PredictBatcher(engine, { maxWaitMs: 10_000 });
    const all = [
      batcher.classify('c', [img(0)], SPEC),
      batcher.classify('c', [img(1)], SPEC, { theta: 10 }),
      batcher.classify('c', [img(2)], SPEC, { theta: 10, neighbours: 0 }), // neighbours 0 is the default: same key
      batcher.classify('c', [img(3)], SPEC, { lambda: 0.2 }),
      batcher.classify('c', [img(4)], SPEC, { neighbours: 3 }),
      batcher.classify('d', [img(5)], SPEC, { theta: 10 }),
    ];
    engine.release();
    await tick();
    engine.release();
    const got = await Promise.all(all);
    assert.deepEqual(got.map(values), [[0], [1], [2], [3], [4], [5]]);
    const calls = engine.calls.map((c) => [c.name, c.options, c.firsts]);
    assert.deepEqual(calls, [
      ['c', { neighbours: 0 }, [0]],
      ['c', { neighbours: 0, theta: 10 }, [1, 2]],
      ['c', { neighbours: 0, lambda: 0.2 }, [3]],
      ['c', { neighbours: 3 }, [4]],
      ['d', { neighbours: 0, theta: 10 }, [5]],
    ]);
    assert.equal(got[1].theta, 10);
  });

  test('maxBatch bounds a batch; a request is split only when it alone exceeds it', async () => {
    const engine = fakeEngine();
    const batcher = new PredictBatcher(engine, { maxBatch: 4, maxWaitMs: 10_000 });
    const first = batcher.classify('c', [img(0)], SPEC);
    const a = batcher.classify('c', [img(1), img(2), img(3)], SPEC);
    const b = batcher.classify('c', [img(4), img(5)], SPEC); // does not fit beside a: a goes, b starts the next batch
    const c = batcher.classify('c', [img(6), img(7)], SPEC); // fills b's batch: sent at once
    const big = batcher.classify('c', [9, 10, 11, 12, 13, 14].map(img), SPEC); // 4 + 2
    assert.deepEqual(
      engine.calls.map((x) => x.firsts),
      [[0], [1, 2, 3], [4, 5, 6, 7], [9, 10, 11, 12]],
    );
    engine.release();
    await tick();
    engine.release();
    assert.deepEqual(
      engine.calls.map((x) => x.n),
      [1, 3, 4, 4, 2],
    );
    assert.deepEqual((await Promise.all([first, a, b, c, big])).map(values), [[0], [1, 2, 3], [4, 5], [6, 7], [9, 10, 11, 12, 13, 14]]);
    assert.equal(batcher.stats().largestBatch, 4);
  });

  test("one batch's tensor holds each request's pixels as its own spec makes them model input", async () => {
    const engine = fakeEngine();
    const batcher = new PredictBatcher(engine, { maxWaitMs: 10_000 });
    const scaled: ModelSpec = { ...SPEC, scale: 2, mean: [1, 0, 0], std: [4, 1, 1] }; // (2v − 1) / 4
    const first = batcher.classify('c', [img(0)], SPEC);
    const a = batcher.classify('c', [img(3)], SPEC);
    const b = batcher.classify('c', [img(5), img(9)], scaled);
    engine.release(); // the first returns: a and b, waiting with equal options, go as one batch
    await tick();
    assert.deepEqual(engine.calls[1]?.firsts, [3, 2.25, 4.25]);
    engine.release();
    assert.deepEqual((await Promise.all([first, a, b])).map(values), [[0], [3], [2.25, 4.25]]);
  });

  test('a lone request is not delayed by maxWaitMs, nor is the next one after it', async () => {
    const engine = fakeEngine();
    const batcher = new PredictBatcher(engine, { maxWaitMs: 60_000 });
    for (let i = 0; i < 3; i++) {
      const r = batcher.classify('c', [img(i)], SPEC);
      assert.equal(engine.calls.length, i + 1, 'sent at once');
      engine.release();
      assert.deepEqual(values(await r), [i]);
    }
  });

  test('while the engine is busy, a batch waits at most maxWaitMs', async () => {
    const engine = fakeEngine();
    const batcher = new PredictBatcher(engine, { maxWaitMs: 20 });
    const first = batcher.classify('c', [img(0)], SPEC);
    const t0 = performance.now();
    const late = batcher.classify('c', [img(1)], SPEC);
    while (engine.calls.length < 2) await new Promise((r) => setTimeout(r, 1));
    const waited = performance.now() - t0;
    assert.ok(waited >= 15 && waited < 1000, `waited ${waited} ms`);
    engine.release();
    assert.deepEqual([values(await first), values(await late)], [[0], [1]]);
  });

  test('an engine error reaches every request of that batch, a UserError as a UserError', async () => {
    const engine = fakeEngine(new UserError('invalid_theta', 'theta = -1: too small'));
    const batcher = new PredictBatcher(engine, { maxWaitMs: 10_000 });
    const all = [batcher.classify('c', [img(0)], SPEC), batcher.classify('c', [img(1)], SPEC), batcher.classify('c', [img(2), img(3)], SPEC)];
    const settled = Promise.allSettled(all);
    engine.release();
    await tick();
    engine.release();
    const outcomes = await settled;
    assert.equal(engine.calls.length, 2);
    for (const o of outcomes) {
      assert.equal(o.status, 'rejected');
      const err = (o as PromiseRejectedResult).reason;
      assert.ok(err instanceof UserError);
      assert.equal(err.status, 400);
      assert.equal(err.code, 'invalid_theta');
    }
    // and the batcher goes on afterwards
    const ok = fakeEngine();
    const again = new PredictBatcher(ok);
    const r = again.classify('c', [img(7)], SPEC);
    ok.release();
    assert.deepEqual(values(await r), [7]);
  });
});

describe('predict batching on the real service (ResNet-20)', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  before(async () => {
    // a batch waits as long as the engine is busy: the test, not a timer, decides when batches go
    svc = await start(undefined, undefined, { batcher: { maxWaitMs: 60_000 } });
    const created = await call(svc.url, 'POST', '/v1/caches', {
      name: 'b',
      model: RESNET,
      keyLayers: PAPER_KEY_LAYERS,
      theta: 50,
      lambda: 0.5,
      index: { type: 'exact' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const job = await call(svc.url, 'POST', '/v1/caches/b/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 2) } });
    assert.equal((await waitForJob(svc.url, job.body.id)).state, 'completed');
  });
  after(async () => svc.close());

  test('16 concurrent single-image predicts take two engine runs and answer as each image alone', async () => {
    const files = readdirSync(path.join(SAMPLE, 'heldout'))
      .sort()
      .flatMap((c) =>
        readdirSync(path.join(SAMPLE, 'heldout', c))
          .sort()
          .slice(0, 2)
          .map((f) => path.join(SAMPLE, 'heldout', c, f)),
      )
      .slice(0, 16);
    assert.equal(files.length, 16);
    const predict = (file: string) => call(svc.url, 'POST', '/v1/caches/b/predict', { image: readFileSync(file).toString('base64'), topK: 10, neighbours: 3 });
    const alone: Awaited<ReturnType<typeof predict>>[] = [];
    for (const f of files) alone.push(await predict(f));
    // Hold the first engine run (the real engine, behind a gate) until the other 15 requests have
    // reached the batcher, so that how they batch does not depend on the machine's speed.
    const engine = svc.engine;
    const classify = engine.classify.bind(engine);
    let first = true;
    engine.classify = async (...args) => {
      if (first) {
        first = false;
        const deadline = Date.now() + 30_000; // should a request never arrive, the assertions below say so
        while (svc.batcher.stats().waiting < 15 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      }
      return classify(...args);
    };
    const before = svc.batcher.stats();
    const together = await Promise.all(files.map(predict)).finally(() => delete (engine as Partial<typeof engine>).classify);
    const stats = svc.batcher.stats();
    assert.equal(stats.batches - before.batches, 2, 'one run for the first request, one for the 15 that came while it ran');
    assert.equal(stats.images - before.images, 16);
    assert.equal(stats.largestBatch, 15);
    together.forEach((r, i) => {
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const [got] = r.body.predictions;
      const [want] = alone[i].body.predictions;
      assert.deepEqual(
        got.top.map((t: any) => t.label),
        want.top.map((t: any) => t.label),
        `image ${i}`,
      );
      got.top.forEach((t: any, j: number) => {
        for (const f of ['p', 'pModel', 'pCache']) assert.ok(Math.abs(t[f] - want.top[j][f]) < 1e-5, `image ${i}, ${f}: ${t[f]} vs ${want.top[j][f]}`);
      });
      assert.deepEqual(
        got.neighbours.map((n: any) => n.id),
        want.neighbours.map((n: any) => n.id),
        `image ${i}`,
      );
      got.neighbours.forEach((n: any, j: number) => assert.ok(Math.abs(n.similarity - want.neighbours[j].similarity) < 1e-5));
    });
  });
});
