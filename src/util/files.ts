// Whole reads, whole writes and fsync for the files that hold a cache's state:
// FileHandle.read/write may move fewer bytes than asked, so loop until done.
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Writes all of `bytes` at `position`; returns how many that was. */
export async function writeFully(file: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  for (let done = 0; done < bytes.length;) {
    const { bytesWritten } = await file.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
  return bytes.length;
}

/** Fills `bytes` from `position`; a file that ends first is an error naming `what`. */
export async function readFully(file: FileHandle, bytes: Uint8Array, position: number, what: string): Promise<void> {
  for (let done = 0; done < bytes.length;) {
    const { bytesRead } = await file.read(bytes, done, bytes.length - done, position + done);
    if (bytesRead === 0) throw new Error(`${what} ended early (or shrank while being read)`);
    done += bytesRead;
  }
}

/** fsync a file or a directory (a directory's, after a rename into it). */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Reads `total` rows of `rowBytes` from the start of a file into blocks of at most
 * `blockRows` rows, each straight into its own typed array (no intermediate Buffer).
 */
export async function readRowBlocks<T extends Float32Array | Uint16Array>(
  path: string,
  total: number,
  rowBytes: number,
  blockRows: number,
  allocate: (rows: number) => T,
): Promise<{ data: T; rows: number }[]> {
  const blocks: { data: T; rows: number }[] = [];
  const file = await open(path, 'r');
  try {
    for (let first = 0; first < total; first += blockRows) {
      const rows = Math.min(blockRows, total - first);
      const data = allocate(rows);
      await readFully(file, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), first * rowBytes, path);
      blocks.push({ data, rows });
    }
  } finally {
    await file.close();
  }
  return blocks;
}

/** write a temporary file, fsync it, rename it over `path`, fsync the directory */
export async function writeFileAtomically(path: string, write: (file: FileHandle) => Promise<void>): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const file = await open(tmp, 'wx');
  try {
    await write(file);
    await file.sync();
    await file.close();
    await rename(tmp, path);
  } catch (err) {
    await file.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncPath(dirname(path));
}
