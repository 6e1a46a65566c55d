// The engine owns every cache of a process: models, indexes and key logs.
// It runs on its own worker thread (see thread.ts) because onnxruntime and
// hnswlib compute synchronously on the calling thread; the HTTP thread stays free.
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { CacheDefinition, CacheDefinitionSchema, EfSearchSchema, KSchema, LambdaSchema, ThetaSchema } from '../cache/definition.js';
import { mixProbabilities } from '../math/cache-model.js';
import { InferenceThread } from '../model/inference.js';
import type { Extractor } from '../model/types.js';
import { loadModelSpec } from '../model/spec-file.js';
import { ModelSpec } from '../model/spec.js';
import { Projection, serialisedFingerprint } from '../index/projection.js';
import { redisKeys } from '../redis/keys.js';
import { CacheState } from './cache-state.js';
import { DefinitionStore, FileDefinitions, RedisDefinitions } from './definitions.js';
import { FileKeyLog } from '../keylog/file-log.js';
import { RedisKeyLog } from '../keylog/redis-log.js';
import { connectRedis } from '../redis/connection.js';
import type { Redis } from 'ioredis';
import { UserError } from '../errors/user-error.js';
import { describeZodError } from '../errors/zod.js';
import type { FullKeyRecord } from '../keylog/types.js';
import { logsReducedKeys, reduceRecords } from './reduce-records.js';
import { CacheInfo } from '../cache/info.js';
import { CacheStatus, LogStatus } from './status.js';
import { EngineLogEntry, EngineOptions, CacheUpdate, IndexBatchResult, ClassifyOptions, ClassifyResult, Classification, NeighbourScores, EngineRole } from './types.js';

export class Engine {
  /** `report`: where log entries go (the main thread's logger, when the engine runs in a thread) */
  constructor(private readonly report: (entry: EngineLogEntry) => void = ({ msg }) => console.error(msg)) {}

  private readonly caches = new Map<string, CacheState>();
  private readonly failed = new Map<string, string>();
  private readonly opening = new Map<string, Promise<void>>();
  /** one onnxruntime session per (model, spec, key layers) for the life of the process, on one inference thread */
  private readonly extractors = new Map<string, Promise<Extractor>>();
  private inference: InferenceThread | null = null;
  private options: EngineOptions = { role: 'embedded', dataDir: 'indexes' };
  private definitions: DefinitionStore = new FileDefinitions('indexes');
  private redis: Redis | null = null;
  private readonly workerLogs = new Map<string, Promise<RedisKeyLog>>();
  private readonly workerProjections = new Map<string, Projection>();
  private closed = false;
  private loops: Promise<void>[] = [];

  /** Load every cache (a cache that cannot load is reported, not fatal) and, for an api replica, start tailing. */
  async open(options: EngineOptions): Promise<CacheStatus[]> {
    this.options = options;
    if (options.role !== 'embedded') {
      if (!options.redisUrl) throw new Error(`role ${options.role} needs REDIS_URL`);
      this.redis = connectRedis(options.redisUrl);
      this.definitions = new RedisDefinitions(this.redis);
    } else {
      this.definitions = new FileDefinitions(options.dataDir);
    }
    if (options.role === 'worker') return [];
    await this.syncDefinitions();
    if (options.role === 'api') this.loops.push(this.every(1000, () => this.syncDefinitions()), this.tailLogs());
    return this.listCaches();
  }

  /** `input` is validated here: it comes straight from an HTTP body. */
  async createCache(input: unknown): Promise<CacheInfo> {
    this.assertRole('embedded', 'api');
    const parsed = CacheDefinitionSchema.safeParse(input);
    if (!parsed.success) throw new UserError('invalid_cache_definition', describeZodError(parsed.error));
    const definition = parsed.data;
    if (definition.keyLayers.length !== new Set(definition.keyLayers).size) {
      throw new UserError('invalid_cache_definition', `keyLayers lists a layer twice: ${definition.keyLayers.join(', ')}`);
    }
    const taken = () => new UserError('cache_exists', `a cache named "${definition.name}" already exists: pick another name`);
    if (this.caches.has(definition.name) || this.failed.has(definition.name)) throw taken();
    await this.extractorFor(definition); // validates the model, its spec and the key layers
    if (!(await this.definitions.create(definition))) throw taken();
    await this.openCache(definition);
    return this.cache(definition.name).info();
  }

  async listCaches(): Promise<CacheStatus[]> {
    const ready: CacheStatus[] = [...this.caches.values()].map((c) => ({ name: c.definition.name, status: 'ready', info: c.info() }));
    const failed: CacheStatus[] = [...this.failed].map(([name, error]) => ({ name, status: 'failed', error }));
    return [...ready, ...failed].sort((a, b) => a.name.localeCompare(b.name));
  }

  async getCache(name: string): Promise<CacheInfo> {
    return this.cache(name).info();
  }

  /** How far each cache's index is behind its key log (an api replica's readiness). */
  async logStatus(): Promise<LogStatus[]> {
    const out: LogStatus[] = [];
    for (const c of this.caches.values()) {
      const logEnd = c.log instanceof RedisKeyLog ? await c.log.refreshEnd() : c.log.end();
      out.push({ name: c.definition.name, size: c.size, appliedPosition: c.appliedPosition, logEnd, lag: Math.max(0, logEnd - c.appliedPosition) });
    }
    return out;
  }

  async modelSpec(name: string): Promise<ModelSpec> {
    return (await this.extractorFor(await this.definition(name))).spec;
  }

  /** Change what can change without re-indexing: θ and λ (after tuning), k and efSearch. */
  async updateCache(name: string, change: CacheUpdate): Promise<CacheInfo> {
    this.assertRole('embedded', 'api');
    const cache = this.cache(name);
    const d = cache.definition;
    const value = <T>(schema: Parser<T>, v: T | undefined, current: T, field: 'theta' | 'lambda' | 'k' | 'efSearch') => (v === undefined ? current : parseOr400(schema, v, field));
    const theta = value(ThetaSchema, change.theta, d.theta, 'theta');
    const lambda = value(LambdaSchema, change.lambda, d.lambda, 'lambda');
    const changed = theta !== d.theta || lambda !== d.lambda;
    // Keep what θ and λ were, so a user can roll back (newest first).
    const history = changed
      ? [{ theta: d.theta, lambda: d.lambda, until: new Date().toISOString(), reason: change.reason ?? 'set' }, ...d.history].slice(0, MAX_HISTORY)
      : d.history;
    cache.definition = {
      ...d,
      theta,
      lambda,
      history,
      k: value(KSchema, change.k, d.k, 'k'),
      index: { ...d.index, efSearch: value(EfSearchSchema, change.efSearch, d.index.efSearch, 'efSearch') },
    };
    await cache.lock.run(async () => cache.applySearchSettings());
    await this.definitions.update(cache.definition);
    return cache.info();
  }

  /**
   * Extract the keys of a batch of decoded images and add them as items: to the
   * cache (embedded), or to its key log for the api replicas to apply (worker).
   * `images` is n images laid out as the model's input; labels are class indices.
   */
  async indexBatch(name: string, images: Float32Array, ids: string[], labels: number[], sources?: (string | null)[]): Promise<IndexBatchResult> {
    this.assertRole('embedded', 'worker');
    const definition = await this.definition(name);
    const extractor = await this.extractorFor(definition);
    const n = ids.length;
    const numClasses = extractor.numClasses;
    const failed: IndexBatchResult['failed'] = [];
    const bad = labels.findIndex((l) => !Number.isInteger(l) || l < 0 || l >= numClasses);
    if (bad >= 0) throw new UserError('label_out_of_range', `item ${ids[bad]}: label ${labels[bad]} is not a class index 0–${numClasses - 1}`);
    const { keys, zeroKeys } = await extractor.run(images, n);
    const zero = new Set(zeroKeys);
    const dim = extractor.keyDimension;
    const records: FullKeyRecord[] = [];
    for (let i = 0; i < n; i++) {
      if (zero.has(i)) {
        failed.push({ id: ids[i], error: 'its key is zero or not finite (every key layer is zero for this image), so it cannot be compared: not added' });
        continue;
      }
      const record: FullKeyRecord = { id: ids[i], label: labels[i], key: keys.subarray(i * dim, (i + 1) * dim) };
      if (sources?.[i]) record.source = sources[i]!;
      records.push(record);
    }
    if (this.options.role === 'worker') {
      const sk = definition.searchKey;
      const projection = logsReducedKeys(sk) ? await this.publishedProjection(name, dim) : null;
      const logged = projection ? await reduceRecords(records, projection, sk.rerank) : records;
      const { added } = await (await this.workerLog(name, dim)).appendNew(logged);
      return { added, duplicates: records.length - added, failed };
    }
    const { added, duplicates } = await this.cache(name).add(records);
    return { added, duplicates, failed };
  }

  /**
   * Delete items by id, through the key log (so replicas follow). The result says which
   * ids the cache did not hold. An api replica answers once its own index has applied it.
   */
  async deleteItems(name: string, ids: string[]): Promise<{ deleted: number; notFound: string[]; cacheSize: number }> {
    this.assertRole('embedded', 'api');
    const cache = this.cache(name);
    const unique = [...new Set(ids)];
    let deleted: string[];
    if (cache.log instanceof RedisKeyLog) {
      const logged = await cache.log.appendDeletes(unique);
      deleted = logged.deleted;
      await this.waitForApplied(cache, logged.end);
    } else {
      deleted = await cache.delete(unique);
    }
    const gone = new Set(deleted);
    return { deleted: deleted.length, notFound: unique.filter((id) => !gone.has(id)), cacheSize: cache.size };
  }

  /** Delete a cache: its definition, key log, snapshots. Other replicas drop it when they see the definition gone. */
  async deleteCache(name: string): Promise<{ deleted: string }> {
    this.assertRole('embedded', 'api');
    const cache = this.caches.get(name);
    if (!cache && !this.failed.has(name)) this.cache(name); // throws unknown_cache
    if (cache) await this.drop(cache);
    this.failed.delete(name);
    await this.definitions.delete(name);
    await fs.rm(path.join(this.options.dataDir, name), { recursive: true, force: true });
    return { deleted: name };
  }

  /** Where a live item's image came from: 404 when the cache does not hold it or recorded no source. */
  async itemSource(name: string, id: string): Promise<string> {
    const cache = this.cache(name);
    const source = cache.items.sourceOf(id);
    if (source === undefined) throw new UserError('unknown_item', `cache "${name}" holds no item with id ${JSON.stringify(id)}`);
    if (source === null) {
      throw new UserError('no_image', `item ${JSON.stringify(id)} was indexed from inline image bytes (or before sources were recorded): Cachet keeps no copy of its image`);
    }
    return source;
  }

  /**
   * Make what a job added durable in the materialised view and report the cache's size:
   * embedded, a snapshot; a worker holds no view, so the log's length.
   */
  async flush(name: string): Promise<{ cacheSize: number }> {
    if (this.options.role === 'worker') {
      const definition = await this.definition(name);
      const log = await this.workerLog(name, (await this.extractorFor(definition)).keyDimension);
      return { cacheSize: await log.refreshEnd() };
    }
    return { cacheSize: (await this.snapshot(name)).size };
  }

  /** p_model, p_cache and p = (1 − λ)·p_model + λ·p_cache for n images, with their nearest cached items. */
  async classify(name: string, images: Float32Array, n: number, options: ClassifyOptions = {}): Promise<ClassifyResult> {
    const cache = this.cache(name);
    const d = cache.definition;
    const theta = options.theta === undefined ? d.theta : parseOr400(ThetaSchema, options.theta, 'theta');
    const lambda = options.lambda === undefined ? d.lambda : parseOr400(LambdaSchema, options.lambda, 'lambda');
    const wanted = options.neighbours ?? 0;
    const { keys, probs, runMs } = await cache.extractor.run(images, n);
    const t1 = performance.now();
    const numClasses = cache.extractor.numClasses;
    const scores = await cache.score(keys, n, theta, wanted);
    const timings = { inferenceMs: runMs, searchMs: performance.now() - t1 };
    const results: Classification[] = scores.map(({ pCache, neighbours }, i) => {
      const pModel = Array.from(probs.subarray(i * numClasses, (i + 1) * numClasses));
      const p = mixProbabilities(pModel, pCache ?? pModel, lambda, pCache === null);
      return {
        pModel,
        pCache: pCache && Array.from(pCache),
        p: Array.from(p),
        neighbours: neighbours.map(({ position, similarity }) => ({ id: cache.items.ids[position], label: cache.items.labels[position], similarity })),
      };
    });
    return { cache: name, theta, lambda, cacheSize: cache.size, results, timings };
  }

  /**
   * For tuning: p_model and the k nearest items (similarity, label) of n images, computed
   * once so that a whole θ × λ grid can be scored in memory. Rows with fewer than k
   * neighbours are padded with similarity −∞ (weight 0).
   */
  async neighbourScores(name: string, images: Float32Array, n: number, k: number): Promise<NeighbourScores> {
    const cache = this.cache(name);
    const { keys, probs } = await cache.extractor.run(images, n);
    const found = await cache.lock.run(() => (cache.size > 0 ? cache.search.nearest(keys, n, k) : Promise.resolve([])));
    const similarities = new Float32Array(n * k).fill(-Infinity);
    const labels = new Uint16Array(n * k);
    const itemPositions = new Int32Array(n * k).fill(-1);
    found.forEach(({ positions, similarities: sims }, q) => {
      similarities.set(sims, q * k);
      itemPositions.set(positions, q * k);
      positions.forEach((p, j) => (labels[q * k + j] = cache.items.labels[p]));
    });
    return { k, pModel: probs, similarities, labels, positions: itemPositions };
  }

  async snapshot(name: string): Promise<CacheInfo> {
    const cache = this.cache(name);
    await cache.lock.run(() => cache.snapshot());
    return cache.info();
  }

  /** Stop tailing, snapshot every cache and close its log (graceful shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.loops);
    for (const cache of this.caches.values()) {
      await cache.lock.run(async () => {
        await cache.snapshot();
        await cache.close();
      });
    }
    await this.inference?.terminate();
    this.redis?.disconnect();
  }

  /** Stop serving a cache held by this process and close its log (waits for work in hand). */
  private async drop(cache: CacheState): Promise<void> {
    const name = cache.definition.name;
    this.caches.delete(name);
    await cache.lock.run(() => cache.close());
  }

  /** An api replica: until its own index has applied the log up to `position` (what it just logged). */
  private async waitForApplied(cache: CacheState, position: number): Promise<void> {
    const deadline = Date.now() + APPLY_WAIT_MS;
    while (cache.appliedPosition < position) {
      if (Date.now() > deadline) {
        // the deletion is durable in the log: every replica applies it when it gets there
        throw new UserError('replica_behind',
          `the deletion is in cache "${cache.definition.name}"'s key log (position ${position}) and every replica will apply it, but this replica is still ${position - cache.appliedPosition} records behind (GET /readyz shows its lag); do not resend it`,
        );
      }
      await sleep(10);
    }
  }

  private async openCache(definition: CacheDefinition): Promise<void> {
    const name = definition.name;
    let opening = this.opening.get(name);
    if (!opening) {
      opening = (async () => {
        try {
          const extractor = await this.extractorFor(definition);
          const dir = path.join(this.options.dataDir, name);
          const log = this.redis
            ? await RedisKeyLog.open(this.redis, name, extractor.keyDimension)
            : await FileKeyLog.open(path.join(dir, LOG_FILE), extractor.keyDimension);
          this.caches.set(name, await CacheState.open(definition, dir, extractor, log, (cache, p) => this.publishProjection(cache, p)));
          this.failed.delete(name);
        } catch (err) {
          this.failed.set(name, err instanceof Error ? err.message : String(err));
        } finally {
          this.opening.delete(name);
        }
      })();
      this.opening.set(name, opening);
    }
    await opening;
  }

  /**
   * A worker: the projection an api replica published for a cache, once there is one. The
   * fingerprint in its head is checked on every call (a few bytes): a cache deleted and
   * created again under the same name gets a new projection.
   */
  private async publishedProjection(cache: string, dimension: number): Promise<Projection | null> {
    const key = redisKeys.projection(cache);
    const fingerprint = serialisedFingerprint(await this.redis!.getrangeBuffer(key, 0, PROJECTION_HEAD_BYTES - 1));
    if (fingerprint === null) return null;
    const known = this.workerProjections.get(cache);
    if (known?.fingerprint === fingerprint) return known;
    const stored = await this.redis!.getBuffer(key);
    if (!stored) return null;
    const projection = Projection.fromBuffer(stored);
    if (projection.inputDimension !== dimension) return null;
    this.workerProjections.set(cache, projection);
    return projection;
  }

  /**
   * The first projection published for a cache is the one it keeps: in Redis for every
   * replica and worker (distributed), in <cache>/projection/ (embedded). It is stored the
   * moment it exists, before any record reduced with it is logged, so a replay from an
   * older snapshot takes the same projection instead of fitting another.
   */
  private async publishProjection(cache: string, projection: Projection): Promise<Projection> {
    if (!this.redis) {
      const dir = path.join(this.options.dataDir, cache, PROJECTION_DIR);
      const stored = await Projection.load(dir);
      if (stored) return stored;
      await fs.mkdir(dir, { recursive: true });
      await projection.save(dir);
      return projection;
    }
    await this.redis.set(redisKeys.projection(cache), projection.toBuffer(), 'NX');
    const stored = await this.redis.getBuffer(redisKeys.projection(cache));
    return stored ? Projection.fromBuffer(stored) : projection;
  }

  /** Open caches this process has not seen yet; take θ and λ changed by another replica. */
  private async syncDefinitions(): Promise<void> {
    const { definitions, unreadable } = await this.definitions.list();
    for (const u of unreadable) this.failed.set(u.name, u.error);
    // a cache deleted through another replica: drop it and its local snapshots
    const stored = new Set([...definitions.map((d) => d.name), ...unreadable.map((u) => u.name)]);
    for (const cache of [...this.caches.values()]) {
      if (stored.has(cache.definition.name)) continue;
      await this.drop(cache);
      await fs.rm(cache.dir, { recursive: true, force: true });
    }
    for (const name of [...this.failed.keys()]) if (!stored.has(name)) this.failed.delete(name);
    for (const d of definitions) {
      const cache = this.caches.get(d.name);
      if (cache) {
        cache.definition = d;
        await cache.lock.run(async () => cache.applySearchSettings());
      }
      else if (!this.failed.has(d.name)) await this.openCache(d);
    }
  }

  /** An api replica applies what workers append to the key logs, and snapshots now and then. */
  private async tailLogs(): Promise<void> {
    const blocking = this.redis!.duplicate();
    blocking.on('error', () => {}); // reconnects by itself
    const every = this.options.snapshotEvery ?? 10_000;
    const interval = this.options.snapshotIntervalMs ?? 60_000;
    const lastSnapshot = new Map<string, number>();
    try {
      while (!this.closed) {
        try {
          const caches = [...this.caches.values()];
          const logs = caches.map((c) => ({ log: c.log as RedisKeyLog, position: c.appliedPosition }));
          await RedisKeyLog.waitForAny(blocking, logs, 500);
          for (const c of caches) {
            if (this.closed) break;
            await c.catchUp();
            const pending = c.appliedPosition - c.snapshotPosition;
            const since = Date.now() - (lastSnapshot.get(c.definition.name) ?? 0);
            if (pending >= every || (pending > 0 && since >= interval)) {
              await c.lock.run(() => c.snapshot());
              lastSnapshot.set(c.definition.name, Date.now());
            }
          }
        } catch (err) {
          if (!this.closed) this.report({ level: 'warn', msg: `tailing the key logs: ${(err as Error).message}; retrying` });
          await sleep(500);
        }
      }
    } finally {
      blocking.disconnect();
    }
  }

  private async every(ms: number, task: () => Promise<void>): Promise<void> {
    while (!this.closed) {
      await sleep(ms);
      await task().catch((err: Error) => this.report({ level: 'error', msg: err.message }));
    }
  }

  /** Keyed by dimension too: a cache deleted and created again under its name may have another. */
  private workerLog(name: string, dimension: number): Promise<RedisKeyLog> {
    const key = `${name}\u0000${dimension}`;
    let log = this.workerLogs.get(key);
    if (!log) {
      log = RedisKeyLog.open(this.redis!, name, dimension);
      this.workerLogs.set(key, log);
      log.catch(() => this.workerLogs.delete(key));
    }
    return log;
  }

  /** A cache's definition: from memory where this process holds the cache, else from the store. */
  private async definition(name: string): Promise<CacheDefinition> {
    const held = this.caches.get(name);
    if (held) return held.definition;
    if (this.options.role === 'worker') {
      const stored = await this.definitions.get(name);
      if (stored) return stored;
    }
    return this.cache(name).definition; // throws the right error
  }

  private cache(name: string): CacheState {
    const cache = this.caches.get(name);
    if (cache) return cache;
    const error = this.failed.get(name);
    if (error !== undefined) throw new UserError('cache_unavailable', `cache "${name}" could not be loaded: ${error}`);
    const known = [...this.caches.keys()];
    throw new UserError('unknown_cache', `no cache named "${name}"; ${known.length ? `known caches: ${known.join(', ')}` : 'create one with POST /v1/caches'}`);
  }

  private assertRole(...roles: EngineRole[]): void {
    if (!roles.includes(this.options.role)) throw new Error(`not available to a process of role ${this.options.role}`);
  }

  private extractorFor(d: CacheDefinition): Promise<Extractor> {
    const key = JSON.stringify([path.resolve(d.model), d.spec ?? {}, d.keyLayers]);
    let extractor = this.extractors.get(key);
    if (!extractor) {
      extractor = fs
        .access(d.model)
        .catch(() => {
          throw new UserError('bad_model', `model ${d.model}: no such file; give the path of the .onnx file as the service sees it`);
        })
        .then(() => loadModelSpec(d.model, d.spec))
        .then((spec) => (this.inference ??= InferenceThread.start()).load(d.model, spec, d.keyLayers, { intraOpNumThreads: INTRA_OP_THREADS }));
      this.extractors.set(key, extractor);
      extractor.catch(() => this.extractors.delete(key)); // a failed load may succeed once the user fixes the file
    }
    return extractor;
  }
}

/** enough of a serialised projection to hold its JSON header (kind, dimensions, fingerprint, fit info) */
const PROJECTION_HEAD_BYTES = 16 * 1024;
/** how long a delete request waits for this replica to apply it */
const APPLY_WAIT_MS = 30_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MAX_HISTORY = 20;

/**
 * onnxruntime threads per model session. Measured on 2 cores with ResNet-20: a second
 * intra-op thread gains ≤ 10 % on one run, but overlapping runs (a predict batch beside an
 * index batch) were 2–3× slower per image with 2 threads each. Large models on many cores
 * may want more: CACHET_INTRA_OP_THREADS.
 */
const INTRA_OP_THREADS = Number(process.env.CACHET_INTRA_OP_THREADS ?? 1);
const LOG_FILE = 'keylog.bin';
const PROJECTION_DIR = 'projection';

type Parser<T> = { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { message: string }[] } } };

function parseOr400<T>(schema: Parser<T>, value: unknown, field: 'theta' | 'lambda' | 'k' | 'efSearch'): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new UserError(`invalid_${field}`, `${field} = ${JSON.stringify(value)}: ${r.error.issues.map((i) => i.message).join('; ')}`);
}
