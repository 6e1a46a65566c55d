// A cache of S shards (S ≥ 2, fixed at creation) is S caches under one definition: shard s holds
// the items whose id hashes to s, in a key log, index and snapshots of its own, named `<cache>#<s>`
// (a name no user cache can take: "#" is not allowed in one). Its Redis keys carry that name as
// their hash tag, so Redis Cluster spreads the shards over its masters. A cache of one shard is
// the cache itself, as before sharding existed.
import { crc32 } from '../util/crc32.js';

/** The shard an item belongs to: CRC-32 of its id's UTF-8 bytes, mod S (stable across processes and releases). */
export function shardOf(id: string, shards: number): number {
  return shards <= 1 ? 0 : crc32(Buffer.from(id, 'utf8')) % shards;
}

/** The name shard s of a cache is held under (its log, its snapshot directory, its Redis keys). */
export function shardName(cache: string, shard: number, shards: number): string {
  return shards <= 1 ? cache : `${cache}#${shard}`;
}

/** The names of every shard of a cache. */
export function shardNames(cache: string, shards: number): string[] {
  return Array.from({ length: Math.max(1, shards) }, (_, s) => shardName(cache, s, shards));
}

/** `<cache>#<s>` → its cache and shard; null for a cache's own name. */
export function parseShardName(name: string): { cache: string; shard: number } | null {
  const m = /^(.+)#(\d+)$/.exec(name);
  return m ? { cache: m[1], shard: Number(m[2]) } : null;
}

/** The cache a held name belongs to (itself when unsharded). */
export function cacheOf(name: string): string {
  return parseShardName(name)?.cache ?? name;
}

/** Which shards of each cache a replica holds: all (undefined), or a list (`cachet serve --shards 0,1`). */
export function holds(held: number[] | undefined, shard: number): boolean {
  return held === undefined || held.includes(shard);
}

/** Items grouped by the shard of their id, in their order. */
export function byShard<T>(items: T[], idOf: (item: T) => string, shards: number): Map<number, T[]> {
  const groups = new Map<number, T[]>();
  for (const item of items) {
    const s = shardOf(idOf(item), shards);
    const group = groups.get(s);
    if (group) group.push(item);
    else groups.set(s, [item]);
  }
  return groups;
}
