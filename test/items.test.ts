// Deleting items and caches (through the key log), and items' images, in embedded mode.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { call, PAPER_KEY_LAYERS, RESNET, SAMPLE, sampleFolder, start, waitForJob } from './harness.js';

const CAT = readFileSync(path.join(SAMPLE, 'heldout', 'cat', '4500.jpg')).toString('base64');

async function predictNeighbours(url: string, cache: string) {
  const r = await call(url, 'POST', `/v1/caches/${cache}/predict`, { image: CAT, neighbours: 5, topK: 10 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.predictions[0];
}

describe('deleting items and caches; item images', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  const folder = sampleFolder('cache', 3);

  before(async () => {
    svc = await start();
    for (const type of ['exact', 'hnsw']) {
      const created = await call(svc.url, 'POST', '/v1/caches', {
        name: type,
        model: RESNET,
        keyLayers: PAPER_KEY_LAYERS,
        theta: 80,
        lambda: 0.5111,
        index: { type },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const job = await call(svc.url, 'POST', `/v1/caches/${type}/index-jobs`, { source: { type: 'folder', path: folder, idFrom: 'path' }, flip: true });
      assert.equal((await waitForJob(svc.url, job.body.id)).result.cacheSize, 60);
    }
  });
  after(async () => svc?.close());

  for (const type of ['exact', 'hnsw']) {
    test(`${type}: a deleted item leaves the neighbours and p_cache, survives a restart, and can be added again`, async () => {
      const before = await predictNeighbours(svc.url, type);
      const nearest: string = before.neighbours[0].id;
      const second: string = before.neighbours[1].id;
      const one = await call(svc.url, 'DELETE', `/v1/caches/${type}/items/${encodeURIComponent(nearest)}`);
      assert.deepEqual([one.status, one.body], [200, { deleted: 1, cacheSize: 59 }]);
      const again = await call(svc.url, 'DELETE', `/v1/caches/${type}/items/${encodeURIComponent(nearest)}`);
      assert.deepEqual([again.status, again.body.error.code], [404, 'unknown_item']);
      const many = await call(svc.url, 'POST', `/v1/caches/${type}/delete-items`, { ids: [second, 'no-such-item'] });
      assert.deepEqual(many.body, { deleted: 1, notFound: ['no-such-item'], cacheSize: 58 });

      const after = await predictNeighbours(svc.url, type);
      const ids = after.neighbours.map((n: { id: string }) => n.id);
      assert.ok(!ids.includes(nearest) && !ids.includes(second), `deleted items still among the neighbours: ${ids}`);
      assert.equal(after.neighbours[0].id, before.neighbours[2].id, 'the next nearest moves up');
      assert.notDeepEqual(
        after.top.map((t: { pCache: number }) => t.pCache),
        before.top.map((t: { pCache: number }) => t.pCache),
      );
      assert.equal((await call(svc.url, 'GET', `/v1/caches/${type}`)).body.size, 58);

      // the deletions are in the key log (after the index job's snapshot): a restart replays them…
      await svc.close();
      svc = await start(svc.dataDir);
      assert.deepEqual(await predictNeighbours(svc.url, type), after);
      // …and a snapshot taken at shutdown keeps them too
      await svc.close();
      svc = await start(svc.dataDir);
      assert.deepEqual(await predictNeighbours(svc.url, type), after);

      const reindex = await call(svc.url, 'POST', `/v1/caches/${type}/index-jobs`, { source: { type: 'folder', path: folder, idFrom: 'path' }, flip: true });
      const job = await waitForJob(svc.url, reindex.body.id);
      assert.deepEqual([job.result.added, job.result.duplicates, job.result.cacheSize], [2, 58, 60]);
      const back = await predictNeighbours(svc.url, type);
      assert.deepEqual(
        back.neighbours.slice(0, 2).map((n: { id: string }) => n.id),
        [nearest, second],
      );
      // the same items again give the same prediction (summed in another order: equal to rounding)
      assert.deepEqual(
        back.top.map((t: { class: string }) => t.class),
        before.top.map((t: { class: string }) => t.class),
      );
      back.top.forEach((t: { p: number }, i: number) => assert.ok(Math.abs(t.p - before.top[i].p) < 1e-6));
    });
  }

  test('an item image is a thumbnail of its source; a mirror item is mirrored', async () => {
    const id = 'cat/' + (await import('node:fs')).readdirSync(path.join(folder, 'cat')).sort()[0];
    const image = await fetch(`${svc.url}/v1/caches/exact/items/${encodeURIComponent(id)}/image`);
    assert.equal(image.status, 200);
    assert.equal(image.headers.get('content-type'), 'image/png');
    const got = await sharp(Buffer.from(await image.arrayBuffer()))
      .raw()
      .toBuffer({ resolveWithObject: true });
    const want = await sharp(path.join(folder, id)).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([got.info.width, got.info.height], [32, 32], 'small images are not enlarged');
    assert.deepEqual(got.data, want.data);
    const flipped = await fetch(`${svc.url}/v1/caches/exact/items/${encodeURIComponent(id + '#flip')}/image`);
    const mirror = await sharp(Buffer.from(await flipped.arrayBuffer()))
      .raw()
      .toBuffer();
    assert.deepEqual(mirror, await sharp(path.join(folder, id)).flop().raw().toBuffer());

    const unknown = await call(svc.url, 'GET', '/v1/caches/exact/items/nope/image');
    assert.deepEqual([unknown.status, unknown.body.error.code], [404, 'unknown_item']);
    const inline = await call(svc.url, 'POST', '/v1/caches/exact/index-jobs', {
      source: { type: 'inline', items: [{ image: CAT, label: 'cat', id: 'inline-cat' }] },
    });
    await waitForJob(svc.url, inline.body.id);
    const noImage = await call(svc.url, 'GET', '/v1/caches/exact/items/inline-cat/image');
    assert.deepEqual([noImage.status, noImage.body.error.code], [404, 'no_image']);
  });

  test('bad deletions are 4xx and change nothing', async () => {
    const size = (await call(svc.url, 'GET', '/v1/caches/exact')).body.size;
    for (const body of [{}, { ids: [] }, { ids: 'x' }, { ids: [''] }, { ids: ['a'], extra: 1 }]) {
      const r = await call(svc.url, 'POST', '/v1/caches/exact/delete-items', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.code, 'invalid_request');
    }
    assert.equal((await call(svc.url, 'POST', '/v1/caches/nope/delete-items', { ids: ['a'] })).status, 404);
    assert.equal((await call(svc.url, 'DELETE', '/v1/caches/nope')).status, 404);
    assert.equal((await call(svc.url, 'GET', '/v1/caches/exact')).body.size, size);
  });

  test('a deleted cache is gone, with its files; its name can be used again', async () => {
    // a long index job keeps the cache busy
    const big = sampleFolder('cache', 20);
    const running = await call(svc.url, 'POST', '/v1/caches/hnsw/index-jobs', { source: { type: 'folder', path: big } });
    const busy = await call(svc.url, 'DELETE', '/v1/caches/hnsw');
    assert.deepEqual([busy.status, busy.body.error.code], [409, 'cache_busy']);
    assert.match(busy.body.error.message, new RegExp(running.body.id));
    await waitForJob(svc.url, running.body.id);

    const r = await call(svc.url, 'DELETE', '/v1/caches/hnsw');
    assert.deepEqual([r.status, r.body], [200, { deleted: 'hnsw' }]);
    assert.equal((await call(svc.url, 'GET', '/v1/caches/hnsw')).status, 404);
    assert.deepEqual(
      (await call(svc.url, 'GET', '/v1/caches')).body.caches.map((c: { name: string }) => c.name),
      ['exact'],
    );
    assert.equal(existsSync(path.join(svc.dataDir, 'hnsw')), false);
    await svc.close();
    svc = await start(svc.dataDir);
    assert.equal((await call(svc.url, 'GET', '/v1/caches/hnsw')).status, 404, 'still gone after a restart');
    const created = await call(svc.url, 'POST', '/v1/caches', { name: 'hnsw', model: RESNET, keyLayers: ['activation_18'], theta: 50, lambda: 0.5 });
    assert.equal(created.status, 201);
    assert.equal(created.body.size, 0);
    assert.equal((await call(svc.url, 'GET', '/v1/caches/exact')).body.size, 61, 'the other cache is untouched (60 + the inline item)');
  });
});
