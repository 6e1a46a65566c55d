// Snapshot of a cache's materialised view in <cacheDir>/snapshot/: the index's
// own files, the items (id, label, source, deleted per position) and manifest.json, which
// says which key log position the snapshot covers. Replaying the log from
// manifest.logPosition on top of it rebuilds the cache.
//
// Every file is verified before it is used: the manifest records each file's size and sha256 and
// its own checksum, and readSnapshot checks them all (streaming) before any byte reaches a parser
// or a native library. What does not check out is reported, not loaded: engine/recovery.ts decides.
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
import { checkFile, checksumFile, sha256Text, type FileChecksum } from '../util/checksum.js';
import { fsyncPath, writeFully } from '../util/files.js';

export interface SnapshotManifest {
  /** 2: files and checksum recorded; 1 (before checksums) is read, unverified */
  formatVersion: 1 | 2;
  createdAt: string;
  /** the key log records < logPosition are in this snapshot */
  logPosition: number;
  size: number;
  dimension: number;
  indexKind: IndexKind;
  indexParams: Record<string, number | string>;
  /** each file of the snapshot (but the manifest): its size and sha256 */
  files?: Record<string, FileChecksum>;
  /** sha256 of this manifest's JSON without this field */
  checksum?: string;
  [k: string]: unknown;
}

/** A snapshot that cannot be used at all: its manifest or its items do not check out. */
export class SnapshotDamagedError extends Error {
  constructor(
    readonly dir: string,
    readonly problems: Record<string, string>,
  ) {
    super(`snapshot ${dir} is damaged: ${describeProblems(problems)}`);
  }
}

/** Files that do not check out, for a message: "keys.f32: 12 bytes, 4096 recorded; …". */
export const describeProblems = (problems: Record<string, string>): string =>
  Object.entries(problems)
    .map(([file, problem]) => `${file}: ${problem}`)
    .join('; ');

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
  /** files that failed verification, with what is wrong: not to be loaded */
  damaged: Record<string, string>;
  /** false for a snapshot written before checksums (format 1) */
  verified: boolean;
}

const SNAPSHOT = 'snapshot';
const OLD = 'snapshot.old';
const TMP_PREFIX = 'snapshot.tmp-';
const DAMAGED_PREFIX = 'snapshot.damaged-';
const MANIFEST = 'manifest.json';
const ITEMS = 'items.jsonl'; // one {"id","label"[,"source"][,"deleted":true]} per line, in position order

/** A snapshot written before a new one: parts that only grow link what it already holds. */
export interface PreviousSnapshot {
  dir: string;
  /** its files' checksums, as its manifest recorded them */
  files: Record<string, FileChecksum>;
}

/** A part of a cache's state saved in its snapshot; it may return the checksums of files it linked from `previous`. */
export interface SnapshotPart {
  save(dir: string, previous?: PreviousSnapshot): Promise<void | Record<string, FileChecksum>>;
}

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
  extras: SnapshotPart[] = [],
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
              : null;
  if (mismatch) throw new Error(`snapshot of ${cacheDir}: ${mismatch} for an index of ${n} items`);

  await exclusive(cacheDir, async () => {
    await mkdir(cacheDir, { recursive: true });
    const tmp = join(cacheDir, TMP_PREFIX + randomBytes(6).toString('hex'));
    await mkdir(tmp);
    try {
      await index.save(tmp);
      const current = join(cacheDir, SNAPSHOT);
      const before = await manifestOf(current).catch(() => null);
      const previous = before?.files ? { dir: current, files: before.files } : undefined;
      const linked: Record<string, FileChecksum> = {};
      for (const extra of extras) Object.assign(linked, await extra.save(tmp, previous));
      await writeItems(join(tmp, ITEMS), ids, labels, details);
      // files linked from the previous snapshot keep the checksums it recorded: only new bytes are read
      const files: Record<string, FileChecksum> = {};
      for (const name of (await readdir(tmp)).sort()) files[name] = linked[name] ?? (await checksumFile(join(tmp, name)));
      await writeText(join(tmp, MANIFEST), sealManifest({ ...manifest, formatVersion: 2, files }));
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
    const { manifest, damaged } = await verifySnapshotDir(current);
    if (damaged[ITEMS]) throw new SnapshotDamagedError(current, { [ITEMS]: damaged[ITEMS] });
    let items: Awaited<ReturnType<typeof readItems>>;
    try {
      items = await readItems(join(current, ITEMS));
    } catch (err) {
      throw new SnapshotDamagedError(current, { [ITEMS]: (err as Error).message });
    }
    if (items.ids.length !== manifest.size) {
      throw new SnapshotDamagedError(current, { [ITEMS]: `holds ${items.ids.length} items but the manifest says ${manifest.size}` });
    }
    return { manifest, ...items, dir: current, damaged, verified: manifest.formatVersion === 2 };
  });
}

/**
 * The manifest of a snapshot directory, checked, and every file it lists checked against it.
 * Throws SnapshotDamagedError when the manifest itself cannot be trusted.
 */
export async function verifySnapshotDir(dir: string): Promise<{ manifest: SnapshotManifest; damaged: Record<string, string> }> {
  const manifest = await manifestOf(dir);
  const damaged: Record<string, string> = {};
  for (const [name, want] of Object.entries(manifest.files ?? {})) {
    const problem = await checkFile(join(dir, name), want);
    if (problem) damaged[name] = problem;
  }
  return { manifest, damaged };
}

/** A snapshot directory's manifest, its own checksum checked (not the files'). */
export async function manifestOf(dir: string): Promise<SnapshotManifest> {
  try {
    return openManifest(await readFile(join(dir, MANIFEST), 'utf8'));
  } catch (err) {
    throw new SnapshotDamagedError(dir, { [MANIFEST]: (err as Error).message });
  }
}

/** The manifest's JSON with its checksum: sha256 of the JSON without it. */
function sealManifest(manifest: SnapshotManifest): string {
  const { checksum: _, ...body } = manifest;
  return JSON.stringify({ ...body, checksum: sha256Text(JSON.stringify(body)) }, null, 2) + '\n';
}

function openManifest(text: string): SnapshotManifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error('not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
  const manifest = parsed as SnapshotManifest;
  if (manifest.formatVersion === 2) {
    const { checksum, ...body } = manifest;
    if (typeof checksum !== 'string' || checksum !== sha256Text(JSON.stringify(body))) throw new Error('its checksum does not match its content');
    if (typeof manifest.files !== 'object' || manifest.files === null || !manifest.files[ITEMS]) throw new Error('it lists no files');
  } else if (manifest.formatVersion !== 1) {
    throw new Error(`snapshot format ${String(manifest.formatVersion)} is not supported (expected 1 or 2)`);
  }
  for (const field of ['logPosition', 'size', 'dimension'] as const) {
    if (!Number.isSafeInteger(manifest[field]) || manifest[field] < 0) throw new Error(`${field} is not a count: ${JSON.stringify(manifest[field])}`);
  }
  return manifest;
}

/** Where a cache's current snapshot is (read it only under the engine's lock on the cache). */
export const snapshotDirOf = (cacheDir: string): string => join(cacheDir, SNAPSHOT);

/** What `cachet cache verify` reports of a snapshot: each file, checked against the manifest. */
export interface SnapshotCheck {
  logPosition: number | null;
  verified: boolean;
  files: { name: string; bytes: number | null; problem: string | null }[];
}

/** Check the current snapshot's files (null: the cache has none), without loading anything. */
export async function checkSnapshot(cacheDir: string): Promise<SnapshotCheck | null> {
  return exclusive(cacheDir, async () => {
    const current = join(cacheDir, SNAPSHOT);
    if (!(await isComplete(current))) return null;
    try {
      const { manifest, damaged } = await verifySnapshotDir(current);
      const files = Object.entries(manifest.files ?? {}).map(([name, want]) => ({ name, bytes: want.bytes, problem: damaged[name] ?? null }));
      return { logPosition: manifest.logPosition, verified: manifest.formatVersion === 2, files: [{ name: MANIFEST, bytes: null, problem: null }, ...files] };
    } catch (err) {
      if (!(err instanceof SnapshotDamagedError)) throw err;
      return { logPosition: null, verified: false, files: Object.entries(err.problems).map(([name, problem]) => ({ name, bytes: null, problem })) };
    }
  });
}

/**
 * Move the current snapshot aside (to snapshot.damaged-<time>/) so that it is never loaded again
 * but kept for inspection; returns its new name, or null if there was none.
 */
export async function setAsideSnapshot(cacheDir: string): Promise<string | null> {
  return exclusive(cacheDir, async () => {
    const current = join(cacheDir, SNAPSHOT);
    try {
      await stat(current);
    } catch {
      return null;
    }
    const name = `${DAMAGED_PREFIX}${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await rename(current, join(cacheDir, name));
    await fsyncPath(cacheDir);
    return name;
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
    let lineNumber = 0;
    for await (const line of file.readLines()) {
      lineNumber++;
      if (line === '') continue;
      const item = parseItem(line, `${path}:${lineNumber}`);
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

function parseItem(line: string, where: string): { id: string; label: number; source?: string; deleted?: boolean } {
  let item: { id?: unknown; label?: unknown; source?: unknown; deleted?: unknown };
  try {
    item = JSON.parse(line) as typeof item;
  } catch (err) {
    throw new Error(`${where}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof item?.id !== 'string' || !Number.isInteger(item.label) || (item.label as number) < 0) throw new Error(`${where}: not an item {id, label}`);
  if (item.source !== undefined && typeof item.source !== 'string') throw new Error(`${where}: source is not a string`);
  return item as { id: string; label: number; source?: string; deleted?: boolean };
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
