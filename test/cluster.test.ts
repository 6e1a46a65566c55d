// Distributed mode on a real Redis Cluster of 3 masters (started here): api replicas and a worker
// reach it with a redis-cluster:// URL; each cache's keys share one slot, BullMQ's share `{bull}`.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Cluster } from 'ioredis';
import { call, tempDir } from './harness.js';
import { startRedisCluster, type TestRedisCluster } from './redis-harness.js';
import { caughtUp, createCache, finished, predictions, probe, startApi, startWorker, stop, submit, type Proc } from './distributed-harness.js';
import { connectRedis } from '../src/redis/connection.js';
import { queueNames, redisKeys } from '../src/redis/keys.js';

describe('distributed mode on a Redis Cluster', { timeout: 600_000 }, () => {
  let cluster: TestRedisCluster;
  let client: Cluster;
  const procs: Proc[] = [];
  let api: Proc;

  before(async () => {
    cluster = await startRedisCluster(3);
    client = connectRedis(cluster.url) as Cluster;
    api = await startApi(cluster, tempDir(), 'cluster-api-a');
    procs.push(api, startWorker(cluster, 'cluster-w1'));
  });
  after(async () => {
    await Promise.all(procs.map((p) => stop(p, 'SIGKILL')));
    client.disconnect();
    await cluster.destroy();
  });

  /** The port of the master that holds a key. */
  const nodeOf = async (key: string) => {
    const slot = (await client.call('CLUSTER', 'KEYSLOT', key)) as number;
    const ranges = (await client.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    return ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
  };

  test('caches indexed through a worker, followed by a second replica, predicted and deleted from: the keys spread over the nodes', async () => {
    // cache names whose hash tags land on different masters
    const names = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot'];
    const nodes = new Map<string, number>();
    for (const n of names) nodes.set(n, await nodeOf(redisKeys.log(n)));
    const spread = names.filter((n, i) => names.findIndex((m) => nodes.get(m) === nodes.get(n)) === i).slice(0, 2);
    assert.equal(spread.length, 2, `all of ${names.join(', ')} hash to one node`);

    for (const name of spread) await createCache(api, name);
    const jobs = await Promise.all(spread.map((name) => submit(api, name, 300)));
    for (const id of jobs) assert.equal((await finished(api, id)).state, 'completed');
    for (const name of spread) {
      await caughtUp(api, name, 300);
      assert.equal(await client.xlen(redisKeys.log(name)), 300);
      assert.equal(await client.scard(redisKeys.ids(name)), 300);
    }
    // two caches' logs on two different masters, each cache's keys on one
    assert.notEqual(nodes.get(spread[0]), nodes.get(spread[1]));
    for (const name of spread) assert.equal(await nodeOf(redisKeys.ids(name)), nodes.get(name));
    // BullMQ's keys carry the {bull} tag: a flow's parent and chunk queues share a slot
    assert.equal(await nodeOf(`{bull}:${queueNames.jobs}:id`), await nodeOf(`{bull}:${queueNames.index}:id`));
    assert.ok((await client.exists(`{bull}:${queueNames.jobs}:meta`)) === 1, 'the parent queue lives under {bull}');

    // a second replica opens from the logs on the cluster and answers as the first does
    const b = await startApi(cluster, tempDir(), 'cluster-api-b');
    procs.push(b);
    for (const name of spread) {
      await caughtUp(b, name, 300);
      const [pa, pb] = [await predictions(api, name), await predictions(b, name)];
      assert.equal(pa.length, probe.images.length);
      assert.deepEqual(
        pb.map((p: any) => p.neighbours.map((n: any) => n.id)),
        pa.map((p: any) => p.neighbours.map((n: any) => n.id)),
      );
    }

    // a deletion through one replica reaches the other through the cluster's log
    const r = await call(b.url!, 'POST', `/v1/caches/${spread[1]}/delete-items`, { ids: ['img-0', 'img-1', 'nope'] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { deleted: 2, notFound: ['nope'], cacheSize: 298 });
    await caughtUp(api, spread[1], 298);

    // a deleted cache's keys leave the cluster; the other replica drops it (pub/sub on a cluster)
    assert.equal((await call(api.url!, 'DELETE', `/v1/caches/${spread[0]}`)).status, 200);
    assert.equal(await client.exists(redisKeys.log(spread[0]), redisKeys.ids(spread[0])), 0);
    const gone = async () => (await call(b.url!, 'GET', `/v1/caches/${spread[0]}`)).status === 404;
    for (let i = 0; i < 100 && !(await gone()); i++) await new Promise((res) => setTimeout(res, 100));
    assert.ok(await gone(), 'the other replica dropped the deleted cache');
  });
});
