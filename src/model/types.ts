// What the engine needs of a model, wherever its session runs: its keys and probabilities for a
// batch of images (model/extractor.ts runs them; model/inference.ts on a thread of its own).
import type { ModelSpec } from './spec.js';

export interface ExtractorOptions {
  intraOpNumThreads?: number;
}

export interface ExtractorResult {
  /** n × keyDimension, L2-normalised rows */
  keys: Float32Array;
  /** n × numClasses, p_model(y|x) (softmax applied when spec.outputKind is 'logits') */
  probs: Float32Array;
  /** rows whose key was zero or not finite (left unnormalised; unusable as cache items) */
  zeroKeys: number[];
  /** how long this run took where it ran (without the wait for, or the hops to, the inference thread) */
  runMs: number;
}

/** What the engine needs of a model: its keys and probabilities for a batch of images. */
export interface Extractor {
  readonly spec: ModelSpec;
  readonly keyLayers: string[];
  /** sha256 of the model file */
  readonly modelHash: string;
  readonly keyDimension: number;
  readonly numClasses: number;
  /** `batch` holds `n` images laid out as the spec says; it is moved to the inference thread */
  run(batch: Float32Array, n: number): Promise<ExtractorResult>;
  release(): Promise<void>;
}
