// Decode a job's images in batches for the model. The next batch is decoded
// (sharp, on libuv's thread pool) while the engine works on the current ones.
// Each batch's files are read first: an item without an id gets its content id from the bytes,
// and items the job does not need (`skip`: already in the cache) are not decoded.
import pLimit from 'p-limit';
import { FLIP_SUFFIX, flipTensor, imageToTensor, stackBatch } from '../preprocess/image.js';
import { imageBytes } from '../sources/fetch.js';
import type { ReadRoots } from '../sources/read-roots.js';
import { ModelSpec } from '../model/spec.js';
import { contentId, itemName, SourceItem } from '../sources/sources.js';
import { ItemError } from './types.js';

export interface DecodedBatch {
  /** the decoded items, in order, each with its id; `flipped` marks a horizontal mirror image */
  items: (SourceItem & { id: string; flipped: boolean })[];
  tensor: Float32Array;
}

export interface PipelineOptions {
  spec: ModelSpec;
  flip: boolean;
  /** images per batch (a flipped image counts twice) */
  batchSize: number;
  limitInputPixels: number;
  /** concurrent decodes */
  decodeConcurrency?: number;
  /** stops the loop between batches */
  signal?: AbortSignal;
  /** where files and URLs may be read from, checked when each is opened (default: anywhere, no URLs) */
  readRoots?: ReadRoots;
  /** batches handed to `handle` before the first of them is awaited (default 1: one at a time) */
  overlap?: number;
  /** which of these item ids (mirror images: id + FLIP_SUFFIX) not to decode; an item is skipped when all its views are */
  skip?: (ids: string[]) => Promise<Set<string>>;
}

/**
 * Calls `handle` with each batch of decoded images, in order, and `onProgress` with the items
 * that could not be read or decoded and the number of images skipped (views, as `skip` said).
 * `done` counts source items handled so far.
 */
export async function forEachBatch(
  items: SourceItem[],
  opts: PipelineOptions,
  handle: (batch: DecodedBatch) => Promise<void>,
  onProgress: (done: number, errors: ItemError[], skipped: number) => void,
): Promise<void> {
  const limit = pLimit(opts.decodeConcurrency ?? 4);
  const perBatch = Math.max(1, Math.floor(opts.batchSize / (opts.flip ? 2 : 1)));
  const fail = (errors: ItemError[], item: SourceItem, err: unknown) =>
    errors.push({ id: itemName(item), error: err instanceof Error ? err.message : String(err) });
  const decode = async (start: number) => {
    const slice = items.slice(start, start + perBatch);
    const errors: ItemError[] = [];
    const read = await Promise.all(
      slice.map((item) =>
        limit(async () => {
          try {
            const bytes = await imageBytes(item.image, opts.readRoots);
            return { item, id: item.id ?? contentId(bytes), bytes };
          } catch (err) {
            fail(errors, item, err);
            return null;
          }
        }),
      ),
    );
    const readable = read.filter((r) => r !== null);
    const views = (id: string) => (opts.flip ? [id, id + FLIP_SUFFIX] : [id]);
    let todo = readable;
    if (opts.skip && readable.length) {
      const skip = await opts.skip(readable.flatMap((r) => views(r.id)));
      todo = readable.filter((r) => views(r.id).some((id) => !skip.has(id)));
    }
    const skipped = (readable.length - todo.length) * (opts.flip ? 2 : 1);
    const decoded = await Promise.all(
      todo.map(({ item, id, bytes }) =>
        limit(async () => {
          try {
            const image = await imageToTensor(bytes, opts.spec, { limitInputPixels: opts.limitInputPixels });
            return { item: { ...item, id }, views: opts.flip ? [image, flipTensor(image, opts.spec)] : [image] };
          } catch (err) {
            fail(errors, item, err); // named by its file when its id is a content id
            return { item: { ...item, id }, views: [] };
          }
        }),
      ),
    );
    const batch: DecodedBatch = { items: [], tensor: new Float32Array(0) };
    const tensors: Float32Array[] = [];
    for (const { item, views } of decoded)
      views.forEach((t, v) => {
        batch.items.push({ ...item, id: v === 0 ? item.id : item.id + FLIP_SUFFIX, flipped: v === 1 });
        tensors.push(t);
      });
    batch.tensor = tensors.length ? stackBatch(tensors) : batch.tensor;
    return { batch, errors, count: slice.length, skipped };
  };
  let done = 0;
  let next = items.length > 0 ? decode(0) : null;
  // Up to `overlap` batches are handled at once, so that the model extracts batch i+1 while the
  // engine adds batch i (an hnsw insert and a log fsync leave the model idle otherwise). They
  // finish in order: the engine runs extractions, and adds, first come first served.
  const inFlight: Promise<void>[] = [];
  try {
    for (let start = 0; next; start += perBatch) {
      const { batch, errors, count, skipped } = await next;
      opts.signal?.throwIfAborted();
      next = start + perBatch < items.length ? decode(start + perBatch) : null;
      const handled = (batch.items.length > 0 ? handle(batch) : Promise.resolve()).then(() => {
        done += count;
        onProgress(done, errors, skipped);
      });
      handled.catch(() => {}); // awaited below; a failure meanwhile is not an unhandled rejection
      inFlight.push(handled);
      if (inFlight.length >= (opts.overlap ?? 1)) await inFlight.shift();
    }
    while (inFlight.length) await inFlight.shift();
  } finally {
    await Promise.allSettled(inFlight); // a failed or cancelled job returns once nothing of it runs
  }
}
