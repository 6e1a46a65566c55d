import { badRequest } from '../errors.js';

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

/** Longest item id, in utf8 bytes (the file log stores its length in a u16). */
export const MAX_ID_BYTES = 0xffff;

/** Refuses, before anything is written, a record no log can store. */
export function validateRecords(records: KeyRecord[], dimension: number): void {
  records.forEach((r, i) => {
    if (typeof r.id !== 'string' || r.id.length === 0) throw badRequest('bad_item_id', `item ${i}: id must be a non-empty string`);
    const idBytes = Buffer.byteLength(r.id, 'utf8');
    if (idBytes > MAX_ID_BYTES) throw badRequest('bad_item_id', `item ${i}: id is ${idBytes} bytes; at most ${MAX_ID_BYTES}`);
    if (!Number.isInteger(r.label) || r.label < 0 || r.label > 0xffffffff) {
      throw badRequest('bad_label', `item ${i} (${r.id}): label must be a non-negative integer, got ${r.label}`);
    }
    if (!(r.key instanceof Float32Array) || r.key.length !== dimension) {
      throw badRequest('bad_key', `item ${i} (${r.id}): key must be ${dimension} float32s, got ${r.key?.length}`);
    }
  });
}
