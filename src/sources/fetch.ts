// An item's image: bytes given inline, a file path (sharp reads it), or an http(s) URL
// on storage every worker can reach, fetched with a time and size limit.
import { UserError } from '../errors/user-error.js';

export const MAX_FETCH_BYTES = 32 * 1024 * 1024;
const FETCH_TIMEOUT_MS = 30_000;

export async function imageBytes(image: string | Buffer): Promise<string | Buffer> {
  if (typeof image !== 'string' || !/^https?:\/\//i.test(image)) return image;
  let res: Response;
  try {
    res = await fetch(image, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (err) {
    throw new UserError('bad_image', `cannot fetch ${image}: ${(err as Error).message}`);
  }
  if (!res.ok) throw new UserError('bad_image', `cannot fetch ${image}: HTTP ${res.status}`);
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > MAX_FETCH_BYTES) throw new UserError('bad_image', `${image} is ${declared} bytes; images over ${MAX_FETCH_BYTES} bytes are refused`);
  const bytes = Buffer.from(await res.arrayBuffer());
  if (bytes.length > MAX_FETCH_BYTES) throw new UserError('bad_image', `${image} is over ${MAX_FETCH_BYTES} bytes`);
  return bytes;
}
