// Distributed mode with real processes: a redis-server of the test's own, api
// replicas (`cachet serve` with REDIS_URL) and `cachet worker` processes.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Queue, Job } from 'bullmq';
import { Redis } from 'ioredis';
import { call, tempDir, RESNET, SAMPLE, sampleFolder } from './harness.js';
import { startRedis, TestRedis } from './redis-harness.js';
import { caughtUp, createCache, finished, job, logs, predictions, stop, startApi, startWorker, submit, until, type Proc } from './distributed-harness.js';
import { redisKeys, queueNames } from '../src/redis/keys.js';
import { ReadySchema } from '../src/http/schemas.js';

describe('distributed mode', { timeout: 600_000 }, () => {
  let redis: TestRedis;
  let client: Redis;
  const procs: Proc[] = [];
  let api: Proc;

  before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url, { maxRetriesPerRequest: null });
    api = await startApi(redis, tempDir(), 'api-a');
    procs.push(api);
  });
  after(async () => {
    await Promise.all(procs.map((p) => stop(p, 'SIGKILL')));
    client.disconnect();
    await redis.destroy();
  });

  test('two workers in separate processes share one 5,000-image job: every item present exactly once', async () => {
    const w1 = startWorker(redis, 'w1');
    const w2 = startWorker(redis, 'w2');
    procs.push(w1, w2);
    await createCache(api, 'shared');
    const id = await submit(api, 'shared', 5000);
    const j = await finished(api, id);
    assert.equal(j.state, 'completed', JSON.stringify(j));
    assert.deepEqual(j.progress, { done: 5000, total: 5000 });
    assert.equal(j.result.added, 5000);
    assert.equal(j.result.cacheSize, 5000);
    assert.equal(await client.xlen(redisKeys.log('shared')), 5000);
    assert.equal(await client.scard(redisKeys.ids('shared')), 5000);
    await caughtUp(api, 'shared', 5000);
    const queue = new Queue(queueNames.index, { connection: client });
    const chunks = await queue.getJobs(['completed'], 0, 1000);
    await queue.close();
    const by = new Set(chunks.map((c) => c.processedBy));
    assert.equal(by.size, 2, `chunks were processed by ${[...by].join(', ')}`);
    // inference runs off the BullMQ thread: no chunk lost its lock and stalled
    assert.deepEqual(
      chunks.filter((c) => c.stalledCounter > 0 || c.attemptsStarted > 1).map((c) => c.id),
      [],
    );
    assert.equal(await stop(w2), 0, 'SIGTERM: a worker finishes what it holds and exits 0');
  });

  test('a worker killed with SIGKILL mid-job: the job still completes, with exactly the right count', async () => {
    const w3 = startWorker(redis, 'w3');
    procs.push(w3);
    await createCache(api, 'killed');
    const id = await submit(api, 'killed', 3000);
    await until(async () => (await job(api, id)).progress.done >= 300, 'some progress');
    await stop(w3, 'SIGKILL');
    const j = await finished(api, id);
    assert.equal(j.state, 'completed');
    assert.equal(j.result.cacheSize, 3000);
    assert.equal(await client.xlen(redisKeys.log('killed')), 3000);
    await caughtUp(api, 'killed', 3000);
  });

  test('the api restarted mid-ingest comes back with the same size and the same predictions', async () => {
    const dataDir = tempDir();
    let replica = await startApi(redis, dataDir, 'api-b');
    procs.push(replica);
    await createCache(api, 'restart');
    const id = await submit(api, 'restart', 3000);
    await until(async () => (await job(api, id)).progress.done >= 500, 'some progress');
    await stop(replica, 'SIGKILL');
    replica = await startApi(redis, dataDir, 'api-b2');
    procs.push(replica);
    assert.equal((await finished(api, id)).result.cacheSize, 3000);
    await caughtUp(replica, 'restart', 3000);
    await caughtUp(api, 'restart', 3000);
    assert.deepEqual(await predictions(replica, 'restart'), await predictions(api, 'restart'));
  });

  test('redis restarted (AOF): no job and no item lost', async () => {
    await createCache(api, 'aof');
    const id = await submit(api, 'aof', 3000);
    await until(async () => (await job(api, id)).progress.done >= 300, 'some progress');
    await redis.restart();
    const j = await finished(api, id);
    assert.equal(j.state, 'completed', JSON.stringify(j));
    assert.equal(j.result.cacheSize, 3000);
    assert.equal(await client.xlen(redisKeys.log('aof')), 3000);
    await caughtUp(api, 'aof', 3000);
  });

  test('redis down: a replica stays in (/readyz 200, degraded, saying so), predicts, and each process logs the outage once', async () => {
    const logOf = (name: string) => readFileSync(path.join(logs, `${name}.log`), 'utf8');
    const from = { api: logOf('api-a').length, worker: logOf('w1').length };
    const before = await predictions(api, 'shared');
    await redis.stop('SIGKILL');
    try {
      await new Promise((r) => setTimeout(r, 4000)); // ioredis and BullMQ retry many times meanwhile
      const ready = await call(api.url!, 'GET', '/readyz');
      assert.equal(ready.status, 200, 'Redis away is no reason to stop predictions');
      assert.equal(ready.body.status, 'degraded');
      assert.ok(ReadySchema.safeParse(ready.body).success, 'as the OpenAPI document says');
      assert.equal(ready.body.keyLog.status, 'unreachable');
      assert.match(ready.body.keyLog.message, /key log unreachable .*serving \d+ items/);
      assert.equal(ready.body.caches.find((c: { name: string }) => c.name === 'shared').logPosition, 5000);
      assert.deepEqual(await predictions(api, 'shared'), before, 'the index in memory answers as before');
    } finally {
      await redis.start();
    }
    await until(async () => (await call(api.url!, 'GET', '/readyz')).body.status === 'ready', 'ready again');
    await until(async () => /reachable again/.test(logOf('w1').slice(from.worker)), 'the worker reconnected');
    for (const [name, at] of [
      ['api-a', from.api],
      ['w1', from.worker],
    ] as const) {
      const lines = logOf(name).slice(at).split('\n').filter(Boolean);
      assert.deepEqual(
        lines.filter((l) => !l.startsWith('{')),
        [],
        `${name}: every line is JSON`,
      );
      const outage = lines.filter((l) => /ECONNREFUSED|reachable/.test(l)).map((l) => JSON.parse(l).msg as string);
      assert.equal(outage.length, 2, `${name}: one line when Redis went away, one when it came back:\n${outage.join('\n')}`);
      assert.match(outage[0], /redis unreachable \(connect ECONNREFUSED/);
      assert.match(outage[1], /redis reachable again after [\d.]+ s/);
    }
  });

  test('a second api replica started late converges to the same predictions', async () => {
    const late = await startApi(redis, tempDir(), 'api-late');
    procs.push(late);
    for (const cache of ['shared', 'killed', 'restart', 'aof']) {
      const size = (await call(api.url!, 'GET', `/v1/caches/${cache}`)).body.size;
      await caughtUp(late, cache, size);
      assert.deepEqual(await predictions(late, cache), await predictions(api, cache), cache);
    }
    const info = (await call(late.url!, 'GET', '/v1/caches/shared')).body;
    assert.deepEqual([info.theta, info.lambda, info.index.type], [50, 0.5, 'hnsw'], 'definitions come from Redis');

    // created, changed and deleted through one replica: the other follows by notification (no polling in these tests)
    await createCache(late, 'told');
    await until(async () => (await call(api.url!, 'GET', '/v1/caches/told')).status === 200, 'the other replica has the new cache');
    assert.equal((await call(late.url!, 'PATCH', '/v1/caches/told', { theta: 70 })).status, 200);
    await until(async () => (await call(api.url!, 'GET', '/v1/caches/told')).body.theta === 70, 'the other replica has the new θ');
    assert.equal((await call(api.url!, 'DELETE', '/v1/caches/told')).status, 200);
    await until(async () => (await call(late.url!, 'GET', '/v1/caches/told')).status === 404, 'the other replica dropped it');
  });

  test('tune, eval and robustness jobs run on an api replica, through BullMQ', async () => {
    const source = { type: 'folder', path: sampleFolder('heldout', 2) };
    const tune = await call(api.url!, 'POST', '/v1/caches/shared/tune-jobs', { source, theta: [40, 60], lambda: [0.3, 0.6], dryRun: true });
    assert.equal(tune.status, 202, JSON.stringify(tune.body));
    const t = await finished(api, tune.body.id);
    assert.equal(t.type, 'tune');
    assert.equal(t.state, 'completed', t.failedReason);
    assert.equal(t.result.images, 20);
    assert.equal(t.result.accuracy.length, 2);
    const evalJob = await call(api.url!, 'POST', '/v1/caches/shared/eval-jobs', { source });
    const e = await finished(api, evalJob.body.id);
    assert.equal(e.type, 'eval');
    assert.equal(e.result.images, 20);
    const settings = { corruptions: ['contrast'], severities: [5], attacks: ['transfer'], queries: 3 };
    const robust = await call(api.url!, 'POST', '/v1/caches/shared/robustness-jobs', { source, ...settings });
    assert.equal(robust.status, 202, JSON.stringify(robust.body));
    assert.equal(robust.body.progress.total, 60, 'images scored clean, under contrast 5 and under the transfer attack');
    const rj = await finished(api, robust.body.id);
    assert.equal(rj.type, 'robustness');
    assert.equal(rj.state, 'completed', rj.failedReason);
    assert.deepEqual(rj.progress, { done: 60, total: 60 });
    assert.deepEqual(rj.result.clean, e.result.error, 'the same images, the same errors as the eval job');
  });

  test('a PCA cache: once a replica has published the projection, workers log reduced keys; a new replica replays both kinds', async () => {
    const r = await call(api.url!, 'POST', '/v1/caches', {
      name: 'pca',
      model: RESNET,
      keyLayers: ['activation_16', 'activation_18'],
      theta: 50,
      lambda: 0.5,
      index: { type: 'hnsw' },
      searchKey: { reduce: 'pca', dimension: 16, fitSample: 100, rerank: false },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    await finished(api, await submit(api, 'pca', 100)); // the replica fits and publishes at 100 items
    await caughtUp(api, 'pca', 100);
    await until(async () => (await call(api.url!, 'GET', '/v1/caches/pca')).body.searchKey.projection !== null, 'the projection');
    await finished(api, await submit(api, 'pca', 400)); // ids img-0…99 again (duplicates), then 300 new
    await caughtUp(api, 'pca', 400);
    const entries = (await client.xrangeBuffer(redisKeys.log('pca'), '-', '+')) as [Buffer, Buffer[]][];
    const kinds = entries.map(([, f]) => (f.some((x) => x.toString() === 'skey') ? 'reduced' : 'full'));
    assert.deepEqual(kinds, [...Array(100).fill('full'), ...Array(300).fill('reduced')]);
    const sizes = entries.map(([, f]) => f[f.findIndex((x) => ['key', 'skey'].includes(x.toString())) + 1].length);
    assert.deepEqual([sizes[0], sizes[399]], [4 * 8192, 4 * 16], 'a full 8,192-d key vs a 16-d search key');
    const fresh = await startApi(redis, tempDir(), 'api-pca');
    procs.push(fresh);
    await caughtUp(fresh, 'pca', 400);
    assert.deepEqual(await predictions(fresh, 'pca'), await predictions(api, 'pca'));
  });

  test('items and a whole cache deleted through one replica: the other follows, through the key log', async () => {
    const other = await startApi(redis, tempDir(), 'api-del');
    procs.push(other);
    await caughtUp(other, 'killed', 3000);
    const gone = Array.from({ length: 10 }, (_, i) => `img-${i}`);
    const r = await call(api.url!, 'POST', '/v1/caches/killed/delete-items', { ids: [...gone, 'nope', 'img-0'] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { deleted: 10, notFound: ['nope'], cacheSize: 2990 });
    assert.equal(await client.xlen(redisKeys.log('killed')), 3010, 'deletions are log records');
    assert.equal(await client.scard(redisKeys.ids('killed')), 2990);
    await caughtUp(other, 'killed', 2990);
    const here = await predictions(api, 'killed');
    assert.deepEqual(await predictions(other, 'killed'), here);
    for (const p of here) for (const n of p.neighbours) assert.ok(!gone.includes(n.id), `${n.id} was deleted`);

    assert.equal((await call(api.url!, 'DELETE', '/v1/caches/killed')).status, 200);
    assert.equal((await call(api.url!, 'GET', '/v1/caches/killed')).status, 404);
    await until(async () => (await call(other.url!, 'GET', '/v1/caches/killed')).status === 404, 'the other replica drops the cache');
    assert.equal(await client.exists(redisKeys.log('killed'), redisKeys.ids('killed'), redisKeys.end('killed')), 0);
    assert.equal(await client.hexists(redisKeys.caches, 'killed'), 0);
  });

  test('a plain BullMQ producer can submit an index job from the documented schema', async () => {
    await createCache(api, 'external');
    const queue = new Queue(queueNames.index, { connection: client });
    const files = readdirSync(path.join(SAMPLE, 'cache', 'dog')).slice(0, 5);
    await queue.add('chunk', {
      cache: 'external',
      flip: true,
      items: [
        ...files.map((f, i) => ({ id: `dog-${i}`, label: 'dog', path: path.join(SAMPLE, 'cache', 'dog', f) })),
        { id: 'bad', label: 'unicorn', path: '/nowhere.jpg' },
      ],
    });
    await caughtUp(api, 'external', 10);
    const done = (await queue.getJobs(['completed'])).find((c: Job) => c.data.cache === 'external');
    await queue.close();
    assert.equal(done?.returnvalue.added, 10);
    assert.match(done?.returnvalue.errors[0].error, /unicorn/);
  });
});
