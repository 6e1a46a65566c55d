// Structured logs: every request has an id (the caller's X-Request-Id if sane, else a UUID),
// echoed in the response header, on every log line of that request, and in a 500's body.
import { loggedUrl } from '../src/http/request-log.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { capturingLogger } from '../src/util/logging.js';
import { Redis } from 'ioredis';
import { call, RESNET, start, tempDir } from './harness.js';
import { startRedis } from './redis-harness.js';
import { redisKeys } from '../src/redis/keys.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('request ids and logs', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  const lines: Record<string, any>[] = [];

  before(async () => {
    svc = await start(tempDir(), undefined, { logger: capturingLogger(lines) });
  });
  after(async () => svc.close());

  test('a sane X-Request-Id is echoed and is on the request’s log lines', async () => {
    const r = await call(svc.url, 'GET', '/v1/caches/nope', undefined, { 'X-Request-Id': 'trace-42.abc:1' });
    assert.equal(r.status, 404);
    assert.equal(r.headers.get('x-request-id'), 'trace-42.abc:1');
    const mine = lines.filter((l) => l.reqId === 'trace-42.abc:1');
    assert.equal(mine.length, 1, JSON.stringify(lines));
    const [line] = mine;
    assert.equal(line.level, 30);
    assert.deepEqual(
      { method: line.req.method, url: line.req.url, id: line.req.id, status: line.res.statusCode },
      { method: 'GET', url: '/v1/caches/nope', id: 'trace-42.abc:1', status: 404 },
    );
    assert.equal(typeof line.responseTime, 'number');
    assert.equal(line.req.headers, undefined, 'no headers in the logs (they may hold API keys)');
  });

  test('an id that is too long or not a token is replaced by a UUID; none gets one', async () => {
    for (const given of ['x'.repeat(129), 'has spaces in it', 'quote"d', '']) {
      const r = await call(svc.url, 'GET', '/v1/caches', undefined, { 'X-Request-Id': given });
      const id = r.headers.get('x-request-id') ?? '';
      assert.match(id, UUID, JSON.stringify(given));
      assert.ok(lines.some((l) => l.reqId === id));
    }
    const r = await call(svc.url, 'GET', '/v1/caches');
    assert.match(r.headers.get('x-request-id') ?? '', UUID);
    assert.equal((await call(svc.url, 'GET', '/v1/caches', undefined, { 'X-Request-Id': 'y'.repeat(128) })).headers.get('x-request-id'), 'y'.repeat(128));
  });

  test('probes and scrapes are logged at debug level only', async () => {
    const r = await call(svc.url, 'GET', '/healthz', undefined, { 'X-Request-Id': 'probe-1' });
    assert.equal(r.headers.get('x-request-id'), 'probe-1');
    assert.deepEqual(
      lines.filter((l) => l.reqId === 'probe-1').map((l) => l.level),
      [20],
    );
  });

  test('a 500 carries the request id in its body, and the error is logged under it', async () => {
    // an internal error: the engine thread is gone under the API
    const other = await start(tempDir(), undefined, { logger: capturingLogger(lines) });
    await other.engine.terminate();
    const r = await call(other.url, 'GET', '/v1/caches', undefined, { 'X-Request-Id': 'boom-1' });
    await other.close().catch(() => {}); // the engine cannot snapshot any more
    assert.equal(r.status, 500);
    assert.equal(r.headers.get('x-request-id'), 'boom-1');
    assert.equal(r.body.error.code, 'internal');
    assert.equal(r.body.error.requestId, 'boom-1');
    assert.match(r.body.error.message, /boom-1/);
    const logged = lines.filter((l) => l.reqId === 'boom-1');
    assert.ok(logged.length >= 2, JSON.stringify(logged));
    assert.ok(logged.every((l) => l.level === 50));
    assert.ok(logged.some((l) => /engine thread exited/.test(l.err?.message ?? '') && typeof l.err.stack === 'string'));
  });
});

describe('the engine thread logs through the service logger', () => {
  test('a key-log record this replica cannot read is a warn line with component engine, and it keeps serving', async () => {
    const redis = await startRedis();
    const lines: Record<string, any>[] = [];
    const svc = await start(tempDir(), undefined, { redisUrl: redis.url, logger: capturingLogger(lines) });
    const client = new Redis(redis.url);
    try {
      const created = await call(svc.url, 'POST', '/v1/caches', { name: 'poisoned', model: RESNET, keyLayers: ['activation_18'], index: { type: 'exact' } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      await client.xadd(redisKeys.log('poisoned'), '1-0', 'id', 'x', 'label', 'not-a-number');
      let warned: Record<string, any> | undefined;
      for (let i = 0; i < 200 && !warned; i++) {
        await new Promise((r) => setTimeout(r, 50));
        warned = lines.find((l) => l.component === 'engine');
      }
      assert.ok(warned, 'a log line from the engine thread');
      assert.equal(warned.level, 40);
      assert.match(warned.msg, /^engine: tailing the key logs: .+; retrying$/);
      assert.equal((await call(svc.url, 'GET', '/v1/caches')).status, 200);
    } finally {
      client.disconnect();
      await svc.close();
      await redis.destroy();
    }
  });
});

test('a key sent in the query string is never logged', () => {
  assert.equal(loggedUrl('/v1/caches?api_key=s3cret&x=1'), '/v1/caches?api_key=***&x=1');
  assert.equal(loggedUrl('/v1/caches/c/predict?token=abc&theta=5'), '/v1/caches/c/predict?token=***&theta=5');
  assert.equal(loggedUrl('/v1/caches?theta=5'), '/v1/caches?theta=5');
});
