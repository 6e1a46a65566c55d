// `npm start`: a demo that an earlier run left half-indexed is indexed to the whole sample again,
// so the figures it prints are those of the full cache.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runDemo } from '../src/cli/demo.js';
import { call, PAPER_KEY_LAYERS, RESNET, sampleFolder, start, tempDir, waitForJob } from './harness.js';

test('the demo finishes indexing a cache an interrupted run left partial, then reports on all of it', async () => {
  const dataDir = tempDir();
  const svc = await start(dataDir);
  const created = await call(svc.url, 'POST', '/v1/caches', {
    name: 'cifar10-demo',
    model: RESNET,
    keyLayers: PAPER_KEY_LAYERS,
    theta: 80,
    lambda: 0.5111,
    index: { type: 'exact' },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const job = await call(svc.url, 'POST', '/v1/caches/cifar10-demo/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 2) }, flip: true });
  assert.equal((await waitForJob(svc.url, job.body.id)).result.cacheSize, 40);
  await svc.close();

  const printed: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => void printed.push(args.join(' '));
  try {
    await runDemo({ port: 0, host: '127.0.0.1', dataDir, exit: true });
  } finally {
    console.log = log;
  }
  const out = printed.join('\n');
  assert.match(out, /holds 40 of the sample's 4000 items/);
  assert.match(out, /indexed 3960 items; the cache holds 4000/, 'the 40 already there are duplicates');
  assert.match(out, /cache of 4000 items/);
});
