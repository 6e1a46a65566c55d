// The worker role (distributed mode): holds no cache. It extracts the keys of the images of index
// jobs and appends them to the caches' key logs in Redis, reduced with the cache's published
// projection once there is one; the api replicas apply them.
import type { RedisConnection } from '../redis/connection.js';
import type { CacheDefinition } from '../cache/definition.js';
import { UserError } from '../errors/user-error.js';
import { RedisKeyLog } from '../keylog/redis-log.js';
import type { ModelSpec } from '../model/spec.js';
import { connectRedis } from '../redis/connection.js';
import { redisKeys } from '../redis/keys.js';
import { byShard, shardName, shardNames } from '../shards/shards.js';
import { RedisDefinitions } from './definitions.js';
import { extractRecords } from './extract-records.js';
import { ModelRegistry } from './models.js';
import { RedisProjectionStore } from './projection-store.js';
import { logsReducedKeys, reduceRecords } from './reduce-records.js';
import { redisUrlOf, type EngineOptions, type IndexBatchResult } from './types.js';

export class LogWriter {
  private readonly models = new ModelRegistry();
  private readonly definitions: RedisDefinitions;
  private readonly projections: RedisProjectionStore;
  /** by cache and key dimension: a cache deleted and created again under its name may have another */
  private readonly logs = new Map<string, Promise<RedisKeyLog>>();

  constructor(
    options: EngineOptions,
    private readonly redis: RedisConnection = connectRedis(redisUrlOf(options)),
  ) {
    this.definitions = new RedisDefinitions(redis);
    this.projections = new RedisProjectionStore(redis);
  }

  /** Nothing to load: definitions are read when a job needs them. */
  async open(): Promise<[]> {
    return [];
  }

  async modelSpec(name: string): Promise<ModelSpec> {
    return (await this.models.extractorFor(await this.definition(name))).spec;
  }

  /** Extract the keys of a batch of decoded images and append the new ids to the cache's key log. */
  async indexBatch(name: string, images: Float32Array, ids: string[], labels: number[], sources?: (string | null)[]): Promise<IndexBatchResult> {
    const definition = await this.definition(name);
    const extractor = await this.models.extractorFor(definition);
    const { records, failed } = await extractRecords(extractor, images, ids, labels, sources);
    const dim = extractor.keyDimension;
    const sk = definition.searchKey;
    const projection = logsReducedKeys(sk) ? await this.projections.published(name, dim) : null;
    const logged = projection ? await reduceRecords(records, projection, sk.rerank) : records;
    // each item to the log of its shard (a cache of one shard: its own log)
    let added = 0;
    for (const [s, part] of byShard<(typeof logged)[number]>(logged, (r) => r.id, definition.shards)) {
      added += (await (await this.log(shardName(name, s, definition.shards), dim)).appendNew(part as typeof logged)).added;
    }
    return { added, duplicates: records.length - added, failed };
  }

  /** Which of these ids the cache's key log holds. */
  async presentIds(name: string, ids: string[]): Promise<string[]> {
    const { shards } = await this.definition(name);
    const held: string[] = [];
    for (const [s, list] of byShard(ids, (id) => id, shards)) {
      for (let i = 0; i < list.length; i += 10_000) {
        const slice = list.slice(i, i + 10_000);
        const flags = await this.redis.smismember(redisKeys.ids(shardName(name, s, shards)), ...slice);
        slice.forEach((id, j) => flags[j] && held.push(id));
      }
    }
    return held;
  }

  /** A worker holds no view to make durable: the log's length is the cache's size. */
  async flush(name: string): Promise<{ cacheSize: number }> {
    const definition = await this.definition(name);
    const extractor = await this.models.extractorFor(definition);
    let cacheSize = 0;
    for (const unit of shardNames(name, definition.shards)) cacheSize += await (await this.log(unit, extractor.keyDimension)).readEnd();
    return { cacheSize };
  }

  async close(): Promise<void> {
    await this.models.close();
    this.redis.disconnect();
  }

  private async definition(name: string): Promise<CacheDefinition> {
    const stored = await this.definitions.get(name);
    if (!stored) throw new UserError('unknown_cache', `no cache named "${name}" (it may have been deleted)`);
    return stored;
  }

  private log(name: string, dimension: number): Promise<RedisKeyLog> {
    const key = `${name}\u0000${dimension}`;
    let log = this.logs.get(key);
    if (!log) {
      log = RedisKeyLog.open(this.redis, name, dimension);
      this.logs.set(key, log);
      log.catch(() => this.logs.delete(key));
    }
    return log;
  }
}
