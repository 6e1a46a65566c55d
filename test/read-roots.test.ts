// Read roots: with CACHET_READ_ROOTS set, the service reads models and images on a caller's
// behalf only inside those folders (symbolic links resolved), and says so with a 403.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UserError } from '../src/errors/user-error.js';
import { imageBytes } from '../src/sources/fetch.js';
import { ReadRoots } from '../src/sources/read-roots.js';
import { call, RESNET, SAMPLE, start, tempDir, waitForJob } from './harness.js';

async function refused(p: Promise<unknown>): Promise<UserError> {
  const err = await p.then(
    () => assert.fail('must be refused'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof UserError, String(err));
  assert.deepEqual([err.status, err.code], [403, 'path_not_allowed']);
  return err;
}

describe('ReadRoots', () => {
  const base = tempDir('cachet-roots-');
  const inside = path.join(base, 'images');
  const outside = path.join(base, 'elsewhere');
  before(() => {
    mkdirSync(path.join(inside, 'cat'), { recursive: true });
    mkdirSync(outside);
    writeFileSync(path.join(inside, 'cat', 'a.jpg'), 'x');
    writeFileSync(path.join(outside, 'secret.txt'), 'x');
    symlinkSync(path.join(outside, 'secret.txt'), path.join(inside, 'cat', 'link.jpg'));
    symlinkSync(outside, path.join(inside, 'escape'));
  });

  test('files inside a root pass, and so do files not written yet; URLs only under a listed prefix', async () => {
    const roots = ReadRoots.of([inside]);
    await roots.check(path.join(inside, 'cat', 'a.jpg'), 'image');
    await roots.check(inside, 'image folder');
    await roots.check(path.join(inside, 'cat', 'not-yet.jpg'), 'image');
    await assert.rejects(roots.check('https://example.com/cat.jpg', 'image'), /fetches no URLs/);
    const withUrls = roots.withUrls('https://example.com');
    await withUrls.check('https://example.com/cat.jpg', 'image');
    for (const evil of ['https://example.com.evil.net/cat.jpg', 'https://example.com@evil.net/cat.jpg', 'http://example.com/cat.jpg']) {
      await assert.rejects(withUrls.check(evil, 'image'), (e: unknown) => e instanceof UserError && e.code === 'url_not_allowed', evil);
    }
    assert.ok(roots.restricted);
  });

  test('checked again when the file is opened: a symlink swapped in after the check is refused; a FIFO is never read', async () => {
    const roots = ReadRoots.of([inside]);
    const swapped = path.join(inside, 'cat', 'swapped.jpg');
    writeFileSync(swapped, 'an image');
    await roots.check(swapped, 'image'); // at submission: a file inside
    rmSync(swapped);
    symlinkSync(path.join(outside, 'secret.txt'), swapped); // then swapped for a link outside
    await refused(imageBytes(swapped, roots));
    const fifo = path.join(inside, 'cat', 'fifo.jpg');
    execFileSync('mkfifo', [fifo]);
    const t0 = Date.now();
    await assert.rejects(imageBytes(fifo, roots), /not a regular file/);
    assert.ok(Date.now() - t0 < 5000, 'refused at once, not blocked waiting for a writer');
  });

  test('outside, by "..", by a symbolic link to a file or a folder outside: 403 naming the path and the roots', async () => {
    const roots = ReadRoots.of(inside);
    const err = await refused(roots.check(path.join(outside, 'secret.txt'), 'image'));
    assert.match(err.message, new RegExp(`${outside}/secret\\.txt is outside .*${inside}`));
    await refused(roots.check(path.join(inside, '..', 'elsewhere', 'secret.txt'), 'image'));
    await refused(roots.check(path.join(inside, 'cat', 'link.jpg'), 'image'));
    await refused(roots.check(path.join(inside, 'escape', 'secret.txt'), 'image'));
    await refused(roots.check(`${inside}-sibling/x.jpg`, 'image'));
    await refused(roots.checkAll([path.join(inside, 'cat', 'a.jpg'), '/etc/passwd'], 'image'));
  });

  test('no roots: anywhere; a root that does not exist stops the start', async () => {
    for (const none of [undefined, '', []]) {
      const roots = ReadRoots.of(none);
      assert.equal(roots.restricted, false);
      await roots.check('/etc/passwd', 'image');
    }
    assert.throws(() => ReadRoots.of(`${inside}:${path.join(base, 'typo')}`), /read root .*typo does not exist/);
    assert.throws(() => ReadRoots.of(path.join(inside, 'cat', 'a.jpg')), /not a folder/);
  });
});

describe('a service with read roots', () => {
  const base = tempDir('cachet-roots-svc-');
  const models = path.join(base, 'models');
  const images = path.join(base, 'images');
  const dataDir = path.join(base, 'indexes');
  const MODEL = path.join(models, 'resnet20.onnx');
  let svc: Awaited<ReturnType<typeof start>>;

  before(async () => {
    mkdirSync(models);
    copyFileSync(RESNET, MODEL);
    copyFileSync(RESNET.replace(/\.onnx$/, '.spec.json'), MODEL.replace(/\.onnx$/, '.spec.json'));
    for (const c of ['cat', 'dog']) {
      mkdirSync(path.join(images, 'train', c), { recursive: true });
      for (const f of readdirSync(path.join(SAMPLE, 'cache', c))
        .sort()
        .slice(0, 3))
        copyFileSync(path.join(SAMPLE, 'cache', c, f), path.join(images, 'train', c, f));
    }
    // a manifest inside the roots that lists an image outside them
    writeFileSync(
      path.join(images, 'sneaky.csv'),
      `path,label\ntrain/cat/${readdirSync(path.join(images, 'train', 'cat'))[0]},cat\n${path.join(SAMPLE, 'cache', 'dog', readdirSync(path.join(SAMPLE, 'cache', 'dog'))[0])},dog\n`,
    );
    svc = await start(dataDir, undefined, { readRoots: [models, images] });
  });
  after(async () => svc.close());

  test('a FIFO as a manifest or as a model is refused at once; the service goes on serving', async () => {
    execFileSync('mkfifo', [path.join(images, 'evil.csv'), path.join(models, 'evil.onnx')]);
    copyFileSync(MODEL.replace(/\.onnx$/, '.spec.json'), path.join(models, 'evil.spec.json')); // so that the model itself is read
    for (let i = 0; i < 6; i++) {
      const r = await call(svc.url, 'POST', '/v1/caches/ok/index-jobs', { source: { type: 'manifest', path: path.join(images, 'evil.csv') } });
      assert.ok(r.status === 400 || r.status === 404, JSON.stringify(r.body));
    }
    const manifest = await call(svc.url, 'POST', '/v1/caches', { name: 'fifo', model: MODEL, keyLayers: ['activation_18'] });
    const evilJob = await call(svc.url, 'POST', '/v1/caches/fifo/index-jobs', { source: { type: 'manifest', path: path.join(images, 'evil.csv') } });
    assert.equal(evilJob.status, 400);
    assert.match(evilJob.body.error.message, /not a regular file/);
    const model = await call(svc.url, 'POST', '/v1/caches', { name: 'fifo-model', model: path.join(models, 'evil.onnx'), keyLayers: ['x'] });
    assert.equal(model.status, 400);
    assert.equal(model.body.error.code, 'bad_model');
    assert.equal(manifest.status, 201);
    assert.equal((await call(svc.url, 'DELETE', '/v1/caches/fifo')).status, 200);
    assert.equal((await call(svc.url, 'GET', '/healthz')).status, 200);
  });

  test('a model outside the roots is refused; the copy inside is taken', async () => {
    const outside = await call(svc.url, 'POST', '/v1/caches', { name: 'c', model: RESNET, keyLayers: ['activation_18'] });
    assert.equal(outside.status, 403, JSON.stringify(outside.body));
    assert.equal(outside.body.error.code, 'path_not_allowed');
    assert.match(outside.body.error.message, /model .*cifar10-resnet20\.onnx is outside/);
    const inside = await call(svc.url, 'POST', '/v1/caches', { name: 'c', model: MODEL, keyLayers: ['activation_18'], index: { type: 'exact' } });
    assert.equal(inside.status, 201, JSON.stringify(inside.body));
  });

  test('job sources: a folder outside, and a manifest listing an image outside, are refused; nothing is queued', async () => {
    const folder = await call(svc.url, 'POST', '/v1/caches/c/index-jobs', { source: { type: 'folder', path: path.join(SAMPLE, 'cache') } });
    assert.equal(folder.status, 403, JSON.stringify(folder.body));
    const manifest = await call(svc.url, 'POST', '/v1/caches/c/index-jobs', { source: { type: 'manifest', path: path.join(images, 'sneaky.csv') } });
    assert.equal(manifest.status, 403, JSON.stringify(manifest.body));
    assert.match(manifest.body.error.message, /image listed in .*sneaky\.csv: .*samples\/cifar10\/cache\/dog\/.* is outside/);
    const evalJob = await call(svc.url, 'POST', '/v1/caches/c/eval-jobs', { source: { type: 'folder', path: path.join(SAMPLE, 'heldout') } });
    assert.equal(evalJob.status, 403);
    const layers = await call(svc.url, 'POST', '/v1/layer-jobs', {
      model: RESNET,
      train: { type: 'folder', path: path.join(images, 'train') },
      val: { type: 'folder', path: path.join(images, 'train') },
    });
    assert.equal(layers.status, 403, JSON.stringify(layers.body));
    assert.equal((await call(svc.url, 'GET', '/v1/caches/c')).body.size, 0);
  });

  test('a folder inside is indexed, and its items’ thumbnails are served', async () => {
    const job = await call(svc.url, 'POST', '/v1/caches/c/index-jobs', { source: { type: 'folder', path: path.join(images, 'train'), idFrom: 'path' } });
    assert.equal(job.status, 202, JSON.stringify(job.body));
    assert.equal((await waitForJob(svc.url, job.body.id)).state, 'completed');
    const id = encodeURIComponent(`cat/${readdirSync(path.join(images, 'train', 'cat')).sort()[0]}`);
    const thumb = await fetch(`${svc.url}/v1/caches/c/items/${id}/image`);
    assert.equal(thumb.status, 200);
    assert.equal(thumb.headers.get('content-type'), 'image/png');
  });

  test('items recorded before the roots narrowed: their thumbnails are refused after a restart with other roots', async () => {
    await svc.close();
    svc = await start(dataDir, undefined, { readRoots: [models] });
    const id = encodeURIComponent(`cat/${readdirSync(path.join(images, 'train', 'cat')).sort()[0]}`);
    const thumb = await call(svc.url, 'GET', `/v1/caches/c/items/${id}/image`);
    assert.equal(thumb.status, 403, JSON.stringify(thumb.body));
    assert.equal(thumb.body.error.code, 'path_not_allowed');
    assert.equal((await call(svc.url, 'GET', '/v1/caches/c')).body.size, 6, 'the cache itself is intact');
  });
});
