// The one way to read a file a request names (models, specs, manifests, images, item sources):
// opened without blocking (a FIFO or a device must not hold a libuv thread), checked on the
// descriptor (a regular file, under a size cap), its real path checked at open time (a symlink
// swapped in after a request was accepted is judged by what it points to now), then read whole
// under a deadline.
import { constants, promises as fs } from 'node:fs';
import { UserError } from '../errors/user-error.js';

export interface GuardedReadOptions {
  /** what the file is, for messages: "model", "manifest", "image" */
  what: string;
  maxBytes: number;
  /** throws when the real path (what the descriptor opened) is not allowed */
  allow?: (realPath: string) => Promise<void> | void;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export async function readGuarded(file: string, opts: GuardedReadOptions): Promise<Buffer> {
  let handle: fs.FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer
    handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'not found (no such file)'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'a folder, not a file'
            : `cannot be opened (${code})`;
    throw new UserError(codeFor(opts.what), `${opts.what} ${file}: ${why}`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new UserError(codeFor(opts.what), `${opts.what} ${file} is not a regular file (a FIFO, device or socket is never read)`);
    if (stat.size > opts.maxBytes) throw new UserError(codeFor(opts.what), `${opts.what} ${file} is ${stat.size} bytes; the limit is ${opts.maxBytes}`);
    if (opts.allow) await opts.allow(await realPathOf(handle, file));
    const bytes = await handle.readFile({ signal: AbortSignal.timeout(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) }).catch((err: Error) => {
      if (err.name === 'AbortError' || err.name === 'TimeoutError') throw new UserError(codeFor(opts.what), `${opts.what} ${file}: reading it took too long`);
      throw err;
    });
    if (bytes.length > opts.maxBytes) throw new UserError(codeFor(opts.what), `${opts.what} ${file} grew past the limit of ${opts.maxBytes} bytes while read`);
    return bytes;
  } finally {
    await handle.close();
  }
}

/** The path the open descriptor really is (Linux: /proc/self/fd), so no later swap can fool a check. */
async function realPathOf(handle: fs.FileHandle, file: string): Promise<string> {
  try {
    return await fs.readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    return fs.realpath(file); // no /proc: the path as it resolves now
  }
}

function codeFor(what: string): 'bad_model' | 'bad_source' | 'bad_image' {
  return what === 'model' || what === 'model spec' ? 'bad_model' : what === 'manifest' ? 'bad_source' : 'bad_image';
}
