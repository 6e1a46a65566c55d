// A cache as one file, for backup and restore (`cachet cache export` / `import`): a tar archive of
//
//   cachet-export.json   format, the cache's definition, and each file's size and sha256
//   snapshot/<file>      a consistent snapshot (its manifest verifies the rest once more)
//   projection/<file>    the cache's search-key projection, where it has one
//
// Reading one is hostile-input handling: only those names, only regular files, a byte budget, and
// every file's sha256 checked as it is written, before anything else looks at it.
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Transform } from 'node:stream';
import { createReadStream } from 'node:fs';
import tar from 'tar-stream';
import { z } from 'zod';
import { UserError } from '../errors/user-error.js';
import { describeZodError } from '../errors/zod.js';
import type { FileChecksum } from '../util/checksum.js';
import { CacheDefinitionSchema } from './definition.js';

export const ARCHIVE_HEADER = 'cachet-export.json';
const ARCHIVE_FORMAT = 'cachet-cache-export';
/** snapshot/ and projection/ hold flat files with plain names */
const FILE_NAME = /^(snapshot|projection)\/[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/;
const MAX_HEADER_BYTES = 1 << 20;

const ChecksumSchema = z.object({ bytes: z.number().int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict();

export const ArchiveHeaderSchema = z
  .object({
    format: z.literal(ARCHIVE_FORMAT),
    version: z.literal(1),
    exportedAt: z.string(),
    definition: CacheDefinitionSchema,
    files: z.record(z.string().regex(FILE_NAME), ChecksumSchema),
  })
  .strict();
export type ArchiveHeader = z.infer<typeof ArchiveHeaderSchema>;

export interface ArchiveFile {
  /** its name in the archive: snapshot/<file> or projection/<file> */
  name: string;
  path: string;
  checksum: FileChecksum;
}

/** The archive of a cache, as a stream (the files must not change until it ends). */
export function packArchive(definition: ArchiveHeader['definition'], files: ArchiveFile[]): Readable {
  const header: ArchiveHeader = {
    format: ARCHIVE_FORMAT,
    version: 1,
    exportedAt: new Date().toISOString(),
    definition,
    files: Object.fromEntries(files.map((f) => [f.name, f.checksum])),
  };
  const pack = tar.pack();
  void (async () => {
    try {
      const headerBytes = Buffer.from(JSON.stringify(header, null, 2) + '\n');
      pack.entry({ name: ARCHIVE_HEADER, size: headerBytes.length, mode: 0o644 }, headerBytes);
      for (const f of files) {
        const entry = pack.entry({ name: f.name, size: f.checksum.bytes, mode: 0o644 });
        for await (const chunk of createReadStream(f.path, { highWaterMark: 1 << 20 })) await writeTo(entry, chunk as Buffer);
        await new Promise<void>((resolve, reject) => entry.end((err?: Error | null) => (err ? reject(err) : resolve())));
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  return Readable.from(pack); // tar-stream's streams are streamx streams: a Node stream for HTTP
}

/** Write with backpressure to a streamx (or Node) writable. */
interface Sink {
  write(chunk: Buffer): boolean;
  once(event: 'drain' | 'close', f: () => void): unknown;
  off(event: 'drain' | 'close', f: () => void): unknown;
}

async function writeTo(target: Sink, chunk: Buffer): Promise<void> {
  if (target.write(chunk)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      target.off('drain', done);
      target.off('close', done);
      resolve();
    };
    target.once('drain', done);
    target.once('close', done); // destroyed: the caller's next write fails or its loop ends
  });
}

/**
 * Unpack an archive into `dir` (which must be new and empty), checking it as it comes: the header
 * first, then only the files it lists, each of its recorded size and sha256, within `maxBytes`.
 * With `dir` null, only check it (`cachet cache export` does, on receipt).
 */
export async function unpackArchive(source: Readable, dir: string | null, maxBytes: number): Promise<ArchiveHeader> {
  const extract = tar.extract();
  let header: ArchiveHeader | null = null;
  const seen = new Set<string>();
  let total = 0;
  const bad = (message: string) => new UserError('bad_archive', `not a Cachet cache export: ${message}`);
  if (dir) await mkdir(dir, { recursive: true });
  const reading = (async () => {
    for await (const entry of extract) {
      const { name, type, size = 0 } = entry.header;
      if (type !== 'file') throw bad(`entry ${JSON.stringify(name)} is a ${type}, not a file`);
      total += size;
      if (total > maxBytes) throw new UserError('archive_too_large', `the archive holds more than ${maxBytes} bytes, this service's import limit`);
      if (!header) {
        if (name !== ARCHIVE_HEADER) throw bad(`its first entry is ${JSON.stringify(name)}, not ${ARCHIVE_HEADER}`);
        if (size > MAX_HEADER_BYTES) throw bad(`${ARCHIVE_HEADER} is ${size} bytes`);
        const chunks: Buffer[] = [];
        for await (const chunk of entry) chunks.push(chunk as Buffer);
        const text = Buffer.concat(chunks).toString('utf8');
        header = parseHeader(text);
        if (dir) await writeFile(path.join(dir, ARCHIVE_HEADER), text, { flag: 'wx' });
        continue;
      }
      const want = header.files[name];
      if (!want) throw bad(`entry ${JSON.stringify(name)} is not listed in ${ARCHIVE_HEADER}`);
      if (seen.has(name)) throw bad(`entry ${JSON.stringify(name)} appears twice`);
      seen.add(name);
      if (size !== want.bytes) throw bad(`${name} is ${size} bytes, ${want.bytes} recorded`);
      const hash = createHash('sha256');
      if (dir) {
        const target = path.join(dir, ...name.split('/'));
        await mkdir(path.dirname(target), { recursive: true });
        const hashing = new Transform({
          transform(chunk: Buffer, _enc, done) {
            hash.update(chunk);
            done(null, chunk);
          },
        });
        await pipeline(Readable.from(entry), hashing, createWriteStream(target, { flags: 'wx' }));
      } else {
        for await (const chunk of entry) hash.update(chunk as Buffer);
      }
      if (hash.digest('hex') !== want.sha256) throw bad(`${name} does not match its recorded sha256 (damaged in transit or on disk)`);
    }
    if (!header) throw bad('it is empty');
    const missing = Object.keys(header.files).filter((f) => !seen.has(f));
    if (missing.length) throw bad(`it ends before ${missing.join(', ')} (truncated?)`);
    return header;
  })().catch((err: NodeJS.ErrnoException) => {
    // the tar parser's own complaints are about the archive; the disk's (errno codes) are ours
    throw err instanceof UserError || err.code?.startsWith('E') ? err : bad(err.message);
  });
  const feeding = (async () => {
    let received = 0;
    for await (const chunk of source) {
      received += (chunk as Buffer).length;
      // Refused: read on and drop the rest (within the budget), so that an HTTP client gets the
      // error rather than a reset connection.
      if (extract.destroyed) {
        if (received > maxBytes) return;
        continue;
      }
      await writeTo(extract, chunk as Buffer);
    }
    (extract as unknown as { end(): void }).end();
  })().catch((err: NodeJS.ErrnoException) => {
    throw err instanceof UserError || err.code?.startsWith('E') ? err : bad(err.message);
  });
  const [result] = await Promise.all([reading, feeding]).catch(async (err) => {
    extract.destroy();
    throw err;
  });
  return result;
}

function parseHeader(text: string): ArchiveHeader {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UserError('bad_archive', `not a Cachet cache export: ${ARCHIVE_HEADER} is not JSON`);
  }
  const parsed = ArchiveHeaderSchema.safeParse(json);
  if (!parsed.success) throw new UserError('bad_archive', `not a Cachet cache export: ${ARCHIVE_HEADER}: ${describeZodError(parsed.error)}`);
  return parsed.data;
}
