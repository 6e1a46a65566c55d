// The one recovery policy for a cache's stored data (README "Damage and recovery"):
//
// - a torn tail of the key log (the last write of a crash) is truncated by the log itself;
// - damage in the middle of the key log: the damaged records are skipped (read as no-ops, so every
//   intact record after them is applied) and reported with the ids that can be read;
// - a damaged snapshot file is rebuilt from an intact source: the hnsw graph from the snapshot's
//   verified copy of its keys, or the whole cache from the key log when it still holds every record;
// - only when no intact copy exists is the cache damaged: it does not open, and its requests get
//   503 cache_damaged saying what was lost; every other cache keeps serving.
//
// Every finding is kept in <cache>/damage.json (so it outlives the log's next compaction), logged
// at error level, and shown in GET /v1/caches/:name (`damage`), /readyz and the metrics.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import type { CacheDefinition } from '../cache/definition.js';
import { DamageSchema, type Damage } from '../cache/info.js';
import { UserError } from '../errors/user-error.js';
import { loadIndex, rebuildHnswFromKeys } from '../index/factory.js';
import { FullKeyStore } from '../index/full-keys.js';
import { HNSW_FILE } from '../index/hnsw.js';
import { Projection } from '../index/projection.js';
import { checkSnapshot, describeProblems, manifestOf, readSnapshot, setAsideSnapshot, SnapshotDamagedError, type Snapshot } from '../index/snapshot.js';
import type { IndexOptions } from '../index/factory.js';
import { checkFile } from '../util/checksum.js';
import type { CacheVerification } from './status.js';
import type { VectorIndex } from '../index/types.js';
import type { KeyLog } from '../keylog/types.js';
import type { Extractor } from '../model/types.js';
import { checkSnapshotMatches } from './cache-snapshot.js';
import { SearchIndex } from './search-index.js';

export type Report = (level: 'warn' | 'error', msg: string) => void;

const DAMAGE_FILE = 'damage.json';

/** A cache whose data is damaged beyond repair: the engine keeps it apart and answers 503. */
export class CacheDamagedError extends UserError {
  constructor(cache: string, message: string) {
    super('cache_damaged', `cache "${cache}": ${message}`);
  }
}

/**
 * The cache's snapshot, verified, with its search index loaded or rebuilt; null when the cache is
 * to be built by replaying its whole key log (no snapshot, or one that could not be used).
 */
export async function openSnapshot(
  dir: string,
  definition: CacheDefinition,
  extractor: Extractor,
  log: KeyLog,
  report: Report,
): Promise<{ snapshot: Snapshot; search: SearchIndex; repaired: boolean } | null> {
  const name = definition.name;
  let snapshot: Snapshot | null;
  try {
    snapshot = await readSnapshot(dir);
  } catch (err) {
    if (!(err instanceof SnapshotDamagedError)) throw err;
    return replayInstead(dir, name, log, describeProblems(err.problems), report);
  }
  if (!snapshot) {
    if (log.base() === 0) return null; // a new cache, or one whose log holds everything
    // The log was compacted to a snapshot that is gone: the records it covered exist nowhere.
    throw new CacheDamagedError(
      name,
      `its snapshot is missing (no complete snapshot/manifest.json) and its key log no longer holds the ${log.base()} records it covered, so no intact copy exists. ` +
        `Restore the cache from an export (cachet cache import), or delete it and index its images again; other caches are not affected`,
    );
  }
  checkSnapshotMatches(snapshot.manifest, definition, extractor);
  if (!snapshot.verified) {
    report('warn', `cache "${name}": its snapshot was written before snapshots had checksums: loaded unverified; the next snapshot is verified`);
  }
  const m = snapshot.manifest;
  const damaged = Object.keys(snapshot.damaged);
  let index: VectorIndex | null = null;
  if (damaged.length === 0) {
    index = await loadIndex(snapshot.dir, m.indexKind, m.dimension, definition.index);
  } else if (m.indexKind === 'hnsw' && damaged.length === 1 && damaged[0] === HNSW_FILE) {
    index = await rebuildHnswFromKeys(snapshot.dir, m.dimension, definition.index);
    if (index) {
      await recordDamage(
        dir,
        name,
        {
          what: `snapshot ${HNSW_FILE}: ${snapshot.damaged[HNSW_FILE]}`,
          outcome: "repaired: the hnsw graph was rebuilt from the snapshot's verified copy of its keys",
          lostRecords: 0,
          lostIds: [],
        },
        report,
        'warn',
      );
    }
  }
  if (!index) return replayInstead(dir, name, log, describeProblems(snapshot.damaged), report);
  const search = new SearchIndex(index, await Projection.load(snapshot.dir), await FullKeyStore.load(snapshot.dir));
  return { snapshot, search, repaired: damaged.length > 0 };
}

/** The damage the key log found when it was opened: recorded and reported, never silent. */
export async function recordLogDamage(dir: string, name: string, log: KeyLog, report: Report): Promise<void> {
  const found = log.damage();
  if (found.length === 0) return;
  const ids = found.flatMap((d) => (d.id === undefined ? [] : [d.id]));
  await recordDamage(
    dir,
    name,
    {
      what: `key log: ${found.length} damaged record(s) at position(s) ${found.map((d) => d.position).join(', ')} (${found.reduce((s, d) => s + d.bytes, 0)} bytes)`,
      outcome: `lost: those records were skipped and every intact record after them applied; index their images again${ids.length < found.length ? ` (${found.length - ids.length} id(s) could not be read)` : ''}`,
      lostRecords: found.length,
      lostIds: ids,
    },
    report,
    'error',
  );
}

/** What was found damaged in this cache so far, oldest first. */
export async function damageOf(dir: string): Promise<Damage[]> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, DAMAGE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const parsed = z.array(DamageSchema).safeParse(safeJson(text));
  // the record of damage is itself damaged: say so rather than lose it silently
  return parsed.success
    ? parsed.data
    : [
        {
          detectedAt: new Date().toISOString(),
          what: `${DAMAGE_FILE} does not read`,
          outcome: 'earlier damage records are unreadable',
          lostRecords: 0,
          lostIds: [],
        },
      ];
}

/** Forget the damage records (after the user has indexed the lost images again). */
export async function clearDamage(dir: string): Promise<void> {
  await fs.rm(path.join(dir, DAMAGE_FILE), { force: true });
}

async function recordDamage(dir: string, name: string, damage: Omit<Damage, 'detectedAt'>, report: Report, level: 'warn' | 'error'): Promise<void> {
  const entry: Damage = { detectedAt: new Date().toISOString(), ...damage };
  report(
    level,
    `cache "${name}": damaged data: ${entry.what}; ${entry.outcome}${entry.lostIds.length ? `; lost ids: ${entry.lostIds.slice(0, 20).join(', ')}${entry.lostIds.length > 20 ? ', …' : ''}` : ''}`,
  );
  const all = [...(await damageOf(dir)), entry];
  await fs.mkdir(dir, { recursive: true });
  await writeFileAtomic(path.join(dir, DAMAGE_FILE), JSON.stringify(all, null, 2) + '\n');
}

/**
 * The hnsw graph of a snapshot this process just wrote (`dir`), read only once its bytes match the
 * checksum its manifest recorded; else what is wrong with it, for the caller to report.
 */
export async function readBackGraph(dir: string, dimension: number, options: IndexOptions): Promise<VectorIndex | string> {
  const problem = await manifestOf(dir).then(
    (m) => (m.files?.[HNSW_FILE] ? checkFile(path.join(dir, HNSW_FILE), m.files[HNSW_FILE]) : 'no checksum recorded'),
    (err: Error) => `its manifest: ${err.message}`,
  );
  return problem === null ? loadIndex(dir, 'hnsw', dimension, options) : `${HNSW_FILE}, read back after writing: ${problem}`;
}

/** A snapshot that cannot be used: rebuild from the key log if it holds every record, else the cache is damaged. */
async function replayInstead(dir: string, name: string, log: KeyLog, what: string, report: Report): Promise<null> {
  if (log.base() === 0) {
    const aside = await setAsideSnapshot(dir);
    await recordDamage(
      dir,
      name,
      {
        what: `snapshot: ${what}`,
        outcome: `repaired: rebuilt from the key log, which holds every record (the damaged snapshot is kept in ${aside ?? 'nothing'})`,
        lostRecords: 0,
        lostIds: [],
      },
      report,
      'warn',
    );
    return null;
  }
  throw new CacheDamagedError(
    name,
    `its snapshot is damaged (${what}) and its key log no longer holds the ${log.base()} records the snapshot covered, so no intact copy exists. ` +
      `Restore the cache from an export (cachet cache import), or delete it and index its images again; other caches are not affected`,
  );
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * Every stored file of a cache checked against its checksums and its whole key log read again:
 * of a loaded cache, or of one that failed to load (its files, and why it failed).
 */
export async function verifyStored(name: string, dir: string, cache: { log: KeyLog; damage: Damage[] } | { failure: string }): Promise<CacheVerification> {
  const loaded = 'log' in cache ? cache : null;
  const snapshot = await checkSnapshot(dir);
  const log = loaded ? await loaded.log.verify() : null;
  const damage = loaded ? loaded.damage : await damageOf(dir);
  const problems = [
    ...(snapshot?.files ?? []).flatMap((f) => (f.problem ? [`snapshot ${f.name}: ${f.problem}`] : [])),
    ...(log?.damaged ?? []).map((d) => `key log position ${d.position}${d.id ? ` (${d.id})` : ''} does not check out`),
    ...('failure' in cache ? [`the cache is not loaded: ${cache.failure}`] : []),
  ];
  return { cache: name, checkedAt: new Date().toISOString(), ok: problems.length === 0, problems, snapshot, log, damage };
}
