// Limits: body size, images per request, unfinished jobs per cache, predict requests in flight.
// Over them the caller gets a 413 or a 429 (with Retry-After) that says what to do, and the
// service keeps serving.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { call, PAPER_KEY_LAYERS, RESNET, SAMPLE, sampleFolder, start, tempDir, waitForJob } from './harness.js';
import { startRedis } from './redis-harness.js';

const CAT = readFileSync(path.join(SAMPLE, 'heldout', 'cat', '4500.jpg')).toString('base64');
const MAX_BODY = 64 * 1024;

describe('limits', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  const predict = (body: unknown) => call(svc.url, 'POST', '/v1/caches/lim/predict', body);

  before(async () => {
    svc = await start(tempDir(), { maxBodyBytes: MAX_BODY, maxImagesPerRequest: 2, maxJobsPerCache: 1, maxConcurrentPredicts: 2 });
    const r = await call(svc.url, 'POST', '/v1/caches', {
      name: 'lim',
      model: RESNET,
      keyLayers: PAPER_KEY_LAYERS,
      theta: 80,
      lambda: 0.5111,
      index: { type: 'exact' },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  });
  after(async () => svc.close());

  test('a body over the byte limit: 413', async () => {
    const r = await predict({ image: Buffer.alloc(MAX_BODY, 7).toString('base64') });
    assert.equal(r.status, 413);
    assert.equal(r.body.error.code, 'payload_too_large');
  });

  test('too many images in one request: 413', async () => {
    const r = await predict({ images: [CAT, CAT, CAT] });
    assert.equal(r.status, 413);
    assert.equal(r.body.error.code, 'too_many_images');
    assert.match(r.body.error.message, /limit is 2/);
  });

  test('too many unfinished jobs for one cache: 429 with Retry-After, naming the jobs', async () => {
    const first = await call(svc.url, 'POST', '/v1/caches/lim/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 5) } });
    assert.equal(first.status, 202, JSON.stringify(first.body));
    const second = await call(svc.url, 'POST', '/v1/caches/lim/eval-jobs', { source: { type: 'folder', path: sampleFolder('heldout', 1) } });
    assert.equal(second.status, 429, JSON.stringify(second.body));
    assert.equal(second.body.error.code, 'too_many_jobs');
    assert.ok(Number(second.headers.get('retry-after')) > 0, 'Retry-After');
    assert.match(second.body.error.message, new RegExp(`at most 1 unfinished jobs.*index job ${first.body.id} \\((waiting|active)\\)`));
    const done = await waitForJob(svc.url, first.body.id);
    assert.equal(done.state, 'completed', done.failedReason);
    // once it has finished, the cache takes a job again
    const third = await call(svc.url, 'POST', '/v1/caches/lim/eval-jobs', { source: { type: 'folder', path: sampleFolder('heldout', 1) } });
    assert.equal(third.status, 202, JSON.stringify(third.body));
    assert.equal((await waitForJob(svc.url, third.body.id)).state, 'completed');
  });

  test('a flood of predicts past the concurrency limit: some 429 busy with Retry-After: 1, the others answered', async () => {
    const replies = await Promise.all(Array.from({ length: 24 }, () => predict({ images: [CAT, CAT] })));
    const ok = replies.filter((r) => r.status === 200);
    const busy = replies.filter((r) => r.status === 429);
    assert.equal(ok.length + busy.length, replies.length, JSON.stringify(replies.map((r) => r.status)));
    assert.ok(ok.length >= 2, `${ok.length} answered`);
    assert.ok(busy.length >= 1, `${busy.length} refused`);
    for (const r of busy) {
      assert.equal(r.body.error.code, 'busy');
      assert.equal(r.headers.get('retry-after'), '1');
    }
    for (const r of ok) assert.equal(r.body.predictions.length, 2);
    // and it still answers afterwards, with every slot free again
    assert.equal(svc.ops.predicts.current, 0);
    const after = await Promise.all([predict({ image: CAT }), predict({ image: CAT })]);
    assert.deepEqual(
      after.map((r) => r.status),
      [200, 200],
    );
    assert.equal((await call(svc.url, 'GET', '/healthz')).status, 200);
  });

  test('limits that are not positive integers are refused at start', async () => {
    await assert.rejects(start(tempDir(), { maxJobsPerCache: 0 }), /maxJobsPerCache must be a positive integer/);
  });
});

describe('limits in distributed mode (jobs counted in Redis)', () => {
  test('an index job no worker has taken yet counts; /metrics reads the queues from Redis', async () => {
    const redis = await startRedis();
    // an api replica and no worker: the index job stays in Redis, unfinished
    const svc = await start(tempDir(), { maxJobsPerCache: 1 }, { redisUrl: redis.url, chunkSize: 20 });
    try {
      const created = await call(svc.url, 'POST', '/v1/caches', {
        name: 'dist',
        model: RESNET,
        keyLayers: ['activation_18'],
        theta: 50,
        lambda: 0.5,
        index: { type: 'exact' },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const first = await call(svc.url, 'POST', '/v1/caches/dist/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 5) } });
      assert.equal(first.status, 202, JSON.stringify(first.body));
      const second = await call(svc.url, 'POST', '/v1/caches/dist/eval-jobs', { source: { type: 'folder', path: sampleFolder('heldout', 1) } });
      assert.equal(second.status, 429, JSON.stringify(second.body));
      assert.equal(second.body.error.code, 'too_many_jobs');
      assert.ok(second.headers.get('retry-after'));
      assert.match(second.body.error.message, new RegExp(`index job ${first.body.id} \\((waiting|active)\\)`));
      const text = await (await fetch(`${svc.url}/metrics`)).text();
      const value = (type: string, state: string) => Number(new RegExp(`^cachet_jobs\\{type="${type}",state="${state}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
      assert.equal(value('index', 'waiting') + value('index', 'active'), 1, text);
      assert.equal(value('chunk', 'waiting'), 3, '50 images in chunks of 20');
      assert.equal(value('eval', 'waiting'), 0);
    } finally {
      await svc.close();
      await redis.destroy();
    }
  });
});

describe('slow clients', () => {
  test('bodies trickling in hold no predict slot and are cut with 408; other predicts are served meanwhile', async () => {
    const svc = await start(tempDir(), { maxConcurrentPredicts: 2, minBodyBytesPerSecond: 2000, bodyRateGraceMs: 1500 });
    try {
      await call(svc.url, 'POST', '/v1/caches', { name: 's', model: RESNET, keyLayers: PAPER_KEY_LAYERS, index: { type: 'exact' } });
      const { port } = new URL(svc.url);
      const slow = Array.from({ length: 4 }, () => {
        const socket = net.connect(Number(port), '127.0.0.1');
        socket.write(`POST /v1/caches/s/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"image":"`);
        const drip = setInterval(() => socket.write('AAAA'), 200);
        const reply = new Promise<string>((resolve) => {
          let text = '';
          socket.on('data', (d) => (text += d.toString()));
          socket.on('close', () => resolve(text));
          socket.on('error', () => resolve(text));
        });
        return { socket, drip, reply };
      });
      await new Promise((r) => setTimeout(r, 300));
      const cat = readFileSync(path.join(SAMPLE, 'heldout', 'cat', '4500.jpg')).toString('base64');
      const fast = await call(svc.url, 'POST', '/v1/caches/s/predict', { image: cat });
      assert.equal(fast.status, 200, 'the slow uploads hold no predict slot');
      for (const s of slow) {
        const text = await s.reply;
        clearInterval(s.drip);
        assert.match(text, /^HTTP\/1\.1 408/, text.slice(0, 200));
        assert.match(text, /request_timeout/);
      }
    } finally {
      await svc.close();
    }
  });
});
