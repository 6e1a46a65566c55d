// Robustness jobs: the corruptions, the Square Attack, and the job through the service.
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { call, CIFAR_CLASSES, RESNET, SAMPLE, sampleFolder, start, tempDir, waitForJob } from './harness.js';
import { TINY_CLASSES, writeTinyModel } from './fixtures/tiny-model.js';
import { Rng } from '../src/math/rng.js';
import { corrupt, CORRUPTION_NAMES, CORRUPTIONS } from '../src/robustness/corruptions.js';
import { squareAttack, windowFraction, type ProbabilityQuery } from '../src/robustness/square-attack.js';

const W = 32;
const H = 32;
const D = W * H * 3;
const CLASSES = 10;

/**
 * A linear softmax classifier on pixels in [0, 1], its weights constant over 4 × 4 blocks (as a
 * network's, they vary slowly over the image): easy to fool in L∞, which is what the attack tests need.
 */
function linearModel(seed: number) {
  const rng = new Rng(seed);
  const blocks = Float64Array.from({ length: CLASSES * 8 * 8 * 3 }, () => rng.gaussian() * 0.05);
  const weights = new Float64Array(CLASSES * D);
  for (let c = 0; c < CLASSES; c++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) for (let ch = 0; ch < 3; ch++) weights[c * D + (y * W + x) * 3 + ch] = blocks[((c * 8 + (y >> 2)) * 8 + (x >> 2)) * 3 + ch];
  const probabilities = (x: ArrayLike<number>) => {
    const logits = Array.from({ length: CLASSES }, (_, c) => {
      let s = 0;
      for (let i = 0; i < D; i++) s += weights[c * D + i] * (x[i] / 255);
      return s;
    });
    const m = Math.max(...logits);
    const e = logits.map((l) => Math.exp(l - m));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / z);
  };
  let calls = 0;
  const query: ProbabilityQuery = async (images) => {
    calls += images.length;
    return Float32Array.from(images.flatMap((x) => probabilities(x)));
  };
  return { probabilities, query, calls: () => calls };
}

const argmax = (v: number[]) => v.indexOf(Math.max(...v));

function randomImages(n: number, seed: number): Uint8Array[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => Uint8Array.from({ length: D }, () => rng.u32() & 255));
}

describe('Square Attack', () => {
  const model = linearModel(1);
  const images = randomImages(12, 2);
  // the model's own classes, but image 0 labelled wrong: it needs no attack
  const labels = images.map((x) => argmax(model.probabilities(x)));
  labels[0] = (labels[0] + 1) % CLASSES;
  const options = (seed: number) => ({ epsilon: 8, queries: 300, pInit: 0.05, rng: new Rng(seed), batchSize: 5 });

  test('stays within ε of each image and within the pixel range; fooled means the model now errs; the budget holds', async () => {
    const out = await squareAttack(images, labels, { width: W, height: H }, model.query, options(3));
    assert.deepEqual(out.alreadyWrong, [true, ...Array(11).fill(false)]);
    assert.equal(out.queries[0], 0, 'no query for an image misclassified before the attack');
    assert.deepEqual(Array.from(out.adversarial[0]), Array.from(images[0]), 'and it is left as it is');
    out.adversarial.forEach((adv, i) => {
      let worst = 0;
      for (let j = 0; j < D; j++) {
        assert.ok(adv[j] >= 0 && adv[j] <= 255, `pixel ${adv[j]}`);
        worst = Math.max(worst, Math.abs(adv[j] - images[i][j]));
      }
      assert.ok(worst <= 8 + 1e-4, `image ${i}: L∞ distance ${worst} > ε`);
      assert.equal(out.fooled[i], argmax(model.probabilities(adv)) !== labels[i], `image ${i}`);
      assert.ok(out.queries[i] <= 300);
    });
    assert.ok(out.fooled.filter(Boolean).length >= 8, `a linear model falls to ε = 8/255: fooled ${out.fooled.filter(Boolean).length} of 12`);
    assert.equal(out.stoppedBy, null);
  });

  test('is reproducible for a seed, and another seed searches differently', async () => {
    const a = await squareAttack(images, labels, { width: W, height: H }, model.query, options(7));
    const b = await squareAttack(images, labels, { width: W, height: H }, model.query, options(7));
    const c = await squareAttack(images, labels, { width: W, height: H }, model.query, options(8));
    assert.deepEqual(a, b);
    assert.notDeepEqual(a.adversarial, c.adversarial);
  });

  test('a deadline stops it, says so, and every image is reported finished once', async () => {
    let finished = 0;
    const out = await squareAttack(images, labels, { width: W, height: H }, model.query, {
      ...options(3),
      epsilon: 0.01, // too small to fool anything: only the deadline ends it
      queries: 100_000,
      deadline: performance.now() + 300,
      onImageDone: () => finished++,
    });
    assert.equal(out.stoppedBy, 'time');
    assert.equal(finished, 12);
  });

  test("the window shrinks on the paper's schedule, rescaled to the budget", () => {
    assert.equal(windowFraction(0.05, 1, 10_000), 0.05);
    assert.equal(windowFraction(0.05, 11, 10_000), 0.025);
    assert.equal(windowFraction(0.05, 8001, 10_000), 0.05 / 512);
    assert.equal(windowFraction(0.05, 1, 100), 0.05 / 4, 'step 1 of 100 is step 100 of 10,000');
  });
});

describe('corruptions', () => {
  const file = path.join(SAMPLE, 'heldout', 'cat', '4500.jpg');
  let image: { data: Buffer; width: number; height: number };
  before(async () => {
    const { data, info } = await sharp(readFileSync(file)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    image = { data, width: info.width, height: info.height };
  });
  const distance = (a: Uint8Array, b: Uint8Array) => a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length;

  for (const name of CORRUPTION_NAMES) {
    test(`${name}: same size, reproducible for a seed, further from the image at severity 5 than at 1`, async () => {
      const at = async (severity: number, seed = 1) => corrupt(image, name, severity, new Rng(seed));
      const d = [];
      for (let s = 1; s <= 5; s++) {
        const out = await at(s);
        assert.equal(out.length, image.data.length);
        assert.deepEqual(out, await at(s), 'the same seed, the same image');
        d.push(distance(out, image.data));
      }
      assert.ok(d[0] > 0, `severity 1 changes the image (${d[0]})`);
      assert.ok(d[4] > d[0], `severity 5 (${d[4]}) is further than severity 1 (${d[0]})`);
      // JPEG's and pixelate's steps are not monotone at 32 pixels (re-quantisation, resampling phase): severity 5 is further than 1
      if (name !== 'jpeg_compression' && name !== 'pixelate')
        for (let s = 1; s < 5; s++) assert.ok(d[s] >= d[s - 1], `${name}: severity ${s + 1} (${d[s]}) < severity ${s} (${d[s - 1]})`);
      assert.equal(CORRUPTIONS[name].values(32).length, 5);
    });
  }

  test('noise differs between seeds; blur scales its σ with the image size', async () => {
    assert.notDeepEqual(await corrupt(image, 'gaussian_noise', 3, new Rng(1)), await corrupt(image, 'gaussian_noise', 3, new Rng(2)));
    assert.deepEqual(CORRUPTIONS.gaussian_blur.values(224), [2.8, 4.2, 4.9, 5.6, 7]);
    assert.deepEqual(CORRUPTIONS.gaussian_blur.values(16), [0.3, 0.3, 0.35, 0.4, 0.5], "libvips's least σ below 24 pixels, not a silent no-op");
  });
});

describe('robustness job', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  const heldout = sampleFolder('heldout', 2);
  const settings = { corruptions: ['gaussian_noise', 'contrast'], severities: [1, 5], attacks: ['transfer', 'adaptive', 'adaptive_cache_alone'], queries: 15 };

  before(async () => {
    svc = await start();
    const create = { name: 'c', model: RESNET, keyLayers: ['activation_18'], theta: 50, lambda: 0.5, index: { type: 'exact' } };
    assert.equal((await call(svc.url, 'POST', '/v1/caches', create)).status, 201);
    await waitForJob(
      svc.url,
      (await call(svc.url, 'POST', '/v1/caches/c/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 10) } })).body.id,
    );
    await call(svc.url, 'POST', '/v1/caches', { ...create, name: 'empty' });
  });
  after(async () => svc.close());

  const run = async (body: object) => {
    const r = await call(svc.url, 'POST', '/v1/caches/c/robustness-jobs', { source: { type: 'folder', path: heldout }, ...body });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const job = await waitForJob(svc.url, r.body.id);
    assert.equal(job.state, 'completed', job.failedReason);
    return job;
  };

  test('scores the three under each corruption and attack; what an attack fooled is what the scoring counts', async () => {
    const job = await run(settings);
    const r = job.result;
    assert.deepEqual(job.progress, { done: 20 * (1 + 2 * 2 + 3), total: 20 * (1 + 2 * 2 + 3) });
    assert.equal(r.images, 20);
    assert.deepEqual(
      r.corruptions.map((c: { name: string; severities: { severity: number; value: number }[] }) => [c.name, c.severities.map((s) => [s.severity, s.value])]),
      [
        [
          'gaussian_noise',
          [
            [1, 0.04],
            [5, 0.1],
          ],
        ],
        [
          'contrast',
          [
            [1, 0.75],
            [5, 0.15],
          ],
        ],
      ],
    );
    const evalJob = await waitForJob(svc.url, (await call(svc.url, 'POST', '/v1/caches/c/eval-jobs', { source: { type: 'folder', path: heldout } })).body.id);
    assert.deepEqual(r.clean, evalJob.result.error, 'clean images: the errors of the eval job');
    // An attack's images are the clean ones where its target erred already, and its best try elsewhere:
    // the target's error on them is (images it erred on before + images it was fooled on) / images.
    const key = { transfer: 'model', adaptive: 'cacheModel', adaptive_cache_alone: 'cacheOnly' } as const;
    for (const a of r.attacks) {
      assert.equal(a.craftedAgainst, key[a.name as keyof typeof key]);
      assert.equal(a.epsilon, 8 / 255);
      const wrongBefore = r.clean[a.craftedAgainst] * 20;
      assert.ok(Math.abs(a.attacked - (20 - wrongBefore)) < 1e-6, `${a.name}: attacked ${a.attacked}, clean errors ${wrongBefore}`);
      assert.ok(Math.abs(a.error[a.craftedAgainst] * 20 - (20 - a.attacked + a.fooled)) < 1e-6, `${a.name}: ${JSON.stringify(a)}`);
      assert.ok(a.queries.total <= a.attacked * 15);
      assert.equal(a.stoppedBy, null);
    }
    const transfer = r.attacks.find((a: { name: string }) => a.name === 'transfer');
    assert.ok(transfer.fooled > 0, 'ResNet-20 falls to a transfer attack at 8/255 on some images');

    const md = await fetch(`${svc.url}/v1/jobs/${job.id}/report?format=md`);
    assert.equal(md.headers.get('content-type'), 'text/markdown; charset=utf-8');
    const text = await md.text();
    for (const want of ['gaussian_noise', 'transfer (crafted against the model alone)', 'Square Attack', '| clean |']) assert.ok(text.includes(want), want);
    const svg = await (await fetch(`${svc.url}/v1/jobs/${job.id}/report?format=svg`)).text();
    assert.equal(svg.match(/<svg /g)?.length, 1 + 2 + 3, 'the grid and one chart per corruption and per attack');
    const png = await fetch(`${svc.url}/v1/jobs/${job.id}/report?format=png`);
    assert.equal(png.headers.get('content-type'), 'image/png');
    assert.equal((await sharp(Buffer.from(await png.arrayBuffer())).metadata()).format, 'png');
  });

  test('is reproducible for a seed; perClass takes the first images of each class', async () => {
    const small = { corruptions: ['gaussian_noise'], severities: [3], attacks: ['adaptive'], queries: 10, seed: 42, perClass: 1 };
    const [a, b] = [(await run(small)).result, (await run(small)).result];
    assert.equal(a.images, 10, 'the first image of each class');
    assert.deepEqual({ ...a, seconds: 0 }, { ...b, seconds: 0 });
  });

  test('embedded mode: an index job does not wait behind a robustness job', async () => {
    const long = { corruptions: [], attacks: ['adaptive'], epsilons: [0.1 / 255], queries: 100_000, maxSeconds: 6 };
    const r = await call(svc.url, 'POST', '/v1/caches/c/robustness-jobs', { source: { type: 'folder', path: heldout }, ...long });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const index = await call(svc.url, 'POST', '/v1/caches/c/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 1, 10) } });
    assert.equal((await waitForJob(svc.url, index.body.id)).state, 'completed');
    assert.equal((await call(svc.url, 'GET', `/v1/jobs/${r.body.id}`)).body.state, 'active', 'the index job finished while the robustness job ran');
    const done = await waitForJob(svc.url, r.body.id);
    assert.equal(done.state, 'completed', done.failedReason);
    assert.equal(done.result.attacks[0].stoppedBy, 'time', 'an ε of 0.1/255 fools nothing: the time budget ends it');
  });

  test('bad settings get a 400 naming the field; no cache, 404; an empty cache, 409', async () => {
    const source = { type: 'folder', path: heldout };
    for (const [body, field] of [
      [{ corruptions: ['fog'] }, 'corruptions'],
      [{ severities: [0] }, 'severities'],
      [{ severities: [2, 2] }, 'severities'],
      [{ epsilons: [0] }, 'epsilons'],
      [{ epsilons: [2] }, 'epsilons'],
      [{ attacks: ['gradient'] }, 'attacks'],
      [{ queries: 0 }, 'queries'],
      [{ maxSeconds: -1 }, 'maxSeconds'],
      [{ seed: 1.5 }, 'seed'],
      [{ colour: 'red' }, 'colour'],
    ] as const) {
      const r = await call(svc.url, 'POST', '/v1/caches/c/robustness-jobs', { source, ...body });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.code, 'invalid_request');
      assert.match(r.body.error.message, new RegExp(field), r.body.error.message);
    }
    assert.equal((await call(svc.url, 'POST', '/v1/caches/nope/robustness-jobs', { source })).status, 404);
    const manifest = path.join(tempDir(), 'many.csv');
    writeFileSync(manifest, 'path,label\n' + `${path.join(SAMPLE, 'heldout', 'cat', '4500.jpg')},cat\n`.repeat(10_001));
    const many = await call(svc.url, 'POST', '/v1/caches/c/robustness-jobs', { source: { type: 'manifest', path: manifest } });
    assert.equal(many.status, 400);
    assert.match(many.body.error.message, /10001 images; a robustness job takes at most 10000/);
    const empty = await call(svc.url, 'POST', '/v1/caches/empty/robustness-jobs', { source });
    assert.equal(empty.status, 409);
    assert.equal(empty.body.error.code, 'empty_cache');
  });
});

describe('robustness job on another model', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  after(async () => svc?.close());

  test('a 16 × 16 NCHW model with logits and 4 classes: the corruptions at its size, the attacks on its probabilities', async () => {
    svc = await start();
    const tiny = writeTinyModel();
    const dir = tempDir();
    const rows = CIFAR_CLASSES.slice(0, 8).map((c, i) => `${path.join(SAMPLE, 'heldout', c, '4500.jpg')},${TINY_CLASSES[i % 4]}`);
    writeFileSync(path.join(dir, 'items.csv'), 'path,label\n' + rows.join('\n') + '\n');
    const source = { type: 'manifest', path: path.join(dir, 'items.csv') };
    assert.equal(
      (await call(svc.url, 'POST', '/v1/caches', { name: 'tiny', model: tiny.modelPath, keyLayers: ['relu2', 'feat'], index: { type: 'exact' } })).status,
      201,
    );
    assert.equal((await waitForJob(svc.url, (await call(svc.url, 'POST', '/v1/caches/tiny/index-jobs', { source })).body.id)).state, 'completed');
    const r = await call(svc.url, 'POST', '/v1/caches/tiny/robustness-jobs', { source, severities: [1], attacks: ['transfer', 'adaptive'], queries: 5 });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const job = await waitForJob(svc.url, r.body.id);
    assert.equal(job.state, 'completed', job.failedReason);
    assert.equal(job.result.images, 8);
    const blur = job.result.corruptions.find((c: { name: string }) => c.name === 'gaussian_blur');
    assert.equal(blur.severities[0].value, 0.3, "0.4 × 16/32 is under libvips's least σ: 0.3, said so");
    const errors = [job.result.clean, ...job.result.corruptions.map((c: any) => c.severities[0].error), ...job.result.attacks.map((a: any) => a.error)];
    for (const e of errors) for (const v of Object.values(e)) assert.ok(Number.isFinite(v) && (v as number) >= 0 && (v as number) <= 1, JSON.stringify(e));
  });
});
