import { UserError } from '../errors/user-error.js';

// The key log: the ordered record of items added to a cache, numbered from 0 for
// the cache's whole life. The index is a materialised view of it (a snapshot
// covering positions < p, plus a replay of the records from p). The log does not
// deduplicate: item ids make a replayed or retried add idempotent downstream.

interface AddedItem {
  id: string;
  label: number;
  /** where its image came from (a path or URL the service can read), for previews; optional */
  source?: string;
}

/** An item added with its full key (`dimension` floats, L2-normalised). */
export interface FullKeyRecord extends AddedItem {
  key: Float32Array;
}

/**
 * An item added by a writer that knew the cache's search-key projection: the reduced
 * search key (what the index holds) and, when the cache re-ranks, the full key as
 * float16. ~50–100× smaller than a full float32 key at the paper's 12,288 dimensions.
 */
export interface ReducedKeyRecord extends AddedItem {
  searchKey: Float32Array;
  fullKey16?: Uint16Array;
}

/** An item added: its id, class index and key. */
export type KeyRecord = FullKeyRecord | ReducedKeyRecord;

export const isReduced = (r: KeyRecord): r is ReducedKeyRecord => (r as ReducedKeyRecord).searchKey !== undefined;

/** An item removed. A later KeyRecord with the same id adds it again, as a new item. */
export interface DeleteRecord {
  id: string;
  deleted: true;
}

export type LogRecord = KeyRecord | DeleteRecord;

export const isDelete = (r: LogRecord): r is DeleteRecord => (r as DeleteRecord).deleted === true;

/**
 * What a damaged record of the log is read as: a deletion of no item. It keeps its position, so
 * the records after it keep theirs, and changes nothing. (No item has an empty id.)
 */
export const LOST_RECORD: DeleteRecord = Object.freeze({ id: '', deleted: true });

/** What reading a whole key log again found. */
export interface LogCheck {
  base: number;
  end: number;
  /** records that do not check out now (including those found when it was opened) */
  damaged: { position: number; id?: string }[];
}

/** Bytes in the middle of a key log that did not check out: the records there are lost. */
export interface LogDamage {
  /** the log position the damaged bytes took (counted as one record) */
  position: number;
  /** byte offset and length in the log file */
  offset: number;
  bytes: number;
  /** the id the damaged record seems to hold, where it can be read (the image to index again) */
  id?: string;
  detectedAt: string;
}

export interface KeyLog {
  readonly dimension: number;
  /** position after the last record (records are numbered from 0 for the cache's whole life) */
  end(): number;
  /** the end as the log's store has it now: other processes may append to a shared log */
  readEnd(): Promise<number>;
  /** durable (fsync'd) when it resolves; returns the new end() */
  append(records: LogRecord[]): Promise<number>;
  /** calls onBatch with consecutive records from `position` to end() (or `until`, if before), in bounded batches; returns the position reached */
  readFrom(
    position: number,
    onBatch: (records: LogRecord[], firstPosition: number) => Promise<void> | void,
    batchSize?: number,
    until?: number,
  ): Promise<number>;
  /** forget records before `position` (they are covered by a snapshot) */
  compactTo(position: number): Promise<void>;
  /** the first position the log still holds (0: every record the cache ever had) */
  base(): number;
  /** damage found in the middle of the log when it was opened (its records are read as LOST_RECORD) */
  damage(): LogDamage[];
  /** Read the whole stored log again and check every record (for `cachet cache verify`). */
  verify(): Promise<LogCheck>;
  close(): Promise<void>;
}

/** Longest item id, in utf8 bytes (the file log stores its length in a u16). */
export const MAX_ID_BYTES = 0xffff;

export const MAX_LABEL = 0x7fffffff;

/** Longest source kept, in utf8 bytes; a longer one is dropped (the item is added without a preview). */
export const MAX_SOURCE_BYTES = 4096;

/** The source a log stores for a record: none when absent or too long. */
export function storableSource(r: KeyRecord): string | undefined {
  return r.source && Buffer.byteLength(r.source, 'utf8') <= MAX_SOURCE_BYTES ? r.source : undefined;
}

/** Refuses, before anything is written, a record no log can store. */
export function validateRecords(records: LogRecord[], dimension: number): void {
  records.forEach((r, i) => {
    if (typeof r.id !== 'string' || r.id.length === 0) throw new UserError('bad_item_id', `item ${i}: id must be a non-empty string`);
    const idBytes = Buffer.byteLength(r.id, 'utf8');
    if (idBytes > MAX_ID_BYTES) throw new UserError('bad_item_id', `item ${i}: id is ${idBytes} bytes; at most ${MAX_ID_BYTES}`);
    if (isDelete(r)) return;
    // the file log keeps the label's top bit for its own flags
    if (!Number.isInteger(r.label) || r.label < 0 || r.label > MAX_LABEL) {
      throw new UserError('bad_label', `item ${i} (${r.id}): label must be an integer 0–${MAX_LABEL}, got ${r.label}`);
    }
    if (isReduced(r)) {
      if (!(r.searchKey instanceof Float32Array) || r.searchKey.length < 1 || r.searchKey.length > dimension) {
        throw new UserError('bad_key', `item ${i} (${r.id}): a search key must be 1–${dimension} float32s, got ${r.searchKey?.length}`);
      }
      if (r.fullKey16 !== undefined && (!(r.fullKey16 instanceof Uint16Array) || r.fullKey16.length !== dimension)) {
        throw new UserError('bad_key', `item ${i} (${r.id}): a float16 full key must be ${dimension} values, got ${r.fullKey16?.length}`);
      }
    } else if (!(r.key instanceof Float32Array) || r.key.length !== dimension) {
      throw new UserError('bad_key', `item ${i} (${r.id}): key must be ${dimension} float32s, got ${r.key?.length}`);
    }
  });
}
