// Export and import of a cache (cachet cache export / import; the archive format is
// cache/archive.ts). An export is a hard-linked copy of the current snapshot taken under the
// cache's lock: instant, and untouched by later snapshots while it is streamed. An import stages
// the archive, verifies every file, and only then makes it a cache, with an empty key log that
// starts where the snapshot ends.
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ArchiveHeaderSchema, ARCHIVE_HEADER, type ArchiveFile, type ArchiveHeader } from '../cache/archive.js';
import { CACHE_NAME, CacheDefinitionSchema, type CacheDefinition } from '../cache/definition.js';
import { UserError } from '../errors/user-error.js';
import { describeZodError } from '../errors/zod.js';
import { describeProblems, manifestOf, snapshotDirOf, verifySnapshotDir } from '../index/snapshot.js';
import { checksumFile } from '../util/checksum.js';
import type { CacheState } from './cache-state.js';

const EXPORT_PREFIX = '.export-';
const PROJECTION_DIR = 'projection';

/**
 * A hard-linked copy of the cache's snapshot and projection, with each file's checksum. Call it
 * in CacheState.withSnapshot, so that no later snapshot replaces the files while they are linked.
 * `fresh`: a snapshot of the cache as it is now, written into the export itself rather than as
 * the cache's own (a replica keeps its own snapshots at their boundaries); call it under the
 * cache's read lock.
 */
export async function linkExport(cache: CacheState, fresh = false): Promise<{ dir: string; definition: CacheDefinition; files: ArchiveFile[] }> {
  const dir = path.join(cache.dir, EXPORT_PREFIX + randomBytes(6).toString('hex'));
  const files: ArchiveFile[] = [];
  try {
    if (fresh) await cache.writeSnapshotInto(dir);
    const snapshot = snapshotDirOf(fresh ? dir : cache.dir);
    // the files' checksums as the snapshot recorded them: whoever reads the archive verifies them
    const manifest = await manifestOf(snapshot);
    for (const [part, from, recorded] of [
      ['snapshot', snapshot, manifest.files ?? {}],
      [PROJECTION_DIR, path.join(cache.dir, PROJECTION_DIR), {}],
    ] as const) {
      const names = await fs.readdir(from).catch(() => [] as string[]);
      if (names.length === 0) continue;
      await fs.mkdir(path.join(dir, part), { recursive: true });
      for (const name of names.sort()) {
        const linked = path.join(dir, part, name);
        if (from !== path.dirname(linked)) await fs.link(path.join(from, name), linked);
        const known = (recorded as Record<string, ArchiveFile['checksum']>)[name];
        files.push({ name: `${part}/${name}`, path: linked, checksum: known ?? (await checksumFile(linked)) });
      }
    }
    return { dir, definition: cache.definition, files };
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Exports left behind by a crash mid-download. */
export async function removeStaleExports(cacheDir: string): Promise<void> {
  for (const name of await fs.readdir(cacheDir).catch(() => [] as string[])) {
    if (name.startsWith(EXPORT_PREFIX)) await fs.rm(path.join(cacheDir, name), { recursive: true, force: true });
  }
}

/** The definition an unpacked archive restores, under the name and model path given (or its own). */
export async function importedDefinition(
  staging: string,
  overrides: { name?: string; model?: string },
): Promise<{ definition: CacheDefinition; header: ArchiveHeader }> {
  const header = ArchiveHeaderSchema.parse(JSON.parse(await fs.readFile(path.join(staging, ARCHIVE_HEADER), 'utf8')));
  const parsed = CacheDefinitionSchema.safeParse({
    ...header.definition,
    ...(overrides.name && { name: overrides.name }),
    ...(overrides.model && { model: overrides.model }),
    shards: 1, // an archive holds one cache's items (one shard's, when a shard was exported): it is imported whole
  });
  if (!parsed.success) throw new UserError('invalid_cache_definition', describeZodError(parsed.error));
  if (!CACHE_NAME.test(parsed.data.name)) {
    throw new UserError(
      'invalid_cache_definition',
      `the archive is shard "${parsed.data.name}" of a sharded cache: import it under a cache name of its own (--name)`,
    );
  }
  return { definition: parsed.data, header };
}

/** Move a verified, unpacked archive into place as the cache directory `target` (which must not exist). */
export async function installImport(staging: string, target: string): Promise<{ logPosition: number }> {
  const { manifest, damaged } = await verifySnapshotDir(path.join(staging, 'snapshot'));
  if (Object.keys(damaged).length) throw new UserError('bad_archive', `the archive's snapshot does not check out: ${describeProblems(damaged)}`);
  await fs.mkdir(target);
  await fs.rename(path.join(staging, 'snapshot'), snapshotDirOf(target));
  await fs.rename(path.join(staging, PROJECTION_DIR), path.join(target, PROJECTION_DIR)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  return { logPosition: manifest.logPosition };
}
