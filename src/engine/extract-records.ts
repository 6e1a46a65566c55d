// Images to key records: the step of indexing that embedded engines and workers share.
import { UserError } from '../errors/user-error.js';
import type { FullKeyRecord } from '../keylog/types.js';
import type { Extractor } from '../model/types.js';
import type { IndexBatchResult } from './types.js';

/**
 * Extract the keys of n decoded images (laid out as the model's input). An image whose key is
 * zero or not finite cannot be compared and is reported in `failed`, not recorded.
 */
export async function extractRecords(
  extractor: Extractor,
  images: Float32Array,
  ids: string[],
  labels: number[],
  sources?: (string | null)[],
): Promise<{ records: FullKeyRecord[]; failed: IndexBatchResult['failed'] }> {
  const numClasses = extractor.numClasses;
  const bad = labels.findIndex((l) => !Number.isInteger(l) || l < 0 || l >= numClasses);
  if (bad >= 0) throw new UserError('label_out_of_range', `item ${ids[bad]}: label ${labels[bad]} is not a class index 0–${numClasses - 1}`);
  const { keys, zeroKeys } = await extractor.run(images, ids.length);
  const zero = new Set(zeroKeys);
  const dim = extractor.keyDimension;
  const records: FullKeyRecord[] = [];
  const failed: IndexBatchResult['failed'] = [];
  ids.forEach((id, i) => {
    if (zero.has(i)) {
      failed.push({ id, error: 'its key is zero or not finite (every key layer is zero for this image), so it cannot be compared: not added' });
      return;
    }
    const record: FullKeyRecord = { id, label: labels[i], key: keys.subarray(i * dim, (i + 1) * dim) };
    if (sources?.[i]) record.source = sources[i]!;
    records.push(record);
  });
  return { records, failed };
}
