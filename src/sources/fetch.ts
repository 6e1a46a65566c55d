// An item's image as bytes: given inline, read from a file through the guarded reader (read roots
// checked on what is really opened), or fetched from an allowed URL prefix, streamed under a byte
// cap, following at most a few redirects and only inside the allowed prefixes.
import { UserError } from '../errors/user-error.js';
import { readGuarded } from '../util/guarded-read.js';
import { ReadRoots } from './read-roots.js';

export const MAX_IMAGE_BYTES = 32 * 1024 * 1024;
const FETCH_TIMEOUT_MS = 30_000;
const MAX_REDIRECTS = 3;

export async function imageBytes(image: string | Buffer, roots: ReadRoots = ReadRoots.anywhere()): Promise<Buffer> {
  if (typeof image !== 'string') return image;
  if (!/^https?:\/\//i.test(image)) return readGuarded(image, { what: 'image', maxBytes: MAX_IMAGE_BYTES, allow: roots.allowFor(image, 'image') });
  return fetchImage(image, roots);
}

/** Messages name the URL and the rule broken, never what was read or how a connection failed. */
async function fetchImage(url: string, roots: ReadRoots): Promise<Buffer> {
  const signal = AbortSignal.timeout(FETCH_TIMEOUT_MS);
  let at = url;
  for (let hop = 0; ; hop++) {
    roots.checkUrl(at); // every hop, not only the first
    let res: Response;
    try {
      res = await fetch(at, { signal, redirect: 'manual' });
    } catch {
      throw new UserError('bad_image', `cannot fetch ${url}`);
    }
    if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
      await res.body?.cancel();
      if (hop >= MAX_REDIRECTS) throw new UserError('bad_image', `${url}: more than ${MAX_REDIRECTS} redirects`);
      at = new URL(res.headers.get('location')!, at).href;
      continue;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new UserError('bad_image', `cannot fetch ${url}: HTTP ${res.status}`);
    }
    return readCapped(res, url, signal);
  }
}

/** The body, stopped the moment it passes the cap (a chunked body declares no length). */
async function readCapped(res: Response, url: string, signal: AbortSignal): Promise<Buffer> {
  const tooLarge = () => new UserError('bad_image', `${url} is over the ${MAX_IMAGE_BYTES}-byte image limit`);
  if (Number(res.headers.get('content-length') ?? 0) > MAX_IMAGE_BYTES) {
    await res.body?.cancel();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of res.body ?? []) {
      total += chunk.length;
      if (total > MAX_IMAGE_BYTES) throw tooLarge();
      chunks.push(Buffer.from(chunk));
    }
  } catch (err) {
    await res.body?.cancel().catch(() => undefined);
    if (err instanceof UserError) throw err;
    throw new UserError('bad_image', signal.aborted ? `${url}: the download took too long` : `cannot fetch ${url}`);
  }
  return Buffer.concat(chunks);
}
