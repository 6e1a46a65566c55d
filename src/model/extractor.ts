// Runs an ONNX classifier and returns, per image, the cache key φ(x) and p_model(y|x).
//
//   φ(x) = concat(flatten(layer) for layer in keyLayers), L2-normalised once (Orhan 2018).
//
// The key layers are inner tensors; onnxruntime returns only graph outputs, so they are added to
// the graph's outputs, with one more node output that is their concatenation (withKeyOutput): the
// model run returns the key in one piece. A tensor that is a graph output is never fused away by
// ORT's graph optimiser, so optimisation stays at its default ('all').
import { readGuarded } from '../util/guarded-read.js';
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors/user-error.js';
import { softmaxRows } from '../math/cache-model.js';
import { normaliseKeys, type RawResult } from './normalise-keys.js';
import { decodeModel, graphInfo, modelHash, withKeyOutput, type GraphInfo } from './onnx-graph.js';
import { nearestNames } from './names.js';
import type { ModelSpec } from './spec.js';
import type { Extractor, ExtractorOptions, ExtractorResult } from './types.js';

/** [1, …] input shape for a batch of `n` images, from the spec. */
export function inputShape(spec: ModelSpec, n: number): number[] {
  return spec.layout === 'NHWC' ? [n, spec.height, spec.width, 3] : [n, 3, spec.height, spec.width];
}

const FLOAT = 1;

/** Reads and parses a model file, turning every failure into a `bad_model` UserError. */
export async function loadModelBytes(modelPath: string): Promise<{ bytes: Uint8Array; graph: GraphInfo }> {
  // a FIFO or device named as a model must not hold a thread; protobuf cannot hold more than 2 GiB
  const bytes: Uint8Array = await readGuarded(modelPath, { what: 'model', maxBytes: 2 ** 31, timeoutMs: 120_000 });
  let graph: GraphInfo;
  try {
    graph = graphInfo(decodeModel(bytes));
  } catch (err) {
    throw new UserError('bad_model', `${modelPath} is not an ONNX model (protobuf decode failed: ${(err as Error).message})`);
  }
  if (graph.tensors.length === 0 || graph.outputs.length === 0 || graph.inputs.length === 0)
    throw new UserError('bad_model', `${modelPath} is not an ONNX model (no graph inputs, nodes or outputs)`);
  return { bytes, graph };
}

export class KeyExtractor implements Extractor {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly spec: ModelSpec,
    readonly keyLayers: string[],
    readonly modelHash: string,
    readonly keyDimension: number,
    readonly numClasses: number,
    /** the tensor that holds the key layers flattened and concatenated (withKeyOutput) */
    private readonly keyTensor: string,
    /** the graph's batch dimension is fixed at 1: run images one at a time */
    private readonly singleImageBatches: boolean,
  ) {
    this.fetches = [spec.output, keyTensor];
  }

  private readonly fetches: string[];

  static async create(modelPath: string, spec: ModelSpec, keyLayers: string[], opts: ExtractorOptions = {}): Promise<KeyExtractor> {
    const { bytes, graph } = await loadModelBytes(modelPath);
    const inputs = graph.inputs;
    const input = inputs.find((v) => v.name === spec.input);
    if (!input)
      throw new UserError(
        'bad_model_spec',
        `spec.input "${spec.input}" is not an input of ${modelPath}; its inputs are: ${inputs.map((v) => v.name).join(', ')}`,
      );
    if (input.elemType !== FLOAT && input.elemType !== 0)
      throw new UserError('bad_model', `input "${spec.input}" of ${modelPath} has ONNX element type ${input.elemType}; only float32 (1) inputs are supported`);
    const batchDim = checkInputDims(input.dims, spec, modelPath);

    const nodeOutputs = graph.tensors.map((t) => t.name);
    const graphOutputs = graph.outputs;
    const known = new Set([...nodeOutputs, ...graphOutputs]);
    if (!known.has(spec.output))
      throw new UserError('bad_model_spec', `spec.output "${spec.output}" is not a tensor of ${modelPath}; its outputs are: ${graphOutputs.join(', ')}`);
    if (keyLayers.length === 0)
      throw new UserError('bad_key_layers', 'keyLayers is empty: name at least one inner tensor (e.g. a ReLU output near the end of the network)');
    for (const layer of keyLayers) {
      if (!known.has(layer))
        throw new UserError(
          'unknown_layer',
          `key layer "${layer}" is not a tensor of ${modelPath}. Nearest names: ${nearestNames(layer, nodeOutputs).join(', ')} ` +
            `(${nodeOutputs.length} tensors in all; \`cachet inspect\` lists them with shapes)`,
        );
    }
    if (new Set(keyLayers).size !== keyLayers.length) throw new UserError('bad_key_layers', `keyLayers names a layer twice: ${keyLayers.join(', ')}`);

    const patched = withKeyOutput(bytes, graph, [spec.output], keyLayers);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(patched.bytes, {
        // ORT rejects an explicit undefined here
        ...(opts.intraOpNumThreads !== undefined && { intraOpNumThreads: opts.intraOpNumThreads }),
        graphOptimizationLevel: 'all',
      });
    } catch (err) {
      throw new UserError('bad_model', `onnxruntime cannot load ${modelPath}: ${(err as Error).message}`);
    }

    // One probe on a zero image gives every tensor's per-image size.
    const singleImageBatches = batchDim === 1;
    let fetched: ort.InferenceSession.OnnxValueMapType;
    try {
      fetched = await session.run({ [spec.input]: new ort.Tensor('float32', new Float32Array(spec.height * spec.width * 3), inputShape(spec, 1)) }, [
        ...new Set([spec.output, ...keyLayers, patched.key]),
      ]);
    } catch (err) {
      await session.release();
      throw new UserError('bad_model_spec', `probe run of ${modelPath} with input shape [${inputShape(spec, 1)}] failed: ${(err as Error).message}`);
    }
    const layerSizes = keyLayers.map((l) => fetched[l].data.length);
    const numClasses = fetched[spec.output].data.length;
    if (numClasses !== spec.classes.length) {
      await session.release();
      throw new UserError(
        'bad_model_spec',
        `output "${spec.output}" has ${numClasses} values per image (shape [${fetched[spec.output].dims}]) but spec.classes names ${spec.classes.length} classes; list one class name per output value`,
      );
    }
    const keyDimension = layerSizes.reduce((a, b) => a + b, 0);
    if (fetched[patched.key].data.length !== keyDimension) {
      await session.release();
      throw new UserError(
        'bad_key_layers',
        `the key layers ${keyLayers.join(', ')} do not flatten to ${keyDimension} values per image; are they all per-image tensors?`,
      );
    }
    return new KeyExtractor(session, spec, [...keyLayers], modelHash(bytes), keyDimension, numClasses, patched.key, singleImageBatches);
  }

  /** `batch` holds `n` preprocessed images laid out as the spec says. */
  async run(batch: Float32Array, n: number): Promise<ExtractorResult> {
    return normaliseKeys(await this.runRaw(batch, n), n, this.keyDimension);
  }

  /**
   * The model's outputs for the batch: p_model and the keys as the layers gave them, not yet
   * L2-normalised. The inference thread returns these, and the engine thread normalises them
   * (normaliseKeys): the model's thread, which sets the pace of a predict, runs only the model.
   */
  async runRaw(batch: Float32Array, n: number): Promise<RawResult> {
    const t0 = performance.now();
    const imageSize = this.spec.height * this.spec.width * 3;
    if (!Number.isInteger(n) || n < 0 || batch.length !== n * imageSize)
      throw new UserError('bad_batch', `batch has ${batch.length} floats; ${n} images of ${inputShape(this.spec, 1).slice(1).join('×')} need ${n * imageSize}`);
    const D = this.keyDimension;
    let keys: Float32Array | null = null;
    const probs = new Float32Array(n * this.numClasses);
    const step = this.singleImageBatches ? 1 : Math.max(n, 1);
    for (let start = 0; start < n; start += step) {
      const m = Math.min(step, n - start);
      const input = new ort.Tensor('float32', batch.subarray(start * imageSize, (start + m) * imageSize), inputShape(this.spec, m));
      const fetched = await this.session.run({ [this.spec.input]: input }, this.fetches);
      probs.set(fetched[this.spec.output].data as Float32Array, start * this.numClasses);
      const data = fetched[this.keyTensor].data as Float32Array;
      if (data.length !== m * D) throw new Error(`the key layers gave ${data.length} values for ${m} images, expected ${m * D}`);
      if (m === n)
        keys = data; // the whole batch in one run: the key tensor is the result
      else (keys ??= new Float32Array(n * D)).set(data, start * D);
    }
    keys ??= new Float32Array(0);
    if (this.spec.outputKind === 'logits') softmaxRows(probs, n, this.numClasses);
    return { keys, probs, runMs: performance.now() - t0 };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Checks fixed dims of the graph input against the spec's layout and size; returns the batch dim. */
function checkInputDims(dims: (number | string)[], spec: ModelSpec, modelPath: string): number | string {
  if (dims.length === 0) return '?'; // no shape recorded: the probe run will tell
  const want = inputShape(spec, 0).slice(1);
  const got = dims.slice(1);
  const mismatch = dims.length !== 4 || got.some((d, i) => typeof d === 'number' && d !== want[i]);
  if (mismatch)
    throw new UserError(
      'bad_model_spec',
      `input "${spec.input}" of ${modelPath} has shape [${dims.join(',')}], but the spec (${spec.layout}, ${spec.height}×${spec.width}) expects [N,${want.join(',')}]; fix layout/height/width`,
    );
  return dims[0];
}
