// The last step of a model run, kept apart from onnxruntime: the inference thread returns the keys
// as the layers gave them, and the thread that receives them L2-normalises them (the model's thread,
// which sets the pace of a predict, runs only the model).
import { l2NormaliseRows } from '../math/cache-model.js';
import type { ExtractorResult } from './types.js';

/** The model's outputs before the keys are L2-normalised. */
export type RawResult = Omit<ExtractorResult, 'zeroKeys'>;

/** L2-normalises the raw keys in place; rows that cannot be (zero or not finite) are listed in zeroKeys. */
export function normaliseKeys(raw: RawResult, n: number, keyDimension: number): ExtractorResult {
  const ok = l2NormaliseRows(raw.keys, n, keyDimension);
  return { ...raw, zeroKeys: ok.flatMap((good, r) => (good ? [] : [r])) };
}
