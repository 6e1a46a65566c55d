// Embedded-mode key log: one append-only binary file per cache; file-format.ts has the format.
// A crash mid-append leaves a torn or garbage tail; open() truncates the file at the first record that does not
// check out and reports the bytes dropped in `recoveredBytes` (those appends
// never resolved, so nobody was told they were durable). The header is only ever
// written to a temporary file that is then renamed into place, so it is never torn.
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { dirname } from 'node:path';
import { readFully, writeFileAtomically, writeFully } from '../util/files.js';
import { BATCH_BYTES, encodeHeader, encodeRecords, HEADER_BYTES, parseRecord, PREFIX_BYTES, readHeader, SCAN_CHUNK, scanRecords } from './file-format.js';
import { LOST_RECORD, type KeyLog, type LogCheck, type LogDamage, type LogRecord } from './types.js';

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
    /** positions whose bytes are damaged: read as LOST_RECORD */
    readonly lost: ReadonlySet<number> = new Set(),
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
    /** damage found in the middle of the log when it was opened */
    private readonly found: LogDamage[] = [],
  ) {}

  /**
   * A new, empty log whose first record will have position `base` (a cache restored from a
   * snapshot that covers positions < base). Refuses to replace an existing log.
   */
  static async create(path: string, dimension: number, base: number): Promise<FileKeyLog> {
    if (!Number.isSafeInteger(base) || base < 0) throw new RangeError(`base must be a position, got ${base}`);
    await mkdir(dirname(path), { recursive: true });
    const file = await open(path, 'wx');
    try {
      await writeFully(file, encodeHeader(dimension, base), 0);
      await file.sync();
    } finally {
      await file.close();
    }
    return FileKeyLog.open(path, dimension);
  }

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
      const { offsets, validEnd, fileSize, damage } = await scanRecords(file, dimension);
      if (validEnd < fileSize) {
        await file.truncate(validEnd);
        await file.sync();
      }
      const detectedAt = new Date().toISOString();
      const found = damage.map(({ index, offset, bytes, id }) => ({ position: base + index, offset, bytes, ...(id !== undefined && { id }), detectedAt }));
      const lost = new Set(found.map((d) => d.position));
      return new FileKeyLog(path, dimension, new Segment(file, base, offsets, validEnd, lost), fileSize - validEnd, found);
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

  damage(): LogDamage[] {
    return this.found;
  }

  /** Scan the file again from its header (appends wait meanwhile). */
  async verify(): Promise<LogCheck> {
    this.assertOpen();
    return this.serialised(async () => {
      const file = await open(this.path, 'r');
      try {
        const base = await readHeader(file, this.path, this.dimension);
        const { offsets, damage } = await scanRecords(file, this.dimension);
        return { base, end: base + offsets.length, damaged: damage.map((d) => ({ position: base + d.index, ...(d.id !== undefined && { id: d.id }) })) };
      } finally {
        await file.close();
      }
    });
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
    until = Infinity,
  ): Promise<number> {
    this.assertOpen();
    const seg = this.segment;
    const end = Math.max(position, Math.min(seg.end, until));
    const endOffset = seg.endOffset;
    if (!Number.isInteger(position) || position < seg.base || position > seg.end) {
      throw new RangeError(`key log ${this.path} holds positions ${seg.base}…${seg.end}; cannot read from ${position}`);
    }
    const recordBytes = PREFIX_BYTES + 6 + 4 * this.dimension;
    const batch = Math.max(1, Math.floor(batchSize ?? Math.min(1024, BATCH_BYTES / recordBytes)));
    seg.refs++;
    try {
      for (let p = position; p < end;) {
        const n = Math.min(batch, end - p);
        const from = seg.offsets[p - seg.base];
        const to = p + n < end ? seg.offsets[p + n - seg.base] : endOffset;
        const bytes = Buffer.allocUnsafe(to - from);
        await readFully(seg.file, bytes, from, 'key log file');
        const records: LogRecord[] = [];
        for (let q = p; q < p + n; q++) {
          if (seg.lost.has(q)) {
            records.push(LOST_RECORD);
            continue;
          }
          const parsed = parseRecord(bytes, seg.offsets[q - seg.base] - from, this.dimension);
          if (!parsed) throw new Error(`key log ${this.path} is corrupt at position ${q}: it changed since it was opened`);
          records.push(parsed.record);
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
        for (let o = from; o < old.endOffset;) {
          const n = Math.min(chunk.length, old.endOffset - o);
          await readFully(old.file, chunk.subarray(0, n), o, 'key log file');
          await writeFully(f, chunk.subarray(0, n), HEADER_BYTES + o - from);
          o += n;
        }
      });
      const shift = from - HEADER_BYTES;
      const offsets = old.offsets.slice(position - old.base).map((o) => o - shift);
      const lost = new Set([...old.lost].filter((p) => p >= position));
      this.segment = new Segment(await open(this.path, 'r+'), position, offsets, old.endOffset - shift, lost);
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
