// What a writer logs for an item once the cache has a search-key projection: the
// reduced search key (and the full key in float16 when the cache re-ranks) instead
// of the full float32 key. At the paper's 12,288 dimensions a full key is 49 KB;
// a 128-d search key is 512 B (+ 24 KB of float16 with re-ranking). Readers put a
// reduced record straight into the index, with no projection to compute.
import type { SearchKey } from '../cache/definition.js';
import { float32ToFloat16 } from '../math/float16.js';
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
  const keys = new Float32Array(n * D);
  records.forEach((r, i) => keys.set(r.key, i * D));
  const searchKeys = await projection.project(keys, n);
  return records.map((r, i) => {
    const out: ReducedKeyRecord = { id: r.id, label: r.label, searchKey: searchKeys.slice(i * d, (i + 1) * d) };
    if (rerank) {
      out.fullKey16 = new Uint16Array(D);
      float32ToFloat16(r.key, out.fullKey16);
    }
    if (r.source !== undefined) out.source = r.source;
    return out;
  });
}
