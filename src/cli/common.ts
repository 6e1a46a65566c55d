// What the CLI's commands share: the service URL option, the client, output, errors of streamed calls.
import path from 'node:path';
import { promises as fs, statSync } from 'node:fs';
import { Option } from 'commander';
import { ApiError, CachetClient } from './client.js';
import type { Source } from '../sources/sources.js';
import type { JobView } from '../jobs/types.js';

export const urlOption = () => new Option('--url <url>', 'the Cachet service').env('CACHET_URL').default('http://localhost:8080');
export const client = (opts: { url: string; apiKey?: string }) => new CachetClient(opts.url, opts.apiKey);

export function print(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

/** The service's error for a response fetched without CachetClient.request (streamed bodies). */
export async function apiErrorOf(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  let e: { code?: string; message?: string } | undefined;
  try {
    e = (JSON.parse(text) as { error?: typeof e }).error;
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, e?.code ?? 'http_error', e?.message ?? `HTTP ${res.status}: ${text.slice(0, 200)}`);
}

/** A local path becomes an absolute one (the service reads it); a folder or a manifest by what it is. */
export function sourceOf(source: string, idFrom?: 'content' | 'path'): Source {
  const p = path.resolve(source);
  let isDir = false;
  try {
    isDir = statSync(p).isDirectory();
  } catch {
    isDir = !/\.(csv|jsonl|ndjson)$/i.test(p); // not visible here: the service will say if it is missing
  }
  return { type: isDir ? 'folder' : 'manifest', path: p, ...(idFrom ? { idFrom } : {}) };
}

/**
 * A finished job's reports, as the service renders them, and its result as JSON, written to
 * `<reportDir>/<name>/`; returns that folder.
 */
export async function writeJobReports(
  api: CachetClient,
  url: string,
  job: JobView,
  folder: string,
  files: readonly (readonly ['md' | 'svg' | 'png', string])[],
): Promise<string> {
  const dir = path.resolve(folder);
  await fs.mkdir(dir, { recursive: true });
  for (const [format, file] of files) {
    const res = await fetch(new URL(`/v1/jobs/${job.id}/report?format=${format}`, url), { headers: api.authHeaders() });
    if (!res.ok) throw await apiErrorOf(res);
    await fs.writeFile(path.join(dir, file), Buffer.from(await res.arrayBuffer()));
  }
  await fs.writeFile(path.join(dir, 'result.json'), JSON.stringify(job.result, null, 2) + '\n');
  return dir;
}
