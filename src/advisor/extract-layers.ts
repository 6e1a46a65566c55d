// The advisor's one pass over the images: every candidate layer fetched at once, kept raw.
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors/user-error.js';
import { softmaxRows } from '../math/cache-model.js';
import { inputShape, loadModelBytes } from '../model/extractor.js';
import { withExtraOutputs } from '../model/onnx-graph.js';
import type { ModelSpec } from '../model/spec.js';
import { INTRA_OP_THREADS } from '../model/threads.js';
import { forEachBatch } from '../jobs/pipeline.js';
import { type SourceItem } from '../sources/sources.js';
import type { ItemError } from '../jobs/types.js';
import { DEFAULT_LIMIT_INPUT_PIXELS } from '../preprocess/image.js';

/** Raw activations of some layers, p_model and labels of one set of images. */
export interface ExtractedSet {
  n: number;
  labels: Int32Array;
  /** n × classes, p_model (softmax applied for 'logits' models) */
  probs: Float32Array;
  /** per layer, its per-image size */
  sizes: number[];
  /** per layer: n × size, raw (flattened, not normalised) */
  acts: Float32Array[];
  /** per layer: n squared L2 norms */
  sqNorms: Float64Array[];
  /** the items that could not be decoded */
  failed: ItemError[];
}

/**
 * Runs the model once per image set with every layer of `layers` fetched at the same time
 * (one session; the layers are added to the graph outputs), keeping raw activations.
 * `onProgress` gets the number of source items handled so far over all sets.
 */
export async function extractLayers(
  modelPath: string,
  spec: ModelSpec,
  layers: string[],
  sets: { items: SourceItem[]; flip: boolean }[],
  opts: { batchSize?: number; onProgress?: (done: number) => void; signal?: AbortSignal } = {},
): Promise<ExtractedSet[]> {
  const C = spec.classes.length;
  const { bytes, graph } = await loadModelBytes(modelPath);
  const singleImageBatches = graph.inputs.find((v) => v.name === spec.input)?.dims[0] === 1;
  const fetches = [...new Set([spec.output, ...layers])];
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(withExtraOutputs(bytes, fetches), { graphOptimizationLevel: 'all', intraOpNumThreads: INTRA_OP_THREADS });
  } catch (err) {
    throw new UserError('bad_model', `onnxruntime cannot load ${modelPath}: ${(err as Error).message}`);
  }
  const imageSize = spec.height * spec.width * 3;
  let sizes: number[] | null = null;
  const results: ExtractedSet[] = [];
  let doneBefore = 0;
  try {
    if (layers.length > 0) {
      const probe = await session.run({ [spec.input]: new ort.Tensor('float32', new Float32Array(imageSize), inputShape(spec, 1)) }, fetches);
      sizes = layers.map((l) => probe[l].data.length);
    }
    const layerSizes = sizes ?? [];
    for (const { items, flip } of sets) {
      const cap = items.length * (flip ? 2 : 1);
      const acts = layerSizes.map((s) => new Float32Array(cap * s));
      const probs = new Float32Array(cap * C);
      const labels = new Int32Array(cap);
      const failed: ItemError[] = [];
      let n = 0;
      await forEachBatch(
        items,
        { spec, flip, batchSize: opts.batchSize ?? 64, limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS, signal: opts.signal },
        async ({ items: batchItems, tensor }) => {
          const m = batchItems.length;
          const step = singleImageBatches ? 1 : m;
          for (let s = 0; s < m; s += step) {
            const k = Math.min(step, m - s);
            const input = new ort.Tensor('float32', tensor.subarray(s * imageSize, (s + k) * imageSize), inputShape(spec, k));
            const out = await session.run({ [spec.input]: input }, fetches);
            probs.set(out[spec.output].data as Float32Array, (n + s) * C);
            layers.forEach((l, j) => {
              const data = out[l].data as Float32Array;
              if (data.length !== k * layerSizes[j]) throw new Error(`layer ${l} gave ${data.length} values for ${k} images, expected ${k * layerSizes[j]}`);
              acts[j].set(data, (n + s) * layerSizes[j]);
            });
          }
          batchItems.forEach((it, i) => (labels[n + i] = it.label ?? -1));
          n += m;
        },
        (done, errors) => {
          failed.push(...errors);
          opts.onProgress?.(doneBefore + done);
        },
      );
      doneBefore += items.length;
      if (spec.outputKind === 'logits') softmaxRows(probs, n, C);
      const trimmed = acts.map((a, j) => a.subarray(0, n * layerSizes[j]));
      const sqNorms = trimmed.map((a, j) => {
        const size = layerSizes[j];
        const norms = new Float64Array(n);
        for (let r = 0; r < n; r++) {
          let ss = 0;
          for (let d = r * size; d < (r + 1) * size; d++) ss += a[d] * a[d];
          norms[r] = ss;
        }
        return norms;
      });
      results.push({ n, labels: labels.subarray(0, n), probs: probs.subarray(0, n * C), sizes: layerSizes, acts: trimmed, sqNorms, failed });
    }
  } finally {
    await session.release();
  }
  return results;
}
