// Where cache definitions live: indexes/<cache>/cache.json in embedded mode, a
// Redis hash in distributed mode (so that every replica and worker sees every cache).
import path from 'node:path';
import { promises as fs } from 'node:fs';
import writeFileAtomic from 'write-file-atomic';
import type { RedisConnection } from '../redis/connection.js';
import { CacheDefinition, CacheDefinitionSchema } from '../cache/definition.js';
import { shardNames } from '../shards/shards.js';
import { redisKeys } from '../redis/keys.js';

export interface DefinitionStore {
  /** every stored definition; one that does not parse is reported by name */
  list(): Promise<{ definitions: CacheDefinition[]; unreadable: { name: string; error: string }[] }>;
  get(name: string): Promise<CacheDefinition | null>;
  /** false if the name is taken */
  create(definition: CacheDefinition): Promise<boolean>;
  update(definition: CacheDefinition): Promise<void>;
  /** forget the definition and everything stored with it (the cache's directory / its Redis keys) */
  delete(name: string): Promise<void>;
}

export const DEFINITION_FILE = 'cache.json';

export class FileDefinitions implements DefinitionStore {
  constructor(private readonly dataDir: string) {}

  async list() {
    const definitions: CacheDefinition[] = [];
    const unreadable: { name: string; error: string }[] = [];
    await fs.mkdir(this.dataDir, { recursive: true });
    for (const entry of await fs.readdir(this.dataDir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const raw = await fs.readFile(path.join(this.dataDir, entry.name, DEFINITION_FILE), 'utf8').catch(() => null);
      if (raw === null) continue;
      try {
        definitions.push(CacheDefinitionSchema.parse(JSON.parse(raw)));
      } catch (err) {
        unreadable.push({ name: entry.name, error: `${DEFINITION_FILE} is not a valid cache definition: ${(err as Error).message}` });
      }
    }
    return { definitions, unreadable };
  }

  async get(name: string): Promise<CacheDefinition | null> {
    const raw = await fs.readFile(this.file(name), 'utf8').catch(() => null);
    return raw === null ? null : CacheDefinitionSchema.parse(JSON.parse(raw));
  }

  async create(definition: CacheDefinition): Promise<boolean> {
    await fs.mkdir(path.dirname(this.file(definition.name)), { recursive: true });
    try {
      await fs.writeFile(this.file(definition.name), JSON.stringify(definition, null, 2) + '\n', { flag: 'wx' });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  }

  async update(definition: CacheDefinition): Promise<void> {
    await writeFileAtomic(this.file(definition.name), JSON.stringify(definition, null, 2) + '\n');
  }

  async delete(name: string): Promise<void> {
    // the definition first: a half-deleted directory without it is not a cache
    await fs.rm(this.file(name), { force: true });
    await fs.rm(path.join(this.dataDir, name), { recursive: true, force: true });
  }

  private file(name: string): string {
    return path.join(this.dataDir, name, DEFINITION_FILE);
  }
}

export class RedisDefinitions implements DefinitionStore {
  constructor(private readonly redis: RedisConnection) {}

  async list() {
    const definitions: CacheDefinition[] = [];
    const unreadable: { name: string; error: string }[] = [];
    for (const [name, raw] of Object.entries(await this.redis.hgetall(redisKeys.caches))) {
      try {
        definitions.push(CacheDefinitionSchema.parse(JSON.parse(raw)));
      } catch (err) {
        unreadable.push({ name, error: `its definition in Redis (${redisKeys.caches}) is not valid: ${(err as Error).message}` });
      }
    }
    return { definitions, unreadable };
  }

  async get(name: string): Promise<CacheDefinition | null> {
    const raw = await this.redis.hget(redisKeys.caches, name);
    return raw === null ? null : CacheDefinitionSchema.parse(JSON.parse(raw));
  }

  async create(definition: CacheDefinition): Promise<boolean> {
    const created = (await this.redis.hsetnx(redisKeys.caches, definition.name, JSON.stringify(definition))) === 1;
    if (created) await this.changed(definition.name);
    return created;
  }

  async update(definition: CacheDefinition): Promise<void> {
    await this.redis.hset(redisKeys.caches, definition.name, JSON.stringify(definition));
    await this.changed(definition.name);
  }

  async delete(name: string): Promise<void> {
    const shards = (await this.get(name).catch(() => null))?.shards ?? 1;
    await this.redis.hdel(redisKeys.caches, name);
    const k = redisKeys;
    await this.redis.del(k.projection(name)); // one per cache, shared by its shards
    // one DEL per shard: each shard's keys share a slot of their own (Redis Cluster refuses a DEL across slots)
    for (const unit of shardNames(name, shards)) {
      await this.redis.del(k.log(unit), k.ids(unit), k.end(unit), k.projection(unit), k.dimension(unit), k.base(unit), k.replicas(unit));
    }
    await this.changed(name);
  }

  /** Tell the other replicas now (they also poll, in case a message is missed: pub/sub keeps none). */
  private async changed(name: string): Promise<void> {
    await this.redis.publish(redisKeys.definitionsChanged, name);
  }
}
