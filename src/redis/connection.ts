// Redis connections for distributed mode.
import { Redis } from 'ioredis';

/**
 * A connection that waits out a Redis restart: commands queue while it
 * reconnects instead of failing (BullMQ needs maxRetriesPerRequest: null too).
 */
export function connectRedis(url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: (times) => Math.min(times * 200, 2000) });
  redis.on('error', () => {}); // reconnects by itself; commands wait meanwhile
  return redis;
}
