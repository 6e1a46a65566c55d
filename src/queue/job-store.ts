// Embedded jobs on disk (<dataDir>/.jobs/), so that a restart neither forgets a job nor drops
// one half done: <id>.json is the job as GET /v1/jobs/:id shows it, <id>.data.json what it was
// submitted with (kept until it finishes). An interrupted job is queued again at start; an index
// job then skips the items already in its cache, so it goes on where it stopped.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { JobViewSchema, type JobView } from '../jobs/types.js';

export interface StoredJob {
  view: JobView;
  /** null once the job has finished (its data is no longer needed) */
  data: unknown;
}

export class JobStore {
  constructor(readonly dir: string) {}

  /** A new job, with what it was submitted with. */
  async create(view: JobView, data: unknown): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    await writeFileAtomic(this.file(view.id, 'data'), JSON.stringify(data, replacer));
    await this.update(view);
  }

  async update(view: JobView): Promise<void> {
    await writeFileAtomic(this.file(view.id, 'view'), JSON.stringify(view));
    if (view.state === 'completed' || view.state === 'failed') await fs.rm(this.file(view.id, 'data'), { force: true });
  }

  async remove(id: string): Promise<void> {
    await fs.rm(this.file(id, 'view'), { force: true });
    await fs.rm(this.file(id, 'data'), { force: true });
  }

  /** Every stored job, oldest first. A file that does not read is reported, not fatal. */
  async load(report: (msg: string) => void): Promise<StoredJob[]> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    const jobs: StoredJob[] = [];
    for (const name of names) {
      if (!name.endsWith('.json') || name.endsWith('.data.json')) continue;
      const id = name.slice(0, -'.json'.length);
      try {
        const view = JobViewSchema.parse(JSON.parse(await fs.readFile(this.file(id, 'view'), 'utf8')));
        const finished = view.state === 'completed' || view.state === 'failed';
        const data = finished ? null : JSON.parse(await fs.readFile(this.file(id, 'data'), 'utf8'), reviver);
        jobs.push({ view, data });
      } catch (err) {
        report(`job ${id}: its record in ${this.dir} does not read (${(err as Error).message}); it is left there and not resumed`);
      }
    }
    return jobs.sort((a, b) => a.view.createdAt.localeCompare(b.view.createdAt));
  }

  private file(id: string, part: 'view' | 'data'): string {
    return path.join(this.dir, part === 'view' ? `${id}.json` : `${id}.data.json`);
  }
}

// Inline items carry their image bytes: stored as base64, read back as Buffers.
function replacer(this: unknown, key: string, value: unknown): unknown {
  const raw = (this as Record<string, unknown>)[key];
  return Buffer.isBuffer(raw) ? { $base64: raw.toString('base64') } : value;
}

function reviver(_key: string, value: unknown): unknown {
  return value && typeof value === 'object' && typeof (value as { $base64?: unknown }).$base64 === 'string'
    ? Buffer.from((value as { $base64: string }).$base64, 'base64')
    : value;
}
