// Decode a job's images in batches for the model. The next batch is decoded
// (sharp, on libuv's thread pool) while the engine thread works on the current one.
import pLimit from 'p-limit';
import { FLIP_SUFFIX, flipTensor, imageToTensor, stackBatch } from '../preprocess/image.js';
import { imageBytes } from '../sources/fetch.js';
import type { ReadRoots } from '../sources/read-roots.js';
import { ModelSpec } from '../model/spec.js';
import { SourceItem } from '../sources/sources.js';
import { ItemError } from './types.js';

export interface DecodedBatch {
  /** the decoded items, in order; `flipped` marks a horizontal mirror image */
  items: (SourceItem & { flipped: boolean })[];
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
}

/**
 * Calls `handle` with each batch of decoded images, in order, and `onErrors` with the
 * items that could not be decoded. `done` counts source items handled so far.
 */
export async function forEachBatch(
  items: SourceItem[],
  opts: PipelineOptions,
  handle: (batch: DecodedBatch) => Promise<void>,
  onProgress: (done: number, errors: ItemError[]) => void,
): Promise<void> {
  const limit = pLimit(opts.decodeConcurrency ?? 4);
  const perBatch = Math.max(1, Math.floor(opts.batchSize / (opts.flip ? 2 : 1)));
  const decode = async (start: number) => {
    const slice = items.slice(start, start + perBatch);
    const errors: ItemError[] = [];
    const decoded = await Promise.all(
      slice.map((item) =>
        limit(async () => {
          try {
            const image = await imageToTensor(await imageBytes(item.image, opts.readRoots), opts.spec, { limitInputPixels: opts.limitInputPixels });
            return opts.flip ? [image, flipTensor(image, opts.spec)] : [image];
          } catch (err) {
            errors.push({ id: item.id, error: err instanceof Error ? err.message : String(err) });
            return [];
          }
        }),
      ),
    );
    const batch: DecodedBatch = { items: [], tensor: new Float32Array(0) };
    const tensors: Float32Array[] = [];
    decoded.forEach((views, i) =>
      views.forEach((t, v) => {
        batch.items.push({ ...slice[i], id: v === 0 ? slice[i].id : slice[i].id + FLIP_SUFFIX, flipped: v === 1 });
        tensors.push(t);
      }),
    );
    batch.tensor = tensors.length ? stackBatch(tensors) : batch.tensor;
    return { batch, errors, count: slice.length };
  };
  let done = 0;
  let next = items.length > 0 ? decode(0) : null;
  for (let start = 0; next; start += perBatch) {
    const { batch, errors, count } = await next;
    opts.signal?.throwIfAborted();
    next = start + perBatch < items.length ? decode(start + perBatch) : null;
    if (batch.items.length > 0) await handle(batch);
    done += count;
    onProgress(done, errors);
  }
}
