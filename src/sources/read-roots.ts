// The folders the service reads files from on a caller's behalf: models, image folders,
// manifests and the images they list, thumbnails of cached items. Without roots any path the
// process can read is allowed (a single-user machine); with them, a `write` key cannot make the
// service read /etc/passwd or another tenant's images. Paths are compared after resolving
// symbolic links, so a link inside a root that points outside is refused too.
import path from 'node:path';
import { realpathSync, statSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { UserError } from '../errors/user-error.js';

export class ReadRoots {
  private constructor(
    /** real paths of the roots; null: anywhere */
    readonly roots: string[] | null,
  ) {}

  static anywhere(): ReadRoots {
    return new ReadRoots(null);
  }

  /**
   * Roots from a list of folders (CACHET_READ_ROOTS is split on ':'). Each must be an existing
   * folder: a typo would otherwise refuse every request. Empty or undefined: anywhere.
   */
  static of(folders: string[] | string | undefined): ReadRoots {
    const list = (typeof folders === 'string' ? folders.split(path.delimiter) : (folders ?? [])).map((f) => f.trim()).filter(Boolean);
    if (list.length === 0) return ReadRoots.anywhere();
    return new ReadRoots(
      list.map((folder) => {
        let real: string;
        try {
          real = realpathSync(folder);
        } catch {
          throw new Error(`read root ${folder} does not exist; list existing folders (CACHET_READ_ROOTS, separated by "${path.delimiter}")`);
        }
        if (!statSync(real).isDirectory()) throw new Error(`read root ${folder} is not a folder`);
        return real;
      }),
    );
  }

  get restricted(): boolean {
    return this.roots !== null;
  }

  /**
   * Throws 403 path_not_allowed unless `file` is inside a root. A path that does not exist yet
   * is judged by its nearest existing parent (reading it will fail anyway, with its own error).
   * http(s) URLs are not files and pass.
   */
  async check(file: string, what: string): Promise<void> {
    if (!this.roots || /^https?:\/\//i.test(file)) return;
    const real = await realOrNearest(path.resolve(file));
    if (this.roots.some((root) => real === root || real.startsWith(root.endsWith(path.sep) ? root : root + path.sep))) return;
    throw new UserError(
      'path_not_allowed',
      `${what} ${file} is outside the folders this service reads from (${this.roots.join(', ')}); put it under one of them, or ask the operator to add its folder to CACHET_READ_ROOTS`,
    );
  }

  /** Checks every path, at most `concurrency` at a time; the first refusal is thrown. */
  async checkAll(files: Iterable<string>, what: string, concurrency = 64): Promise<void> {
    if (!this.roots) return;
    const list = [...files];
    for (let i = 0; i < list.length; i += concurrency) await Promise.all(list.slice(i, i + concurrency).map((f) => this.check(f, what)));
  }
}

async function realOrNearest(p: string): Promise<string> {
  try {
    return await realpath(p);
  } catch {
    const parent = path.dirname(p);
    return parent === p ? p : path.join(await realOrNearest(parent), path.basename(p));
  }
}
