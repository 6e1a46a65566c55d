// Tune jobs: θ × λ on validation images, scored once in memory, stored with history.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { call, RESNET, sampleFolder, start, waitForJob } from './harness.js';
import { pCachesByK, TuneGrid } from '../src/jobs/tune-grid.js';
import { cacheProbabilities } from '../src/math/cache-model.js';

describe('tune job', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  const validation = sampleFolder('heldout', 5);

  before(async () => {
    svc = await start();
    await call(svc.url, 'POST', '/v1/caches', { name: 'c', model: RESNET, keyLayers: ['activation_18'], theta: 50, lambda: 0.5, index: { type: 'exact' } });
    const r = await call(svc.url, 'POST', '/v1/caches/c/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 10) }, flip: true });
    await waitForJob(svc.url, r.body.id);
  });
  after(async () => svc.close());

  const tune = async (body: object) => {
    const r = await call(svc.url, 'POST', '/v1/caches/c/tune-jobs', { source: { type: 'folder', path: validation }, ...body });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const job = await waitForJob(svc.url, r.body.id);
    assert.equal(job.state, 'completed', job.failedReason);
    return job;
  };

  test('a dry run scores the grid and changes nothing', async () => {
    const job = await tune({ theta: [10, 50, 90], lambda: { from: 0, to: 1, steps: 5 }, dryRun: true, flip: true });
    const r = job.result;
    assert.equal(r.images, 100, '50 images and their mirror images');
    assert.deepEqual(r.lambdas, [0, 0.25, 0.5, 0.75, 1]);
    assert.equal(r.accuracy.length, 3);
    assert.equal(r.accuracy[0].length, 5);
    const max = Math.max(...r.accuracy.flat());
    assert.equal(r.best.accuracy, max);
    for (const row of r.accuracy) assert.equal(row[0], r.model.accuracy, 'λ = 0 is the model alone, whatever θ');
    assert.equal(r.applied, false);
    const info = (await call(svc.url, 'GET', '/v1/caches/c')).body;
    assert.deepEqual([info.theta, info.lambda, info.history], [50, 0.5, []]);
  });

  test('the chosen θ and λ score on the eval job exactly as on the grid, are stored, and the old ones are kept', async () => {
    const job = await tune({ theta: [10, 30, 50, 70, 90], lambda: [0.1, 0.3, 0.5, 0.7, 0.9] });
    const { best } = job.result;
    const info = (await call(svc.url, 'GET', '/v1/caches/c')).body;
    assert.deepEqual([info.theta, info.lambda], [best.theta, best.lambda]);
    assert.deepEqual([info.history[0].theta, info.history[0].lambda], [50, 0.5]);
    assert.match(info.history[0].reason, new RegExp(`tune job ${job.id}`));
    const evalJob = await waitForJob(
      svc.url,
      (await call(svc.url, 'POST', '/v1/caches/c/eval-jobs', { source: { type: 'folder', path: validation } })).body.id,
    );
    assert.ok(Math.abs(1 - evalJob.result.error.cacheModel - best.accuracy) < 1e-9, `eval ${evalJob.result.error.cacheModel} vs tune ${best.accuracy}`);

    const md = await fetch(`${svc.url}/v1/jobs/${job.id}/report?format=md`);
    assert.equal(md.status, 200);
    assert.match(await md.text(), new RegExp(`${best.theta}`));
    const svg = await (await fetch(`${svc.url}/v1/jobs/${job.id}/report?format=svg`)).text();
    assert.match(svg, /^<svg[\s\S]*<\/svg>\s*$/);
  });

  test("k is tuned too, on prefixes of the largest k's neighbours: the choice is stored and scores on eval as on the grid", async () => {
    const create = { name: 'h', model: RESNET, keyLayers: ['activation_18'], theta: 50, lambda: 0.5, k: 100, index: { type: 'hnsw' } };
    assert.equal((await call(svc.url, 'POST', '/v1/caches', create)).status, 201);
    await waitForJob(
      svc.url,
      (await call(svc.url, 'POST', '/v1/caches/h/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 10) }, flip: true })).body.id,
    );
    const r = await call(svc.url, 'POST', '/v1/caches/h/tune-jobs', {
      source: { type: 'folder', path: validation },
      theta: [10, 40],
      lambda: [0.3, 0.7, 1],
      k: [20, 1, 5],
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const job = await waitForJob(svc.url, r.body.id);
    assert.equal(job.state, 'completed', job.failedReason);
    const t = job.result;
    assert.deepEqual(t.ks, [1, 5, 20]);
    assert.deepEqual(
      t.byK.map((b: any) => b.k),
      [1, 5, 20],
    );
    const bestAccuracy = Math.max(...t.byK.map((b: any) => b.accuracy));
    assert.equal(t.best.accuracy, bestAccuracy);
    assert.equal(t.byK.find((b: any) => b.k === t.k).accuracy, bestAccuracy, 'the chosen k is the best one');
    const info = (await call(svc.url, 'GET', '/v1/caches/h')).body;
    assert.deepEqual([info.k, info.theta, info.lambda], [t.k, t.best.theta, t.best.lambda]);
    const evalJob = await waitForJob(
      svc.url,
      (await call(svc.url, 'POST', '/v1/caches/h/eval-jobs', { source: { type: 'folder', path: validation } })).body.id,
    );
    assert.ok(Math.abs(1 - evalJob.result.error.cacheModel - t.best.accuracy) < 1e-9, `eval ${evalJob.result.error.cacheModel} vs tune ${t.best.accuracy}`);
    const md = await (await fetch(`${svc.url}/v1/jobs/${job.id}/report?format=md`)).text();
    assert.match(md, /## Neighbours: k/);
  });

  test('p_cache over each prefix, in one pass, is the cache math over that prefix', () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let trial = 0; trial < 50; trial++) {
      const n = 1 + Math.floor(rand() * 60);
      const sims = Array.from({ length: n }, () => rand() * 2 - 1).sort((a, b) => b - a);
      const labels = Array.from({ length: n }, () => Math.floor(rand() * 10));
      const ks = [...new Set([1, Math.ceil(n / 3), n, n + 5])].sort((a, b) => a - b);
      const theta = rand() * 100;
      pCachesByK(sims, labels, theta, 10, ks).forEach((p, i) => {
        const want = cacheProbabilities(sims.slice(0, ks[i]), labels.slice(0, ks[i]), theta, 10);
        assert.deepEqual(Array.from(p), Array.from(want), `trial ${trial}, k ${ks[i]}`);
      });
    }
  });

  test('the grid scored batch by batch is the cache math at every point, and picks the best as a search over it would', () => {
    let seed = 11;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const C = 10;
    const ks = [1, 4, 9];
    const k = 9;
    const thetas = [5, 40, 85];
    const lambdas = [0, 0.3, 0.8, 1];
    const n = 37;
    const pModel = new Float32Array(n * C);
    const sims = new Float32Array(n * k);
    const labels = new Uint16Array(n * k);
    const truth: number[] = [];
    for (let q = 0; q < n; q++) {
      const raw = Array.from({ length: C }, () => rand());
      const sum = raw.reduce((a, b) => a + b, 0);
      raw.forEach((v, c) => (pModel[q * C + c] = v / sum));
      const s = Array.from({ length: k }, () => rand()).sort((a, b) => b - a);
      s.forEach((v, i) => ((sims[q * k + i] = v), (labels[q * k + i] = Math.floor(rand() * C))));
      if (q === 5) sims.fill(-Infinity, q * k + 6, (q + 1) * k); // padding: fewer neighbours than k
      truth.push(Math.floor(rand() * C));
    }
    const grid = new TuneGrid(ks, thetas, lambdas, C, { theta: 40, lambda: 0.3, k: 4 });
    for (const [from, to] of [
      [0, 5],
      [5, 6],
      [6, 37],
    ])
      grid.add(pModel.subarray(from * C, to * C), sims.subarray(from * k, to * k), labels.subarray(from * k, to * k), truth.slice(from, to), to - from);
    const got = grid.outcome();
    assert.equal(got.images, n);

    // the reference: every point from the cache math, query by query
    const at = (kk: number, theta: number, lambda: number) => {
      let correct = 0;
      let loss = 0;
      for (let q = 0; q < n; q++) {
        const pc = cacheProbabilities(sims.subarray(q * k, q * k + kk), labels.subarray(q * k, q * k + kk), theta, C);
        const p = Array.from({ length: C }, (_, c) => (1 - lambda) * pModel[q * C + c] + lambda * pc[c]);
        if (p.indexOf(Math.max(...p)) === truth[q]) correct++;
        loss -= Math.log(Math.max(p[truth[q]], 1e-12));
      }
      return { accuracy: correct / n, logLoss: loss / n };
    };
    let best = { accuracy: -1, logLoss: Infinity };
    ks.forEach((kk, ki) =>
      thetas.forEach((theta, ti) =>
        lambdas.forEach((lambda, li) => {
          const want = at(kk, theta, lambda);
          assert.equal(got.accuracy[ki][ti][li], want.accuracy, `k ${kk} θ ${theta} λ ${lambda}`);
          assert.ok(Math.abs(got.logLoss[ki][ti][li] - want.logLoss) < 1e-12, `k ${kk} θ ${theta} λ ${lambda}: log-loss`);
          if (want.accuracy > best.accuracy || (want.accuracy === best.accuracy && want.logLoss < best.logLoss)) best = want;
        }),
      ),
    );
    assert.equal(got.best.accuracy, best.accuracy);
    assert.equal(got.accuracy[ks.indexOf(got.best.k)][thetas.indexOf(got.best.theta)][lambdas.indexOf(got.best.lambda)], best.accuracy);
    assert.equal(got.model.accuracy, at(1, 5, 0).accuracy);
    assert.equal(got.currentAccuracy, at(4, 40, 0.3).accuracy);
    const alone = Math.max(...ks.flatMap((kk) => thetas.map((theta) => at(kk, theta, 1).accuracy)));
    assert.equal(got.cacheOnly?.accuracy, alone);
    assert.throws(() => grid.add(pModel, sims.subarray(0, 5), labels, truth, n), /37 queries need/);
    assert.equal(new TuneGrid(ks, thetas, lambdas, C, { theta: 40, lambda: 0.3, k: null }).outcome().currentAccuracy, null);
  });

  test('eval: error against cache size from random subsets; the whole cache matches the plain eval', async () => {
    const r = await call(svc.url, 'POST', '/v1/caches/c/eval-jobs', { source: { type: 'folder', path: validation }, cacheSizes: [0.25, 0.5, 1] });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const job = await waitForJob(svc.url, r.body.id);
    const { bySize, error } = job.result;
    assert.deepEqual(
      bySize.map((b: any) => [b.fraction, b.items]),
      [
        [0.25, 50],
        [0.5, 100],
        [1, 200],
      ],
    );
    assert.ok(Math.abs(bySize[2].error.cacheModel - error.cacheModel) < 1e-9, 'fraction 1 is the whole cache');
    assert.ok(Math.abs(bySize[2].error.cacheOnly - error.cacheOnly) < 1e-9);
    const svg = await (await fetch(`${svc.url}/v1/jobs/${job.id}/report?format=svg`)).text();
    assert.match(svg, /^<svg[\s\S]*cache model[\s\S]*<\/svg>\s*$/);
  });

  test('bad grids and an empty cache are 4xx', async () => {
    const bad = await call(svc.url, 'POST', '/v1/caches/c/tune-jobs', { source: { type: 'folder', path: validation }, lambda: [0.5, 2] });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /lambda/);
    await call(svc.url, 'POST', '/v1/caches', { name: 'empty', model: RESNET, keyLayers: ['activation_18'] });
    const empty = await call(svc.url, 'POST', '/v1/caches/empty/tune-jobs', { source: { type: 'folder', path: validation } });
    assert.equal(empty.status, 409);
    assert.equal(empty.body.error.code, 'empty_cache');
  });
});
