// Embedded-mode key log: one append-only binary file per cache.
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
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { dirname } from 'node:path';
import * as zlib from 'node:zlib';
import { UserError } from '../errors/user-error.js';
import { isDelete, isReduced, MAX_ID_BYTES, MAX_SOURCE_BYTES, storableSource, validateRecords, type KeyLog, type KeyRecord, type LogRecord } from './types.js';
import { fsyncPath, readFully, writeFully } from '../util/files.js';

const MAGIC = Buffer.from('CACHETKL', 'latin1');
const VERSION = 2;
const READABLE_VERSIONS = [1, 2];
const DELETE_LABEL = 0xffffffff;
const REDUCED_FLAG = 0x80000000;
const HEADER_BYTES = 32;
const PREFIX_BYTES = 8;
const SCAN_CHUNK = 8 * 1024 * 1024;
const BATCH_BYTES = 16 * 1024 * 1024;

/**
 * The open file and where its records start. compactTo replaces the file; a
 * readFrom already running keeps reading the old one (still readable after the
 * rename) and the old handle is closed when its last reader finishes.
 */
class Segment {
  refs = 0;
  retired = false;
  constructor(
    readonly file: FileHandle,
    readonly base: number,
    /** byte offset of each record, index = position − base */
    readonly offsets: number[],
    public endOffset: number,
  ) {}

  get end(): number {
    return this.base + this.offsets.length;
  }

  async release(): Promise<void> {
    this.refs--;
    await this.closeIfUnused();
  }

  async retire(): Promise<void> {
    this.retired = true;
    await this.closeIfUnused();
  }

  private async closeIfUnused(): Promise<void> {
    if (this.retired && this.refs === 0) await this.file.close();
  }
}

export class FileKeyLog implements KeyLog {
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly path: string,
    readonly dimension: number,
    private segment: Segment,
    /** bytes of torn or corrupt tail truncated away when the log was opened */
    readonly recoveredBytes: number,
  ) {}

  static async open(path: string, dimension: number): Promise<FileKeyLog> {
    if (endianness() !== 'LE') throw new Error('the key log format is little-endian; big-endian hosts are not supported');
    if (!Number.isInteger(dimension) || dimension < 1) throw new RangeError(`dimension must be a positive integer, got ${dimension}`);
    let file: FileHandle;
    try {
      file = await open(path, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(dirname(path), { recursive: true });
      await writeFileAtomically(path, async (f) => void (await writeFully(f, encodeHeader(dimension, 0), 0)));
      file = await open(path, 'r+');
    }
    try {
      const base = await readHeader(file, path, dimension);
      const { offsets, validEnd, fileSize } = await scanRecords(file, dimension);
      if (validEnd < fileSize) {
        await file.truncate(validEnd);
        await file.sync();
      }
      return new FileKeyLog(path, dimension, new Segment(file, base, offsets, validEnd), fileSize - validEnd);
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  end(): number {
    return this.segment.end;
  }

  /** one process owns a file log: its end is known */
  async readEnd(): Promise<number> {
    return this.end();
  }

  /** The first position still held (records before it were compacted away). */
  base(): number {
    return this.segment.base;
  }

  async append(records: LogRecord[]): Promise<number> {
    this.assertOpen();
    const bytes = encodeRecords(records, this.dimension); // validate before queueing
    return this.serialised(async () => {
      const seg = this.segment;
      const start = seg.endOffset;
      try {
        await writeFully(seg.file, bytes, start);
        await seg.file.datasync();
      } catch (err) {
        // Leave no half-written batch behind for the next append to follow.
        await seg.file.truncate(start).catch(() => undefined);
        throw err;
      }
      let o = start;
      for (let i = 0; i < records.length; i++) {
        seg.offsets.push(o);
        o += bytes.readUInt32LE(o - start) + PREFIX_BYTES;
      }
      seg.endOffset = o;
      return seg.end;
    });
  }

  async readFrom(
    position: number,
    onBatch: (records: LogRecord[], firstPosition: number) => Promise<void> | void,
    batchSize?: number,
  ): Promise<number> {
    this.assertOpen();
    const seg = this.segment;
    const end = seg.end;
    const endOffset = seg.endOffset;
    if (!Number.isInteger(position) || position < seg.base || position > end) {
      throw new RangeError(`key log ${this.path} holds positions ${seg.base}…${end}; cannot read from ${position}`);
    }
    const recordBytes = PREFIX_BYTES + 6 + 4 * this.dimension;
    const batch = Math.max(1, Math.floor(batchSize ?? Math.min(1024, BATCH_BYTES / recordBytes)));
    seg.refs++;
    try {
      for (let p = position; p < end; ) {
        const n = Math.min(batch, end - p);
        const from = seg.offsets[p - seg.base];
        const to = p + n < end ? seg.offsets[p + n - seg.base] : endOffset;
        const bytes = Buffer.allocUnsafe(to - from);
        await readFully(seg.file, bytes, from, 'key log file');
        const records: LogRecord[] = [];
        for (let o = 0; o < bytes.length; ) {
          const parsed = parseRecord(bytes, o, this.dimension);
          if (!parsed) throw new Error(`key log ${this.path} is corrupt at position ${p + records.length}`);
          records.push(parsed.record);
          o = parsed.next;
        }
        await onBatch(records, p);
        p += n;
      }
    } finally {
      await seg.release();
    }
    return end;
  }

  async compactTo(position: number): Promise<void> {
    this.assertOpen();
    return this.serialised(async () => {
      const old = this.segment;
      if (position <= old.base) return;
      if (!Number.isInteger(position) || position > old.end) {
        throw new RangeError(`cannot compact key log ${this.path} to ${position}: it ends at ${old.end}`);
      }
      const from = position < old.end ? old.offsets[position - old.base] : old.endOffset;
      await writeFileAtomically(this.path, async (f) => {
        await writeFully(f, encodeHeader(this.dimension, position), 0);
        const chunk = Buffer.allocUnsafe(Math.min(SCAN_CHUNK, Math.max(1, old.endOffset - from)));
        for (let o = from; o < old.endOffset; ) {
          const n = Math.min(chunk.length, old.endOffset - o);
          await readFully(old.file, chunk.subarray(0, n), o, 'key log file');
          await writeFully(f, chunk.subarray(0, n), HEADER_BYTES + o - from);
          o += n;
        }
      });
      const shift = from - HEADER_BYTES;
      const offsets = old.offsets.slice(position - old.base).map((o) => o - shift);
      this.segment = new Segment(await open(this.path, 'r+'), position, offsets, old.endOffset - shift);
      await old.retire();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail;
    await this.segment.retire();
  }

  /** Appends and compactions run one at a time, in call order. */
  private serialised<T>(op: () => Promise<T>): Promise<T> {
    const run = this.tail.then(op);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`key log ${this.path} is closed`);
  }
}

// ---- format ----

function encodeHeader(dimension: number, base: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(h, 0);
  h.writeUInt32LE(VERSION, 8);
  h.writeUInt32LE(dimension, 12);
  h.writeBigUInt64LE(BigInt(base), 16);
  h.writeUInt32LE(crc32(h.subarray(0, 24)), 24);
  return h;
}

async function readHeader(file: FileHandle, path: string, dimension: number): Promise<number> {
  const h = Buffer.alloc(HEADER_BYTES);
  const { bytesRead } = await file.read(h, 0, HEADER_BYTES, 0);
  if (bytesRead < HEADER_BYTES || !h.subarray(0, 8).equals(MAGIC) || h.readUInt32LE(24) !== crc32(h.subarray(0, 24))) {
    throw new Error(`${path} is not a Cachet key log (bad header)`);
  }
  const version = h.readUInt32LE(8);
  if (!READABLE_VERSIONS.includes(version)) throw new Error(`${path}: key log version ${version} is not supported (expected ${READABLE_VERSIONS.join(' or ')})`);
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

function encodeRecords(records: LogRecord[], dimension: number): Buffer {
  validateRecords(records, dimension);
  const bodies = records.map((r) => (isDelete(r) ? deleteBody(r.id) : addBody(r, dimension)));
  const out = Buffer.allocUnsafe(bodies.reduce((sum, b) => sum + PREFIX_BYTES + b.length, 0));
  let o = 0;
  for (const body of bodies) {
    out.writeUInt32LE(body.length, o);
    out.writeUInt32LE(crc32(body), o + 4);
    body.copy(out, o + PREFIX_BYTES);
    o += PREFIX_BYTES + body.length;
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

function addBody(r: KeyRecord, dimension: number): Buffer {
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
  return Buffer.concat(parts);
}

const u32 = (v: number) => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(v, 0);
  return b;
};
const bytesOf = (a: Float32Array | Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** The record at `o`, or null if it is incomplete, inconsistent or fails its crc. */
function parseRecord(buf: Buffer, o: number, dimension: number): { record: LogRecord; next: number } | null {
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

/** Offsets of the valid records after the header, and where the valid part ends. */
async function scanRecords(file: FileHandle, dimension: number) {
  const { size: fileSize } = await file.stat();
  const maxRecord = PREFIX_BYTES + MAX_RECORD_BODY(dimension);
  let buf = Buffer.alloc(0);
  let bufStart = HEADER_BYTES; // file offset of buf[0]
  const offsets: number[] = [];
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
    if (!parsed) break;
    offsets.push(pos);
    pos = bufStart + parsed.next;
  }
  return { offsets, validEnd: pos, fileSize };
}

// ---- files ----



/** write a temporary file, fsync it, rename it over `path`, fsync the directory */
async function writeFileAtomically(path: string, write: (file: FileHandle) => Promise<void>): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const file = await open(tmp, 'wx');
  try {
    await write(file);
    await file.sync();
    await file.close();
    await rename(tmp, path);
  } catch (err) {
    await file.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncPath(dirname(path));
}


// ---- crc32 ----

let table: Uint32Array | null = null;

/** zlib.crc32 (Node ≥ 20.15); a table-driven fallback for older 20.x. */
function crc32(data: Uint8Array): number {
  if (typeof zlib.crc32 === 'function') return zlib.crc32(data);
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
