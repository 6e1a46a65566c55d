// The key log: the ordered record of items added to a cache, numbered from 0 for
// the cache's whole life. The index is a materialised view of it (a snapshot
// covering positions < p, plus a replay of the records from p). The log does not
// deduplicate: item ids make a replayed or retried add idempotent downstream.

export interface KeyRecord {
  id: string;
  label: number;
  key: Float32Array;
}

export interface KeyLog {
  readonly dimension: number;
  /** position after the last record (records are numbered from 0 for the cache's whole life) */
  end(): number;
  /** durable (fsync'd) when it resolves; returns the new end() */
  append(records: KeyRecord[]): Promise<number>;
  /** calls onBatch with consecutive records from `position` to end(), in bounded batches; returns the end reached */
  readFrom(
    position: number,
    onBatch: (records: KeyRecord[], firstPosition: number) => Promise<void> | void,
    batchSize?: number,
  ): Promise<number>;
  /** forget records before `position` (they are covered by a snapshot) */
  compactTo(position: number): Promise<void>;
  close(): Promise<void>;
}
