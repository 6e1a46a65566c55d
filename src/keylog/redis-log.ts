// Distributed mode's key log: one Redis Stream per cache, shared by every
// worker (who append) and every api replica (who tail it into their index).
//
// An append is one Lua script, atomic in Redis: for each record whose id is new
// to the cache's id set, it takes the next position and XADDs the record with
// the explicit entry ID `<position + 1>-0`. So positions are dense integers, as in
// the file log; an id appended twice (a retried chunk, two workers racing) is one
// record; and a reader can start from any position with XRANGE.
//
// The stream is bounded (Kafka-style compaction to snapshots): each replica publishes the position
// its last snapshot covers, with a heartbeat, and the stream is trimmed (XTRIM MINID) below the
// lowest position of the live replicas, keeping at least `keep` records. A replica that comes back
// below the trim point starts from a peer's snapshot (replica-engine.ts).
import { Cluster } from 'ioredis';
import type { RedisConnection } from '../redis/connection.js';
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

// Publishes a replica's snapshot position (Redis's clock stamps it), forgets replicas silent for
// longer than the ttl, and trims below the lowest live position, keeping `keep` records.
// KEYS: log, end, base, replicas; ARGV: replica id, position, url or '', keep, ttl ms, trim (1|0)
const PUBLISH = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[4], ARGV[1], cjson.encode({position = tonumber(ARGV[2]), url = ARGV[3], at = now}))
local lowest = nil
local all = redis.call('HGETALL', KEYS[4])
for i = 1, #all, 2 do
  local ok, r = pcall(cjson.decode, all[i + 1])
  if ok and type(r) == 'table' and type(r.position) == 'number' and type(r.at) == 'number' and r.at >= now - tonumber(ARGV[5]) then
    if lowest == nil or r.position < lowest then lowest = r.position end
  else
    redis.call('HDEL', KEYS[4], all[i])
  end
end
local base = tonumber(redis.call('GET', KEYS[3]) or '0')
local stop = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[6] == '1' and lowest ~= nil then
  local to = math.min(lowest, stop - tonumber(ARGV[4]))
  if to > base then
    redis.call('XTRIM', KEYS[1], 'MINID', (to + 1) .. '-0')
    redis.call('SET', KEYS[3], to)
    base = to
  end
end
return {base, stop}
`;

/** A replica as the stream's trimming knows it (replica-engine.ts publishes it). */
export interface ReplicaMember {
  id: string;
  /** where peers fetch this replica's snapshots; null until it listens */
  url(): string | null;
  /** records always kept below the end, whatever the snapshots cover */
  keep: number;
  /** a replica silent for longer is forgotten (it starts from a peer's snapshot when it comes back) */
  ttlMs: number;
}

/** What a replica publishes of itself (redisKeys.replicas). */
export interface ReplicaEntry {
  id: string;
  position: number;
  url: string;
  /** Redis time, ms */
  at: number;
}

/** The replicas that hold a cache (or a shard of one), as they last published themselves, freshest first. */
export async function replicasOf(redis: RedisConnection, cache: string): Promise<ReplicaEntry[]> {
  const out: ReplicaEntry[] = [];
  for (const [id, raw] of Object.entries(await redis.hgetall(redisKeys.replicas(cache)))) {
    try {
      const r = JSON.parse(raw) as Partial<ReplicaEntry>;
      if (Number.isInteger(r.position) && typeof r.url === 'string' && Number.isFinite(r.at)) out.push({ id, position: r.position!, url: r.url, at: r.at! });
    } catch {
      // not ours to judge: the next publication forgets it
    }
  }
  return out.sort((a, b) => b.at - a.at);
}

/** Reading from a position the stream no longer holds: start from a peer's snapshot. */
export class LogTrimmedError extends Error {
  constructor(
    readonly cache: string,
    readonly position: number,
    readonly base: number,
  ) {
    super(
      `the key log of cache "${cache}" starts at position ${base} (the records before it were trimmed: every live replica's snapshot covers them); this replica needs position ${position}`,
    );
  }
}

type StreamEntry = [Buffer, Buffer[]];

export class RedisKeyLog implements KeyLog {
  private known = 0;
  private knownBase = 0;
  /** the snapshot position this replica last published */
  private published = 0;

  private constructor(
    private readonly redis: RedisConnection,
    readonly cache: string,
    readonly dimension: number,
    private readonly member: ReplicaMember | null,
  ) {}

  /**
   * Opens (or starts) a cache's log; a log started with another key dimension is refused.
   * `member`: the replica reading it, which publishes its snapshot positions (workers only append).
   */
  static async open(redis: RedisConnection, cache: string, dimension: number, member: ReplicaMember | null = null): Promise<RedisKeyLog> {
    await redis.set(redisKeys.dimension(cache), String(dimension), 'NX');
    const stored = Number(await redis.get(redisKeys.dimension(cache)));
    if (stored !== dimension) {
      throw new UserError('key_dimension_mismatch', `the key log of cache "${cache}" holds ${stored}-float keys; this model gives ${dimension}`);
    }
    const log = new RedisKeyLog(redis, cache, dimension, member);
    await log.readEnd();
    return log;
  }

  end(): number {
    return this.known;
  }

  /** The log's end as Redis has it now (other processes append too). */
  async readEnd(): Promise<number> {
    const [end, base] = await this.redis.mget(redisKeys.end(this.cache), redisKeys.base(this.cache));
    this.known = Number(end ?? 0);
    this.knownBase = Number(base ?? 0);
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

  /** Records from `position` up to `until` (default: the end); throws LogTrimmedError below the stream's base. */
  async readFrom(
    position: number,
    onBatch: (records: LogRecord[], firstPosition: number) => Promise<void> | void,
    batchSize = 256,
    until = Infinity,
  ): Promise<number> {
    for (;;) {
      const count = Math.min(batchSize, until - position);
      if (count <= 0) break;
      const entries = (await this.redis.xrangeBuffer(redisKeys.log(this.cache), `${position + 1}-0`, '+', 'COUNT', count)) as StreamEntry[];
      const first = entries.length ? Number(entries[0][0].toString().split('-')[0]) - 1 : null;
      if (first !== position) {
        await this.readEnd();
        if (position < this.knownBase) throw new LogTrimmedError(this.cache, position, this.knownBase);
        if (first === null) break;
        throw new Error(`key log of "${this.cache}" jumps from position ${position} to ${first}`);
      }
      await onBatch(
        entries.map((e) => this.decode(e)),
        position,
      );
      position += entries.length;
      this.known = Math.max(this.known, position);
      if (entries.length < count) break;
    }
    return position;
  }

  /**
   * The stream is shared: no replica trims it alone. This one publishes that its snapshot covers
   * `position`; the stream is trimmed below the lowest position every live replica published.
   */
  async compactTo(position: number): Promise<void> {
    this.published = position;
    await this.publish(true);
  }

  /** Say this replica is alive, at the position it last published (or `position`); trims nothing. */
  async heartbeat(position = this.published): Promise<void> {
    this.published = position;
    await this.publish(false);
  }

  private async publish(trim: boolean): Promise<void> {
    const m = this.member;
    if (!m) return;
    const c = this.cache;
    const k = redisKeys;
    const args = [m.id, String(this.published), m.url() ?? '', String(m.keep), String(m.ttlMs), trim ? '1' : '0'];
    const [base, end] = (await this.redis.eval(PUBLISH, 4, k.log(c), k.end(c), k.base(c), k.replicas(c), ...args)) as [number, number];
    this.knownBase = base;
    this.known = Math.max(this.known, end);
  }

  /** The live replicas of this cache, as they last published themselves. */
  async replicas(): Promise<ReplicaEntry[]> {
    return replicasOf(this.redis, this.cache);
  }

  /** the first position the stream still holds (as of the last read) */
  base(): number {
    return this.knownBase;
  }

  /** Redis keeps its own integrity (AOF checksums); entries are whole or absent */
  damage(): LogDamage[] {
    return [];
  }

  /** Every entry of the stream decodes (a decode error throws, naming the entry). */
  async verify(): Promise<LogCheck> {
    await this.readEnd();
    const base = this.knownBase;
    const end = await this.readFrom(base, () => undefined);
    return { base, end, damaged: [] };
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

/**
 * Waits (up to a timeout) until any of several logs has a record at or after a given position, with
 * XREAD BLOCK on connections of its own (a blocking read holds its connection). One Redis: one read
 * over every log. A Redis Cluster refuses a read across slots, and each log is a slot of its own:
 * one read, on its own connection, per log; a read still pending from an earlier wait is awaited
 * again, not queued behind itself.
 */
export class LogWaiter {
  private readonly connections = new Map<string, RedisConnection>();
  private readonly pending = new Map<string, Promise<unknown>>();

  constructor(private readonly redis: RedisConnection) {}

  async wait(logs: { log: RedisKeyLog; position: number }[], timeoutMs: number): Promise<void> {
    if (logs.length === 0) return new Promise((r) => setTimeout(r, timeoutMs));
    const groups = new Map<string, typeof logs>();
    for (const l of logs) {
      const group = this.redis instanceof Cluster ? l.log.cache : '';
      const members = groups.get(group);
      if (members) members.push(l);
      else groups.set(group, [l]);
    }
    // a cache deleted (or dropped) since: its connection goes, once no read of it is pending
    for (const [group, connection] of this.connections) {
      if (!groups.has(group) && !this.pending.has(group)) {
        connection.disconnect();
        this.connections.delete(group);
      }
    }
    await Promise.race([...groups].map(([group, members]) => this.read(group, members, timeoutMs)));
  }

  close(): void {
    for (const c of this.connections.values()) c.disconnect();
    this.connections.clear();
  }

  private read(group: string, logs: { log: RedisKeyLog; position: number }[], timeoutMs: number): Promise<unknown> {
    const pending = this.pending.get(group);
    if (pending) return pending;
    let connection = this.connections.get(group);
    if (!connection) {
      connection = this.redis.duplicate();
      connection.on('error', () => {}); // reconnects by itself
      this.connections.set(group, connection);
    }
    const keys = logs.map((l) => redisKeys.log(l.log.cache));
    const ids = logs.map((l) => `${l.position}-0`);
    const read = connection.xreadBuffer('COUNT', 1, 'BLOCK', timeoutMs, 'STREAMS', ...keys, ...ids).finally(() => this.pending.delete(group));
    read.catch(() => {}); // its waiter may have moved on (another log answered first): never an unhandled rejection
    this.pending.set(group, read);
    return read;
  }
}
