// The index is the cache's nearest-neighbour structure over its keys φ(x_i).
// Positions are the order of insertion (0, 1, 2, …), so the items' labels and
// ids live in plain arrays beside it, indexed by position.

/** k nearest items of one query, best first; length min(k, size). */
export interface Neighbours {
  positions: Int32Array;
  similarities: Float32Array;
}

export type IndexKind = 'exact' | 'hnsw';

/** Settings a search reads, changeable while the index serves (the cache definition's). */
export interface SearchSettings {
  /** hnsw's candidate list size at search time */
  efSearch: number;
}

export interface HnswParams {
  m: number;
  efConstruction: number;
  efSearch: number;
}

/**
 * Not thread-safe and not re-entrant: callers run add/search/key/save one at a
 * time (the engine runs every index operation on one worker thread, in turn).
 */
export interface VectorIndex {
  readonly kind: IndexKind;
  readonly dimension: number;
  readonly size: number;
  /** n rows of `dimension` floats (already L2-normalised) get positions size … size+n−1, in order. */
  add(keys: Float32Array, n: number): Promise<void>;
  /**
   * Removes an item from search results (a tombstone: positions do not move, the key stays
   * readable with key()). Idempotent.
   */
  remove(position: number): void;
  /** items removed */
  readonly removed: number;
  /** k nearest by inner product for each of nq query rows, removed items excluded. k > live items returns that many; empty index → empty results. */
  search(queries: Float32Array, nq: number, k: number): Promise<Neighbours[]>;
  /** the stored key at a position (a copy or view) */
  key(position: number): Float32Array;
  /** take the search-time settings that apply to this kind of index (efSearch for hnsw) */
  applySearchSettings(settings: SearchSettings): void;
  /** write the index's own files into an existing directory */
  save(dir: string): Promise<void>;
  params(): Record<string, number | string>;
}

/** An index that compares a query with every stored key: it can give them all (p_cache over every item). */
export interface ExhaustiveIndex extends VectorIndex {
  readonly kind: 'exact';
  /** similarities of nq queries to every position, −∞ for removed items */
  similaritiesAll(queries: Float32Array, nq: number): Promise<Float32Array[]>;
}
