// Bad input of every kind gets a 4xx JSON error that says what to fix; the service
// keeps serving and nothing stored is lost.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { call, PAPER_KEY_LAYERS, RESNET, SAMPLE, sampleFolder, start, tempDir, waitForJob, Reply } from './harness.js';

const CAT = readFileSync(path.join(SAMPLE, 'heldout', 'cat', '4500.jpg'));
const MAX_BODY = 256 * 1024;

function assertError(r: Reply, status: number, code: string, pattern?: RegExp) {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.error.code, code, r.body.error.message);
  assert.ok(r.body.error.message.length > 10, 'the message says what to fix');
  if (pattern) assert.match(r.body.error.message, pattern);
}

describe('bad input', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  let before_: any;
  const predict = (body: unknown) => call(svc.url, 'POST', '/v1/caches/cifar/predict', body);

  before(async () => {
    svc = await start(tempDir(), { maxBodyBytes: MAX_BODY, maxImagesPerRequest: 4 });
    await call(svc.url, 'POST', '/v1/caches', { name: 'cifar', model: RESNET, keyLayers: PAPER_KEY_LAYERS, theta: 80, lambda: 0.5 });
    const r = await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 2) } });
    await waitForJob(svc.url, r.body.id);
    before_ = (await predict({ image: CAT.toString('base64'), neighbours: 3 })).body;
  });

  after(async () => {
    // the service still serves, with everything it stored
    assert.equal((await call(svc.url, 'GET', '/healthz')).status, 200);
    assert.equal((await call(svc.url, 'GET', '/v1/caches/cifar')).body.size, 20);
    assert.deepEqual((await predict({ image: CAT.toString('base64'), neighbours: 3 })).body, before_);
    await svc.close();
  });

  test('bytes that are not an image', async () => {
    assertError(await predict({ image: Buffer.from('hello, this is text').toString('base64') }), 400, 'bad_image', /image 0/);
  });

  test('empty images: zero bytes uploaded, base64 of nothing', async () => {
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(0)]), 'empty.jpg');
    const raw = await fetch(`${svc.url}/v1/caches/cifar/predict`, { method: 'POST', body: form });
    assertError({ status: raw.status, body: await raw.json(), headers: raw.headers }, 400, 'bad_image', /empty/);
    for (const image of ['====', ' ']) assertError(await predict({ image }), 400, 'bad_image', /no bytes/);
  });

  test('multipart without a boundary, or with a broken part', async () => {
    const cases: [string, string][] = [
      ['multipart/form-data', 'abc'],
      ['multipart/form-data; boundary=xx', '--xx\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\nabc'],
    ];
    for (const [type, body] of cases) {
      const raw = await fetch(`${svc.url}/v1/caches/cifar/predict`, { method: 'POST', body, headers: { 'content-type': type } });
      assertError({ status: raw.status, body: await raw.json(), headers: raw.headers }, 400, 'bad_multipart', /multipart/);
    }
  });

  test('JSON nested thousands deep', async () => {
    for (const body of ['{"a":'.repeat(6000) + '1' + '}'.repeat(6000), '['.repeat(6000) + ']'.repeat(6000)]) {
      const raw = await fetch(`${svc.url}/v1/caches`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      assert.equal(raw.status, 400);
    }
  });

  test('θ, λ and counts that are not numbers are refused, not taken as 0 or 1', async () => {
    const image = CAT.toString('base64');
    for (const theta of [null, '', true, [1], {}, 'NaN', 'Infinity', '1e999']) {
      assertError(await predict({ image, theta }), 400, 'invalid_request', /theta/);
    }
    for (const neighbours of [null, true, '', '2.5']) assertError(await predict({ image, neighbours }), 400, 'invalid_request', /neighbours/);
    assertError(await call(svc.url, 'POST', '/v1/caches/cifar/predict?theta=', { image }), 400, 'invalid_request', /theta/);
    assert.equal((await predict({ image, theta: '60' })).body.theta, 60, 'the decimal text of a number is a number');
  });

  test('an item id ending with the mirror-image suffix is refused, not silently dropped', async () => {
    const r = await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', {
      source: { type: 'inline', items: [{ image: CAT.toString('base64'), label: 3, id: 'my-cat#flip' }] },
    });
    assertError(r, 400, 'bad_source', /#flip/);
  });

  test('a string that is not base64', async () => {
    assertError(await predict({ image: '%%% not base64 %%%' }), 400, 'bad_image', /base64/);
  });

  test('a truncated JPEG', async () => {
    const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } })
      .jpeg()
      .toBuffer();
    assertError(await predict({ image: jpeg.subarray(0, jpeg.length >> 1).toString('base64') }), 400, 'bad_image');
  });

  test('a GIF (not an accepted format)', async () => {
    const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#ff0000' } })
      .gif()
      .toBuffer();
    assertError(await predict({ image: gif.toString('base64') }), 400, 'bad_image', /jpeg|png|webp/i);
  });

  test('a decompression bomb: a small PNG over the pixel limit', async () => {
    const bomb = await sharp({ create: { width: 5000, height: 5000, channels: 3, background: '#000000' } })
      .png({ compressionLevel: 9 })
      .toBuffer();
    assert.ok(bomb.length < MAX_BODY / 2, `bomb is ${bomb.length} bytes`);
    assertError(await predict({ image: bomb.toString('base64') }), 413, 'image_too_large', /pixel/);
  });

  test('a body over the size limit', async () => {
    const big = Buffer.alloc(MAX_BODY * 2, 1).toString('base64');
    assertError(await predict({ image: big }), 413, 'payload_too_large', /limit/);
    const form = new FormData();
    form.append('image', new Blob([Buffer.alloc(MAX_BODY * 2)]), 'big.jpg');
    assertError(await call(svc.url, 'POST', '/v1/caches/cifar/predict', form), 413, 'payload_too_large');
  });

  test('too many images in one request', async () => {
    assertError(await predict({ images: Array(5).fill(CAT.toString('base64')) }), 413, 'too_many_images', /limit is 4/);
  });

  test('invalid JSON', async () => {
    assertError(await call(svc.url, 'POST', '/v1/caches/cifar/predict', '{"image": ', { 'content-type': 'application/json' }), 400, 'invalid_json');
  });

  test('missing and mistyped fields', async () => {
    assertError(await predict({}), 400, 'missing_images');
    assertError(await predict({ image: CAT.toString('base64'), topK: 'many' }), 400, 'invalid_request', /topK/);
    assertError(await predict({ image: CAT.toString('base64'), colour: 'red' }), 400, 'invalid_request', /colour/);
    assertError(await call(svc.url, 'POST', '/v1/caches', {}), 400, 'invalid_cache_definition', /name.*model.*keyLayers/s);
    // "#" marks a shard of a sharded cache; shards need distributed mode
    assertError(
      await call(svc.url, 'POST', '/v1/caches', { name: 'x#1', model: RESNET, keyLayers: ['activation_18'] }),
      400,
      'invalid_cache_definition',
      /"#" marks a shard/,
    );
    assertError(
      await call(svc.url, 'POST', '/v1/caches', { name: 'x', model: RESNET, keyLayers: ['activation_18'], shards: 2 }),
      409,
      'distributed_only',
      /REDIS_URL/,
    );
    assertError(
      await call(svc.url, 'POST', '/v1/caches', { name: 'x', model: RESNET, keyLayers: ['activation_18'], shards: 0 }),
      400,
      'invalid_cache_definition',
      /shards/,
    );
    assertError(
      await call(svc.url, 'POST', '/v1/caches', { name: 'x', model: RESNET, keyLayers: 'activation_14' }),
      400,
      'invalid_cache_definition',
      /keyLayers/,
    );
    assertError(await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: { type: 'ftp', path: '/x' } }), 400, 'invalid_request', /source/);
    assertError(await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', 'path=/x', { 'content-type': 'text/plain' }), 400, 'invalid_request');
  });

  test('an unknown cache, job or route', async () => {
    assertError(await call(svc.url, 'POST', '/v1/caches/nope/predict', { image: CAT.toString('base64') }), 404, 'unknown_cache', /cifar/);
    assertError(await call(svc.url, 'GET', '/v1/caches/nope'), 404, 'unknown_cache');
    assertError(await call(svc.url, 'GET', '/v1/jobs/123'), 404, 'unknown_job');
    assertError(await call(svc.url, 'GET', '/v2/anything'), 404, 'unknown_route');
  });

  test('an unknown layer name, a missing model, a taken name', async () => {
    assertError(await call(svc.url, 'POST', '/v1/caches', { name: 'x', model: RESNET, keyLayers: ['activation_99'] }), 400, 'unknown_layer', /activation_1/);
    assertError(await call(svc.url, 'POST', '/v1/caches', { name: 'x', model: '/nowhere/model.onnx', keyLayers: ['a'] }), 400, 'bad_model', /nowhere/);
    assertError(await call(svc.url, 'POST', '/v1/caches', { name: 'cifar', model: RESNET, keyLayers: PAPER_KEY_LAYERS }), 409, 'cache_exists');
    assertError(
      await call(svc.url, 'POST', '/v1/caches', { name: '../etc', model: RESNET, keyLayers: PAPER_KEY_LAYERS }),
      400,
      'invalid_cache_definition',
      /name/,
    );
  });

  test('a label outside the model’s classes', async () => {
    const inline = { type: 'inline', items: [{ image: CAT.toString('base64'), label: 'unicorn' }] };
    assertError(await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: inline }), 400, 'label_out_of_range', /airplane.*0–9/);
    const byIndex = { type: 'inline', items: [{ image: CAT.toString('base64'), label: 10 }] };
    assertError(await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: byIndex }), 400, 'label_out_of_range');
    const dir = tempDir();
    writeFileSync(path.join(dir, 'm.csv'), `path,label\n${path.join(SAMPLE, 'heldout', 'cat', '4500.jpg')},cat\nx.jpg,unicorn\n`);
    assertError(
      await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: { type: 'manifest', path: path.join(dir, 'm.csv') } }),
      400,
      'label_out_of_range',
      /line 3/,
    );
  });

  test('a manifest or folder that does not exist', async () => {
    assertError(
      await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: { type: 'manifest', path: '/nowhere/m.csv' } }),
      400,
      'bad_source',
      /no such file/,
    );
    assertError(
      await call(svc.url, 'POST', '/v1/caches/cifar/index-jobs', { source: { type: 'folder', path: '/nowhere' } }),
      400,
      'bad_source',
      /no such folder/,
    );
  });

  test('θ or λ out of range, or not a number', async () => {
    assertError(
      await call(svc.url, 'POST', '/v1/caches', { name: 'y', model: RESNET, keyLayers: PAPER_KEY_LAYERS, lambda: 2 }),
      400,
      'invalid_cache_definition',
      /lambda/,
    );
    assertError(await predict({ image: CAT.toString('base64'), theta: -1 }), 400, 'invalid_request', /theta/);
    assertError(await predict({ image: CAT.toString('base64'), lambda: 'NaN' }), 400, 'invalid_request', /lambda/);
    assertError(await call(svc.url, 'PATCH', '/v1/caches/cifar', { lambda: 1.5 }), 400, 'invalid_request', /lambda/);
    assertError(await call(svc.url, 'POST', '/v1/caches/cifar/predict?theta=1e9', { image: CAT.toString('base64') }), 400, 'invalid_request', /theta/);
  });
});
