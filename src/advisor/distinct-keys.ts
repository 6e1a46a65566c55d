// One candidate per distinct key: layers that compute the same values (a Flatten or Reshape of
// another candidate) are scored once, under the first name in graph order.
import { createHash } from 'node:crypto';

/**
 * The candidates that compute distinct values, in graph order, and the others named with the one
 * they equal (same size, same activations on every train and val image: compared by sha256, only
 * among layers of one size).
 */
export function distinctKeys(
  layers: string[],
  graphOrder: Map<string, number>,
  sizes: number[],
  trainActs: Float32Array[],
  valActs: Float32Array[],
): { distinct: number[]; sameKeys: { layer: string; sameAs: string[] }[] } {
  const order = layers.map((_, j) => j).sort((a, b) => graphOrder.get(layers[a])! - graphOrder.get(layers[b])!);
  const bySize = new Map<number, number[]>();
  for (const j of order) bySize.set(sizes[j], [...(bySize.get(sizes[j]) ?? []), j]);
  const firstOf = new Map<number, number>(); // j → the earlier layer it equals
  for (const group of bySize.values()) {
    if (group.length < 2) continue;
    const seen = new Map<string, number>();
    for (const j of group) {
      const h = createHash('sha256');
      for (const a of [trainActs[j], valActs[j]]) h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
      const digest = h.digest('hex');
      const first = seen.get(digest);
      if (first === undefined) seen.set(digest, j);
      else firstOf.set(j, first);
    }
  }
  const distinct = order.filter((j) => !firstOf.has(j));
  const sameKeys = distinct
    .map((j) => ({ layer: layers[j], sameAs: order.filter((x) => firstOf.get(x) === j).map((x) => layers[x]) }))
    .filter((s) => s.sameAs.length > 0);
  return { distinct, sameKeys };
}
