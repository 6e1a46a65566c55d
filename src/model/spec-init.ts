// `cachet model init`: a model spec proposed from the model itself — the input's name, layout and
// size from its shape, the output, and whether it holds probabilities or logits from a probe run
// — with what the graph cannot say (scale, mean, std, channel order, class names) taken from the
// user or defaulted and named as such. The result is checked by a second probe run.
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors/user-error.js';
import { inputShape, loadModelBytes } from './extractor.js';
import { ModelSpecSchema, type ModelSpec } from './spec.js';

const FLOAT = 1;

export interface ProposedSpec {
  spec: ModelSpec;
  /** for each field, where its value came from: "the graph", "a probe run", "given", "assumed …" */
  sources: Record<keyof ModelSpec, string>;
}

export async function proposeSpec(modelPath: string, given: Partial<ModelSpec> = {}): Promise<ProposedSpec> {
  const { bytes, graph } = await loadModelBytes(modelPath);
  const sources = {} as Record<keyof ModelSpec, string>;
  const from = <K extends keyof ModelSpec>(key: K, value: ModelSpec[K] | undefined, fallback: () => [ModelSpec[K], string]): ModelSpec[K] => {
    if (value !== undefined) {
      sources[key] = 'given';
      return value;
    }
    const [v, why] = fallback();
    sources[key] = why;
    return v;
  };

  const floats = graph.inputs.filter((v) => v.elemType === FLOAT || v.elemType === 0);
  const input = from('input', given.input, () => {
    if (!floats[0]) throw new UserError('bad_model', `${modelPath} has no float32 input: Cachet feeds images as float32`);
    return [floats[0].name, floats.length > 1 ? `the graph (its first float input of ${floats.length})` : 'the graph'];
  });
  const dims = graph.inputs.find((v) => v.name === input)?.dims;
  if (!dims) throw new UserError('bad_model_spec', `"${input}" is not an input of ${modelPath}; its inputs: ${graph.inputs.map((v) => v.name).join(', ')}`);
  const num = (d: number | string | undefined) => (typeof d === 'number' && d > 0 ? d : undefined);
  const layout = from('layout', given.layout, () => {
    if (dims.length !== 4)
      throw new UserError('bad_model_spec', `input "${input}" has ${dims.length} dimensions (${dims.join('×')}); an image batch has 4: give --layout`);
    if (num(dims[1]) === 3 || num(dims[1]) === 1) return ['NCHW', `the graph (input shape ${dims.join('×')})`];
    if (num(dims[3]) === 3 || num(dims[3]) === 1) return ['NHWC', `the graph (input shape ${dims.join('×')})`];
    throw new UserError('bad_model_spec', `input "${input}" is ${dims.join('×')}: no axis of 3 channels, so the layout is unknown: give --layout NCHW or NHWC`);
  });
  const [h, w] = layout === 'NCHW' ? [dims[2], dims[3]] : [dims[1], dims[2]];
  const unknownSize = () => {
    throw new UserError('bad_model_spec', `input "${input}" has no fixed height and width (${dims.join('×')}): give --size WIDTHxHEIGHT, e.g. 224x224`);
  };
  const height = from('height', given.height, () => [num(h) ?? unknownSize(), 'the graph']);
  const width = from('width', given.width, () => [num(w) ?? unknownSize(), 'the graph']);
  const output = from('output', given.output, () => {
    if (!graph.outputs[0]) throw new UserError('bad_model', `${modelPath} has no output`);
    return [graph.outputs[0], graph.outputs.length > 1 ? `the graph (its first output of ${graph.outputs.length}: ${graph.outputs.join(', ')})` : 'the graph'];
  });

  // A probe run on two random images: the number of classes, and whether rows are probabilities.
  const session = await ort.InferenceSession.create(bytes);
  let scores: Float32Array;
  try {
    const shape = inputShape({ layout, height, width } as ModelSpec, 2);
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => Math.random());
    const result = await session.run({ [input]: new ort.Tensor('float32', data, shape) }, [output]);
    scores = result[output].data as Float32Array;
  } catch (err) {
    throw new UserError('bad_model_spec', `a probe run of ${modelPath} (input "${input}", ${layout} ${width}×${height}) failed: ${(err as Error).message}`);
  } finally {
    await session.release();
  }
  const numClasses = scores.length / 2;
  if (!Number.isInteger(numClasses) || numClasses < 2)
    throw new UserError('bad_model_spec', `output "${output}" gives ${scores.length} values for 2 images: not one score per class`);
  const rows = [scores.subarray(0, numClasses), scores.subarray(numClasses)];
  const isDistribution = rows.every((r) => r.every((x) => x >= 0 && x <= 1) && Math.abs(r.reduce((s, x) => s + x, 0) - 1) < 1e-3);
  const outputKind = from('outputKind', given.outputKind, () =>
    isDistribution ? ['probabilities', 'a probe run (rows sum to 1)'] : ['logits', 'a probe run (rows do not sum to 1: softmax is applied)'],
  );
  const classes = from('classes', given.classes, () => {
    const meta = graph.metadata.classes ?? graph.metadata.labels ?? graph.metadata.class_names;
    const parsed = meta ? parseNames(meta) : null;
    if (parsed?.length === numClasses) return [parsed, 'the model metadata'];
    return [Array.from({ length: numClasses }, (_, i) => `class_${i}`), `assumed: ${numClasses} placeholder names; give --classes <file> with the real ones`];
  });
  if (classes.length !== numClasses) throw new UserError('bad_model_spec', `${classes.length} class names given; output "${output}" has ${numClasses} scores`);
  const spec = ModelSpecSchema.parse({
    input,
    layout,
    height,
    width,
    output,
    outputKind,
    classes,
    channelOrder: from('channelOrder', given.channelOrder, () => ['RGB', 'assumed (most exporters); give --channel-order BGR for Caffe-style models']),
    scale: from('scale', given.scale, () => [1 / 255, 'assumed (pixels in 0..1); give --scale']),
    mean: from('mean', given.mean, () => [[0, 0, 0], 'assumed; ImageNet models want --mean 0.485,0.456,0.406']),
    std: from('std', given.std, () => [[1, 1, 1], 'assumed; ImageNet models want --std 0.229,0.224,0.225']),
  });
  return { spec, sources };
}

function parseNames(text: string): string[] | null {
  try {
    const v = JSON.parse(text) as unknown;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
    if (v && typeof v === 'object') return Object.values(v as Record<string, unknown>).map(String); // {"0": "cat", …}
  } catch {
    /* not JSON: a list */
  }
  const list = text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter(Boolean);
  return list.length ? list : null;
}
