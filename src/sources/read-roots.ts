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
    /** the URL prefixes images may be fetched from (normalised); none: URL sources are off */
    readonly urlPrefixes: string[] = [],
  ) {}

  static anywhere(): ReadRoots {
    return new ReadRoots(null);
  }

  /** The same roots, and URL sources allowed under these prefixes (CACHET_URL_PREFIXES, comma-separated). */
  withUrls(prefixes: string[] | string | undefined): ReadRoots {
    const list = (typeof prefixes === 'string' ? prefixes.split(',') : (prefixes ?? [])).map((p) => p.trim()).filter(Boolean);
    return new ReadRoots(
      this.roots,
      list.map((p) => {
        let url: URL;
        try {
          url = new URL(p);
        } catch {
          throw new Error(`URL prefix ${p} is not a URL; give e.g. https://images.example.com/bucket/`);
        }
        if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`URL prefix ${p}: only http and https`);
        return url.href; // normalised: "https://host" becomes "https://host/", so "https://host.evil" cannot match
      }),
    );
  }

  /** Throws 403 url_not_allowed unless the URL is under an allowed prefix (URL sources are off without one). */
  checkUrl(url: string): void {
    let href: string;
    try {
      href = new URL(url).href;
    } catch {
      throw new UserError('bad_source', `${JSON.stringify(url.slice(0, 200))} is not a URL`);
    }
    if (this.urlPrefixes.some((p) => href.startsWith(p))) return;
    throw new UserError(
      'url_not_allowed',
      this.urlPrefixes.length
        ? `${href} is not under a URL prefix this service fetches from (${this.urlPrefixes.join(', ')})`
        : `${href}: this service fetches no URLs; the operator enables URL sources with CACHET_URL_PREFIXES (e.g. https://images.example.com/)`,
    );
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
    if (/^https?:\/\//i.test(file)) return this.checkUrl(file);
    if (!this.roots) return;
    this.checkReal(await realOrNearest(path.resolve(file)), file, what);
  }

  /**
   * The check at open time (util/guarded-read.ts): `real` is the path the opened descriptor
   * really is, so a symlink swapped in after a request was accepted is judged by its target.
   */
  allowFor(file: string, what: string): (real: string) => void {
    return (real) => this.checkReal(real, file, what);
  }

  private checkReal(real: string, file: string, what: string): void {
    if (!this.roots) return;
    if (this.roots.some((root) => real === root || real.startsWith(root.endsWith(path.sep) ? root : root + path.sep))) return;
    throw new UserError(
      'path_not_allowed',
      `${what} ${file} is outside the folders this service reads from (${this.roots.join(', ')}); put it under one of them, or ask the operator to add its folder to CACHET_READ_ROOTS`,
    );
  }

  /** Checks every path, at most `concurrency` at a time; the first refusal is thrown. */
  async checkAll(files: Iterable<string>, what: string, concurrency = 64): Promise<void> {
    const list = [...files];
    if (!this.roots && !list.some((f) => /^https?:\/\//i.test(f))) return;
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
