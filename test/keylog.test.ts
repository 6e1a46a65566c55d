import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readdir, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { UserError } from '../src/errors/user-error.js';
import { FileKeyLog } from '../src/keylog/file-log.js';
import type { KeyLog, KeyRecord, LogRecord } from '../src/keylog/types.js';

const dim = 8;
const HEADER = 32;
const recordBytes = (id: string) => 8 + 2 + Buffer.byteLength(id) + 4 + 4 * dim;

function records(from: number, n: number): KeyRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const p = from + i;
    return { id: `img-${p}-é`, label: p % 10, key: Float32Array.from({ length: dim }, (_, j) => p + j / 10) };
  });
}

async function readAll(log: KeyLog, from: number, batchSize?: number) {
  const out: LogRecord[] = [];
  const firsts: number[] = [];
  const end = await log.readFrom(
    from,
    (batch, first) => {
      assert.equal(first, from + out.length, 'batches are consecutive');
      firsts.push(first);
      out.push(...batch);
    },
    batchSize,
  );
  return { records: out, end, firsts };
}

const dirs: string[] = [];
async function logPath(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cachet-keylog-'));
  dirs.push(dir);
  return join(dir, 'sub', 'keys.log'); // open() creates the directory
}
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('FileKeyLog', () => {
  it('round-trips appends through readFrom, in bounded batches', async () => {
    const log = await FileKeyLog.open(await logPath(), dim);
    assert.equal(log.end(), 0);
    assert.equal(await log.append(records(0, 5)), 5);
    assert.equal(await log.append(records(5, 20)), 25);
    const { records: got, end, firsts } = await readAll(log, 3, 7);
    assert.equal(end, 25);
    assert.deepEqual(firsts, [3, 10, 17, 24]);
    assert.deepEqual(got, records(3, 22));
    assert.equal((await readAll(log, 25)).records.length, 0);
    await assert.rejects(
      log.readFrom(26, () => undefined),
      RangeError,
    );
    await log.close();
  });

  it('serialises concurrent appends', async () => {
    const log = await FileKeyLog.open(await logPath(), dim);
    const ends = await Promise.all([0, 1, 2, 3].map((b) => log.append(records(b * 10, 10))));
    assert.deepEqual(ends, [10, 20, 30, 40]);
    assert.deepEqual((await readAll(log, 0)).records, records(0, 40));
    await log.close();
  });

  it('rejects bad records before writing anything', async () => {
    const log = await FileKeyLog.open(await logPath(), dim);
    await log.append(records(0, 2));
    const bad = [...records(2, 1), { id: 'x', label: 1, key: new Float32Array(dim + 1) }];
    await assert.rejects(log.append(bad), (e) => e instanceof UserError && e.code === 'bad_key');
    await assert.rejects(log.append([{ id: 'y', label: -1, key: new Float32Array(dim) }]), /label/);
    assert.equal(log.end(), 2);
    await log.close();
  });

  it('reopens where it left off', async () => {
    const path = await logPath();
    let log = await FileKeyLog.open(path, dim);
    await log.append(records(0, 12));
    await log.close();
    log = await FileKeyLog.open(path, dim);
    assert.equal(log.end(), 12);
    assert.equal(log.recoveredBytes, 0);
    await log.append(records(12, 3));
    assert.deepEqual((await readAll(log, 0)).records, records(0, 15));
    await log.close();
  });

  it('truncates a torn tail on open and reports it', async () => {
    const path = await logPath();
    let log = await FileKeyLog.open(path, dim);
    await log.append(records(0, 4));
    await log.close();
    const good = (await stat(path)).size;

    // a crash mid-append: the first 17 bytes of a fifth record
    const half = Buffer.alloc(17);
    half.writeUInt32LE(recordBytes('img-4-é') - 8, 0);
    await appendFile(path, half);
    log = await FileKeyLog.open(path, dim);
    assert.equal(log.recoveredBytes, 17);
    assert.equal(log.end(), 4);
    assert.equal((await stat(path)).size, good);
    assert.equal(await log.append(records(4, 1)), 5);
    await log.close();

    // a whole record whose bytes were not all persisted (crc mismatch), then garbage
    const full = (await stat(path)).size;
    await truncate(path, full - 3);
    await appendFile(path, Buffer.from([1, 2, 3, 0xff, 0xff]));
    log = await FileKeyLog.open(path, dim);
    assert.equal(log.end(), 4);
    assert.equal(log.recoveredBytes, full - good + 2);
    assert.deepEqual((await readAll(log, 0)).records, records(0, 4));
    await log.close();
  });

  // A flipped byte in the middle of the log: the damaged record is skipped (a no-op at its
  // position), every record after it is kept, and the damage is reported with the id.
  for (const [what, offsetInRecord] of [
    ['its key', 8 + 2 + Buffer.byteLength('img-7-é') + 4 + 5],
    ['its length', 1],
    ['its crc', 5],
  ] as const) {
    it(`keeps every intact record after a record damaged in ${what}`, async () => {
      const path = await logPath();
      let log = await FileKeyLog.open(path, dim);
      await log.append(records(0, 20));
      await log.close();
      const at = HEADER + records(0, 7).reduce((sum, r) => sum + recordBytes(r.id), 0) + offsetInRecord;
      const { open } = await import('node:fs/promises');
      const file = await open(path, 'r+');
      const byte = Buffer.alloc(1);
      await file.read(byte, 0, 1, at);
      byte[0] ^= 0x5a;
      await file.write(byte, 0, 1, at);
      await file.close();
      const size = (await stat(path)).size;

      log = await FileKeyLog.open(path, dim);
      assert.equal(log.end(), 20, 'positions are kept');
      assert.equal(log.recoveredBytes, 0, 'nothing truncated');
      assert.equal((await stat(path)).size, size, 'the file is not cut');
      const damage = log.damage();
      assert.equal(damage.length, 1);
      assert.equal(damage[0].position, 7);
      if (what !== 'its length') assert.equal(damage[0].id, 'img-7-é', 'the lost id is named');
      const read = (await readAll(log, 0, 6)).records;
      assert.deepEqual(read.slice(0, 7), records(0, 7));
      assert.deepEqual(read[7], { id: '', deleted: true }, 'the damaged record is read as a no-op');
      assert.deepEqual(read.slice(8), records(8, 12));
      assert.equal(await log.append(records(20, 1)), 21, 'appends go on after the damage');
      await log.close();
    });
  }

  it('compactTo forgets earlier records and keeps positions', async () => {
    const path = await logPath();
    let log = await FileKeyLog.open(path, dim);
    await log.append(records(0, 30));
    const before = (await stat(path)).size;
    await log.compactTo(20);

    assert.equal(log.base(), 20);
    assert.equal(log.end(), 30);
    assert.equal((await stat(path)).size, before - records(0, 20).reduce((sum, r) => sum + recordBytes(r.id), 0));
    await assert.rejects(
      log.readFrom(19, () => undefined),
      RangeError,
    );
    assert.deepEqual((await readAll(log, 20)).records, records(20, 10));
    assert.equal(await log.append(records(30, 2)), 32);
    await log.close();

    log = await FileKeyLog.open(path, dim);
    assert.equal(log.base(), 20);
    assert.equal(log.end(), 32);
    assert.deepEqual((await readAll(log, 25)).records, records(25, 7));
    await log.compactTo(32); // everything covered: an empty log that still knows its end
    await log.compactTo(10); // already forgotten: nothing to do
    await assert.rejects(log.compactTo(40), RangeError);
    await log.close();
    log = await FileKeyLog.open(path, dim);
    assert.equal(log.end(), 32);
    assert.equal((await stat(path)).size, HEADER);
    assert.deepEqual(
      (await readdir(join(path, '..'))).filter((n) => n.includes('.tmp-')),
      [],
      'no temporary files left',
    );
    await log.close();
  });

  it('compactTo while a reader is mid-way keeps the reader on the old file', async () => {
    const log = await FileKeyLog.open(await logPath(), dim);
    await log.append(records(0, 30));
    const got: LogRecord[] = [];
    let compaction: Promise<void> | null = null;
    await log.readFrom(
      0,
      async (batch) => {
        got.push(...batch);
        if (!compaction) {
          compaction = log.compactTo(25);
          await compaction;
        }
      },
      5,
    );
    assert.deepEqual(got, records(0, 30));
    assert.equal(log.base(), 25);
    assert.deepEqual((await readAll(log, 25)).records, records(25, 5));
    await log.close();
  });

  it('keeps deletions and image sources in order with the adds, across a reopen and a compaction', async () => {
    const path = await logPath();
    const log = await FileKeyLog.open(path, dim);
    const [a, b] = records(0, 2);
    const withSource = { ...b, source: '/data/cats/0001.jpg' };
    const tooLong = { ...records(2, 1)[0], source: 'x'.repeat(5000) }; // kept without its source
    const sequence: LogRecord[] = [a, { id: a.id, deleted: true }, withSource, tooLong, { ...a, label: 3 }];
    assert.equal(await log.append(sequence), 5);
    await log.close();
    const reopened = await FileKeyLog.open(path, dim);
    assert.equal(reopened.recoveredBytes, 0);
    const { records: got } = await readAll(reopened, 0);
    const { source: _, ...tooLongWithout } = tooLong;
    assert.deepEqual(got, [a, { id: a.id, deleted: true }, withSource, tooLongWithout, { ...a, label: 3 }]);
    await reopened.compactTo(1);
    assert.deepEqual((await readAll(reopened, 1)).records, got.slice(1));
    await reopened.close();
  });

  it('reads a version-1 log (adds only, no sources) as it is, and appends to it', async () => {
    const path = await logPath();
    const log = await FileKeyLog.open(path, dim);
    await log.append(records(0, 3));
    await log.close();
    // rewrite the header as version 1 (the v1 record layout is the v2 add without a source)
    const { open } = await import('node:fs/promises');
    const { crc32 } = await import('node:zlib');
    const f = await open(path, 'r+');
    const h = Buffer.alloc(HEADER);
    await f.read(h, 0, HEADER, 0);
    h.writeUInt32LE(1, 8);
    h.writeUInt32LE(crc32(h.subarray(0, 24)), 24);
    await f.write(h, 0, HEADER, 0);
    await f.close();
    const v1 = await FileKeyLog.open(path, dim);
    assert.equal(v1.end(), 3);
    await v1.append([{ id: 'img-0-é', deleted: true }]);
    assert.deepEqual((await readAll(v1, 0)).records, [...records(0, 3), { id: 'img-0-é', deleted: true }]);
    await v1.close();
  });

  it('refuses a log of another dimension', async () => {
    const path = await logPath();
    const log = await FileKeyLog.open(path, dim);
    await log.append(records(0, 1));
    await log.close();
    await assert.rejects(FileKeyLog.open(path, dim * 2), (e) => e instanceof UserError && e.code === 'key_dimension_mismatch');
  });
});
