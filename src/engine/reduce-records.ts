// What a writer logs for an item once the cache has a search-key projection: the
// reduced search key (and the full key in float16 when the cache re-ranks) instead
// of the full float32 key. At the paper's 12,288 dimensions a full key is 49 KB;
// a 128-d search key is 512 B (+ 24 KB of float16 with re-ranking). Readers put a
// reduced record straight into the index, with no projection to compute.
import type { SearchKey } from '../cache/definition.js';
import { castToFloat16 } from '../math/float16.js';
import type { Projection } from '../index/projection.js';
import type { FullKeyRecord, ReducedKeyRecord } from '../keylog/types.js';

/**
 * Whether writers may log reduced records for a cache with these settings: the full
 * keys a reader must keep (for re-ranking) have to survive the trip, and float16 is
 * what the record carries.
 */
export function logsReducedKeys(sk: SearchKey): boolean {
  return sk.reduce !== 'none' && (!sk.rerank || sk.fullKeys === 'float16');
}

export async function reduceRecords(records: FullKeyRecord[], projection: Projection, rerank: boolean): Promise<ReducedKeyRecord[]> {
  const D = projection.inputDimension;
  const d = projection.outputDimension;
  const n = records.length;
  const keys = stacked(records, D);
  const searchKeys = await projection.project(keys, n);
  const fullKeys16 = rerank ? await castToFloat16(keys) : null; // one array for the batch; records hold views of it
  return records.map((r, i) => {
    const out: ReducedKeyRecord = { id: r.id, label: r.label, searchKey: searchKeys.subarray(i * d, (i + 1) * d) };
    if (fullKeys16) out.fullKey16 = fullKeys16.subarray(i * D, (i + 1) * D);
    if (r.source !== undefined) out.source = r.source;
    return out;
  });
}

/**
 * The records' keys as one n × D array: the extractor's output itself when the keys are its
 * consecutive rows (a batch with no image dropped), else a copy.
 */
function stacked(records: FullKeyRecord[], D: number): Float32Array {
  const first = records[0]?.key;
  const inPlace =
    first !== undefined && records.every((r, i) => r.key.length === D && r.key.buffer === first.buffer && r.key.byteOffset === first.byteOffset + i * D * 4);
  if (inPlace) return new Float32Array(first.buffer, first.byteOffset, records.length * D);
  const keys = new Float32Array(records.length * D);
  records.forEach((r, i) => keys.set(r.key, i * D));
  return keys;
}
