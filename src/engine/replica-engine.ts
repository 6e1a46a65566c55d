// The api replica role (distributed mode): holds every cache as a view of its key log, a Redis
// Stream that workers append to. It follows the definitions (told by pub/sub, polled as a fallback) and tails the logs,
// snapshotting now and then, so that a restart replays only what came after the last snapshot.
import type { Redis } from 'ioredis';
import { UserError } from '../errors/user-error.js';
import { RedisKeyLog } from '../keylog/redis-log.js';
import { connectRedis } from '../redis/connection.js';
import { redisKeys } from '../redis/keys.js';
import type { CacheState } from './cache-state.js';
import { RedisDefinitions } from './definitions.js';
import { CacheEngine } from './engine.js';
import { RedisProjectionStore } from './projection-store.js';
import { redisUrlOf, type EngineLogEntry, type EngineOptions } from './types.js';

export class ReplicaEngine extends CacheEngine {
  /** each held cache's log, as a Redis Stream (what tailing needs beyond the KeyLog interface) */
  private readonly logs = new Map<string, RedisKeyLog>();
  private loops: Promise<void>[] = [];
  private subscriber: Redis | null = null;
  private syncing: Promise<void> | null = null;
  private syncAgain = false;

  constructor(
    options: EngineOptions,
    report: (entry: EngineLogEntry) => void,
    private readonly redis: Redis = connectRedis(redisUrlOf(options)),
  ) {
    super(options, new RedisDefinitions(redis), new RedisProjectionStore(redis), report);
  }

  override async open() {
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

  protected async openLog(name: string, _dir: string, dimension: number): Promise<RedisKeyLog> {
    const log = await RedisKeyLog.open(this.redis, name, dimension);
    this.logs.set(name, log);
    return log;
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

  /** Apply what workers append to the key logs; snapshot every `snapshotEvery` records or `snapshotIntervalMs`. */
  private async tailLogs(): Promise<void> {
    const blocking = this.redis.duplicate();
    blocking.on('error', () => {}); // reconnects by itself
    const every = this.options.snapshotEvery ?? 10_000;
    const interval = this.options.snapshotIntervalMs ?? 60_000;
    const lastSnapshot = new Map<string, number>();
    const trouble = this.troubleLog('tailing the key logs');
    try {
      while (!this.closed) {
        try {
          const caches = [...this.caches.values()];
          const logs = caches.map((c) => ({ log: this.logs.get(c.definition.name)!, position: c.appliedPosition }));
          await RedisKeyLog.waitForAny(blocking, logs, 500);
          for (const c of caches) {
            if (this.closed) break;
            await c.catchUp();
            const pending = c.appliedPosition - c.snapshotPosition;
            const since = Date.now() - (lastSnapshot.get(c.definition.name) ?? 0);
            if (pending >= every || (pending > 0 && since >= interval)) {
              await c.lock.read(() => c.snapshot(), { long: true });
              lastSnapshot.set(c.definition.name, Date.now());
            }
          }
          trouble.over();
        } catch (err) {
          if (!this.closed) trouble.failed(err as Error);
          await sleep(500);
        }
      }
    } finally {
      blocking.disconnect();
    }
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

/** How often definitions are read in case a change message was missed; CACHET_DEFINITIONS_POLL_MS (tests turn it off to prove the messages). */
const definitionsPollMs = () => Number(process.env.CACHET_DEFINITIONS_POLL_MS) || 5000;
/** how long a delete request waits for this replica to apply it */
const APPLY_WAIT_MS = 30_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
