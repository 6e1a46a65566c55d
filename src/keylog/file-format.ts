// The embedded key log's file format: the header, records, and the scan that finds where
// the valid records end.
//
//   header (32 B)  magic "CACHETKL" · u32 version · u32 dimension · u64 base position
//                  · u32 crc32(bytes 0–23) · u32 reserved
//   record         u32 body length · u32 crc32(body) · body
//   body (add)     u16 id length · id (utf8) · u32 label · float32 × dimension
//                  [· u16 source length · source (utf8)]     (version 2; optional)
//   body (reduced) u16 id length · id · u32 (label | 0x80000000) · u32 d · float32 × d
//                  · u32 c (0 or dimension) · float16 × c [· u16 source length · source]   (version 2)
//   body (delete)  u16 id length · id (utf8) · u32 0xffffffff (version 2)
//
// Version 1 files (adds without sources) are read as they are; new files and
// compacted ones are written as version 2.
// All integers and floats little-endian. A crash mid-append leaves a torn or
// garbage tail; open() truncates the file at the first record that does not
// check out and reports the bytes dropped in `recoveredBytes` (those appends
// never resolved, so nobody was told they were durable). The header is only ever
// written to a temporary file that is then renamed into place, so it is never torn.
import type { FileHandle } from 'node:fs/promises';
import { UserError } from '../errors/user-error.js';
import { crc32 } from '../util/crc32.js';
import { readFully } from '../util/files.js';
import { isDelete, isReduced, MAX_ID_BYTES, MAX_SOURCE_BYTES, storableSource, validateRecords, type KeyRecord, type LogRecord } from './types.js';

export const MAGIC = Buffer.from('CACHETKL', 'latin1');
export const VERSION = 2;
export const READABLE_VERSIONS = [1, 2];
export const DELETE_LABEL = 0xffffffff;
export const REDUCED_FLAG = 0x80000000;
export const HEADER_BYTES = 32;
export const PREFIX_BYTES = 8;
export const SCAN_CHUNK = 8 * 1024 * 1024;
export const BATCH_BYTES = 16 * 1024 * 1024;

export function encodeHeader(dimension: number, base: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(h, 0);
  h.writeUInt32LE(VERSION, 8);
  h.writeUInt32LE(dimension, 12);
  h.writeBigUInt64LE(BigInt(base), 16);
  h.writeUInt32LE(crc32(h.subarray(0, 24)), 24);
  return h;
}

export async function readHeader(file: FileHandle, path: string, dimension: number): Promise<number> {
  const h = Buffer.alloc(HEADER_BYTES);
  const { bytesRead } = await file.read(h, 0, HEADER_BYTES, 0);
  if (bytesRead < HEADER_BYTES || !h.subarray(0, 8).equals(MAGIC) || h.readUInt32LE(24) !== crc32(h.subarray(0, 24))) {
    throw new Error(`${path} is not a Cachet key log (bad header)`);
  }
  const version = h.readUInt32LE(8);
  if (!READABLE_VERSIONS.includes(version))
    throw new Error(`${path}: key log version ${version} is not supported (expected ${READABLE_VERSIONS.join(' or ')})`);
  const fileDimension = h.readUInt32LE(12);
  if (fileDimension !== dimension) {
    throw new UserError(
      'key_dimension_mismatch',
      `key log ${path} holds keys of dimension ${fileDimension}, but this cache's keys have dimension ${dimension}; ` +
        'use the model and key layers the cache was built with, or a new cache',
    );
  }
  return Number(h.readBigUInt64LE(16));
}

export function encodeRecords(records: LogRecord[], dimension: number): Buffer {
  validateRecords(records, dimension);
  // each body as its parts (keys as views of their arrays), copied once into the output
  const bodies = records.map((r) => (isDelete(r) ? [deleteBody(r.id)] : addBody(r, dimension)));
  const length = (parts: Uint8Array[]) => parts.reduce((sum, p) => sum + p.length, 0);
  const out = Buffer.allocUnsafe(bodies.reduce((sum, parts) => sum + PREFIX_BYTES + length(parts), 0));
  let o = 0;
  for (const parts of bodies) {
    const start = o + PREFIX_BYTES;
    let end = start;
    for (const p of parts) {
      out.set(p, end);
      end += p.length;
    }
    out.writeUInt32LE(end - start, o);
    out.writeUInt32LE(crc32(out.subarray(start, end)), o + 4);
    o = end;
  }
  return out;
}

function deleteBody(id: string): Buffer {
  const idBytes = Buffer.from(id, 'utf8');
  const body = Buffer.allocUnsafe(6 + idBytes.length);
  body.writeUInt16LE(idBytes.length, 0);
  idBytes.copy(body, 2);
  body.writeUInt32LE(DELETE_LABEL, 2 + idBytes.length);
  return body;
}

function addBody(r: KeyRecord, dimension: number): Uint8Array[] {
  const id = Buffer.from(r.id, 'utf8');
  const stored = storableSource(r);
  const source = stored === undefined ? null : Buffer.from(stored, 'utf8');
  const parts: Uint8Array[] = [];
  const head = Buffer.allocUnsafe(6 + id.length);
  head.writeUInt16LE(id.length, 0);
  id.copy(head, 2);
  parts.push(head);
  if (isReduced(r)) {
    head.writeUInt32LE((r.label | REDUCED_FLAG) >>> 0, 2 + id.length);
    parts.push(u32(r.searchKey.length), bytesOf(r.searchKey), u32(r.fullKey16?.length ?? 0));
    if (r.fullKey16) parts.push(bytesOf(r.fullKey16));
  } else {
    head.writeUInt32LE(r.label, 2 + id.length);
    if (r.key.length !== dimension) throw new RangeError(`key of ${r.key.length} floats in a log of dimension ${dimension}`);
    parts.push(bytesOf(r.key));
  }
  if (source) {
    const len = Buffer.allocUnsafe(2);
    len.writeUInt16LE(source.length, 0);
    parts.push(len, source);
  }
  return parts;
}

const u32 = (v: number) => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(v, 0);
  return b;
};
const bytesOf = (a: Float32Array | Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The record at `o`, or null if it is incomplete, inconsistent or fails its crc. */
export function parseRecord(buf: Buffer, o: number, dimension: number): { record: LogRecord; next: number } | null {
  if (buf.length - o < PREFIX_BYTES) return null;
  const len = buf.readUInt32LE(o);
  const body = o + PREFIX_BYTES;
  if (len < 6 || len > MAX_RECORD_BODY(dimension) || body + len > buf.length) return null;
  const end = body + len;
  const idBytes = buf.readUInt16LE(body);
  if (6 + idBytes > len) return null;
  const labelWord = buf.readUInt32LE(body + 2 + idBytes);
  let at = body + 6 + idBytes;
  // walk the layout, checking every length against the body's before the crc
  let kind: 'delete' | 'full' | 'reduced';
  let d = dimension;
  let c = 0;
  if (labelWord === DELETE_LABEL) {
    if (at !== end) return null;
    kind = 'delete';
  } else if (labelWord & REDUCED_FLAG) {
    kind = 'reduced';
    if (at + 4 > end) return null;
    d = buf.readUInt32LE(at);
    if (d < 1 || d > dimension || at + 4 + 4 * d + 4 > end) return null;
    c = buf.readUInt32LE(at + 4 + 4 * d);
    if (c !== 0 && c !== dimension) return null;
    at += 4 + 4 * d + 4 + 2 * c;
  } else {
    kind = 'full';
    at += 4 * dimension;
  }
  let sourceBytes = -1; // −1: no source
  if (kind !== 'delete' && at !== end) {
    if (at + 2 > end || at + 2 + buf.readUInt16LE(at) !== end) return null;
    sourceBytes = buf.readUInt16LE(at);
  }
  if (crc32(buf.subarray(body, end)) !== buf.readUInt32LE(o + 4)) return null;
  const id = buf.toString('utf8', body + 2, body + 2 + idBytes);
  if (kind === 'delete') return { record: { id, deleted: true }, next: end };
  const source = sourceBytes < 0 ? undefined : buf.toString('utf8', at + 2, at + 2 + sourceBytes);
  const keyAt = body + 6 + idBytes;
  let record: KeyRecord;
  if (kind === 'full') {
    record = { id, label: labelWord, key: copyFloat32(buf, keyAt, dimension) };
  } else {
    const searchKey = copyFloat32(buf, keyAt + 4, d);
    record = { id, label: (labelWord & ~REDUCED_FLAG) >>> 0, searchKey };
    if (c > 0) {
      const full = new Uint16Array(c);
      new Uint8Array(full.buffer).set(buf.subarray(keyAt + 4 + 4 * d + 4, keyAt + 4 + 4 * d + 4 + 2 * c));
      record.fullKey16 = full;
    }
  }
  if (source !== undefined) record.source = source;
  return { record, next: end };
}

/** a copy: the bytes may be unaligned */
function copyFloat32(buf: Buffer, at: number, n: number): Float32Array {
  const out = new Float32Array(n);
  new Uint8Array(out.buffer).set(buf.subarray(at, at + 4 * n));
  return out;
}

const MAX_RECORD_BODY = (dimension: number) => 8 + MAX_ID_BYTES + 4 * dimension + 8 + 2 * dimension + MAX_SOURCE_BYTES;

/** A damaged span in the middle of the log: its bytes, and the id it seems to hold. */
export interface DamagedSpan {
  /** index among the records (its position − base) */
  index: number;
  offset: number;
  bytes: number;
  id?: string;
}

/**
 * Offsets of the records after the header, where the valid part ends, and the damaged spans in
 * the middle. A record that does not check out is damage when an intact record follows it (it is
 * counted as one record, and skipped); when nothing valid follows, it is the torn tail of a crash.
 */
export async function scanRecords(file: FileHandle, dimension: number) {
  const { size: fileSize } = await file.stat();
  const maxRecord = PREFIX_BYTES + MAX_RECORD_BODY(dimension);
  let buf = Buffer.alloc(0);
  let bufStart = HEADER_BYTES; // file offset of buf[0]
  const offsets: number[] = [];
  const damage: DamagedSpan[] = [];
  let pos = HEADER_BYTES;
  for (;;) {
    let parsed = parseRecord(buf, pos - bufStart, dimension);
    if (!parsed && bufStart + buf.length < fileSize) {
      // Maybe the record just runs past the buffer: refill from `pos`.
      buf = Buffer.allocUnsafe(Math.min(Math.max(SCAN_CHUNK, maxRecord), fileSize - pos));
      await readFully(file, buf, pos, 'key log file');
      bufStart = pos;
      parsed = parseRecord(buf, 0, dimension);
    }
    if (parsed) {
      offsets.push(pos);
      pos = bufStart + parsed.next;
      continue;
    }
    if (pos >= fileSize) break;
    const next = await nextIntactRecord(file, pos, fileSize, dimension);
    if (next === null) break; // a torn tail
    damage.push({ index: offsets.length, offset: pos, bytes: next - pos, id: await readableId(file, pos, next) });
    offsets.push(pos);
    pos = next;
    buf = Buffer.alloc(0);
    bufStart = pos;
  }
  return { offsets, validEnd: pos, fileSize, damage };
}

/**
 * Where the next intact record after the damaged one at `pos` starts: where its own length says,
 * if that checks out, else the first offset from which two records in a row (or one and the end of
 * the file) check out; null if none does.
 */
async function nextIntactRecord(file: FileHandle, pos: number, fileSize: number, dimension: number): Promise<number | null> {
  const maxRecord = PREFIX_BYTES + MAX_RECORD_BODY(dimension);
  const startsIntact = async (o: number): Promise<boolean> => {
    const window = Buffer.allocUnsafe(Math.min(2 * maxRecord, fileSize - o));
    await readFully(file, window, o, 'key log file');
    const first = parseRecord(window, 0, dimension);
    if (!first) return false;
    if (o + first.next === fileSize) return true;
    if (parseRecord(window, first.next, dimension)) return true;
    return first.next + maxRecord > window.length && (await startsIntactAt(o + first.next));
  };
  const startsIntactAt = async (o: number): Promise<boolean> => {
    const window = Buffer.allocUnsafe(Math.min(maxRecord, fileSize - o));
    await readFully(file, window, o, 'key log file');
    return parseRecord(window, 0, dimension) !== null;
  };
  const prefix = Buffer.alloc(PREFIX_BYTES);
  await readFully(file, prefix.subarray(0, Math.min(PREFIX_BYTES, fileSize - pos)), pos, 'key log file');
  const claimed = pos + PREFIX_BYTES + prefix.readUInt32LE(0);
  if (claimed < fileSize && claimed > pos + PREFIX_BYTES && (await startsIntact(claimed))) return claimed;
  // The length itself is damaged: look for the next intact record byte by byte.
  for (let chunkStart = pos + 1; chunkStart < fileSize; chunkStart += SCAN_CHUNK) {
    const window = Buffer.allocUnsafe(Math.min(SCAN_CHUNK + maxRecord, fileSize - chunkStart));
    await readFully(file, window, chunkStart, 'key log file');
    for (let i = 0; i < Math.min(SCAN_CHUNK, window.length); i++) {
      if (parseRecord(window, i, dimension) && (await startsIntact(chunkStart + i))) return chunkStart + i;
    }
  }
  return null;
}

/** The id a damaged record seems to hold, if its id field still reads as text. */
async function readableId(file: FileHandle, from: number, to: number): Promise<string | undefined> {
  const head = Buffer.allocUnsafe(Math.min(to - from, PREFIX_BYTES + 2 + MAX_ID_BYTES));
  await readFully(file, head, from, 'key log file');
  if (head.length < PREFIX_BYTES + 2) return undefined;
  const idBytes = head.readUInt16LE(PREFIX_BYTES);
  if (idBytes === 0 || PREFIX_BYTES + 2 + idBytes > head.length) return undefined;
  try {
    const id = new TextDecoder('utf-8', { fatal: true }).decode(head.subarray(PREFIX_BYTES + 2, PREFIX_BYTES + 2 + idBytes));
    return /^[\p{L}\p{N}\p{P}\p{S} ]+$/u.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}
