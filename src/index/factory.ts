// Which index a cache gets, and moving a cache from exact to hnsw when it grows.
//
// 'auto' starts exact (exact results, no build cost) and is meant to move to
// hnsw once the cache holds more than `exactThreshold` items; the caller decides
// when with `shouldMigrate` and does it with `migrateToHnsw`.
import { UserError } from '../errors/user-error.js';
import { ExactIndex } from './exact.js';
import { HnswIndex, KEYS_COPY_MAX_DIMENSION } from './hnsw.js';
import type { ExhaustiveIndex, HnswParams, IndexKind, VectorIndex } from './types.js';

export interface IndexOptions {
  type: 'auto' | 'exact' | 'hnsw';
  exactThreshold: number;
  m: number;
  efConstruction: number;
  efSearch: number;
}

export const DEFAULT_INDEX_OPTIONS: Readonly<IndexOptions> = Object.freeze({
  type: 'auto',
  exactThreshold: 20000,
  m: 16,
  efConstruction: 100,
  efSearch: 64, // chosen with k: see DEFAULT_K in cache/definition.ts
});

/** Throws a 400 UserError naming the first bad option. */
export function validateIndexOptions(options: IndexOptions): void {
  if (!['auto', 'exact', 'hnsw'].includes(options.type)) {
    throw new UserError('bad_index_type', `index type must be 'auto', 'exact' or 'hnsw', got '${options.type}'`);
  }
  const ints: [keyof IndexOptions, number][] = [
    ['exactThreshold', 0],
    ['m', 2],
    ['efConstruction', 1],
    ['efSearch', 1],
  ];
  for (const [name, min] of ints) {
    const v = options[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      throw new UserError('bad_index_option', `index option ${name} must be an integer ≥ ${min}, got ${String(v)}`);
    }
  }
}

export function hnswParams(options: IndexOptions): HnswParams {
  return { m: options.m, efConstruction: options.efConstruction, efSearch: options.efSearch };
}

/** The kind a cache of `expectedSize` items gets under these options. */
export function chooseKind(options: IndexOptions, expectedSize = 0): IndexKind {
  if (options.type !== 'auto') return options.type;
  return expectedSize > options.exactThreshold ? 'hnsw' : 'exact';
}

export function createIndex(dimension: number, options: IndexOptions, expectedSize?: number): VectorIndex {
  validateIndexOptions(options);
  return chooseKind(options, expectedSize) === 'hnsw' ? HnswIndex.create(dimension, hnswParams(options), expectedSize) : new ExactIndex(dimension);
}

export async function loadIndex(dir: string, kind: IndexKind, dimension: number, options: IndexOptions): Promise<VectorIndex> {
  return kind === 'hnsw' ? HnswIndex.load(dir, dimension, hnswParams(options)) : ExactIndex.load(dir, dimension);
}

/**
 * An hnsw index rebuilt from the copy of its keys a snapshot holds (keys.f32), when its graph file
 * is damaged; null when the snapshot has no copy (keys of more than KEYS_COPY_MAX_DIMENSION).
 */
export async function rebuildHnswFromKeys(dir: string, dimension: number, options: IndexOptions): Promise<HnswIndex | null> {
  if (dimension > KEYS_COPY_MAX_DIMENSION) return null;
  return migrateToHnsw(await ExactIndex.load(dir, dimension), options);
}

/** Whether an index compares every query with every key (and can give all the similarities). */
export function isExhaustive(index: VectorIndex): index is ExhaustiveIndex {
  return index instanceof ExactIndex;
}

/** An 'auto' cache whose exact index has outgrown exactThreshold. */
export function shouldMigrate(index: VectorIndex, options: IndexOptions): boolean {
  return options.type === 'auto' && isExhaustive(index) && index.size > options.exactThreshold;
}

/**
 * Builds an hnsw index holding every key of `exact`, at the same positions.
 * `pause` runs between slices of inserts (hnswlib blocks its thread while it
 * inserts): the caller can yield there. Keys `exact` gains meanwhile are copied
 * too, up to the size it has when `pause` last returns.
 */
export async function migrateToHnsw(exact: VectorIndex, options: IndexOptions, pause: () => Promise<void> = async () => {}): Promise<HnswIndex> {
  validateIndexOptions(options);
  const hnsw = HnswIndex.create(exact.dimension, hnswParams(options), 2 * exact.size);
  for (let position = 0; position < exact.size; position++) {
    await hnsw.add(exact.key(position), 1);
    if (position % 32 === 31) await pause();
  }
  return hnsw;
}
