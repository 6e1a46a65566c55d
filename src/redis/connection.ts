// Redis connections for distributed mode: one Redis, or a Redis Cluster.
//
// `redis://[:password@]host:port[/db]` is one Redis; `redis-cluster://[:password@]host:port[,host:port…]`
// is a Redis Cluster, reached through any of the listed nodes (ioredis learns the rest). Every key
// Cachet writes together is hash-tagged into one slot (redis/keys.ts), and BullMQ's keys share one
// prefix tag on a cluster (its scripts move jobs between a flow's queues atomically).
import { Cluster, Redis } from 'ioredis';

/** A connection to either; the commands Cachet uses are common to both. */
export type RedisConnection = Redis | Cluster;

const CLUSTER_SCHEME = 'redis-cluster://';
// Waits out a restart or a failover: commands queue while it reconnects instead of failing
// (BullMQ needs maxRetriesPerRequest: null too).
const retryStrategy = (times: number) => Math.min(times * 200, 2000);

export function connectRedis(url: string): RedisConnection {
  const redis = isClusterUrl(url)
    ? new Cluster(clusterNodes(url).nodes, {
        clusterRetryStrategy: retryStrategy,
        redisOptions: { maxRetriesPerRequest: null, password: clusterNodes(url).password },
      })
    : new Redis(url, { maxRetriesPerRequest: null, retryStrategy });
  redis.on('error', () => {}); // reconnects by itself; commands wait meanwhile
  return redis;
}

export function isClusterUrl(url: string): boolean {
  return url.startsWith(CLUSTER_SCHEME);
}

/** The seed nodes of a `redis-cluster://` URL; throws a message that says what to fix. */
export function clusterNodes(url: string): { nodes: { host: string; port: number }[]; password?: string } {
  let rest = url.slice(CLUSTER_SCHEME.length).replace(/\/+$/, '');
  let password: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    password = decodeURIComponent(rest.slice(0, at).replace(/^[^:]*:/, '')) || undefined;
    rest = rest.slice(at + 1);
  }
  const nodes = rest.split(',').map((hostPort) => {
    const m = /^(\[[^\]]+\]|[^:,/]+):(\d{1,5})$/.exec(hostPort.trim());
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) {
      throw new Error(`Redis Cluster URL: "${hostPort}" is not host:port (expected redis-cluster://[:password@]host:port[,host:port…])`);
    }
    return { host: m[1].replace(/^\[|\]$/g, ''), port };
  });
  return { nodes, password };
}

/** BullMQ's key prefix: hash-tagged on a cluster, so that a flow's queues share a slot. */
export function queuePrefix(connection: RedisConnection): string {
  return connection instanceof Cluster ? '{bull}' : 'bull';
}
