// Distributed mode's key log: one Redis Stream per cache, shared by every
// worker (who append) and every api replica (who tail it into their index).
//
// An append is one Lua script, atomic in Redis: for each record whose id is new
// to the cache's id set, it takes the next position and XADDs the record with
// the explicit entry ID `<position + 1>-0`. So positions are dense integers, as in
// the file log; an id appended twice (a retried chunk, two workers racing) is one
// record; and a reader can start from any position with XRANGE.
import type { Redis } from 'ioredis';
import { UserError } from '../errors/user-error.js';
import { redisKeys } from '../redis/keys.js';
import { isDelete, isReduced, storableSource, validateRecords, type KeyLog, type KeyRecord, type LogCheck, type LogDamage, type LogRecord } from './types.js';

// ARGV per record: id, label, key field name (key | skey), key bytes, float16 full key bytes or '', source or ''
const APPEND = `
local added = 0
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local o = 1 + i * 6
  local id = ARGV[o + 1]
  if redis.call('SADD', KEYS[2], id) == 1 then
    local seq = redis.call('INCR', KEYS[3])
    local entry = {KEYS[1], seq .. '-0', 'id', id, 'label', ARGV[o + 2], ARGV[o + 3], ARGV[o + 4]}
    if ARGV[o + 5] ~= '' then entry[#entry + 1] = 'fkey16'; entry[#entry + 1] = ARGV[o + 5] end
    if ARGV[o + 6] ~= '' then entry[#entry + 1] = 'source'; entry[#entry + 1] = ARGV[o + 6] end
    redis.call('XADD', unpack(entry))
    added = added + 1
  end
end
return {added, tonumber(redis.call('GET', KEYS[3]) or '0')}
`;

const DELETE = `
local deleted = {}
for i = 1, #ARGV do
  if redis.call('SREM', KEYS[2], ARGV[i]) == 1 then
    local seq = redis.call('INCR', KEYS[3])
    redis.call('XADD', KEYS[1], seq .. '-0', 'id', ARGV[i], 'op', 'delete')
    deleted[#deleted + 1] = ARGV[i]
  end
end
return {deleted, tonumber(redis.call('GET', KEYS[3]) or '0')}
`;

type StreamEntry = [Buffer, Buffer[]];

export class RedisKeyLog implements KeyLog {
  private known = 0;

  private constructor(
    private readonly redis: Redis,
    readonly cache: string,
    readonly dimension: number,
  ) {}

  /** Opens (or starts) a cache's log; a log started with another key dimension is refused. */
  static async open(redis: Redis, cache: string, dimension: number): Promise<RedisKeyLog> {
    await redis.set(redisKeys.dimension(cache), String(dimension), 'NX');
    const stored = Number(await redis.get(redisKeys.dimension(cache)));
    if (stored !== dimension) {
      throw new UserError('key_dimension_mismatch', `the key log of cache "${cache}" holds ${stored}-float keys; this model gives ${dimension}`);
    }
    const log = new RedisKeyLog(redis, cache, dimension);
    await log.readEnd();
    return log;
  }

  end(): number {
    return this.known;
  }

  /** The log's end as Redis has it now (other processes append too). */
  async readEnd(): Promise<number> {
    this.known = Number((await this.redis.get(redisKeys.end(this.cache))) ?? 0);
    return this.known;
  }

  /** Appends the records whose ids are new; durable as Redis's AOF is (appendfsync). */
  async append(records: LogRecord[]): Promise<number> {
    const adds = records.filter((r): r is KeyRecord => !isDelete(r));
    if (adds.length === records.length) return (await this.appendNew(adds)).end;
    let end = this.known;
    for (const r of records) end = isDelete(r) ? (await this.appendDeletes([r.id])).end : (await this.appendNew([r])).end;
    return end;
  }

  /** Logs the deletion of the ids the log holds; returns those ids. */
  async appendDeletes(ids: string[]): Promise<{ deleted: string[]; end: number }> {
    validateRecords(
      ids.map((id) => ({ id, deleted: true })),
      this.dimension,
    );
    if (ids.length === 0) return { deleted: [], end: await this.readEnd() };
    const c = this.cache;
    const [deleted, end] = (await this.redis.eval(DELETE, 3, redisKeys.log(c), redisKeys.ids(c), redisKeys.end(c), ...ids)) as [string[], number];
    this.known = Math.max(this.known, end);
    return { deleted, end };
  }

  async appendNew(records: KeyRecord[]): Promise<{ added: number; end: number }> {
    validateRecords(records, this.dimension);
    if (records.length === 0) return { added: 0, end: await this.readEnd() };
    const args: (string | Buffer)[] = [String(records.length)];
    for (const r of records) {
      const [field, key] = isReduced(r) ? ['skey', r.searchKey] : ['key', r.key];
      const full16 = isReduced(r) && r.fullKey16 ? bytes(r.fullKey16) : '';
      args.push(r.id, String(r.label), field, bytes(key), full16, storableSource(r) ?? '');
    }
    const c = this.cache;
    const [added, end] = (await this.redis.eval(APPEND, 3, redisKeys.log(c), redisKeys.ids(c), redisKeys.end(c), ...args)) as [number, number];
    this.known = Math.max(this.known, end);
    return { added, end };
  }

  async readFrom(position: number, onBatch: (records: LogRecord[], firstPosition: number) => Promise<void> | void, batchSize = 256): Promise<number> {
    for (;;) {
      const entries = (await this.redis.xrangeBuffer(redisKeys.log(this.cache), `${position + 1}-0`, '+', 'COUNT', batchSize)) as StreamEntry[];
      if (entries.length === 0) break;
      const first = Number(entries[0][0].toString().split('-')[0]) - 1;
      if (first !== position) throw new Error(`key log of "${this.cache}" jumps from position ${position} to ${first}`);
      await onBatch(
        entries.map((e) => this.decode(e)),
        position,
      );
      position += entries.length;
      this.known = Math.max(this.known, position);
      if (entries.length < batchSize) break;
    }
    return position;
  }

  /**
   * Waits (up to timeoutMs) until any of `logs` has a record at or after its given position.
   * Uses a connection of its own: XREAD BLOCK holds the connection while it waits.
   */
  static async waitForAny(blocking: Redis, logs: { log: RedisKeyLog; position: number }[], timeoutMs: number): Promise<void> {
    if (logs.length === 0) return new Promise((r) => setTimeout(r, timeoutMs));
    await blocking.xreadBuffer(
      'COUNT',
      1,
      'BLOCK',
      timeoutMs,
      'STREAMS',
      ...logs.map((l) => redisKeys.log(l.log.cache)),
      ...logs.map((l) => `${l.position}-0`),
    );
  }

  /** The stream is shared by every replica: none of them may trim it alone. */
  async compactTo(): Promise<void> {}

  /** a stream is never trimmed (yet): it holds every record */
  base(): number {
    return 0;
  }

  /** Redis keeps its own integrity (AOF checksums); entries are whole or absent */
  damage(): LogDamage[] {
    return [];
  }

  /** Every entry of the stream decodes (a decode error throws, naming the entry). */
  async verify(): Promise<LogCheck> {
    const end = await this.readFrom(0, () => undefined);
    return { base: 0, end, damaged: [] };
  }

  async close(): Promise<void> {}

  private decode([, fields]: StreamEntry): LogRecord {
    const f: Record<string, Buffer> = {};
    for (let i = 0; i < fields.length; i += 2) f[fields[i].toString()] = fields[i + 1];
    if (f.op?.toString() === 'delete') return { id: f.id.toString(), deleted: true };
    const id = f.id.toString();
    const label = Number(f.label.toString());
    let record: KeyRecord;
    if (f.skey) {
      record = { id, label, searchKey: copyInto(new Float32Array(f.skey.byteLength / 4), f.skey) };
      if (f.fkey16) record.fullKey16 = copyInto(new Uint16Array(f.fkey16.byteLength / 2), f.fkey16);
    } else {
      record = { id, label, key: copyInto(new Float32Array(f.key.byteLength / 4), f.key) };
    }
    if (f.source) record.source = f.source.toString();
    return record;
  }
}

const bytes = (a: Float32Array | Uint16Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** a copy: the Buffer may be unaligned */
function copyInto<T extends Float32Array | Uint16Array>(out: T, b: Buffer): T {
  new Uint8Array(out.buffer).set(b);
  return out;
}
