// One cache as a process holds it: its model, its index (a materialised view of
// its key log), and the id → position map that makes adding an id idempotent.
import { promises as fs } from 'node:fs';
import { CacheDefinition, CacheInfo } from '../cache/definition.js';
import { KeyExtractor } from '../model/extractor.js';
import { VectorIndex } from '../index/types.js';
import { ExactIndex } from '../index/exact.js';
import { HnswIndex } from '../index/hnsw.js';
import { createIndex, loadIndex, migrateToHnsw, shouldMigrate } from '../index/factory.js';
import { readSnapshot, writeSnapshot, SnapshotManifest } from '../index/snapshot.js';
import { KeyLog, KeyRecord } from '../keylog/types.js';
import { Mutex } from './mutex.js';
import { conflict } from '../errors.js';


/** records applied per locked step */
const APPLY_SLICE = 32;
const yieldToMessages = () => new Promise<void>((resolve) => setImmediate(resolve));

export class CacheState {
  readonly ids: string[] = [];
  labels = new Uint16Array(1024);
  readonly positionOf = new Map<string, number>();
  /** log position up to which records are applied to the index */
  appliedPosition = 0;
  snapshotPosition = 0;
  /** serialises index changes and searches (hnswlib has no locking) */
  readonly lock = new Mutex();
  /** serialises adds, so an id cannot be appended twice */
  private readonly appendLock = new Mutex();

  private constructor(
    public definition: CacheDefinition,
    readonly dir: string,
    readonly extractor: KeyExtractor,
    public index: VectorIndex,
    readonly log: KeyLog,
  ) {}

  get size(): number {
    return this.ids.length;
  }

  /**
   * A cache as its snapshot (if any) left it, caught up with its key log.
   * `log` is the cache's key log: a file in embedded mode, a Redis Stream in distributed mode.
   */
  static async open(definition: CacheDefinition, dir: string, extractor: KeyExtractor, log: KeyLog): Promise<CacheState> {
    await fs.mkdir(dir, { recursive: true });
    const snapshot = await readSnapshot(dir);
    if (snapshot) checkSnapshotMatches(snapshot.manifest, definition, extractor);
    const index = snapshot
      ? await loadIndex(snapshot.dir, snapshot.manifest.indexKind, snapshot.manifest.dimension, definition.index)
      : createIndex(extractor.keyDimension, definition.index);
    const state = new CacheState(definition, dir, extractor, index, log);
    if (snapshot) {
      snapshot.ids.forEach((id, position) => state.remember(id, snapshot.labels[position]));
      state.appliedPosition = state.snapshotPosition = snapshot.manifest.logPosition;
    }
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

  /** Durably log new items, then apply them. Ids already present (or repeated in `records`) are skipped. */
  async add(records: KeyRecord[]): Promise<{ added: number; duplicates: number }> {
    return this.appendLock.run(async () => {
      const fresh: KeyRecord[] = [];
      const seen = new Set<string>();
      for (const r of records) {
        if (this.positionOf.has(r.id) || seen.has(r.id)) continue;
        seen.add(r.id);
        fresh.push(r);
      }
      if (fresh.length > 0) {
        await this.log.append(fresh);
        await this.applyInSlices(fresh);
      }
      return { added: fresh.length, duplicates: records.length - fresh.length };
    });
  }

  /**
   * hnswlib inserts block the engine thread (several ms each for large keys), so
   * records are applied a slice at a time under the lock, yielding in between:
   * predictions and other messages get in between slices.
   */
  private async applyInSlices(records: KeyRecord[]): Promise<void> {
    for (let i = 0; i < records.length; i += APPLY_SLICE) {
      await this.lock.run(() => this.apply(records.slice(i, i + APPLY_SLICE)));
      await yieldToMessages();
    }
    // Policy "auto": exact search while the cache is small, hnsw once it passes the threshold.
    if (shouldMigrate(this.index, this.definition.index)) await this.migrate(this.index);
  }

  /** Apply log records to the index, in log order; a replayed or repeated id is one item. */
  private async apply(records: KeyRecord[]): Promise<void> {
    const fresh: KeyRecord[] = [];
    const seen = new Set<string>();
    for (const r of records) {
      if (this.positionOf.has(r.id) || seen.has(r.id)) continue;
      seen.add(r.id);
      fresh.push(r);
    }
    this.appliedPosition += records.length;
    if (fresh.length === 0) return;
    const dim = this.index.dimension;
    const keys = new Float32Array(fresh.length * dim);
    fresh.forEach((r, i) => keys.set(r.key, i * dim));
    await this.index.add(keys, fresh.length);
    for (const r of fresh) this.remember(r.id, r.label);
  }

  /**
   * Build the hnsw index beside the exact one, yielding as it goes (the exact one
   * keeps serving), then swap it in under the lock with whatever the exact one gained.
   */
  private async migrate(exact: ExactIndex): Promise<void> {
    const hnsw = await migrateToHnsw(exact, this.definition.index, yieldToMessages);
    await this.lock.run(async () => {
      for (let p = hnsw.size; p < exact.size; p++) await hnsw.add(exact.key(p), 1);
      this.index = hnsw;
    });
  }

  /** Search-time settings of the definition that the index holds itself. */
  applySearchSettings(): void {
    if (this.index instanceof HnswIndex) this.index.setEfSearch(this.definition.index.efSearch);
  }

  private remember(id: string, label: number): void {
    const position = this.ids.length;
    if (position >= this.labels.length) {
      const grown = new Uint16Array(this.labels.length * 2);
      grown.set(this.labels);
      this.labels = grown;
    }
    this.ids.push(id);
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
      size: this.size,
      dimension: this.index.dimension,
      indexKind: this.index.kind,
      indexParams: this.index.params(),
      cache: this.definition.name,
      model: this.definition.model,
      modelHash: this.extractor.modelHash,
      keyLayers: this.definition.keyLayers,
      theta: this.definition.theta,
      lambda: this.definition.lambda,
    };
    await writeSnapshot(this.dir, manifest, this.ids, this.labels.subarray(0, this.size), this.index);
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
        scoring: this.index.kind === 'exact' ? 'all-items' : 'k-nearest',
        params: this.index.params(),
      },
      logPosition: this.log.end(),
      snapshotPosition: this.snapshotPosition,
    };
  }

  async close(): Promise<void> {
    await this.log.close();
  }
}

function checkSnapshotMatches(m: SnapshotManifest, d: CacheDefinition, extractor: KeyExtractor): void {
  const fix = `Restore the model the cache was built with, or delete indexes/${d.name}/ and index the images again.`;
  if (m.modelHash !== extractor.modelHash) {
    throw conflict(
      'snapshot_model_mismatch',
      `cache "${d.name}": its snapshot was built with a model whose sha256 is ${String(m.modelHash).slice(0, 12)}…, but ${d.model} now has sha256 ${extractor.modelHash.slice(0, 12)}…. ${fix}`,
    );
  }
  const layers = JSON.stringify(m.keyLayers);
  if (layers !== JSON.stringify(d.keyLayers) || m.dimension !== extractor.keyDimension) {
    throw conflict(
      'snapshot_layers_mismatch',
      `cache "${d.name}": its snapshot has key layers ${layers} (dimension ${m.dimension}), the definition asks for ${JSON.stringify(d.keyLayers)} (dimension ${extractor.keyDimension}). ${fix}`,
    );
  }
}
