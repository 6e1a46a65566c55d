// The replicas a replica asks for the shards it does not hold: read from each shard's registration
// in Redis (at most once a second, and the last list kept while Redis does not answer, so that a
// fan-out goes on without Redis as predictions do), asked freshest first, a replica that failed
// lately asked last.
import { replicasOf, type ReplicaEntry } from '../keylog/redis-log.js';
import type { RedisConnection } from '../redis/connection.js';
import { askPeer, type HeldAnswer, type ShardQuery } from '../shards/peer-client.js';

/** how long Redis has to list a shard's replicas (or sizes) before the last list is taken, or the call fails */
export const REDIS_WAIT_MS = 1000;
/** a shard's registered replicas are read again after this long (registrations change every 10 s at most) */
const REGISTRY_FRESH_MS = 1000;
/** a replica that failed to answer is asked after the others for this long */
const PEER_RETRY_MS = 10_000;

export class ShardPeers {
  private readonly registry = new Map<string, { at: number; replicas: ReplicaEntry[] }>();
  private readonly failures = new Map<string, number>();

  constructor(
    private readonly redis: RedisConnection,
    /** this replica's id: never its own peer */
    private readonly self: () => string,
    private readonly apiKey?: string,
  ) {}

  /** A shard's answer from the first of its replicas that gives one; null, with why in `tried`, when none does. */
  async answer(shard: string, query: ShardQuery, numClasses: number, tried: string[]): Promise<HeldAnswer | null> {
    let registered: ReplicaEntry[] = [];
    try {
      registered = await this.replicasOf(shard);
    } catch (err) {
      tried.push(`${shard}: ${(err as Error).message}`);
      return null;
    }
    const peers = registered.filter((r) => r.url && r.id !== this.self());
    if (peers.length === 0) tried.push(`${shard}: no ${registered.length ? 'other ' : ''}replica has registered it`);
    peers.sort((a, b) => Number(this.failedLately(a.url)) - Number(this.failedLately(b.url)));
    for (const peer of peers) {
      try {
        return await askPeer(peer.url, shard, query, numClasses, this.apiKey);
      } catch (err) {
        this.failures.set(peer.url, Date.now());
        tried.push(`${shard} at ${peer.url}: ${(err as Error).message}`);
      }
    }
    return null;
  }

  private async replicasOf(shard: string): Promise<ReplicaEntry[]> {
    const known = this.registry.get(shard);
    if (known && Date.now() - known.at < REGISTRY_FRESH_MS) return known.replicas;
    try {
      const replicas = await withTimeout(replicasOf(this.redis, shard), REDIS_WAIT_MS);
      this.registry.set(shard, { at: Date.now(), replicas });
      return replicas;
    } catch (err) {
      if (known) return known.replicas;
      throw new Error(`its replicas could not be read from Redis (${(err as Error).message})`);
    }
  }

  private failedLately(url: string): boolean {
    const at = this.failures.get(url);
    return at !== undefined && Date.now() - at < PEER_RETRY_MS;
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
