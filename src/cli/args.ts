// Parsers for numeric command-line arguments, with messages commander shows.
import { InvalidArgumentError } from 'commander';
import { clusterNodes, isClusterUrl } from '../redis/connection.js';
import { MAX_SHARDS } from '../cache/definition.js';

export const num = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError('not a number');
  return n;
};

export const int = (v: string): number => {
  const n = num(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('not an integer');
  return n;
};

export const positiveInt = (v: string): number => {
  const n = int(v);
  if (n < 1) throw new InvalidArgumentError('not a positive integer');
  return n;
};

export const nonNegativeInt = (v: string): number => {
  const n = int(v);
  if (n < 0) throw new InvalidArgumentError('must be ≥ 0');
  return n;
};

export const nonNegative = (v: string): number => {
  const n = num(v);
  if (n < 0) throw new InvalidArgumentError('must be ≥ 0');
  return n;
};

/** "a, b,c" → ["a", "b", "c"] */
export const list = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** A Redis URL: redis://, rediss:// (one Redis) or redis-cluster:// (a Redis Cluster, see redis/connection.ts). */
export const redisUrl = (v: string): string => {
  if (isClusterUrl(v)) {
    try {
      clusterNodes(v);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  } else if (!/^rediss?:\/\/./.test(v)) {
    throw new InvalidArgumentError('expected redis://[:password@]host:port, rediss://… or redis-cluster://host:port[,host:port…]');
  }
  return v;
};

/** "0,1" → [0, 1]: the shards a replica serves (each an integer below MAX_SHARDS, listed once). */
export const shardList = (v: string): number[] => {
  const shards = list(v).map((s) => {
    const n = Number(s);
    if (!/^\d+$/.test(s) || n >= MAX_SHARDS) throw new InvalidArgumentError(`"${s}" is not a shard number (0 to ${MAX_SHARDS - 1})`);
    return n;
  });
  if (shards.length === 0 || new Set(shards).size !== shards.length)
    throw new InvalidArgumentError('expected shard numbers, comma-separated, each once: e.g. 0,1');
  return shards;
};
