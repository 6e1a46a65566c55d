// Replicas over a bounded key log (issue 13): snapshots at fixed log positions, the stream trimmed
// below what every live replica's snapshot covers, a new replica started from a peer's snapshot,
// and replicas at one position predicting alike however they got there. Real processes, real Redis.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { call, tempDir, SAMPLE, CIFAR_CLASSES } from './harness.js';
import { freePort, startRedis, TestRedis } from './redis-harness.js';
import {
  caughtUp,
  createCache,
  finished,
  logs,
  predictions,
  spawnCachet,
  stop,
  startApi,
  startWorker,
  submit,
  until,
  type Proc,
} from './distributed-harness.js';
import { redisKeys } from '../src/redis/keys.js';
import { NotReadySchema } from '../src/http/schemas.js';

// small numbers, so that a few hundred items cross several boundaries
const EVERY = 200;
const KEEP = 50;
const ENV = { CACHET_SNAPSHOT_EVERY: String(EVERY), CACHET_LOG_KEEP: String(KEEP) };

/** 20 images none of the replicas holds, with their 5 nearest items */
const unseen = {
  images: CIFAR_CLASSES.flatMap((c) =>
    readdirSync(path.join(SAMPLE, 'heldout', c))
      .slice(0, 2)
      .map((f) => readFileSync(path.join(SAMPLE, 'heldout', c, f)).toString('base64')),
  ),
  topK: 10,
  neighbours: 5,
};

/** The graph file of a replica's snapshot at `position`, once it has written it (its sha256, from the manifest). */
async function graphAt(dataDir: string, cache: string, position: number): Promise<string> {
  let sha = '';
  await until(async () => {
    const m = JSON.parse(readFileSync(path.join(dataDir, cache, 'snapshot', 'manifest.json'), 'utf8'));
    sha = m.logPosition === position ? m.files['hnsw.bin'].sha256 : '';
    return sha !== '';
  }, `the snapshot of ${dataDir} at position ${position}`);
  return sha;
}

describe('replicas over a bounded key log', { timeout: 600_000 }, () => {
  let redis: TestRedis;
  let client: Redis;
  const procs: Proc[] = [];
  const dirA = tempDir();
  const dirB = tempDir();
  let a: Proc;
  let b: Proc;

  before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url, { maxRetriesPerRequest: null });
    a = await startApi(redis, dirA, 'rep-a', ENV);
    procs.push(a, startWorker(redis, 'rep-w'));
  });
  after(async () => {
    await Promise.all(procs.map((p) => stop(p, 'SIGKILL')));
    client.disconnect();
    await redis.destroy();
  });

  test('the stream is trimmed below the snapshot every live replica has, keeping the floor', async () => {
    await createCache(a, 'rep'); // hnsw from the first item: a graph to compare
    assert.equal((await finished(a, await submit(a, 'rep', 1000))).result.cacheSize, 1000);
    await caughtUp(a, 'rep', 1000);
    await graphAt(dirA, 'rep', 1000); // a snapshot at every boundary: the last one at 1,000
    await until(async () => Number(await client.get(redisKeys.base('rep'))) === 1000 - KEEP, 'the trim');
    assert.equal(await client.xlen(redisKeys.log('rep')), KEEP, 'only the floor is left');
    const [[first]] = (await client.xrange(redisKeys.log('rep'), '-', '+', 'COUNT', 1)) as [string, string[]][];
    assert.equal(first, `${1000 - KEEP + 1}-0`, 'the record at the base is the first one kept');
    const replicas = Object.values(await client.hgetall(redisKeys.replicas('rep'))).map((r) => JSON.parse(r));
    assert.deepEqual(
      replicas.map((r) => [r.position, r.url]),
      [[1000, a.url]],
      'the replica published its snapshot and where to fetch it',
    );
  });

  test('a new replica starts from a peer snapshot (the log no longer holds what it would replay), then follows', async () => {
    b = await startApi(redis, dirB, 'rep-b', ENV);
    procs.push(b);
    const log = readFileSync(path.join(logs, 'rep-b.log'), 'utf8');
    assert.match(log, /started from http:\/\/[^ ]+'s snapshot at log position 1000/);
    await caughtUp(b, 'rep', 1000);
    assert.deepEqual(await predictions(b, 'rep', unseen), await predictions(a, 'rep', unseen));

    // both follow the log across two more boundaries: the graphs they write there are the same bytes
    assert.equal((await finished(a, await submit(a, 'rep', 1400))).result.cacheSize, 1400);
    await caughtUp(a, 'rep', 1400);
    await caughtUp(b, 'rep', 1400);
    assert.equal(await graphAt(dirB, 'rep', 1400), await graphAt(dirA, 'rep', 1400));
    assert.deepEqual(await predictions(b, 'rep', unseen), await predictions(a, 'rep', unseen));
  });

  test('a replica killed and restarted predicts exactly as the one that never stopped', async () => {
    await stop(a, 'SIGKILL');
    // the survivor goes on past the next boundary alone
    const id = await submit(b, 'rep', 1750);
    assert.equal((await finished(b, id)).result.cacheSize, 1750);
    a = await startApi(redis, dirA, 'rep-a2', ENV);
    procs.push(a);
    await caughtUp(a, 'rep', 1750);
    await caughtUp(b, 'rep', 1750);
    assert.equal(await graphAt(dirA, 'rep', 1600), await graphAt(dirB, 'rep', 1600));
    assert.deepEqual(await predictions(a, 'rep', unseen), await predictions(b, 'rep', unseen));
  });

  test('/readyz while starting says how far each cache has got, as documented; the cache routes answer 503 starting meanwhile, never 404', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const args = ['serve', '--port', String(port), '--data-dir', tempDir(), '--redis-url', redis.url];
    const child = spawnCachet('rep-c', args, { ...ENV, CACHET_ADVERTISE_URL: url });
    procs.push({ child, url });
    const starting: unknown[] = [];
    const meanwhile: string[] = []; // what the cache's own route answered while /readyz said starting
    await until(async () => {
      const r = await fetch(`${url}/readyz`);
      if (r.status === 503) {
        starting.push(await r.json());
        const c = await fetch(`${url}/v1/caches/rep`);
        const body = (await c.json()) as { error?: { code: string } };
        meanwhile.push(`${c.status} ${body.error?.code ?? 'ok'} ${c.headers.get('retry-after') ?? ''}`.trim());
      }
      return r.status === 200;
    }, 'rep-c ready');
    const withProgress = starting.filter((s) => NotReadySchema.parse(s).caches?.some((c) => c.name === 'rep'));
    assert.ok(withProgress.length > 0, `no 503 body showed the cache's progress: ${JSON.stringify(starting.slice(-3))}`);
    // never "no cache named rep" for a cache that is only loading: 503 starting, retry (or, once open, the cache)
    assert.ok(meanwhile.includes('503 starting 2'), meanwhile.join(', '));
    assert.deepEqual(
      meanwhile.filter((m) => m !== '503 starting 2' && m !== '200 ok'),
      [],
    );
    await caughtUp({ child, url }, 'rep', 1750);
    assert.deepEqual(await predictions({ child, url }, 'rep', unseen), await predictions(b, 'rep', unseen));
  });

  test('with no peer to fetch from, a new replica says so: the cache is unavailable (409 cache_unavailable) naming every peer tried; nothing is served as truth', async () => {
    await Promise.all(procs.filter((p) => p.url).map((p) => stop(p, 'SIGKILL'))); // their registrations live on (ttl)
    const lone = await startApi(redis, tempDir(), 'rep-lone', ENV);
    procs.push(lone);
    const r = await call(lone.url!, 'GET', '/v1/caches/rep');
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'cache_unavailable');
    assert.match(r.body.error.message, /key log starts at position \d+ .*no peer could give a snapshot: http:\/\/127\.0\.0\.1:\d+ /);
    const ready = await call(lone.url!, 'GET', '/readyz');
    assert.equal(ready.body.caches.find((c: any) => c.name === 'rep').status, 'failed');
    assert.equal((await call(lone.url!, 'POST', '/v1/caches/rep/predict', unseen)).status, 409);
  });
});
