// Caches of several shards on a real Redis Cluster of 3 masters: four api replicas in two shard
// groups (0,1 and 2,3, each group twice), a worker, and the same images in caches of 1 and 4 shards.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Cluster } from 'ioredis';
import { call, RESNET, SAMPLE, sampleFolder, tempDir } from './harness.js';
import { startRedisCluster, type TestRedisCluster } from './redis-harness.js';
import { finished, logs, startApi, startWorker, stop, submit, until, type Proc } from './distributed-harness.js';
import { connectRedis } from '../src/redis/connection.js';
import { redisKeys } from '../src/redis/keys.js';
import { shardName, shardOf } from '../src/shards/shards.js';

const N = 400;
const probe = {
  images: ['cat', 'ship', 'frog', 'dog'].map((c) => readFileSync(path.join(SAMPLE, 'heldout', c, '4500.jpg')).toString('base64')),
  topK: 10,
  neighbours: 20,
};

const predict = async (api: Proc, cache: string, extra: object = {}) =>
  call(api.url!, 'POST', `/v1/caches/${encodeURIComponent(cache)}/predict`, { ...probe, ...extra });

describe('caches of several shards on a Redis Cluster', { timeout: 900_000 }, () => {
  let cluster: TestRedisCluster;
  let client: Cluster;
  const procs: Proc[] = [];
  let a: Proc, b: Proc, c: Proc, d: Proc;

  before(async () => {
    cluster = await startRedisCluster(3);
    client = connectRedis(cluster.url) as Cluster;
    [a, b, c, d] = await Promise.all(
      ['0,1', '2,3', '0,1', '2,3'].map((shards, i) => startApi(cluster, tempDir(), `shard-api-${'abcd'[i]}`, { CACHET_SHARDS: shards })),
    );
    procs.push(a, b, c, d, startWorker(cluster, 'shard-w1'));
  });
  after(async () => {
    await Promise.all(procs.map((p) => stop(p, 'SIGKILL')));
    client.disconnect();
    await cluster.destroy();
  });

  const create = async (name: string, type: 'exact' | 'hnsw', shards: number) => {
    const r = await call(a.url!, 'POST', '/v1/caches', { name, model: RESNET, keyLayers: ['activation_18'], theta: 30, lambda: 0.5, index: { type }, shards });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body;
  };
  /** every replica holding a shard has applied its log: per-shard sizes add up */
  const settled = async (cache: string, size: number) =>
    until(async () => {
      const r = await call(a.url!, 'GET', '/readyz');
      const units = r.body.caches.filter((x: any) => (x.name === cache || x.name.startsWith(`${cache}#`)) && x.log); // the held ones
      const info = (await call(a.url!, 'GET', `/v1/caches/${cache}`)).body;
      return units.length > 0 && units.every((u: any) => u.log?.lag === 0) && info.size === size;
    }, `${cache} settled at ${size}`);

  test('4 shards over 4 replicas predict as one unsharded cache: to 1e-9 when exact, the merged top-k of the shards when hnsw', async () => {
    const info = await create('split', 'exact', 4);
    assert.equal(info.shards.length, 4);
    await create('whole', 'exact', 1);
    await create('hsplit', 'hnsw', 4);
    for (const id of await Promise.all(['split', 'whole', 'hsplit'].map((name) => submit(a, name, N))))
      assert.equal((await finished(a, id)).state, 'completed');
    for (const name of ['split', 'whole', 'hsplit']) await settled(name, N);

    // items land in their shard only, and the shards spread over the cluster's masters
    const ids = Array.from({ length: N }, (_, i) => `img-${i}`);
    const nodes = new Set<number>();
    for (let s = 0; s < 4; s++) {
      const unit = shardName('split', s, 4);
      const mine = ids.filter((id) => shardOf(id, 4) === s);
      assert.equal(await client.scard(redisKeys.ids(unit)), mine.length, `shard ${s} holds its ${mine.length} items and no other`);
      assert.deepEqual(
        await client.smismember(redisKeys.ids(unit), ...mine),
        mine.map(() => 1),
      );
      const slot = (await client.call('CLUSTER', 'KEYSLOT', redisKeys.log(unit))) as number;
      const ranges = (await client.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
      nodes.add(ranges.find(([from, to]) => slot >= from && slot <= to)![2][1]);
    }
    assert.ok(nodes.size >= 2, `the 4 shards' logs are on ${nodes.size} master(s)`);
    const shardsInfo = (await call(b.url!, 'GET', '/v1/caches/split')).body.shards;
    assert.deepEqual(
      shardsInfo.map((s: any) => s.replicas.length),
      [2, 2, 2, 2],
      'each shard: two replicas registered',
    );

    // exact: the per-class log-sum-exp merge equals the unsharded sum over every item
    for (const api of [a, b]) {
      const [whole, split] = [await predict(api, 'whole'), await predict(api, 'split')];
      assert.equal(split.status, 200, JSON.stringify(split.body));
      assert.equal(split.body.cacheSize, N);
      whole.body.predictions.forEach((w: any, i: number) => {
        const s = split.body.predictions[i];
        assert.deepEqual(
          s.top.map((t: any) => t.label),
          w.top.map((t: any) => t.label),
        );
        s.top.forEach((t: any, j: number) => {
          assert.ok(
            Math.abs(t.p - w.top[j].p) < 1e-9 && Math.abs(t.pCache - w.top[j].pCache) < 1e-9,
            `image ${i}, class ${t.class}: ${t.pCache} vs ${w.top[j].pCache}`,
          );
        });
        assert.deepEqual(
          s.neighbours.map((n: any) => n.id),
          w.neighbours.map((n: any) => n.id),
        );
      });
    }

    // eval and tune run on a sharded cache as on the whole one (an api replica takes them, and fans out)
    const source = { type: 'folder', path: sampleFolder('heldout', 2) };
    const evals: any[] = [];
    for (const name of ['whole', 'split']) {
      const r = await call(b.url!, 'POST', `/v1/caches/${name}/eval-jobs`, { source });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      evals.push(await finished(b, r.body.id));
    }
    assert.equal(evals[1].state, 'completed', evals[1].failedReason);
    assert.deepEqual(evals[1].result.error, evals[0].result.error, 'the same errors as the unsharded cache');
    const tunes: any[] = [];
    for (const name of ['whole', 'split']) {
      const r = await call(b.url!, 'POST', `/v1/caches/${name}/tune-jobs`, { source, theta: [20, 40], lambda: [0.3, 0.6], dryRun: true });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      tunes.push(await finished(b, r.body.id));
    }
    assert.equal(tunes[1].state, 'completed', tunes[1].failedReason);
    assert.deepEqual(tunes[1].result.accuracy, tunes[0].result.accuracy);
    const curve = await call(b.url!, 'POST', '/v1/caches/split/eval-jobs', { source, cacheSizes: [0.5] });
    assert.equal(curve.status, 409, JSON.stringify(curve.body));
    assert.equal(curve.body.error.code, 'per_shard');

    // a PCA search key is fitted once, by the first shard with its sample, and every shard takes it,
    // whether it reaches a sample of its own first or gets records the workers reduced with it
    const pca = await call(a.url!, 'POST', '/v1/caches', {
      name: 'psplit',
      model: RESNET,
      keyLayers: ['activation_18'],
      index: { type: 'hnsw' },
      searchKey: { reduce: 'pca', dimension: 16, fitSample: 100 },
      shards: 4,
    });
    assert.equal(pca.status, 201, JSON.stringify(pca.body));
    assert.equal((await finished(a, await submit(a, 'psplit', 2 * N))).state, 'completed');
    await settled('psplit', 2 * N);
    // (a shard fits or takes it just after it applies the records that complete its sample)
    const fingerprints = async () => {
      const out: (string | null)[] = [];
      for (let s = 0; s < 4; s++) {
        const unit = await call((s < 2 ? c : d).url!, 'GET', `/v1/caches/${encodeURIComponent(shardName('psplit', s, 4))}`);
        assert.equal(unit.status, 200, JSON.stringify(unit.body));
        out.push(unit.body.searchKey.projection);
      }
      return out;
    };
    await until(async () => (await fingerprints()).every((f) => f !== null), 'every shard has its projection');
    const taken = await fingerprints();
    assert.deepEqual(
      taken,
      taken.map(() => taken[0]),
      'one projection for every shard',
    );
    assert.equal((await predict(b, 'psplit')).status, 200);

    // hnsw: the merged neighbours are the best of the shards' own top-k (each shard asked alone)
    const merged = (await predict(d, 'hsplit')).body.predictions;
    const perShard: any[] = [];
    for (let s = 0; s < 4; s++) {
      const holder = s < 2 ? a : b;
      const r = await predict(holder, shardName('hsplit', s, 4));
      assert.equal(r.status, 200, JSON.stringify(r.body));
      perShard.push(r.body.predictions);
    }
    merged.forEach((m: any, i: number) => {
      const best = perShard
        .flatMap((p) => p[i].neighbours)
        .sort((x: any, y: any) => y.similarity - x.similarity || (x.id < y.id ? -1 : 1))
        .slice(0, probe.neighbours);
      assert.deepEqual(
        m.neighbours.map((n: any) => n.id),
        best.map((n: any) => n.id),
      );
    });
  });

  test('a deletion reaches its shard; a killed replica is covered by the other of its group; with none left, 503 or partial', async () => {
    const gone = ['img-1', 'img-2', 'img-3', 'img-4', 'img-5'];
    const r = await call(b.url!, 'POST', '/v1/caches/split/delete-items', { ids: [...gone, 'nope'] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.deleted, gone.length);
    assert.deepEqual(r.body.notFound, ['nope']);
    for (const id of gone) assert.equal(await client.sismember(redisKeys.ids(shardName('split', shardOf(id, 4), 4)), id), 0);
    await settled('split', N - gone.length);
    const after = (await predict(d, 'split', { neighbours: 200 })).body.predictions;
    for (const p of after) for (const id of gone) assert.ok(!p.neighbours.some((n: any) => n.id === id), `${id} deleted`);

    const before = (await predict(b, 'split')).body.predictions;
    // Redis hung: the fan-out goes on with the replicas it last read for each shard
    cluster.pause();
    try {
      await new Promise((r) => setTimeout(r, 1500)); // past the 1 s the last list is taken as fresh: Redis is asked, and times out
      const hung = await predict(b, 'split');
      assert.equal(hung.status, 200, JSON.stringify(hung.body));
      assert.deepEqual(hung.body.predictions, before);
      const info = await call(b.url!, 'GET', '/v1/caches/split'); // its sizes are in Redis: said, not hung on
      assert.equal(info.status, 503, JSON.stringify(info.body));
      assert.equal(info.body.error.code, 'shard_unavailable');
      assert.ok([200, 503].includes((await call(b.url!, 'GET', '/readyz')).status), '/readyz answers');
    } finally {
      cluster.resume();
    }
    await stop(a, 'SIGKILL'); // shards 0 and 1: c still serves them
    const covered = await predict(b, 'split');
    assert.equal(covered.status, 200, JSON.stringify(covered.body));
    assert.deepEqual(covered.body.predictions, before);

    await stop(c, 'SIGKILL'); // none left for shards 0 and 1
    const refused = await predict(b, 'split');
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'shard_unavailable');
    assert.match(refused.body.error.message, /shards 0, 1/);
    const partial = await predict(b, 'split', { partial: true });
    assert.equal(partial.status, 200, JSON.stringify(partial.body));
    assert.deepEqual(partial.body.missingShards, [0, 1]);
    for (const p of partial.body.predictions)
      for (const n of p.neighbours) assert.ok([2, 3].includes(shardOf(n.id, 4)), `${n.id} is from a shard that answered`);

    // a sharded cache deleted: every shard's keys leave the cluster, and the other replicas drop it
    assert.equal((await call(d.url!, 'DELETE', '/v1/caches/hsplit')).status, 200);
    for (let s = 0; s < 4; s++) assert.equal(await client.exists(redisKeys.log(shardName('hsplit', s, 4)), redisKeys.ids(shardName('hsplit', s, 4))), 0);
    await until(async () => (await call(b.url!, 'GET', '/v1/caches/hsplit')).status === 404, 'replica b dropped hsplit');
    assert.ok(!(await call(b.url!, 'GET', '/readyz')).body.caches.some((c: any) => c.name.startsWith('hsplit')), "b holds none of hsplit's shards");
  });
});

describe('a shard held by a new replica, its log trimmed: started from a peer snapshot of that shard', { timeout: 600_000 }, () => {
  // small numbers, so that a few hundred items cross several snapshot boundaries and the logs are trimmed
  const ENV = { CACHET_SNAPSHOT_EVERY: '50', CACHET_LOG_KEEP: '10' };
  let cluster: TestRedisCluster;
  const procs: Proc[] = [];

  before(async () => (cluster = await startRedisCluster(3)));
  after(async () => {
    await Promise.all(procs.map((p) => stop(p, 'SIGKILL')));
    await cluster.destroy();
  });

  test('the new replica of shard 1 fetches it from a peer, asks the peer for shard 0, and predicts as the peer does', async () => {
    const x = await startApi(cluster, tempDir(), 'trim-x', ENV);
    procs.push(x, startWorker(cluster, 'trim-w'));
    const r = await call(x.url!, 'POST', '/v1/caches', { name: 'rs', model: RESNET, keyLayers: ['activation_18'], index: { type: 'exact' }, shards: 2 });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal((await finished(x, await submit(x, 'rs', 300))).state, 'completed');
    const client = connectRedis(cluster.url) as Cluster;
    try {
      await until(async () => Number(await client.get(redisKeys.base(shardName('rs', 1, 2)))) > 0, "shard 1's log trimmed");
    } finally {
      client.disconnect();
    }
    const y = await startApi(cluster, tempDir(), 'trim-y', { ...ENV, CACHET_SHARDS: '1' });
    procs.push(y);
    assert.match(readFileSync(path.join(logs, 'trim-y.log'), 'utf8'), /cache \\"rs#1\\": started from http:\/\/[^ ]+'s snapshot/);
    const [fromX, fromY] = [await predict(x, 'rs'), await predict(y, 'rs')];
    assert.equal(fromY.status, 200, JSON.stringify(fromY.body));
    assert.deepEqual(fromY.body, fromX.body);
  });
});
