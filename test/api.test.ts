// The HTTP API end to end on the paper's ResNet-20: create, index, predict, eval,
// restart, and a model that changed under its snapshot.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { contentId } from '../src/sources/sources.js';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { call, PAPER_KEY_LAYERS, RESNET, SAMPLE, sampleFolder, start, tempDir, waitForJob } from './harness.js';
import { writeTinyModel, buildTinyNchwLogitsModel } from './fixtures/tiny-model.js';
import sharp from 'sharp';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const CAT = path.join(SAMPLE, 'heldout', 'cat', '4500.jpg');

describe('cache on ResNet-20 over HTTP', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  const cacheFolder = sampleFolder('cache', 10);
  let firstPrediction: any;

  before(async () => {
    svc = await start();
  });
  after(async () => svc.close());

  test('POST /v1/caches creates a cache and GET describes it', async () => {
    const r = await call(svc.url, 'POST', '/v1/caches', {
      name: 'cifar',
      model: RESNET,
      keyLayers: PAPER_KEY_LAYERS,
      theta: 80,
      lambda: 0.5111,
      index: { type: 'exact' },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.dimension, 12288);
    assert.equal(r.body.size, 0);
    const got = await call(svc.url, 'GET', '/v1/caches/cifar');
    assert.deepEqual({ theta: got.body.theta, lambda: got.body.lambda, type: got.body.index.type }, { theta: 80, lambda: 0.5111, type: 'exact' });
    const list = await call(svc.url, 'GET', '/v1/caches');
    assert.deepEqual(
      list.body.caches.map((c: any) => c.name),
      ['cifar'],
    );
  });

  test('an index job from a folder adds every image and its mirror image', async () => {
    const r = await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: { type: 'folder', path: cacheFolder }, flip: true });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.deepEqual(r.body.progress, { done: 0, total: 100 });
    const job = await waitForJob(svc.url, r.body.id);
    assert.equal(job.state, 'completed', job.failedReason);
    assert.deepEqual(job.progress, { done: 100, total: 100 });
    assert.deepEqual(job.result, { images: 100, added: 200, duplicates: 0, failed: 0, cacheSize: 200 });
  });

  test('indexing the same images again adds nothing (ids are idempotent)', async () => {
    const r = await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: { type: 'folder', path: cacheFolder }, flip: true });
    const job = await waitForJob(svc.url, r.body.id);
    assert.equal(job.result.added, 0);
    assert.equal(job.result.duplicates, 200);
    assert.equal(job.result.cacheSize, 200);
  });

  test("ids are the images' content: a different image under a name already indexed is added, a copy under a new name is not", async () => {
    // cat/0000.jpg of this folder is not the cache's cat/0000.jpg; its cat/9999.jpg is a copy of the cache's cat/0001.jpg
    const other = tempDir('cachet-other-');
    mkdirSync(path.join(other, 'cat'));
    copyFileSync(path.join(SAMPLE, 'heldout', 'cat', '4500.jpg'), path.join(other, 'cat', '0000.jpg'));
    copyFileSync(path.join(cacheFolder, 'cat', '0001.jpg'), path.join(other, 'cat', '9999.jpg'));
    const r = await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: { type: 'folder', path: other } });
    const job = await waitForJob(svc.url, r.body.id);
    assert.deepEqual(job.result, { images: 2, added: 1, duplicates: 1, failed: 0, cacheSize: 201 });
    const thumbnail = await fetch(`${svc.url}/v1/caches/cifar/items/${contentId(readFileSync(path.join(other, 'cat', '0000.jpg')))}/image`);
    assert.equal(thumbnail.status, 200, 'the item is there under its content id, and keeps its file for previews');
    // with ids from paths, a name already indexed is a duplicate: the rule the user asked for
    const byPath = await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: { type: 'folder', path: other, idFrom: 'path' } });
    const second = await waitForJob(svc.url, byPath.body.id);
    assert.deepEqual(
      second.result,
      { images: 2, added: 2, duplicates: 0, failed: 0, cacheSize: 203 },
      'path ids cat/0000.jpg and cat/9999.jpg are new names here',
    );
    const again = await waitForJob(
      svc.url,
      (await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: { type: 'folder', path: other, idFrom: 'path' } })).body.id,
    );
    assert.deepEqual([again.result.added, again.result.duplicates], [0, 2]);
    for (const id of [contentId(readFileSync(path.join(other, 'cat', '0000.jpg'))), 'cat/0000.jpg', 'cat/9999.jpg'])
      assert.equal((await call(svc.url, 'DELETE', `/v1/caches/cifar/items/${encodeURIComponent(id)}`)).status, 200, id);
    assert.equal((await call(svc.url, 'GET', '/v1/caches/cifar')).body.size, 200);
  });

  test('predict mixes p_model and p_cache with λ and explains with neighbours', async () => {
    const image = readFileSync(CAT).toString('base64');
    const r = await call(svc.url, 'POST', '/v1/caches/cifar/predict', { image, topK: 10, neighbours: 5 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const [pred] = r.body.predictions;
    assert.equal(pred.top.length, 10);
    let sum = 0;
    for (const t of pred.top) {
      assert.ok(Math.abs(t.p - (0.4889 * t.pModel + 0.5111 * t.pCache)) < 1e-9, JSON.stringify(t));
      sum += t.p;
    }
    assert.ok(Math.abs(sum - 1) < 1e-6);
    assert.equal(pred.neighbours.length, 5);
    const sims = pred.neighbours.map((n: any) => n.similarity);
    assert.deepEqual(
      sims,
      [...sims].sort((a, b) => b - a),
    );
    assert.ok(sims[0] < 1 && sims[4] > 0);
    firstPrediction = r.body;
  });

  test('a cached image finds itself first, with similarity 1', async () => {
    const file = readdirSync(path.join(cacheFolder, 'ship'))[0];
    const form = new FormData();
    form.append('image', new Blob([readFileSync(path.join(cacheFolder, 'ship', file))]), file);
    const r = await call(svc.url, 'POST', '/v1/caches/cifar/predict?neighbours=2', form);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const [first] = r.body.predictions[0].neighbours;
    assert.equal(first.id, contentId(readFileSync(path.join(cacheFolder, 'ship', file))), 'a folder item is known by its content id');
    assert.equal(first.class, 'ship');
    assert.ok(Math.abs(first.similarity - 1) < 1e-4);
  });

  test('multipart upload of several images answers for each, in order', async () => {
    const form = new FormData();
    for (const c of ['cat', 'ship']) form.append('images', new Blob([readFileSync(path.join(SAMPLE, 'heldout', c, '4500.jpg'))]), `${c}.jpg`);
    form.append('topK', '3');
    const r = await call(svc.url, 'POST', '/v1/caches/cifar/predict', form);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.predictions.length, 2);
    assert.equal(r.body.predictions[0].top.length, 3);
    // the same cat image as JSON base64 earlier; a batch of 2 rounds the Gemm differently from a batch of 1
    const earlier = firstPrediction.predictions[0].top.slice(0, 3);
    r.body.predictions[0].top.forEach((t: any, i: number) => {
      assert.equal(t.class, earlier[i].class);
      for (const f of ['p', 'pModel', 'pCache']) assert.ok(Math.abs(t[f] - earlier[i][f]) < 1e-5, `${f}: ${t[f]} vs ${earlier[i][f]}`);
    });
    assert.notDeepEqual(r.body.predictions[1].top, r.body.predictions[0].top);
  });

  test('λ = 0 is the model alone; λ = 1 is the cache alone', async () => {
    const image = readFileSync(CAT).toString('base64');
    const model = (await call(svc.url, 'POST', '/v1/caches/cifar/predict', { image, lambda: 0, topK: 10 })).body.predictions[0].top;
    for (const t of model) assert.equal(t.p, t.pModel);
    const cache = (await call(svc.url, 'POST', '/v1/caches/cifar/predict', { image, lambda: 1, topK: 10 })).body.predictions[0].top;
    for (const t of cache) assert.equal(t.p, t.pCache);
  });

  test('PATCH changes θ and λ', async () => {
    const r = await call(svc.url, 'PATCH', '/v1/caches/cifar', { theta: 60 });
    assert.equal(r.status, 200);
    assert.equal(r.body.theta, 60);
    assert.equal(r.body.lambda, 0.5111);
    await call(svc.url, 'PATCH', '/v1/caches/cifar', { theta: 80 });
  });

  test('an eval job reports the error of the model, the cache model and the cache alone', async () => {
    const r = await call(svc.url, 'POST', '/v1/caches/cifar/eval-jobs', { source: { type: 'folder', path: sampleFolder('heldout', 3) } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const job = await waitForJob(svc.url, r.body.id);
    assert.equal(job.state, 'completed', job.failedReason);
    assert.equal(job.result.images, 30);
    assert.equal(job.result.theta, 80);
    for (const e of Object.values(job.result.error) as number[]) assert.ok(e >= 0 && e <= 1);
    assert.equal(job.result.correct.model, Math.round((1 - job.result.error.model) * 30));
    for (const which of ['model', 'cacheModel', 'cacheOnly']) assert.ok(job.result.top5Error[which] <= job.result.error[which], which);
    assert.equal(job.result.perClass.length, 10);
    assert.deepEqual(
      job.result.perClass.map((c: any) => c.images),
      Array(10).fill(3),
    );
    const wrong = job.result.perClass.reduce((sum: number, c: any) => sum + c.error.model * c.images, 0);
    assert.ok(Math.abs(wrong - job.result.error.model * 30) < 1e-4, 'per-class errors add up to the total');
    const md = await (await fetch(`${svc.url}/v1/jobs/${job.id}/report?format=md`)).text();
    assert.match(md, /\| top-5 error \|/);
    assert.match(md, /\| airplane \| 3 \|/);
  });

  test('a restarted service loads its snapshot and serves the same predictions', async () => {
    await svc.close();
    svc = await start(svc.dataDir);
    const info = await call(svc.url, 'GET', '/v1/caches/cifar');
    assert.equal(info.body.size, 200);
    const r = await call(svc.url, 'POST', '/v1/caches/cifar/predict', { image: readFileSync(CAT).toString('base64'), topK: 10, neighbours: 5 });
    assert.deepEqual(r.body, firstPrediction);
  });
});

describe('sources, models and snapshots', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  const tiny = writeTinyModel();
  const shapes = tempDir('cachet-shapes-');
  const png = (r: number, g: number, b: number) =>
    sharp({ create: { width: 16, height: 16, channels: 3, background: { r, g, b } } })
      .png()
      .toBuffer();

  // an image server for URL sources; the service fetches only under its prefix
  const images = http.createServer((req, res) => {
    if (req.url === '/red.png') return void png(250, 10, 10).then((b) => res.end(b));
    if (req.url === '/elsewhere') return void res.writeHead(302, { location: 'http://127.0.0.2:9/red.png' }).end();
    res.statusCode = 404;
    res.end();
  });
  let imagesBase = '';

  before(async () => {
    await new Promise<void>((r) => images.listen(0, '127.0.0.1', () => r()));
    imagesBase = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
    svc = await start(undefined, undefined, { urlPrefixes: `${imagesBase}/` });
    writeFileSync(path.join(shapes, 'red.png'), await png(250, 10, 10));
    writeFileSync(path.join(shapes, 'blue.png'), await png(10, 10, 250));
    writeFileSync(path.join(shapes, 'broken.png'), Buffer.from('not a png at all'));
    writeFileSync(path.join(shapes, 'items.csv'), 'path,label,id\nred.png,circle,r1\nblue.png,2,b1\nbroken.png,star,x1\n');
    writeFileSync(path.join(shapes, 'items.jsonl'), '{"path":"red.png","label":"square"}\n{"path":"blue.png","label":"star","id":"b2"}\n');
  });
  after(async () => {
    images.close();
    await svc.close();
  });

  test('an NCHW model with logits, fed from CSV and JSONL manifests; bad images are per-item errors', async () => {
    const c = await call(svc.url, 'POST', '/v1/caches', { name: 'tiny', model: tiny.modelPath, keyLayers: ['relu2', 'feat'], index: { type: 'hnsw' } });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.equal(c.body.dimension, 8 * 16 * 16 + 8);
    assert.equal(c.body.index.type, 'hnsw');
    const csv = await waitForJob(
      svc.url,
      (await call(svc.url, 'POST', '/v1/caches/tiny/index-jobs', { source: { type: 'manifest', path: path.join(shapes, 'items.csv') } })).body.id,
    );
    assert.equal(csv.state, 'completed');
    assert.equal(csv.result.added, 2);
    assert.equal(csv.errorCount, 1);
    assert.equal(csv.errors[0].id, 'x1');
    assert.match(csv.errors[0].error, /format|image/i);
    const jsonl = await waitForJob(
      svc.url,
      (await call(svc.url, 'POST', '/v1/caches/tiny/index-jobs', { source: { type: 'manifest', path: path.join(shapes, 'items.jsonl'), idFrom: 'path' } })).body
        .id,
    );
    assert.equal(jsonl.result.added, 2); // ids "red.png" (its path: idFrom) and "b2"
    const r = await call(svc.url, 'POST', '/v1/caches/tiny/predict', { image: (await png(250, 10, 10)).toString('base64'), neighbours: 4, topK: 4 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const ids = r.body.predictions[0].neighbours.map((n: any) => n.id).sort();
    assert.deepEqual(ids, ['b1', 'b2', 'r1', 'red.png']);
    const sum = r.body.predictions[0].top.reduce((s: number, t: any) => s + t.pModel, 0);
    assert.ok(Math.abs(sum - 1) < 1e-5, 'logits are turned into probabilities');
  });

  test("a manifest of http URLs: images are fetched; a missing one is that item's error", async () => {
    const base = imagesBase;
    writeFileSync(path.join(shapes, 'urls.csv'), `path,label,id\n${base}/red.png,star,u1\n${base}/gone.png,star,u2\n${base}/elsewhere,star,u3\n`);
    const job = await waitForJob(
      svc.url,
      (await call(svc.url, 'POST', '/v1/caches/tiny/index-jobs', { source: { type: 'manifest', path: path.join(shapes, 'urls.csv') } })).body.id,
    );
    assert.equal(job.result.added, 1);
    assert.deepEqual(
      job.errors.map((e: any) => e.id),
      ['u2', 'u3'],
    );
    assert.match(job.errors[0].error, /HTTP 404/);
    assert.match(job.errors[1].error, /not under a URL prefix/, 'a redirect out of the allowed prefixes is not followed');
    // a URL outside the prefixes is refused at submission
    writeFileSync(path.join(shapes, 'outside.csv'), `path,label,id\nhttp://127.0.0.1:1/x.png,star,o1\n`);
    const refused = await call(svc.url, 'POST', '/v1/caches/tiny/index-jobs', { source: { type: 'manifest', path: path.join(shapes, 'outside.csv') } });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error.code, 'url_not_allowed');
  });

  test('PATCH changes k and efSearch of an hnsw cache without re-indexing', async () => {
    const r = await call(svc.url, 'PATCH', '/v1/caches/tiny', { k: 3, efSearch: 64 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.k, 3);
    assert.equal(r.body.index.params.efSearch, 64);
    const bad = await call(svc.url, 'PATCH', '/v1/caches/tiny', { efSearch: 2 });
    assert.equal(bad.status, 400);
    await call(svc.url, 'PATCH', '/v1/caches/tiny', { k: 200, efSearch: 512 });
  });

  test('inline items with labels; an id given twice is one item', async () => {
    const image = (await png(10, 250, 10)).toString('base64');
    const r = await call(svc.url, 'POST', '/v1/caches/tiny/index-jobs', {
      source: {
        type: 'inline',
        items: [
          { image, label: 'triangle', id: 'g' },
          { image, label: 'triangle', id: 'g' },
          { image, label: 1 },
        ],
      },
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const job = await waitForJob(svc.url, r.body.id);
    assert.equal(job.result.added, 2);
    assert.equal(job.result.duplicates, 1);
    assert.equal(job.result.cacheSize, 7);
  });

  test('index "auto" moves from exact to hnsw past its threshold, and stays hnsw after a restart', async () => {
    const c = await call(svc.url, 'POST', '/v1/caches', {
      name: 'grows',
      model: tiny.modelPath,
      keyLayers: ['relu2'],
      index: { type: 'auto', exactThreshold: 4 },
    });
    assert.equal(c.body.index.type, 'exact');
    const items = await Promise.all([0, 40, 80, 120, 160, 200].map(async (v, i) => ({ image: (await png(v, 255 - v, 128)).toString('base64'), label: i % 4 })));
    await waitForJob(svc.url, (await call(svc.url, 'POST', '/v1/caches/grows/index-jobs', { source: { type: 'inline', items: items.slice(0, 4) } })).body.id);
    assert.equal((await call(svc.url, 'GET', '/v1/caches/grows')).body.index.type, 'exact');
    const exact = (await call(svc.url, 'POST', '/v1/caches/grows/predict', { image: items[1].image, neighbours: 1 })).body.predictions[0];
    await waitForJob(svc.url, (await call(svc.url, 'POST', '/v1/caches/grows/index-jobs', { source: { type: 'inline', items } })).body.id);
    const info = (await call(svc.url, 'GET', '/v1/caches/grows')).body;
    assert.deepEqual([info.index.type, info.index.scoring, info.size], ['hnsw', 'k-nearest', 6]);
    const hnsw = (await call(svc.url, 'POST', '/v1/caches/grows/predict', { image: items[1].image, neighbours: 1 })).body.predictions[0];
    assert.equal(hnsw.neighbours[0].id, exact.neighbours[0].id);
    await svc.close();
    svc = await start(svc.dataDir);
    assert.equal((await call(svc.url, 'GET', '/v1/caches/grows')).body.index.type, 'hnsw');
    const again = (await call(svc.url, 'POST', '/v1/caches/grows/predict', { image: items[1].image, neighbours: 1 })).body.predictions[0];
    assert.deepEqual(again, hnsw);
  });

  test('a snapshot built with another model is refused with a clear message; other caches keep serving', async () => {
    await svc.close();
    writeFileSync(tiny.modelPath, buildTinyNchwLogitsModel({ seed: 99 }));
    svc = await start(svc.dataDir);
    const r = await call(svc.url, 'GET', '/v1/caches/tiny');
    assert.equal(r.status, 409);
    assert.equal(r.body.error.code, 'cache_unavailable');
    assert.match(r.body.error.message, /sha256.*Restore the model/s);
    const list = await call(svc.url, 'GET', '/v1/caches');
    assert.equal(list.body.caches[0].status, 'failed');
    assert.equal((await call(svc.url, 'GET', '/healthz')).status, 200);
    writeFileSync(tiny.modelPath, tiny.bytes);
  });
});

describe('shutdown in the middle of an index job', () => {
  test('stops between batches, keeps what it added, and the job goes on at the next start', async () => {
    let svc = await start();
    await call(svc.url, 'POST', '/v1/caches', { name: 'c', model: RESNET, keyLayers: ['activation_18'], index: { type: 'exact' } });
    const folder = sampleFolder('cache', 40);
    const submitted = await call(svc.url, 'POST', '/v1/caches/c/index-jobs', { source: { type: 'folder', path: folder }, flip: true });
    for (;;) {
      const job = (await call(svc.url, 'GET', `/v1/jobs/${submitted.body.id}`)).body;
      if (job.progress.done > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    await svc.close();
    const interrupted = await svc.queue.get(submitted.body.id);
    assert.equal(interrupted?.state, 'waiting', 'not failed: it goes on at the next start');

    svc = await start(svc.dataDir);
    const resumed = await waitForJob(svc.url, submitted.body.id);
    assert.equal(resumed.state, 'completed');
    assert.equal(resumed.result.cacheSize, 800);
    assert.ok(resumed.result.duplicates >= 2 * interrupted!.progress.done, 'what was added before the stop is skipped');
    assert.equal(resumed.result.added + resumed.result.duplicates, 800);
    const again = await waitForJob(
      svc.url,
      (await call(svc.url, 'POST', '/v1/caches/c/index-jobs', { source: { type: 'folder', path: folder }, flip: true })).body.id,
    );
    assert.equal(again.result.duplicates, 800, 'a resubmission adds nothing');
    assert.equal(again.result.added, 0);
    await svc.close();
  });
});

describe('reduced search keys', () => {
  for (const reduce of ['pca', 'random'] as const) {
    test(`${reduce}: the index holds projected keys, candidates are re-ranked with the full keys, and it all survives a restart`, async () => {
      let svc = await start();
      const searchKey = { reduce, dimension: 32, fitSample: 100, rerank: true, fullKeys: 'float16' };
      const c = await call(svc.url, 'POST', '/v1/caches', { name: 'r', model: RESNET, keyLayers: ['activation_18'], index: { type: 'hnsw' }, searchKey });
      assert.equal(c.status, 201, JSON.stringify(c.body));
      if (reduce === 'pca')
        assert.match(
          c.body.searchKey.pending,
          /fitted once the cache holds 100 items \(it holds 0\); until then the index is exact over the full 4096-dim keys/,
        );
      else assert.equal(c.body.searchKey.pending, null, 'a random projection needs no sample');
      const folder = sampleFolder('cache', 10);
      const job = await waitForJob(
        svc.url,
        (await call(svc.url, 'POST', '/v1/caches/r/index-jobs', { source: { type: 'folder', path: folder }, flip: true })).body.id,
      );
      assert.equal(job.result.cacheSize, 200, JSON.stringify(job));
      const info = (await call(svc.url, 'GET', '/v1/caches/r')).body;
      assert.equal(info.searchKey.dimension, 32);
      assert.equal(info.dimension, 32);
      assert.ok(info.searchKey.projection, 'a projection is in place');
      assert.equal(info.searchKey.pending, null);
      assert.equal(info.searchKey.rerank, true);
      assert.equal(info.searchKey.fullKeysBytes > 0, true);
      assert.equal(info.index.type, 'hnsw');

      const file = readdirSync(path.join(folder, 'horse'))[0];
      const image = readFileSync(path.join(folder, 'horse', file)).toString('base64');
      const first = (await call(svc.url, 'POST', '/v1/caches/r/predict', { image, neighbours: 3, topK: 3 })).body;
      const nearest = first.predictions[0].neighbours[0];
      assert.equal(nearest.id, contentId(readFileSync(path.join(folder, 'horse', file))));
      assert.ok(Math.abs(nearest.similarity - 1) < 2e-3, `re-ranked with the full (float16) key: ${nearest.similarity}`);

      await svc.close();
      svc = await start(svc.dataDir);
      const again = (await call(svc.url, 'POST', '/v1/caches/r/predict', { image, neighbours: 3, topK: 3 })).body;
      assert.deepEqual(again, first);
      assert.equal((await call(svc.url, 'GET', '/v1/caches/r')).body.searchKey.projection, info.searchKey.projection);
      await svc.close();
    });
  }
});
