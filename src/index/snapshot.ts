// Snapshot of a cache's materialised view in <cacheDir>/snapshot/: the index's
// own files, the items (id, label, source, deleted per position) and manifest.json, which
// says which key log position the snapshot covers. Replaying the log from
// manifest.logPosition on top of it rebuilds the cache.
//
// Atomic swap: everything is written and fsync'd in snapshot.tmp-<random>/,
// manifest.json last; then snapshot → snapshot.old, tmp → snapshot, old removed.
// A crash at any point leaves `snapshot` or `snapshot.old` complete, and
// readSnapshot repairs the directory. A cache directory belongs to one process;
// within it, writes and reads of one directory are serialised here.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { IndexKind, VectorIndex } from './types.js';
import { fsyncPath, writeFully } from '../util/files.js';

export interface SnapshotManifest {
  formatVersion: 1;
  createdAt: string;
  /** the key log records < logPosition are in this snapshot */
  logPosition: number;
  size: number;
  dimension: number;
  indexKind: IndexKind;
  indexParams: Record<string, number | string>;
  [k: string]: unknown;
}

export interface Snapshot {
  manifest: SnapshotManifest;
  ids: string[];
  labels: Uint32Array;
  /** by position: the item's image source, where one was recorded */
  sources: (string | undefined)[];
  /** positions of deleted items */
  deleted: number[];
  /** the directory to load the index from (factory.loadIndex) */
  dir: string;
}

const SNAPSHOT = 'snapshot';
const OLD = 'snapshot.old';
const TMP_PREFIX = 'snapshot.tmp-';
const MANIFEST = 'manifest.json';
const ITEMS = 'items.jsonl'; // one {"id","label"[,"source"][,"deleted":true]} per line, in position order

/** What a snapshot keeps per position beside id and label. */
export interface ItemDetails {
  sources?: (string | undefined)[];
  deleted?: ReadonlySet<number>;
}

export async function writeSnapshot(
  cacheDir: string,
  manifest: SnapshotManifest,
  ids: string[],
  labels: Uint16Array | Uint32Array | number[],
  index: VectorIndex,
  /** more parts of the cache's state to save in the same snapshot (a projection, full keys) */
  extras: { save(dir: string): Promise<void> }[] = [],
  details: ItemDetails = {},
): Promise<void> {
  const n = index.size;
  const mismatch =
    ids.length !== n
      ? `${ids.length} ids`
      : labels.length !== n
        ? `${labels.length} labels`
        : manifest.size !== n
          ? `manifest.size ${manifest.size}`
          : manifest.dimension !== index.dimension
            ? `manifest.dimension ${manifest.dimension} (index: ${index.dimension})`
            : manifest.indexKind !== index.kind
              ? `manifest.indexKind ${manifest.indexKind} (index: ${index.kind})`
              : manifest.formatVersion !== 1
                ? `formatVersion ${String(manifest.formatVersion)}`
                : null;
  if (mismatch) throw new Error(`snapshot of ${cacheDir}: ${mismatch} for an index of ${n} items`);

  await exclusive(cacheDir, async () => {
    await mkdir(cacheDir, { recursive: true });
    const tmp = join(cacheDir, TMP_PREFIX + randomBytes(6).toString('hex'));
    await mkdir(tmp);
    try {
      await index.save(tmp);
      for (const extra of extras) await extra.save(tmp);
      await writeItems(join(tmp, ITEMS), ids, labels, details);
      await writeText(join(tmp, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
      for (const name of await readdir(tmp)) await fsyncPath(join(tmp, name));
      await fsyncPath(tmp);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    const current = join(cacheDir, SNAPSHOT);
    const old = join(cacheDir, OLD);
    if (await isComplete(current)) {
      await rm(old, { recursive: true, force: true });
      await rename(current, old);
    } else {
      await rm(current, { recursive: true, force: true }); // never a complete snapshot: nothing to keep
    }
    await rename(tmp, current);
    await fsyncPath(cacheDir);
    await rm(old, { recursive: true, force: true });
  });
}

/** The newest complete snapshot, or null if the cache has none. */
export async function readSnapshot(cacheDir: string): Promise<Snapshot | null> {
  return exclusive(cacheDir, async () => {
    let names: string[];
    try {
      names = await readdir(cacheDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    // A tmp dir here is left over from a crash: no write is in flight (we hold the lock).
    for (const name of names) {
      if (name.startsWith(TMP_PREFIX)) await rm(join(cacheDir, name), { recursive: true, force: true });
    }
    const current = join(cacheDir, SNAPSHOT);
    const old = join(cacheDir, OLD);
    if (await isComplete(current)) {
      await rm(old, { recursive: true, force: true }); // crash after the swap, before the cleanup
    } else if (await isComplete(old)) {
      // Crash between the two renames: the previous snapshot is the newest complete one.
      await rm(current, { recursive: true, force: true });
      await rename(old, current);
      await fsyncPath(cacheDir);
    } else {
      return null;
    }
    const manifest = JSON.parse(await readFile(join(current, MANIFEST), 'utf8')) as SnapshotManifest;
    if (manifest.formatVersion !== 1) {
      throw new Error(`${current}: snapshot format ${String(manifest.formatVersion)} is not supported (expected 1)`);
    }
    const { ids, labels, sources, deleted } = await readItems(join(current, ITEMS));
    if (ids.length !== manifest.size) {
      throw new Error(`${current}: ${ITEMS} holds ${ids.length} items but the manifest says ${manifest.size}`);
    }
    return { manifest, ids, labels, sources, deleted, dir: current };
  });
}

// ---- items ----

async function writeItems(path: string, ids: string[], labels: ArrayLike<number>, { sources, deleted }: ItemDetails): Promise<void> {
  const file = await open(path, 'w');
  try {
    const lines: string[] = [];
    let position = 0;
    for (let i = 0; i < ids.length; i++) {
      lines.push(JSON.stringify({ id: ids[i], label: labels[i], source: sources?.[i], deleted: deleted?.has(i) || undefined }));
      if (lines.length === 4096 || i === ids.length - 1) {
        position += await writeFully(file, Buffer.from(lines.join('\n') + '\n', 'utf8'), position);
        lines.length = 0;
      }
    }
  } finally {
    await file.close();
  }
}

async function readItems(path: string): Promise<Pick<Snapshot, 'ids' | 'labels' | 'sources' | 'deleted'>> {
  const ids: string[] = [];
  const labelList: number[] = [];
  const sources: (string | undefined)[] = [];
  const deleted: number[] = [];
  const file = await open(path, 'r');
  try {
    for await (const line of file.readLines()) {
      if (line === '') continue;
      const item = JSON.parse(line) as { id: string; label: number; source?: string; deleted?: boolean };
      if (item.deleted) deleted.push(ids.length);
      ids.push(item.id);
      labelList.push(item.label);
      sources.push(item.source);
    }
  } finally {
    await file.close().catch(() => undefined); // readLines may have closed it already
  }
  return { ids, labels: Uint32Array.from(labelList), sources, deleted };
}

// ---- files ----

async function writeText(path: string, text: string): Promise<void> {
  const file = await open(path, 'w');
  try {
    await writeFully(file, Buffer.from(text, 'utf8'), 0);
  } finally {
    await file.close();
  }
}

async function isComplete(dir: string): Promise<boolean> {
  try {
    return (await stat(join(dir, MANIFEST))).isFile();
  } catch {
    return false;
  }
}

// ---- one operation at a time per cache directory (in this process) ----

const locks = new Map<string, Promise<unknown>>();

async function exclusive<T>(cacheDir: string, op: () => Promise<T>): Promise<T> {
  const key = resolve(cacheDir);
  const run = (locks.get(key) ?? Promise.resolve()).then(op);
  const settled = run.catch(() => undefined);
  locks.set(key, settled);
  void settled.then(() => {
    if (locks.get(key) === settled) locks.delete(key);
  });
  return run;
}
