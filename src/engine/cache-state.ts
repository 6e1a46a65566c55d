// One cache as a process holds it: its model, its items, and its search index — a materialised
// view of its key log, rebuilt only by replaying the log (on top of a snapshot). Every change goes
// to the log first, then to the view, in log order; item ids make a replayed add idempotent.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { CacheDefinition } from '../cache/definition.js';
import type { CacheInfo, Damage } from '../cache/info.js';
import { createIndex } from '../index/factory.js';
import { ExactIndex } from '../index/exact.js';
import { HnswIndex } from '../index/hnsw.js';
import { FullKeyStore } from '../index/full-keys.js';
import { Projection, randomProjection } from '../index/projection.js';
import { snapshotDirOf, writeSnapshot } from '../index/snapshot.js';
import { isDelete, isReduced, type FullKeyRecord, type KeyLog, type KeyRecord, type LogRecord, type ReducedKeyRecord } from '../keylog/types.js';
import type { Extractor } from '../model/types.js';
import { Mutex } from '../util/mutex.js';
import { snapshotManifest } from './cache-snapshot.js';
import { damageOf, openSnapshot, readBackGraph, recordLogDamage, type Report } from './recovery.js';
import { APPLY_SLICE, fitProjection, growIfDue, waitsForPca, yieldToMessages, type GrowingCache } from './index-lifecycle.js';
import { ItemTable } from './item-table.js';
import { logsReducedKeys, reduceRecords } from './reduce-records.js';
import { answerQueries, scoreQueries, type CacheScore } from './scoring.js';
import type { ShardAnswer } from '../shards/merge.js';
import { SearchIndex } from './search-index.js';

/**
 * Makes every process of a cache use one projection: the one stored if there is one, else the one
 * `make` makes (in distributed mode the first replica to fit it publishes it in Redis; the others
 * take that one instead of fitting their own).
 */
export type ProjectionPublisher = (cache: string, make: () => Promise<Projection>) => Promise<Projection>;

/** How a process holds a cache beyond its stored data. */
export interface HoldOptions {
  /**
   * Snapshot exactly at multiples of this many log positions, and only there (api replicas): every
   * replica's snapshots then cover the same positions, and its index is the same whichever
   * snapshot it started from (see `snapshotAtBoundary`). Unset: snapshots when asked (embedded).
   */
  alignedSnapshots?: number;
  /** replay progress while the cache opens: the position applied and the log's end */
  onReplay?: (applied: number, end: number) => void;
}

export class CacheState implements GrowingCache {
  readonly items = new ItemTable();
  /** log position up to which records are applied to the index */
  appliedPosition = 0;
  snapshotPosition = 0;
  /** damage found in this cache's stored data, and what was done (recovery.ts) */
  damage: Damage[] = [];
  /** serialises index changes and searches (hnswlib has no locking) */
  readonly lock = new Mutex();
  /** serialises adds, so an id cannot be appended twice */
  private readonly appendLock = new Mutex();
  private readonly snapshotLock = new Mutex();
  /** where this cache says what went wrong with its stored data (set by open) */
  private report: Report = () => {};

  private constructor(
    public definition: CacheDefinition,
    readonly dir: string,
    readonly extractor: Extractor,
    public search: SearchIndex,
    readonly log: KeyLog,
    private readonly publish: ProjectionPublisher,
    private readonly hold: HoldOptions,
  ) {}

  /** live items */
  get size(): number {
    return this.items.size;
  }

  /**
   * A cache as its snapshot (if any) left it, caught up with its key log.
   * `log` is the cache's key log: a file in embedded mode, a Redis Stream in distributed mode.
   */
  static async open(
    definition: CacheDefinition,
    dir: string,
    extractor: Extractor,
    log: KeyLog,
    publish: ProjectionPublisher,
    report: Report = (level, msg) => console.error(`${level}: ${msg}`),
    hold: HoldOptions = {},
  ): Promise<CacheState> {
    await fs.mkdir(dir, { recursive: true });
    const damageBefore = (await damageOf(dir)).length;
    await recordLogDamage(dir, definition.name, log, report);
    const opened = await openSnapshot(dir, definition, extractor, log, report); // verified, or repaired
    const sk = definition.searchKey;
    const D = extractor.keyDimension;
    let state: CacheState;
    if (opened) {
      const { snapshot, search } = opened;
      const m = snapshot.manifest;
      state = new CacheState(definition, dir, extractor, search, log, publish, hold);
      snapshot.ids.forEach((id, position) => state.items.add(id, snapshot.labels[position], snapshot.sources[position]));
      for (const position of snapshot.deleted) state.forget(position);
      state.appliedPosition = state.snapshotPosition = m.logPosition;
    } else if (sk.reduce === 'random') {
      const projection = await publish(definition.name, async () => randomProjection(D, sk.dimension, seedOf(definition.name)));
      const search = new SearchIndex(createIndex(sk.dimension, definition.index), projection, sk.rerank ? new FullKeyStore(D, sk.fullKeys) : null);
      state = new CacheState(definition, dir, extractor, search, log, publish, hold);
    } else {
      // Full keys; with reduce "pca", an exact index of full keys until the sample is there.
      const index = sk.reduce === 'pca' ? new ExactIndex(D) : createIndex(D, definition.index);
      state = new CacheState(definition, dir, extractor, new SearchIndex(index), log, publish, hold);
    }
    state.report = report;
    state.damage = await damageOf(dir);
    state.applySearchSettings();
    await state.catchUp(hold.onReplay).catch((err: Error) => {
      throw new Error(`cache "${definition.name}": cannot replay its key log from position ${state.appliedPosition}: ${err.message}`);
    });
    // a repair is made durable at once: the next start loads a sound snapshot
    const repaired = opened?.repaired || state.damage.length > damageBefore;
    if (repaired && state.size > 0) await state.lock.read(() => state.snapshot(true), { long: true });
    return state;
  }

  publishProjection(make: () => Promise<Projection>): Promise<Projection> {
    return this.publish(this.definition.name, make);
  }

  /**
   * Apply the log's records after appliedPosition (with aligned snapshots, a snapshot at each
   * boundary passed). Throws if the log no longer holds them.
   */
  async catchUp(onReplay?: (applied: number, end: number) => void): Promise<number> {
    const apply = async (records: LogRecord[]) => {
      await this.applyInSlices(records);
      onReplay?.(this.appliedPosition, this.log.end());
    };
    const every = this.hold.alignedSnapshots;
    if (!every) return this.log.readFrom(this.appliedPosition, apply, 256);
    for (;;) {
      const boundary = (Math.floor(this.appliedPosition / every) + 1) * every;
      const reached = await this.log.readFrom(this.appliedPosition, apply, 256, boundary);
      if (reached < boundary) return reached;
      await this.snapshotAtBoundary();
    }
  }

  /**
   * A replica's snapshot at a boundary. hnswlib draws each new item's level in the graph from a
   * random generator that a graph loaded from a file starts afresh; so that a replica that never
   * stopped has, at every position, the very graph a restarted one has (which loaded this
   * snapshot), it loads the graph it just wrote and searches that one from here on.
   */
  private async snapshotAtBoundary(): Promise<void> {
    await this.lock.read(() => this.snapshot(), { long: true });
    await this.searchGraphOfSnapshot();
  }

  /**
   * A snapshot when asked (the end of an embedded index job): then, if the hnsw graph was resized
   * since it was read, the graph just written is read back and searched from here on, as a restart
   * would. In one process, the paper's cache just indexed served requests of 64 at 0.71 ms per image
   * where the same cache opened from its snapshot served 0.62 (the graph's memory: HnswIndex.resized).
   */
  async snapshotWhenAsked(): Promise<void> {
    await this.lock.read(() => this.snapshot(), { long: true });
    const { index } = this.search;
    if (index instanceof HnswIndex && index.resized) await this.searchGraphOfSnapshot();
  }

  /** The hnsw graph of the snapshot last written searched in place of the one in memory, unless items were applied since. */
  private async searchGraphOfSnapshot(): Promise<void> {
    const { index, projection, fullKeys } = this.search;
    if (index.kind !== 'hnsw') return; // exact indexes draw nothing
    const position = this.snapshotPosition;
    const loaded = await this.withStoredSnapshot(() => readBackGraph(snapshotDirOf(this.dir), index.dimension, this.definition.index));
    if (typeof loaded === 'string') {
      this.report('error', `cache "${this.definition.name}": the snapshot's ${loaded}; the graph in memory is kept, and the snapshot written again`);
      return this.lock.read(() => this.snapshot(true), { long: true });
    }
    await this.lock.run(async () => {
      // applied meanwhile, the snapshot lacks it: keep the graph in memory (the next snapshot reads back)
      if (this.appliedPosition !== position || this.search.index !== index) return;
      const search = new SearchIndex(loaded, projection, fullKeys);
      for (const p of this.items.deleted) search.remove(p);
      search.applySettings(this.definition.index);
      this.search = search;
    });
  }

  /** Durably log the deletion of the ids the cache holds, then apply it; returns those ids. */
  async delete(ids: string[]): Promise<string[]> {
    return this.appendLock.run(async () => {
      const held = [...new Set(ids)].filter((id) => this.items.has(id));
      if (held.length > 0) {
        const records = held.map((id) => ({ id, deleted: true as const }));
        await this.log.append(records);
        await this.applyInSlices(records);
      }
      return held;
    });
  }

  /**
   * Durably log new items, then apply them. Ids already present (or repeated in `records`) are
   * skipped. Once the cache has its projection, the log gets reduced records (reduce-records.ts).
   */
  async add(records: FullKeyRecord[]): Promise<{ added: number; duplicates: number }> {
    return this.appendLock.run(async () => {
      const fresh = this.items.unknown(records);
      if (fresh.length > 0) {
        const sk = this.definition.searchKey;
        const projection = this.search.projection;
        const logged = projection && logsReducedKeys(sk) ? await reduceRecords(fresh, projection, sk.rerank) : fresh;
        await this.log.append(logged);
        await this.applyInSlices(logged);
      }
      return { added: fresh.length, duplicates: records.length - fresh.length };
    });
  }

  /**
   * hnswlib inserts block the engine thread (several ms each for large keys), so records are
   * applied a slice at a time under the lock, yielding in between: predictions get in between.
   */
  private async applyInSlices(records: LogRecord[]): Promise<void> {
    for (let i = 0; i < records.length; i += APPLY_SLICE) {
      let slice = records.slice(i, i + APPLY_SLICE);
      // A reduced record was written with the published projection, so the writer had fitSample
      // items: a reader still waiting for its PCA sample applies the records before it, then fits
      // (and so takes) that projection.
      const firstReduced = waitsForPca(this) ? slice.findIndex((r) => !isDelete(r) && isReduced(r)) : -1;
      if (firstReduced >= 0) {
        const before = slice.slice(0, firstReduced);
        await this.lock.run(() => this.apply(before));
        await fitProjection(this);
        slice = slice.slice(firstReduced);
      }
      await this.lock.run(() => this.apply(slice));
      await yieldToMessages();
    }
    await growIfDue(this);
  }

  /** Apply log records to the index, in log order; a replayed or repeated id is one item. */
  private async apply(records: LogRecord[]): Promise<void> {
    // runs of adds go to the index together; a deletion applies between them, in order
    let run: KeyRecord[] = [];
    for (const r of records) {
      if (!isDelete(r)) {
        run.push(r);
        continue;
      }
      await this.addToIndex(run);
      run = [];
      const position = this.items.positionOfId(r.id);
      if (position !== undefined) this.forget(position);
    }
    await this.addToIndex(run);
    this.appliedPosition += records.length;
  }

  private async addToIndex(records: KeyRecord[]): Promise<void> {
    const fresh = this.items.unknown(records);
    const D = this.extractor.keyDimension;
    // runs of one kind: reduced records go straight in, full ones through the projection
    for (let i = 0; i < fresh.length;) {
      let j = i + 1;
      while (j < fresh.length && isReduced(fresh[j]) === isReduced(fresh[i])) j++;
      const run = fresh.slice(i, j);
      if (isReduced(run[0])) await this.search.addReduced(run as ReducedKeyRecord[], D, this.definition.name);
      else await this.search.addFull(stack(run as FullKeyRecord[], D), run.length);
      for (const r of run) this.items.add(r.id, r.label, r.source);
      i = j;
    }
  }

  /** Take a position out of search; its id may be added again later, as a new item. */
  private forget(position: number): void {
    if (this.items.delete(position)) this.search.remove(position);
  }

  /** p_cache for n query keys (full keys, L2-normalised) and each one's `wanted` nearest items. */
  async score(keys: Float32Array, n: number, theta: number, wanted: number): Promise<CacheScore[]> {
    return this.lock.read(() => scoreQueries(this.search, this.items, { keys, n, theta, wanted, k: this.definition.k, numClasses: this.extractor.numClasses }));
  }

  /** What this cache answers as one shard of a larger one (shards/merge.ts). */
  async answer(keys: Float32Array, n: number, theta: number, wanted: number): Promise<ShardAnswer[]> {
    return this.lock.read(() =>
      answerQueries(this.search, this.items, { keys, n, theta, wanted, k: this.definition.k, numClasses: this.extractor.numClasses }),
    );
  }

  /**
   * One model run and one search before the cache is called ready, so that the first request
   * does not pay for what a first call loads (the session's first run, the index's pages).
   */
  async warm(): Promise<void> {
    const { spec } = this.extractor;
    const { keys } = await this.extractor.run(new Float32Array(spec.height * spec.width * 3).fill(0.5), 1);
    if (this.size > 0) await this.score(keys, 1, this.definition.theta, 1);
  }

  /** Search-time settings of the definition that the index holds itself. */
  applySearchSettings(): void {
    this.search.applySettings(this.definition.index);
  }

  /**
   * Write a snapshot covering everything applied so far, then drop the log records it covers.
   * Call it under `lock.read(…, { long: true })`: it only reads the index (searches go on
   * meanwhile) and changes wait; one snapshot is written at a time.
   */
  async snapshot(force = false): Promise<void> {
    return this.snapshotLock.run(() => this.writeSnapshotNow(force));
  }

  /** A snapshot, then `use` of its files before a later snapshot replaces them (an export links them). */
  async withSnapshot<T>(use: () => Promise<T>): Promise<T> {
    return this.snapshotLock.run(async () => {
      await this.writeSnapshotNow(false);
      return use();
    });
  }

  /** `use` of the snapshot last written, untouched until it returns (a replica's export to a peer). */
  async withStoredSnapshot<T>(use: () => Promise<T>): Promise<T> {
    return this.snapshotLock.run(use);
  }

  private async writeSnapshotNow(force: boolean): Promise<void> {
    if (!force && this.snapshotPosition === this.appliedPosition && this.appliedPosition > 0) return;
    await this.writeSnapshotInto(this.dir);
    this.snapshotPosition = this.appliedPosition;
    await this.log.compactTo(this.snapshotPosition);
  }

  /** A snapshot of what is applied now, as `<dir>/snapshot` (under the lock, read or exclusive). */
  async writeSnapshotInto(dir: string): Promise<void> {
    const manifest = snapshotManifest(this.definition, this.extractor, this.search, this.items, this.appliedPosition);
    const items = this.items;
    await writeSnapshot(dir, manifest, items.ids, items.allLabels(), this.search.index, this.search.extras(), {
      sources: items.sources,
      deleted: items.deleted,
    });
  }

  info(): CacheInfo {
    const d = this.definition;
    const { index, projection, fullKeys } = this.search;
    return {
      name: d.name,
      model: d.model,
      modelHash: this.extractor.modelHash,
      keyLayers: d.keyLayers,
      dimension: index.dimension,
      classes: this.extractor.spec.classes,
      size: this.size,
      theta: d.theta,
      lambda: d.lambda,
      k: d.k,
      index: { type: index.kind, policy: d.index.type, scoring: this.search.scoresAllItems ? 'all-items' : 'k-nearest', params: index.params() },
      searchKey: {
        reduce: d.searchKey.reduce,
        dimension: index.dimension,
        projection: projection ? projection.fingerprint.slice(0, 16) : null,
        rerank: fullKeys !== null,
        fullKeysBytes: fullKeys?.memoryBytes ?? 0,
        pending: waitsForPca(this)
          ? `the PCA projection is fitted once the cache holds ${d.searchKey.fitSample} items (it holds ${this.search.size}); until then the index is exact over the full ${this.extractor.keyDimension}-dim keys`
          : null,
      },
      logPosition: this.log.end(),
      snapshotPosition: this.snapshotPosition,
      history: d.history,
      damage: this.damage,
    };
  }

  async close(): Promise<void> {
    await this.log.close();
  }
}

/** n full keys as one array of n × D floats. */
function stack(records: FullKeyRecord[], D: number): Float32Array {
  const keys = new Float32Array(records.length * D);
  records.forEach((r, i) => keys.set(r.key, i * D));
  return keys;
}

/** A random projection's seed: the same for every process of a cache. */
function seedOf(name: string): number {
  return createHash('sha256').update(name).digest().readUInt32LE(0);
}
