// What every process that holds caches does (embedded and api replica): open them, answer
// predictions and tuning, change their settings, delete items and caches. The roles differ only in
// where definitions, key logs and projections are kept and in how a delete reaches the log:
// embedded-engine.ts and replica-engine.ts. A worker holds no cache: log-writer.ts.
// Engines run on their own thread (engine-thread.ts): onnxruntime and hnswlib compute
// synchronously on the calling thread, and the HTTP thread must stay free.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { CacheDefinition, changedDefinition, newDefinition, parseSetting } from '../cache/definition.js';
import type { CacheInfo } from '../cache/info.js';
import type { ArchiveFile } from '../cache/archive.js';
import { linkExport, removeStaleExports } from './cache-export.js';
import { UserError } from '../errors/user-error.js';
import type { KeyLog } from '../keylog/types.js';
import type { ModelSpec } from '../model/spec.js';
import { CacheState, type HoldOptions, type ProjectionPublisher } from './cache-state.js';
import { HeldCaches } from './held-caches.js';
import type { DefinitionStore } from './definitions.js';
import { ModelRegistry } from './models.js';
import { CacheDamagedError, clearDamage, verifyStored } from './recovery.js';
import type { ProjectionStore } from './projection-store.js';
import type { CacheStatus, CacheVerification, LogStatus, StartProgress } from './status.js';
import type { ShardAnswer } from '../shards/merge.js';
import { classifyHeld, classifySharded, neighbourScoresHeld, neighbourScoresSharded, type AskShards } from './queries.js';
import { byShard, cacheOf, holds, shardName, shardNames } from '../shards/shards.js';
import type { CacheUpdate, ClassifyOptions, ClassifyResult, EngineLogEntry, EngineOptions, NeighbourScores } from './types.js';

export abstract class CacheEngine {
  /** what this process knows of each cache: held, sharded, failed, opening (held-caches.ts) */
  protected readonly held = new HeldCaches();
  private readonly opening = new Map<string, Promise<void>>();
  protected readonly models = new ModelRegistry();
  protected closed = false;
  /** whether close() snapshots every cache (a replica snapshots only at its boundaries) */
  protected snapshotsOnClose = true;
  /** askShards, for queries.ts */
  private readonly ask: AskShards = (...args) => this.askShards(...args);

  constructor(
    protected readonly options: EngineOptions,
    protected readonly definitions: DefinitionStore,
    private readonly projections: ProjectionStore,
    /** where log entries go (the main thread's logger, when the engine runs in a thread) */
    protected readonly report: (entry: EngineLogEntry) => void,
  ) {}

  /** The cache's key log, as this role keeps it (a replica may first fetch a peer's snapshot into `dir`). */
  protected abstract openLog(name: string, dir: string, dimension: number, progress: StartProgress): Promise<KeyLog>;

  /** How this role holds a cache (its snapshot policy) while `progress` follows its opening. */
  protected holdOptions(progress: StartProgress): HoldOptions {
    return { onReplay: (applied, end) => Object.assign(progress, { phase: 'replaying the key log', done: applied, total: end }) };
  }

  /** Delete items through the key log; returns the ids the cache held. */
  protected abstract deleteLogged(cache: CacheState, ids: string[]): Promise<string[]>;

  /** Where peers reach this process (its HTTP API), once it listens: a replica's peers fetch its snapshots there. */
  async advertise(_url: string): Promise<void> {}

  /** Load every cache; a cache that cannot load is reported, not fatal. */
  async open(): Promise<CacheStatus[]> {
    await this.syncDefinitions();
    return this.listCaches();
  }

  /** `input` is validated here: it comes straight from a client. */
  async createCache(input: unknown): Promise<CacheInfo> {
    const definition = newDefinition(input, this.options.role !== 'embedded');
    const taken = () => new UserError('cache_exists', `a cache named "${definition.name}" already exists: pick another name`);
    if (this.held.knows(definition.name)) throw taken();
    await this.models.extractorFor(definition); // validates the model, its spec and the key layers
    if (!(await this.definitions.create(definition))) throw taken();
    await this.openCache(definition);
    return this.getCache(definition.name);
  }

  async listCaches(): Promise<CacheStatus[]> {
    const ready: CacheStatus[] = [...this.held.open.values()].map((c) => ({ name: c.definition.name, status: 'ready', info: c.info() }));
    for (const d of this.held.sharded.values()) {
      const info = await this.shardedInfo(d).catch((err: Error) => err);
      ready.push(
        info instanceof Error
          ? { name: d.name, status: 'failed', error: `its shards could not be read: ${info.message}` }
          : { name: d.name, status: 'ready', info },
      );
    }
    return [...ready, ...this.held.failures()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** How far each cache's opening has got (for /readyz while the process starts). */
  async startup(): Promise<StartProgress[]> {
    return [...this.held.progress.values()].map((p) => ({ ...p }));
  }

  async getCache(name: string): Promise<CacheInfo> {
    const d = this.held.sharded.get(name);
    return d ? this.shardedInfo(d) : this.held.get(name).info();
  }

  /** A cache of several shards as GET /v1/caches/:name shows it: each shard's size and replicas. */
  protected async shardedInfo(d: CacheDefinition): Promise<CacheInfo> {
    throw onlyDistributed(d);
  }

  /** How far each cache's index is behind its key log (readiness). */
  async logStatus(): Promise<LogStatus[]> {
    const out: LogStatus[] = [];
    for (const c of this.held.open.values()) {
      const logEnd = await c.log.readEnd();
      out.push({ name: c.definition.name, size: c.size, appliedPosition: c.appliedPosition, logEnd, lag: Math.max(0, logEnd - c.appliedPosition) });
    }
    return out;
  }

  async modelSpec(name: string): Promise<ModelSpec> {
    return (await this.models.extractorFor(this.definitionOf(name))).spec;
  }

  /** The definition of a cache this process knows (held whole, by some shards, or by none). */
  protected definitionOf(name: string): CacheDefinition {
    return this.held.sharded.get(name) ?? this.held.get(name).definition;
  }

  /** Change what can change without re-indexing: θ and λ (after tuning), k and efSearch. */
  async updateCache(name: string, change: CacheUpdate): Promise<CacheInfo> {
    const shardedDefinition = this.held.sharded.get(name);
    if (shardedDefinition) {
      const changed = changedDefinition(shardedDefinition, change);
      await this.takeShardedDefinition(changed);
      await this.definitions.update(changed);
      return this.shardedInfo(changed);
    }
    const cache = this.held.get(name);
    cache.definition = changedDefinition(cache.definition, change);
    await cache.lock.run(async () => cache.applySearchSettings());
    await this.definitions.update(cache.definition);
    return cache.info();
  }

  /** A sharded cache's definition as it now stands, for it and the shards held here (under their own names). */
  private async takeShardedDefinition(d: CacheDefinition): Promise<void> {
    this.held.sharded.set(d.name, d);
    for (const unit of this.held.shardsOf(d)) {
      unit.definition = { ...d, name: unit.definition.name };
      await unit.lock.run(async () => unit.applySearchSettings());
    }
  }

  /** p_model, p_cache and p = (1 − λ)·p_model + λ·p_cache for n images, with their nearest cached items (queries.ts). */
  async classify(name: string, images: Float32Array, n: number, options: ClassifyOptions = {}): Promise<ClassifyResult> {
    const d = this.held.sharded.get(name);
    if (d) return classifySharded(d, await this.models.extractorFor(d), this.ask, images, n, options);
    return classifyHeld(this.held.get(name), images, n, options);
  }

  /**
   * Every shard's answer to n query keys, per query: the shards held here answer here, the others
   * through a replica that serves them. A shard no replica answers for is listed in `missing` when
   * `partial`, else the call fails with shard_unavailable.
   */
  protected async askShards(
    d: CacheDefinition,
    _keys: Float32Array,
    _n: number,
    _theta: number,
    _wanted: number,
    _partial: boolean,
  ): Promise<{ answers: ShardAnswer[][]; sizes: number[]; missing: number[] }> {
    throw onlyDistributed(d);
  }

  /** What a held cache (a shard of a larger one) answers for n query keys, for the replica that merges. */
  async answer(name: string, keys: Float32Array, n: number, theta: number, wanted: number): Promise<{ size: number; answers: ShardAnswer[] }> {
    const cache = this.held.get(name);
    if (keys.length !== n * cache.extractor.keyDimension) {
      throw new UserError('invalid_request', `keys: ${keys.length} values for ${n} queries of dimension ${cache.extractor.keyDimension}`);
    }
    return { size: cache.size, answers: await cache.answer(keys, n, parseSetting('theta', theta), wanted) };
  }

  /** p_model alone for n images, without searching the cache (an attack crafted against the model alone queries it). */
  async modelProbabilities(name: string, images: Float32Array, n: number): Promise<Float32Array> {
    return (await this.models.extractorFor(this.definitionOf(name))).run(images, n).then((r) => r.probs);
  }

  /** For tuning: p_model and the k nearest items of n images, scored in memory over a θ × λ grid (queries.ts). */
  async neighbourScores(name: string, images: Float32Array, n: number, k: number): Promise<NeighbourScores> {
    const d = this.held.sharded.get(name);
    if (d) return neighbourScoresSharded(d, await this.models.extractorFor(d), this.ask, images, n, k);
    return neighbourScoresHeld(this.held.get(name), images, n, k);
  }

  async snapshot(name: string): Promise<CacheInfo> {
    const cache = this.held.get(name);
    await cache.snapshotWhenAsked();
    return cache.info();
  }

  /** Make what a job added durable in the materialised view (a snapshot); reports the cache's size. */
  async flush(name: string): Promise<{ cacheSize: number }> {
    const sharded = this.held.sharded.get(name);
    if (sharded) return { cacheSize: (await this.shardedInfo(sharded)).size };
    return { cacheSize: (await this.snapshot(name)).size };
  }

  /** Which of these ids the cache holds (an index job skips them before decoding). */
  async presentIds(name: string, ids: string[]): Promise<string[]> {
    const items = this.held.get(name).items;
    return ids.filter((id) => items.has(id));
  }

  /** Where a live item's image came from. */
  async itemSource(name: string, id: string): Promise<string> {
    const source = this.held.get(name).items.sourceOf(id);
    if (source === undefined) throw new UserError('unknown_item', `cache "${name}" holds no item with id ${JSON.stringify(id)}`);
    if (source === null) {
      throw new UserError(
        'no_image',
        `item ${JSON.stringify(id)} was indexed from inline image bytes (or before sources were recorded): Cachet keeps no copy of its image`,
      );
    }
    return source;
  }

  /**
   * Check every stored file of a cache against its checksums and read its whole key log again.
   * Works on a damaged cache too (it reads the files, not the loaded cache).
   */
  async verifyCache(name: string): Promise<CacheVerification> {
    const cache = this.held.heldOrFailed(name);
    return verifyStored(name, path.join(this.options.dataDir, name), cache ?? { failure: this.held.failed.get(name) ?? '' });
  }

  /**
   * A consistent copy of the cache to stream as an export archive (cache/archive.ts); the caller
   * removes `dir` when done. `stored`: the snapshot last written, as it is (a replica's peers).
   */
  async prepareExport(name: string, _opts: { stored?: boolean } = {}): Promise<{ dir: string; definition: CacheDefinition; files: ArchiveFile[] }> {
    const cache = this.held.get(name);
    return cache.lock.read(() => cache.withSnapshot(() => linkExport(cache)), { long: true });
  }

  /** A new directory, beside the caches, to unpack an import archive into. */
  async importStaging(): Promise<string> {
    const dir = path.join(this.options.dataDir, `.import-${randomBytes(6).toString('hex')}`);
    await fs.mkdir(dir, { recursive: true });
    return dir;
  }

  /** Make an unpacked export archive a cache (embedded mode). */
  async importCache(staging: string, _overrides: { name?: string; model?: string } = {}): Promise<CacheInfo> {
    await fs.rm(staging, { recursive: true, force: true });
    throw new UserError(
      'embedded_only',
      'importing a cache works on an embedded service; in distributed mode, import it into an embedded one and index from there',
    );
  }

  /** Forget a cache's damage records, once its lost images are indexed again. */
  async clearDamage(name: string): Promise<CacheInfo> {
    const cache = this.held.get(name);
    await clearDamage(cache.dir);
    cache.damage = [];
    return cache.info();
  }

  /** Delete items by id, through the key log (so replicas follow). Says which ids the cache did not hold. */
  async deleteItems(name: string, ids: string[]): Promise<{ deleted: number; notFound: string[]; cacheSize: number }> {
    const unique = [...new Set(ids)];
    const sharded = this.held.sharded.get(name);
    if (sharded) {
      const gone = new Set<string>();
      for (const [shard, list] of byShard(unique, (id) => id, sharded.shards)) for (const id of await this.deleteFromShard(sharded, shard, list)) gone.add(id);
      return { deleted: gone.size, notFound: unique.filter((id) => !gone.has(id)), cacheSize: (await this.shardedInfo(sharded)).size };
    }
    const cache = this.held.get(name);
    const gone = new Set(await this.deleteLogged(cache, unique));
    return { deleted: gone.size, notFound: unique.filter((id) => !gone.has(id)), cacheSize: cache.size };
  }

  /** Delete items of one shard through its key log, held here or not; returns the ids it held. */
  protected async deleteFromShard(d: CacheDefinition, _shard: number, _ids: string[]): Promise<string[]> {
    throw onlyDistributed(d);
  }

  /** Delete a cache: its definition, key log, snapshots. Other replicas drop it when they see the definition gone. */
  async deleteCache(name: string): Promise<{ deleted: string }> {
    const sharded = this.held.sharded.get(name);
    if (sharded) {
      await this.dropSharded(sharded);
      await this.definitions.delete(name);
      return { deleted: name };
    }
    const cache = this.held.heldOrFailed(name);
    if (cache) await this.drop(cache);
    this.held.forget(name);
    await this.definitions.delete(name);
    await fs.rm(path.join(this.options.dataDir, name), { recursive: true, force: true });
    return { deleted: name };
  }

  /** Graceful shutdown: stop background work, snapshot every cache and close its log. */
  async close(): Promise<void> {
    this.closed = true;
    await this.stopBackgroundWork();
    for (const cache of this.held.open.values()) {
      await cache.lock.run(async () => {
        if (this.snapshotsOnClose) await cache.snapshot();
        await cache.close();
      });
    }
    await this.models.close();
  }

  /** What a role runs beside requests (the replica's log tailing) ends here. */
  protected async stopBackgroundWork(): Promise<void> {}

  /** Open caches this process has not seen yet; take settings changed elsewhere; drop deleted caches. */
  protected async syncDefinitions(): Promise<void> {
    const { definitions, unreadable } = await this.definitions.list();
    for (const u of unreadable) this.held.failedToOpen(u.name, u.error, false);
    const stored = new Set([...definitions.map((d) => d.name), ...unreadable.map((u) => u.name)]);
    for (const d of [...this.held.sharded.values()]) if (!stored.has(d.name)) await this.dropSharded(d);
    for (const cache of [...this.held.open.values()]) {
      if (stored.has(cache.definition.name) || this.held.sharded.has(cacheOf(cache.definition.name))) continue;
      // deleted through another replica: drop it and its local snapshots
      await this.drop(cache);
      await fs.rm(cache.dir, { recursive: true, force: true });
    }
    for (const name of [...this.held.failed.keys()]) if (!stored.has(cacheOf(name))) this.held.forget(name);
    for (const d of definitions) {
      if (d.shards > 1) {
        await this.takeShardedDefinition(d);
        await this.openCache(d); // shards held here that are not open yet
        continue;
      }
      const cache = this.held.open.get(d.name);
      if (cache) {
        cache.definition = d;
        await cache.lock.run(async () => cache.applySearchSettings());
      } else if (!this.held.failed.has(d.name)) await this.openCache(d);
    }
  }

  /** Stop serving a cache of several shards: drop the shards held here and their local snapshots. */
  private async dropSharded(d: CacheDefinition): Promise<void> {
    for (const unit of this.held.forgetSharded(d)) await unit.lock.run(() => unit.close());
    for (const name of shardNames(d.name, d.shards)) await fs.rm(path.join(this.options.dataDir, name), { recursive: true, force: true });
  }

  /** Stop serving a cache held by this process and close its log (waits for work in hand). */
  protected async drop(cache: CacheState): Promise<void> {
    this.held.released(cache.definition.name);
    await cache.lock.run(() => cache.close());
  }

  /** Hold a cache: whole, or, for a cache of several shards, the shards this process serves. */
  protected async openCache(definition: CacheDefinition): Promise<void> {
    if (definition.shards <= 1) return this.openHeld(definition);
    this.held.sharded.set(definition.name, definition);
    for (let s = 0; s < definition.shards; s++) {
      const name = shardName(definition.name, s, definition.shards);
      if (holds(this.options.shards, s) && !this.held.open.has(name) && !this.held.failed.has(name)) await this.openHeld({ ...definition, name });
    }
  }

  private async openHeld(definition: CacheDefinition): Promise<void> {
    const name = definition.name;
    let opening = this.opening.get(name);
    if (!opening) {
      opening = (async () => {
        try {
          const progress: StartProgress = { name, phase: 'replaying the key log', done: 0, total: null };
          this.held.progress.set(name, progress);
          const extractor = await this.models.extractorFor(definition);
          const dir = path.join(this.options.dataDir, name);
          await removeStaleExports(dir);
          const log = await this.openLog(name, dir, extractor.keyDimension, progress);
          const report = (level: 'warn' | 'error', msg: string) => this.report({ level, msg });
          const publish: ProjectionPublisher = (c, make) => this.projections.publish(cacheOf(c), make); // one projection for every shard of a cache
          const state = await (async () => {
            const opened = await CacheState.open(definition, dir, extractor, log, publish, report, this.holdOptions(progress));
            progress.phase = 'warming up';
            await opened.warm();
            return opened;
          })().catch(async (err: unknown) => {
            await log.close().catch(() => {}); // a cache that does not open holds no file
            progress.phase = 'failed';
            throw err;
          });
          Object.assign(progress, { phase: 'ready', done: state.appliedPosition, total: state.appliedPosition });
          this.held.opened(name, state);
        } catch (err) {
          this.held.failedToOpen(name, err instanceof Error ? err.message : String(err), err instanceof CacheDamagedError);
          if (err instanceof CacheDamagedError) this.report({ level: 'error', msg: err.message });
        } finally {
          this.opening.delete(name);
        }
      })();
      this.opening.set(name, opening);
    }
    await opening;
  }
}

/** What the embedded role says of a sharded cache (it never holds one: createCache refuses it). */
function onlyDistributed(d: CacheDefinition): UserError {
  return new UserError('distributed_only', `cache "${d.name}" has ${d.shards} shards: only distributed mode holds them`);
}
