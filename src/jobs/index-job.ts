// The index job: decode a source's labelled images in batches, extract their keys and add them
// to the cache (embedded) or to its key log (a worker). Ids already in the cache are skipped
// without being decoded (a job run again after a restart, a resubmission, a true duplicate).
import type { IndexingApi } from '../engine/client.js';
import type { SourceItem } from '../sources/sources.js';
import { forEachBatch } from './pipeline.js';
import type { IndexJobResult } from './results.js';
import type { JobContext, ProcessorSettings } from './types.js';

export interface IndexJobData {
  cache: string;
  items: SourceItem[];
  flip: boolean;
}

export async function runIndexJob(engine: IndexingApi, settings: ProcessorSettings, data: IndexJobData, ctx: JobContext): Promise<IndexJobResult> {
  const spec = await engine.modelSpec(data.cache);
  const totals = { added: 0, duplicates: 0, failed: 0 };
  const skip = async (ids: string[]) => new Set(await engine.presentIds(data.cache, ids));
  await forEachBatch(
    data.items,
    { spec, flip: data.flip, signal: ctx.signal, skip, overlap: 3, ...settings },
    async ({ items, tensor }) => {
      // paths and URLs are kept as the items' sources, for previews; inline bytes are not
      const sources = items.map((i) => (typeof i.image === 'string' ? i.image : null));
      const r = await engine.indexBatch(
        data.cache,
        tensor,
        items.map((i) => i.id),
        items.map((i) => i.label ?? -1),
        sources,
      );
      totals.added += r.added;
      totals.duplicates += r.duplicates;
      totals.failed += r.failed.length;
      if (r.failed.length) ctx.itemErrors(r.failed);
    },
    (done, errors, skipped) => {
      totals.duplicates += skipped;
      totals.failed += errors.length;
      if (errors.length) ctx.itemErrors(errors);
      ctx.progress(done, data.items.length);
    },
  );
  const { cacheSize } = await engine.flush(data.cache);
  return { images: data.items.length, ...totals, cacheSize };
}
