// Where a cache's search-key projection is kept, so that every process of the cache uses one: the
// first projection stored is the one kept. It is stored the moment it exists, before any record
// reduced with it is logged, so a replay from an older snapshot takes the same projection instead
// of fitting another.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { RedisConnection } from '../redis/connection.js';
import { Projection, serialisedFingerprint } from '../index/projection.js';
import { redisKeys } from '../redis/keys.js';

export interface ProjectionStore {
  /**
   * The cache's projection: the one stored if there is one (another process fitted it: a PCA fit
   * takes many seconds), else the one `make` makes, stored unless another process stored one first.
   */
  publish(cache: string, make: () => Promise<Projection>): Promise<Projection>;
}

/** Embedded mode: <dataDir>/<cache>/projection/. */
export class FileProjectionStore implements ProjectionStore {
  constructor(private readonly dataDir: string) {}

  async publish(cache: string, make: () => Promise<Projection>): Promise<Projection> {
    const dir = path.join(this.dataDir, cache, PROJECTION_DIR);
    const stored = await Projection.load(dir);
    if (stored) return stored;
    const projection = await make();
    await fs.mkdir(dir, { recursive: true });
    await projection.save(dir);
    return projection;
  }
}

/** Distributed mode: one Redis key per cache, read by every replica and worker. */
export class RedisProjectionStore implements ProjectionStore {
  /** the projections a worker has read, by cache */
  private readonly known = new Map<string, Projection>();

  constructor(private readonly redis: RedisConnection) {}

  async publish(cache: string, make: () => Promise<Projection>): Promise<Projection> {
    const already = await this.redis.getBuffer(redisKeys.projection(cache));
    if (already) return Projection.fromBuffer(already);
    const projection = await make();
    await this.redis.set(redisKeys.projection(cache), projection.toBuffer(), 'NX');
    const stored = await this.redis.getBuffer(redisKeys.projection(cache));
    return stored ? Projection.fromBuffer(stored) : projection;
  }

  /**
   * The projection published for a cache of this key dimension, once there is one. The fingerprint
   * in its head is checked on every call (a few bytes): a cache deleted and created again under
   * the same name gets a new projection.
   */
  async published(cache: string, dimension: number): Promise<Projection | null> {
    const key = redisKeys.projection(cache);
    const fingerprint = serialisedFingerprint(await this.redis.getrangeBuffer(key, 0, PROJECTION_HEAD_BYTES - 1));
    if (fingerprint === null) return null;
    const known = this.known.get(cache);
    if (known?.fingerprint === fingerprint) return known;
    const stored = await this.redis.getBuffer(key);
    if (!stored) return null;
    const projection = Projection.fromBuffer(stored);
    if (projection.inputDimension !== dimension) return null;
    this.known.set(cache, projection);
    return projection;
  }
}

const PROJECTION_DIR = 'projection';
/** enough of a serialised projection to hold its JSON header (kind, dimensions, fingerprint, fit info) */
const PROJECTION_HEAD_BYTES = 16 * 1024;
