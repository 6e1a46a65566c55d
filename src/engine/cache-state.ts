// One cache as a process holds it: its model, its index (a materialised view of
// its key log), and the id → position map that makes adding an id idempotent.
import { promises as fs } from 'node:fs';
import { CacheDefinition } from '../cache/definition.js';
import type { Extractor } from '../model/types.js';
import { Neighbours, VectorIndex } from '../index/types.js';
import { ExactIndex } from '../index/exact.js';
import { HnswIndex } from '../index/hnsw.js';
import { createIndex, loadIndex, migrateToHnsw, shouldMigrate } from '../index/factory.js';
import { readSnapshot, writeSnapshot, SnapshotManifest } from '../index/snapshot.js';
import { isDelete, isReduced, KeyLog, KeyRecord, LogRecord, type FullKeyRecord, type ReducedKeyRecord } from '../keylog/types.js';
import { logsReducedKeys, reduceRecords } from './reduce-records.js';
import { Mutex } from '../util/mutex.js';
import { UserError } from '../errors/user-error.js';
import { fitPca, Projection, randomProjection } from '../index/projection.js';
import { FullKeyStore } from '../index/full-keys.js';
import { cacheProbabilities } from '../math/cache-model.js';
import { TopK } from '../index/exact.js';
import { createHash } from 'node:crypto';
import { CacheInfo } from '../cache/info.js';

/**
 * Makes every process of a cache use one projection: in distributed mode the first
 * replica to fit it publishes it in Redis and the others take that one.
 */
export type ProjectionPublisher = (cache: string, projection: Projection) => Promise<Projection>;

/** What p_cache was computed over, for one query, and its nearest items. */
export interface CacheScore {
  pCache: Float64Array | null;
  neighbours: { position: number; similarity: number }[];
}


/** records applied per locked step */
const APPLY_SLICE = 32;
const yieldToMessages = () => new Promise<void>((resolve) => setImmediate(resolve));

export class CacheState {
  /** by position; a deleted item keeps its id and label here (positions never move) */
  readonly ids: string[] = [];
  labels = new Uint16Array(1024);
  /** by position: where the item's image came from, when known (previews) */
  readonly sources: (string | undefined)[] = [];
  /** the live items' positions by id (a deleted id is not here) */
  readonly positionOf = new Map<string, number>();
  /** positions of deleted items */
  readonly deleted = new Set<number>();
  /** log position up to which records are applied to the index */
  appliedPosition = 0;
  snapshotPosition = 0;
  /** serialises index changes and searches (hnswlib has no locking) */
  readonly lock = new Mutex();
  /** serialises adds, so an id cannot be appended twice */
  private readonly appendLock = new Mutex();
  /** the search key's projection; null for full keys, or while a PCA waits for its sample */
  projection: Projection | null = null;
  /** full keys kept for exact re-ranking when the index holds reduced keys */
  fullKeys: FullKeyStore | null = null;

  private constructor(
    public definition: CacheDefinition,
    readonly dir: string,
    readonly extractor: Extractor,
    public index: VectorIndex,
    readonly log: KeyLog,
    private readonly publish: ProjectionPublisher,
  ) {}

  /** live items */
  get size(): number {
    return this.ids.length - this.deleted.size;
  }

  /** positions used, deleted items included */
  get positions(): number {
    return this.ids.length;
  }

  /**
   * A cache as its snapshot (if any) left it, caught up with its key log.
   * `log` is the cache's key log: a file in embedded mode, a Redis Stream in distributed mode.
   */
  static async open(definition: CacheDefinition, dir: string, extractor: Extractor, log: KeyLog, publish: ProjectionPublisher): Promise<CacheState> {
    await fs.mkdir(dir, { recursive: true });
    const snapshot = await readSnapshot(dir);
    if (snapshot) checkSnapshotMatches(snapshot.manifest, definition, extractor);
    const sk = definition.searchKey;
    let state: CacheState;
    if (snapshot) {
      const m = snapshot.manifest;
      const index = await loadIndex(snapshot.dir, m.indexKind, m.dimension, definition.index);
      state = new CacheState(definition, dir, extractor, index, log, publish);
      state.projection = await Projection.load(snapshot.dir);
      state.fullKeys = await FullKeyStore.load(snapshot.dir);
      snapshot.ids.forEach((id, position) => state.remember(id, snapshot.labels[position], snapshot.sources[position]));
      for (const position of snapshot.deleted) state.forget(position);
      state.appliedPosition = state.snapshotPosition = m.logPosition;
    } else if (sk.reduce === 'random') {
      const projection = randomProjection(extractor.keyDimension, sk.dimension, seedOf(definition.name));
      state = new CacheState(definition, dir, extractor, createIndex(sk.dimension, definition.index), log, publish);
      state.projection = await publish(definition.name, projection);
      state.fullKeys = sk.rerank ? new FullKeyStore(extractor.keyDimension, sk.fullKeys) : null;
    } else {
      // Full keys; with reduce "pca", an exact index of full keys until the sample is there.
      const index = sk.reduce === 'pca' ? new ExactIndex(extractor.keyDimension) : createIndex(extractor.keyDimension, definition.index);
      state = new CacheState(definition, dir, extractor, index, log, publish);
    }
    state.applySearchSettings();
    await state.catchUp().catch((err: Error) => {
      throw new Error(`cache "${definition.name}": cannot replay its key log from position ${state.appliedPosition}: ${err.message}`);
    });
    return state;
  }

  /**
   * Apply the log's records after appliedPosition. Throws if the log no longer
   * holds them (compacted past a snapshot that is gone).
   */
  async catchUp(): Promise<number> {
    return this.log.readFrom(this.appliedPosition, (records) => this.applyInSlices(records), 256);
  }

  /** Durably log the deletion of the ids the cache holds, then apply it; returns those ids. */
  async delete(ids: string[]): Promise<string[]> {
    return this.appendLock.run(async () => {
      const held = [...new Set(ids)].filter((id) => this.positionOf.has(id));
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
      const fresh = this.unknown(records) as FullKeyRecord[];
      if (fresh.length > 0) {
        const sk = this.definition.searchKey;
        const logged = this.projection && logsReducedKeys(sk) ? await reduceRecords(fresh, this.projection, sk.rerank) : fresh;
        await this.log.append(logged);
        await this.applyInSlices(logged);
      }
      return { added: fresh.length, duplicates: records.length - fresh.length };
    });
  }

  /**
   * hnswlib inserts block the engine thread (several ms each for large keys), so
   * records are applied a slice at a time under the lock, yielding in between:
   * predictions and other messages get in between slices.
   */
  private async applyInSlices(records: LogRecord[]): Promise<void> {
    for (let i = 0; i < records.length; i += APPLY_SLICE) {
      let slice = records.slice(i, i + APPLY_SLICE);
      // A reduced record was written with the published projection, so the writer had
      // fitSample items: a reader still waiting for its PCA sample applies the records
      // before it, then fits (and so takes) that projection.
      const firstReduced = this.pendingPca ? slice.findIndex((r) => !isDelete(r) && isReduced(r)) : -1;
      if (firstReduced >= 0) {
        const before = slice.slice(0, firstReduced);
        await this.lock.run(() => this.apply(before));
        await this.fitProjection(this.index as ExactIndex);
        slice = slice.slice(firstReduced);
      }
      await this.lock.run(() => this.apply(slice));
      await yieldToMessages();
    }
    if (this.projectionDue) await this.fitProjection(this.index as ExactIndex);
    // Policy "auto": exact search while the cache is small, hnsw once it passes the threshold.
    else if (!this.pendingPca && shouldMigrate(this.index, this.definition.index)) await this.migrate(this.index);
  }

  /** The records whose ids the cache does not hold yet, each id once. */
  private unknown(records: KeyRecord[]): KeyRecord[] {
    const seen = new Set<string>();
    return records.filter((r) => !this.positionOf.has(r.id) && !seen.has(r.id) && seen.add(r.id));
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
      const position = this.positionOf.get(r.id);
      if (position !== undefined) this.forget(position);
    }
    await this.addToIndex(run);
    this.appliedPosition += records.length;
  }

  private async addToIndex(records: KeyRecord[]): Promise<void> {
    const fresh = this.unknown(records);
    // runs of one kind: reduced records go straight in, full ones through the projection
    for (let i = 0; i < fresh.length; ) {
      let j = i + 1;
      while (j < fresh.length && isReduced(fresh[j]) === isReduced(fresh[i])) j++;
      const run = fresh.slice(i, j);
      if (isReduced(run[0])) await this.addReduced(run as ReducedKeyRecord[]);
      else await this.addFull(run as FullKeyRecord[]);
      for (const r of run) this.remember(r.id, r.label, r.source);
      i = j;
    }
  }

  private async addReduced(records: ReducedKeyRecord[]): Promise<void> {
    const projection = this.projection;
    if (!projection) throw new Error(`cache "${this.definition.name}": a reduced key record came before the cache has a projection`);
    const d = projection.outputDimension;
    const D = this.extractor.keyDimension;
    const n = records.length;
    const searchKeys = new Float32Array(n * d);
    records.forEach((r, i) => {
      if (r.searchKey.length !== d) throw new Error(`cache "${this.definition.name}": item ${r.id} has a ${r.searchKey.length}-d search key; the projection gives ${d}`);
      searchKeys.set(r.searchKey, i * d);
    });
    if (this.fullKeys) {
      const full = new Uint16Array(n * D);
      records.forEach((r, i) => {
        if (!r.fullKey16) throw new Error(`cache "${this.definition.name}": item ${r.id} was logged without the full key this cache re-ranks with`);
        full.set(r.fullKey16, i * D);
      });
      this.fullKeys.add(full, n);
    }
    await this.index.add(searchKeys, n);
  }

  private async addFull(fresh: FullKeyRecord[]): Promise<void> {
    const dim = this.extractor.keyDimension;
    const keys = new Float32Array(fresh.length * dim);
    fresh.forEach((r, i) => keys.set(r.key, i * dim));
    if (this.projection) {
      this.fullKeys?.add(keys, fresh.length);
      await this.index.add(await this.projection.project(keys, fresh.length), fresh.length);
    } else {
      await this.index.add(keys, fresh.length);
    }
  }

  private get pendingPca(): boolean {
    return this.definition.searchKey.reduce === 'pca' && !this.projection;
  }

  /** A PCA search key waits for `fitSample` items; then it is fitted and the index rebuilt on it. */
  private get projectionDue(): boolean {
    return this.pendingPca && this.index instanceof ExactIndex && this.index.size >= this.definition.searchKey.fitSample;
  }

  /**
   * Fit the PCA on the first fitSample full keys, build the reduced index (and the
   * full-key store) beside the exact one while it keeps serving, then swap them in.
   */
  private async fitProjection(exact: ExactIndex): Promise<void> {
    const sk = this.definition.searchKey;
    const D = exact.dimension;
    const m = sk.fitSample;
    const sample = new Float32Array(m * D);
    for (let p = 0; p < m; p++) sample.set(exact.key(p), p * D);
    const projection = await this.publish(this.definition.name, await fitPca(sample, m, D, sk.dimension, { seed: 0 }));
    const index = createIndex(sk.dimension, this.definition.index, exact.size);
    const fullKeys = sk.rerank ? new FullKeyStore(D, sk.fullKeys) : null;
    const copy = async (from: number, to: number) => {
      for (let p = from; p < to; p += APPLY_SLICE) {
        const n = Math.min(APPLY_SLICE, to - p);
        const keys = new Float32Array(n * D);
        for (let i = 0; i < n; i++) keys.set(exact.key(p + i), i * D);
        fullKeys?.add(keys, n);
        await index.add(await projection.project(keys, n), n);
        await yieldToMessages();
      }
    };
    await copy(0, exact.size);
    await this.lock.run(async () => {
      await copy(index.size, exact.size);
      for (const p of this.deleted) index.remove(p);
      this.index = index;
      this.projection = projection;
      this.fullKeys = fullKeys;
      this.applySearchSettings();
    });
  }

  /**
   * p_cache for n query keys (full keys, L2-normalised) and each one's `wanted` nearest items.
   * Over every item with an exact index of full keys (the reference); otherwise over the k
   * nearest — found with the reduced key, and re-ranked with the full keys when kept.
   */
  async score(keys: Float32Array, n: number, theta: number, wanted: number): Promise<CacheScore[]> {
    return this.lock.run(async () => {
      const live = this.size;
      const used = this.positions;
      const C = this.extractor.numClasses;
      if (live === 0) return Array.from({ length: n }, () => ({ pCache: null, neighbours: [] }));
      const index = this.index;
      if (index instanceof ExactIndex && !this.projection) {
        const all = await index.similaritiesAll(keys, n); // −∞ for deleted items: weight 0
        return all.map((sims) => {
          const top = new TopK(Math.min(wanted, live));
          top.offer(sims, 0, used, 0);
          const { positions, similarities } = top.result();
          return {
            pCache: cacheProbabilities(sims, this.labels.subarray(0, used), theta, C),
            neighbours: Array.from(positions, (position, j) => ({ position, similarity: similarities[j] })),
          };
        });
      }
      const k = Math.max(this.definition.k, wanted);
      const found = await this.nearest(keys, n, k);
      return found.map(({ positions, similarities }) => ({
        pCache: cacheProbabilities(similarities, Array.from(positions, (p) => this.labels[p]), theta, C),
        neighbours: Array.from(positions.subarray(0, wanted), (position, j) => ({ position, similarity: similarities[j] })),
      }));
    });
  }

  /**
   * The k nearest items of each of n query keys (full keys, L2-normalised), best first, by
   * the cache's own measure: full keys, or the reduced key's candidates re-ranked with the
   * full keys. Call it under the lock.
   */
  async nearest(keys: Float32Array, n: number, k: number): Promise<Neighbours[]> {
    const queries = this.projection ? await this.projection.project(keys, n) : keys;
    const found = await this.index.search(queries, n, k);
    if (!this.fullKeys) return found;
    const exact = await this.fullKeys.similaritiesBatch(keys, n, found.map((f) => f.positions));
    return found.map((f, q) => {
      const sims = exact[q];
      const order = Array.from(f.positions.keys()).sort((a, b) => sims[b] - sims[a] || f.positions[a] - f.positions[b]);
      return { positions: Int32Array.from(order, (i) => f.positions[i]), similarities: Float32Array.from(order, (i) => sims[i]) };
    });
  }

  /**
   * Build the hnsw index beside the exact one, yielding as it goes (the exact one
   * keeps serving), then swap it in under the lock with whatever the exact one gained.
   */
  private async migrate(exact: ExactIndex): Promise<void> {
    const hnsw = await migrateToHnsw(exact, this.definition.index, yieldToMessages);
    await this.lock.run(async () => {
      for (let p = hnsw.size; p < exact.size; p++) await hnsw.add(exact.key(p), 1);
      for (const p of this.deleted) hnsw.remove(p);
      this.index = hnsw;
    });
  }

  /** Search-time settings of the definition that the index holds itself. */
  applySearchSettings(): void {
    if (this.index instanceof HnswIndex) this.index.setEfSearch(this.definition.index.efSearch);
  }

  /** The image source of a live item: undefined when the cache does not hold the id, null when no source was recorded. */
  sourceOf(id: string): string | null | undefined {
    const position = this.positionOf.get(id);
    return position === undefined ? undefined : (this.sources[position] ?? null);
  }

  /** Take a position out of search; its id may be added again later, as a new item. */
  private forget(position: number): void {
    if (this.deleted.has(position)) return;
    this.deleted.add(position);
    this.index.remove(position);
    const id = this.ids[position];
    if (this.positionOf.get(id) === position) this.positionOf.delete(id);
  }

  private remember(id: string, label: number, source: string | undefined): void {
    const position = this.ids.length;
    if (position >= this.labels.length) {
      const grown = new Uint16Array(this.labels.length * 2);
      grown.set(this.labels);
      this.labels = grown;
    }
    this.ids.push(id);
    this.sources.push(source);
    this.labels[position] = label;
    this.positionOf.set(id, position);
  }

  /** Write a snapshot covering everything applied so far, then drop the log records it covers. */
  async snapshot(): Promise<void> {
    if (this.snapshotPosition === this.appliedPosition && this.appliedPosition > 0) return;
    const manifest: SnapshotManifest = {
      formatVersion: 1,
      createdAt: new Date().toISOString(),
      logPosition: this.appliedPosition,
      size: this.positions,
      deleted: this.deleted.size,
      dimension: this.index.dimension,
      indexKind: this.index.kind,
      indexParams: this.index.params(),
      cache: this.definition.name,
      model: this.definition.model,
      modelHash: this.extractor.modelHash,
      keyLayers: this.definition.keyLayers,
      theta: this.definition.theta,
      lambda: this.definition.lambda,
      keyDimension: this.extractor.keyDimension,
      projection: this.projection?.fingerprint ?? null,
    };
    const extras = [this.projection, this.fullKeys].filter((x): x is Projection | FullKeyStore => x !== null);
    await writeSnapshot(this.dir, manifest, this.ids, this.labels.subarray(0, this.positions), this.index, extras, { sources: this.sources, deleted: this.deleted });
    this.snapshotPosition = this.appliedPosition;
    await this.log.compactTo(this.snapshotPosition);
  }

  info(): CacheInfo {
    const d = this.definition;
    return {
      name: d.name,
      model: d.model,
      modelHash: this.extractor.modelHash,
      keyLayers: d.keyLayers,
      dimension: this.index.dimension,
      classes: this.extractor.spec.classes,
      size: this.size,
      theta: d.theta,
      lambda: d.lambda,
      k: d.k,
      index: {
        type: this.index.kind,
        policy: d.index.type,
        scoring: this.index.kind === 'exact' && !this.projection ? 'all-items' : 'k-nearest',
        params: this.index.params(),
      },
      searchKey: {
        reduce: d.searchKey.reduce,
        dimension: this.index.dimension,
        projection: this.projection ? this.projection.fingerprint.slice(0, 16) : null,
        rerank: this.fullKeys !== null,
        fullKeysBytes: this.fullKeys?.memoryBytes ?? 0,
      },
      logPosition: this.log.end(),
      snapshotPosition: this.snapshotPosition,
      history: d.history,
    };
  }

  async close(): Promise<void> {
    await this.log.close();
  }
}

function checkSnapshotMatches(m: SnapshotManifest, d: CacheDefinition, extractor: Extractor): void {
  const fix = `Restore the model the cache was built with, or delete indexes/${d.name}/ and index the images again.`;
  if (m.modelHash !== extractor.modelHash) {
    throw new UserError(
      'snapshot_model_mismatch',
      `cache "${d.name}": its snapshot was built with a model whose sha256 is ${String(m.modelHash).slice(0, 12)}…, but ${d.model} now has sha256 ${extractor.modelHash.slice(0, 12)}…. ${fix}`,
    );
  }
  const layers = JSON.stringify(m.keyLayers);
  const keyDimension = Number(m.keyDimension ?? m.dimension);
  if (layers !== JSON.stringify(d.keyLayers) || keyDimension !== extractor.keyDimension) {
    throw new UserError(
      'snapshot_layers_mismatch',
      `cache "${d.name}": its snapshot has key layers ${layers} (dimension ${keyDimension}), the definition asks for ${JSON.stringify(d.keyLayers)} (dimension ${extractor.keyDimension}). ${fix}`,
    );
  }
}

/** A random projection's seed: the same for every process of a cache. */
function seedOf(name: string): number {
  return createHash('sha256').update(name).digest().readUInt32LE(0);
}
