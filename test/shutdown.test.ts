// Graceful shutdown: /readyz says 503 at once (and, with a drain delay, requests are still taken),
// requests in flight are answered, then the engine snapshots every cache; new connections are
// refused once the server has closed.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { capturingLogger } from '../src/util/logging.js';
import { call, PAPER_KEY_LAYERS, RESNET, SAMPLE, sampleFolder, start, tempDir, waitForJob } from './harness.js';

const CAT = readFileSync(path.join(SAMPLE, 'heldout', 'cat', '4500.jpg')).toString('base64');

test('close() with a drain delay: /readyz says 503 at once while requests are still served', async () => {
  const svc = await start(tempDir(), undefined, { drainDelayMs: 400 });
  assert.equal((await call(svc.url, 'GET', '/readyz')).status, 200);
  const closing = svc.close();
  const ready = await call(svc.url, 'GET', '/readyz');
  assert.equal(ready.status, 503);
  assert.equal(ready.body.status, 'stopping');
  assert.equal(ready.headers.get('connection'), 'close', 'clients drop the connection');
  const served = await call(svc.url, 'GET', '/v1/caches');
  assert.equal(served.status, 200);
  await closing;
  await assert.rejects(fetch(`${svc.url}/healthz`), 'the server takes no new connection');
});

test('close(): the predict in flight gets its 200, then the engine closes (and snapshots)', async () => {
  const lines: Record<string, any>[] = [];
  const svc = await start(tempDir(), undefined, { logger: capturingLogger(lines) });
  await call(svc.url, 'POST', '/v1/caches', { name: 'down', model: RESNET, keyLayers: PAPER_KEY_LAYERS, theta: 80, lambda: 0.5111, index: { type: 'exact' } });
  const job = await call(svc.url, 'POST', '/v1/caches/down/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 3) } });
  assert.equal((await waitForJob(svc.url, job.body.id)).state, 'completed');

  const inFlight = call(svc.url, 'POST', '/v1/caches/down/predict', { images: Array(32).fill(CAT), neighbours: 2 });
  for (let i = 0; svc.ops.predicts.current === 0; i++) {
    assert.ok(i < 1000, 'the predict never arrived');
    await new Promise((r) => setTimeout(r, 2));
  }
  const closing = svc.close();
  const r = await inFlight;
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.predictions.length, 32);
  assert.equal(r.body.predictions[0].neighbours.length, 2);
  await closing;
  await assert.rejects(fetch(`${svc.url}/healthz`), 'the server takes no new connection');

  const messages = lines.map((l) => l.msg as string);
  const stopping = messages.findIndex((m) => /^stopping/.test(m));
  const answered = lines.findIndex((l) => l.req?.url === '/v1/caches/down/predict' && l.res?.statusCode === 200);
  const stopped = messages.indexOf('stopped'); // after the engine's close(), which snapshots every cache
  assert.ok(stopping >= 0 && stopped > stopping, messages.join('\n'));
  assert.ok(answered > stopping && answered < stopped, 'the predict was answered while stopping, before the engine closed');
});
