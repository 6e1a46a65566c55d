// The api replica role (distributed mode): holds every cache as a view of its key log, a Redis
// Stream that workers append to. It follows the definitions (told by pub/sub, polled as a
// fallback) and tails the logs. It snapshots at every `snapshotEvery` log positions exactly, so
// that every replica's snapshots cover the same positions and replicas at one position predict
// alike however they got there (cache-state.ts snapshotAtBoundary); it publishes each snapshot's
// position, with a heartbeat, so that the log is trimmed below what every live replica covers; and
// a replica whose snapshot is below the trim point starts from a peer's (peer-snapshot.ts).
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RedisConnection } from '../redis/connection.js';
import type { ArchiveFile } from '../cache/archive.js';
import type { CacheDefinition } from '../cache/definition.js';
import { UserError } from '../errors/user-error.js';
import { manifestOf, snapshotDirOf } from '../index/snapshot.js';
import { LogTrimmedError, LogWaiter, RedisKeyLog, replicasOf, type ReplicaMember } from '../keylog/redis-log.js';
import type { CacheInfo } from '../cache/info.js';
import type { HeldAnswer } from '../shards/peer-client.js';
import { infoOfUnheld } from './sharded.js';
import { REDIS_WAIT_MS, ShardPeers, withTimeout } from './shard-peers.js';
import { shardName, shardNames } from '../shards/shards.js';
import { connectRedis } from '../redis/connection.js';
import { redisKeys } from '../redis/keys.js';
import { linkExport } from './cache-export.js';
import type { CacheState, HoldOptions } from './cache-state.js';
import { RedisDefinitions } from './definitions.js';
import { CacheEngine } from './engine.js';
import { fetchFromPeer } from './peer-snapshot.js';
import { RedisProjectionStore } from './projection-store.js';
import type { StartProgress } from './status.js';
import { redisUrlOf, type EngineLogEntry, type EngineOptions } from './types.js';

export class ReplicaEngine extends CacheEngine {
  /** each held cache's log, as a Redis Stream (what tailing needs beyond the KeyLog interface) */
  private readonly logs = new Map<string, RedisKeyLog>();
  private loops: Promise<void>[] = [];
  private subscriber: RedisConnection | null = null;
  private syncing: Promise<void> | null = null;
  private syncAgain = false;
  private url: string | null = null;
  private readonly member: ReplicaMember;
  private readonly snapshotEvery: number;
  /** the replicas this one asks for the shards it does not hold */
  private readonly peers: ShardPeers;

  constructor(
    options: EngineOptions,
    report: (entry: EngineLogEntry) => void,
    private readonly redis: RedisConnection = connectRedis(redisUrlOf(options)),
  ) {
    super(options, new RedisDefinitions(redis), new RedisProjectionStore(redis), report);
    this.snapshotsOnClose = false; // a restart replays what came after the last boundary
    this.snapshotEvery = options.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY;
    this.member = {
      id: options.replicaId ?? `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
      url: () => this.url,
      keep: options.logKeep ?? DEFAULT_LOG_KEEP,
      ttlMs: options.replicaTtlMs ?? DEFAULT_REPLICA_TTL_MS,
    };
    this.peers = new ShardPeers(redis, () => this.member.id, options.peerKey);
  }

  override async advertise(url: string): Promise<void> {
    this.url = url;
  }

  override async open() {
    if (!this.options.replicaId) this.member.id = await replicaIdOf(this.options.dataDir, this.member.id);
    const caches = await super.open();
    // a definition created, changed or deleted through another replica is followed at once; the
    // poll is the fallback for a message missed while disconnected
    this.subscriber = this.redis.duplicate();
    this.subscriber.on('error', () => {}); // reconnects (and subscribes again) by itself
    this.subscriber.on('message', () => void this.syncNow().catch(() => {})); // the poll reports failures
    await this.subscriber.subscribe(redisKeys.definitionsChanged);
    this.loops.push(
      this.every(definitionsPollMs(), 'following the cache definitions', () => this.syncNow()),
      this.tailLogs(),
    );
    return caches;
  }

  override async close(): Promise<void> {
    await super.close();
    this.subscriber?.disconnect();
    this.redis.disconnect();
  }

  /** syncDefinitions, one at a time: a request while one runs makes one more run after it. */
  private syncNow(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.syncAgain = false;
          await this.syncDefinitions();
        } while (this.syncAgain && !this.closed);
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  protected override async stopBackgroundWork(): Promise<void> {
    await Promise.all(this.loops);
  }

  /**
   * The cache's log; first, when this replica's snapshot is below the log's base (new, or away while
   * the log was trimmed), a peer's snapshot in place of its own.
   */
  protected async openLog(name: string, dir: string, dimension: number, progress: StartProgress): Promise<RedisKeyLog> {
    const log = await RedisKeyLog.open(this.redis, name, dimension, this.member);
    const local = await manifestOf(snapshotDirOf(dir)).then(
      (m) => m.logPosition,
      () => 0, // none, or unreadable: what openSnapshot would replay from
    );
    await log.heartbeat(local); // no trimming below what this replica needs while it starts
    if (local < log.base()) {
      Object.assign(progress, { phase: 'fetching a peer snapshot', done: 0, total: null });
      const got = await fetchFromPeer(name, dir, log, {
        self: this.member.id,
        key: this.options.peerKey,
        staging: () => this.importStaging(),
        onBytes: (received) => (progress.done = received),
      }).catch((err: Error) => {
        throw new Error(`cache "${name}": ${err.message}`);
      });
      progress.from = got.peer;
      this.report({
        level: 'info',
        msg: `cache "${name}": started from ${got.peer}'s snapshot at log position ${got.position} (the log starts at ${log.base()})`,
      });
      await log.heartbeat(got.position);
    }
    this.logs.set(name, log);
    return log;
  }

  protected override holdOptions(progress: StartProgress): HoldOptions {
    return { ...super.holdOptions(progress), alignedSnapshots: this.snapshotEvery };
  }

  /** Snapshots are taken at boundaries only: a request for one is answered with the cache as it is. */
  override async snapshot(name: string) {
    return this.held.get(name).info();
  }

  /**
   * `stored`: the snapshot last written, for a peer (it must cover a boundary). Otherwise the cache as
   * it is now, written into the export (this replica's own snapshots stay at their boundaries).
   */
  override async prepareExport(name: string, opts: { stored?: boolean } = {}): Promise<{ dir: string; definition: CacheDefinition; files: ArchiveFile[] }> {
    const cache = this.held.get(name);
    if (opts.stored && cache.snapshotPosition === 0) {
      throw new UserError('no_snapshot', `cache "${name}" has no snapshot on this replica yet (replicas snapshot every ${this.snapshotEvery} log positions)`);
    }
    return cache.lock.read(() => cache.withStoredSnapshot(() => linkExport(cache, !opts.stored)), { long: true });
  }

  /**
   * Each shard's answer: here when this replica holds the shard, else from the replicas that
   * registered it (freshest first; one that fails is passed over for the next, and tried last for a
   * while). None answers: shard_unavailable, naming the shards, unless `partial`.
   */
  protected override async askShards(d: CacheDefinition, keys: Float32Array, n: number, theta: number, wanted: number, partial: boolean) {
    const numClasses = (await this.models.extractorFor(d)).numClasses;
    const query = { keys, n, theta, wanted };
    const tried: string[] = [];
    const got = await Promise.all(
      shardNames(d.name, d.shards).map(async (unit): Promise<HeldAnswer | null> => {
        const held = this.held.open.get(unit);
        if (held) return { size: held.size, answers: await held.answer(keys, n, theta, wanted) };
        return this.peers.answer(unit, query, numClasses, tried);
      }),
    );
    const missing = got.flatMap((g, s) => (g ? [] : [s]));
    if (missing.length && !partial) {
      throw new UserError(
        'shard_unavailable',
        `cache "${d.name}": no healthy replica serves shard${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (${tried.join('; ')}); send "partial": true to be answered by the other shards`,
      );
    }
    const answers = Array.from({ length: n }, (_, q) => got.flatMap((g) => (g ? [g.answers[q]] : [])));
    return { answers, sizes: got.map((g) => g?.size ?? 0), missing };
  }

  /** A shard held here: deleted as any held cache; else logged in its key log for its replicas to apply. */
  protected override async deleteFromShard(d: CacheDefinition, shard: number, ids: string[]): Promise<string[]> {
    const unit = shardName(d.name, shard, d.shards);
    const held = this.held.open.get(unit);
    if (held) return this.deleteLogged(held, ids);
    const log = await RedisKeyLog.open(this.redis, unit, (await this.models.extractorFor(d)).keyDimension);
    return (await log.appendDeletes(ids)).deleted;
  }

  /** Sizes from each shard's id set in Redis (what its log holds), replicas from their registrations. */
  protected override async shardedInfo(d: CacheDefinition): Promise<CacheInfo> {
    const read = Promise.all(
      shardNames(d.name, d.shards).map(async (unit, shard) => ({
        shard,
        size: await this.redis.scard(redisKeys.ids(unit)),
        heldHere: this.held.open.has(unit),
        replicas: (await replicasOf(this.redis, unit)).map((r) => ({ id: r.id, url: r.url, lastSeen: new Date(r.at).toISOString() })),
      })),
    );
    // the sizes are Redis's: while it does not answer, say so rather than hang (readiness lists caches too)
    const shards = await withTimeout(read, REDIS_WAIT_MS).catch((err: Error) => {
      throw new UserError('shard_unavailable', `cache "${d.name}": its shards' sizes and replicas could not be read from Redis (${err.message})`);
    });
    const held = this.held.shardsOf(d);
    const extractor = await this.models.extractorFor(d);
    const base: CacheInfo = held.length ? held[0].info() : infoOfUnheld(d, extractor);
    return {
      ...base,
      name: d.name,
      size: shards.reduce((sum, s) => sum + s.size, 0),
      logPosition: held.reduce((sum, c) => sum + c.log.end(), 0),
      snapshotPosition: held.reduce((sum, c) => sum + c.snapshotPosition, 0),
      damage: held.flatMap((c) => c.damage),
      shards,
    };
  }

  /** Logged for every replica; answers once this replica's own index has applied it. */
  protected async deleteLogged(cache: CacheState, ids: string[]): Promise<string[]> {
    const logged = await this.logs.get(cache.definition.name)!.appendDeletes(ids);
    await this.waitForApplied(cache, logged.end);
    return logged.deleted;
  }

  /** Until this replica's index has applied the log up to `position` (what it just logged). */
  private async waitForApplied(cache: CacheState, position: number): Promise<void> {
    const deadline = Date.now() + APPLY_WAIT_MS;
    while (cache.appliedPosition < position) {
      if (Date.now() > deadline) {
        // the deletion is durable in the log: every replica applies it when it gets there
        throw new UserError(
          'replica_behind',
          `the deletion is in cache "${cache.definition.name}"'s key log (position ${position}) and every replica will apply it, but this replica is still ${position - cache.appliedPosition} records behind (GET /readyz shows its lag); do not resend it`,
        );
      }
      await sleep(10);
    }
  }

  /** Apply what workers append to the key logs (snapshotting at each boundary); say this replica is alive. */
  private async tailLogs(): Promise<void> {
    const waiter = new LogWaiter(this.redis);
    const trouble = this.troubleLog('tailing the key logs');
    let lastBeat = 0;
    try {
      while (!this.closed) {
        try {
          const caches = [...this.held.open.values()];
          const logs = caches.map((c) => ({ log: this.logs.get(c.definition.name)!, position: c.appliedPosition }));
          await waiter.wait(logs, 500);
          const beat = Date.now() - lastBeat >= HEARTBEAT_MS;
          for (const c of caches) {
            if (this.closed) break;
            await c.catchUp().catch((err: Error) => (err instanceof LogTrimmedError ? this.startAgain(c, err) : Promise.reject(err)));
            if (beat) await this.logs.get(c.definition.name)?.heartbeat(c.snapshotPosition);
          }
          if (beat) lastBeat = Date.now();
          trouble.over();
        } catch (err) {
          if (!this.closed) trouble.failed(err as Error);
          await sleep(500);
        }
      }
    } finally {
      waiter.close();
    }
  }

  /**
   * The log was trimmed past this replica's position (it was silent for longer than the replicas'
   * ttl, e.g. through a long Redis outage): it opens the cache again, from a peer's snapshot.
   */
  private async startAgain(cache: CacheState, err: LogTrimmedError): Promise<void> {
    this.report({ level: 'warn', msg: `${err.message}: opening it again from a peer's snapshot` });
    const name = cache.definition.name;
    await this.drop(cache);
    this.logs.delete(name);
    // meanwhile its requests get cache_unavailable (not unknown_cache), saying why
    this.held.failedToOpen(name, "the key log was trimmed past this replica's position: it is being opened again from a peer's snapshot", false);
    await this.openCache(cache.definition);
  }

  private async every(ms: number, what: string, task: () => Promise<void>): Promise<void> {
    const trouble = this.troubleLog(what);
    while (!this.closed) {
      await sleep(ms);
      await task().then(
        () => trouble.over(),
        (err: Error) => trouble.failed(err),
      );
    }
  }

  /** A background loop's failures, logged when they start or change and when they are over, not at every retry. */
  private troubleLog(what: string) {
    let last: string | null = null;
    return {
      failed: (err: Error) => {
        if (err.message !== last) this.report({ level: 'warn', msg: `${what}: ${err.message}; retrying` });
        last = err.message;
      },
      over: () => {
        if (last !== null) this.report({ level: 'info', msg: `${what}: working again` });
        last = null;
      },
    };
  }
}

/** The stored id of the replica holding this data directory (made on its first start): a restart is the same replica. */
async function replicaIdOf(dataDir: string, fresh: string): Promise<string> {
  const file = path.join(dataDir, '.replica-id');
  const stored = await fs.readFile(file, 'utf8').then(
    (t) => t.trim(),
    () => '',
  );
  if (/^[\w.-]{1,200}$/.test(stored)) return stored;
  await fs.mkdir(dataDir, { recursive: true });
  await fs.writeFile(file, fresh + '\n');
  return fresh;
}

/** Replicas snapshot at every this many log positions (CACHET_SNAPSHOT_EVERY). */
export const DEFAULT_SNAPSHOT_EVERY = 10_000;
/** records the log keeps below its end whatever the snapshots cover (CACHET_LOG_KEEP) */
export const DEFAULT_LOG_KEEP = 1_000;
/** a replica silent for this long no longer holds the log's trimming back (CACHET_REPLICA_TTL_MS) */
export const DEFAULT_REPLICA_TTL_MS = 10 * 60_000;
const HEARTBEAT_MS = 10_000;

/** How often definitions are read in case a change message was missed; CACHET_DEFINITIONS_POLL_MS (tests turn it off to prove the messages). */
const definitionsPollMs = () => Number(process.env.CACHET_DEFINITIONS_POLL_MS) || 5000;
/** how long a delete request waits for this replica to apply it */
const APPLY_WAIT_MS = 30_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
