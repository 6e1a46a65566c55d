// What a process knows of each cache, by name: the caches it holds open (whole, or one shard
// `<cache>#<s>` of a larger one), the caches of several shards it answers by asking their shards,
// the caches that failed to open (and whether their stored data is damaged), and how each opening
// went (readiness). engine.ts decides what happens; this class keeps the books, so that a cache
// enters and leaves every map at once.
import type { CacheDefinition } from '../cache/definition.js';
import { UserError } from '../errors/user-error.js';
import { shardNames } from '../shards/shards.js';
import type { CacheState } from './cache-state.js';
import type { CacheStatus, StartProgress } from './status.js';

export class HeldCaches {
  /** each cache of one shard, and each held shard `<cache>#<s>` of the others */
  readonly open = new Map<string, CacheState>();
  /** caches of several shards (distributed mode), answered by fanning out to their shards */
  readonly sharded = new Map<string, CacheDefinition>();
  /** caches that could not be opened, with the reason */
  readonly failed = new Map<string, string>();
  /** failed caches whose stored data is damaged beyond repair (recovery.ts) */
  private readonly damaged = new Set<string>();
  /** how each cache's opening went, or is going */
  readonly progress = new Map<string, StartProgress>();

  /** Whether a cache of this name exists here: held, sharded or failed. */
  knows(name: string): boolean {
    return this.open.has(name) || this.sharded.has(name) || this.failed.has(name);
  }

  /** The cache held under this name, or the error that says why there is none. */
  get(name: string): CacheState {
    const cache = this.open.get(name);
    if (cache) return cache;
    const sharded = this.sharded.get(name);
    if (sharded) {
      throw new UserError(
        'per_shard',
        `cache "${name}" has ${sharded.shards} shards: this works on one shard at a time; address shard s as "${name}#s" on a replica that holds it`,
      );
    }
    const error = this.failed.get(name);
    if (error !== undefined && this.damaged.has(name)) throw new UserError('cache_damaged', error);
    if (error !== undefined) throw new UserError('cache_unavailable', `cache "${name}" could not be loaded: ${error}`);
    const known = [...this.open.keys()];
    throw new UserError(
      'unknown_cache',
      `no cache named "${name}"; ${known.length ? `known caches: ${known.join(', ')}` : 'no cache exists yet: create one first'}`,
    );
  }

  /**
   * The cache held under this name, or undefined when it failed to open (what works on its stored
   * files, not the loaded cache: verify, delete); any other name throws as get does.
   */
  heldOrFailed(name: string): CacheState | undefined {
    return !this.open.has(name) && this.failed.has(name) ? undefined : this.get(name);
  }

  /** The shards of a cache of several shards that this process holds. */
  shardsOf(d: CacheDefinition): CacheState[] {
    return shardNames(d.name, d.shards).flatMap((name) => this.open.get(name) ?? []);
  }

  /** The cache opened: it is held, and no longer failed. */
  opened(name: string, state: CacheState): void {
    this.open.set(name, state);
    this.failed.delete(name);
    this.damaged.delete(name);
  }

  /** The cache is no longer held (it is being closed): nor is its opening listed. */
  released(name: string): void {
    this.open.delete(name);
    this.progress.delete(name);
  }

  /** The cache could not be opened, for `reason`; `damaged`: its stored data is beyond repair. */
  failedToOpen(name: string, reason: string, damaged: boolean): void {
    this.failed.set(name, reason);
    if (damaged) this.damaged.add(name);
    else this.damaged.delete(name); // an earlier failure's damage is not this one's
  }

  /** Forget a cache of one shard (or one shard of a larger one): held, failed or opening. */
  forget(name: string): void {
    for (const map of [this.open, this.failed, this.damaged, this.progress]) map.delete(name);
  }

  /**
   * Forget a cache of several shards and every shard of it at once, before any shard is closed: no
   * listing shows a shard of a cache that already answers unknown_cache. Returns the shards that
   * were held, for the caller to close.
   */
  forgetSharded(d: CacheDefinition): CacheState[] {
    this.sharded.delete(d.name);
    const names = shardNames(d.name, d.shards);
    const held = names.flatMap((name) => this.open.get(name) ?? []);
    for (const name of names) this.forget(name);
    return held;
  }

  /** The caches that failed to open, as listings show them. */
  failures(): CacheStatus[] {
    return [...this.failed].map(([name, error]) => ({ name, status: this.damaged.has(name) ? 'damaged' : 'failed', error }));
  }
}
