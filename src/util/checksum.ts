// Checksums of stored files, computed streaming (a snapshot's files can be gigabytes).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export interface FileChecksum {
  bytes: number;
  sha256: string;
}

export async function checksumFile(path: string): Promise<FileChecksum> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** What is wrong with a file against its recorded checksum, or null when it matches. */
export async function checkFile(path: string, want: FileChecksum): Promise<string | null> {
  let got: FileChecksum;
  try {
    got = await checksumFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'missing' : `unreadable (${code ?? (err as Error).message})`;
  }
  if (got.bytes !== want.bytes) return `${got.bytes} bytes, ${want.bytes} recorded`;
  if (got.sha256 !== want.sha256) return `sha256 ${got.sha256.slice(0, 12)}…, ${want.sha256.slice(0, 12)}… recorded`;
  return null;
}

export const sha256Text = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');
