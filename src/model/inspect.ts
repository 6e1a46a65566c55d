// Lists every tensor of a model with its op type and per-image shape, to help choose keyLayers.
// Shapes come from one real probe run (batch 1, zeros), not from shape inference in the file,
// which many exporters leave incomplete.
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors/user-error.js';
import { inputShape, loadModelBytes } from './extractor.js';
import { withExtraOutputs } from './onnx-graph.js';
import type { ModelSpec } from './spec.js';

export interface InspectedTensor {
  name: string;
  opType: string;
  /** shape for a batch of one image */
  shape: number[];
  /** number of values per image (= keyDimension if used alone as a key layer) */
  size: number;
}

export interface Inspection {
  input: { name: string; dims: (number | string)[] };
  tensors: InspectedTensor[];
  /** things the user should know, e.g. inputs that were skipped */
  notes: string[];
}

const FLOAT = 1;

export async function inspectModel(modelPath: string, spec?: ModelSpec): Promise<Inspection> {
  const { bytes, graph } = await loadModelBytes(modelPath);
  const notes: string[] = [];
  const inputs = graph.inputs;
  const floatInputs = inputs.filter((v) => v.elemType === FLOAT || v.elemType === 0);
  for (const v of inputs) if (!floatInputs.includes(v)) notes.push(`input "${v.name}" is not float32 (ONNX type ${v.elemType}); skipped`);

  const input = spec ? inputs.find((v) => v.name === spec.input) : floatInputs[0];
  if (!input)
    throw new UserError(
      spec ? 'bad_model_spec' : 'bad_model',
      spec
        ? `spec.input "${spec.input}" is not an input of ${modelPath}; its inputs are: ${inputs.map((v) => v.name).join(', ')}`
        : `${modelPath} has no float32 input to probe`,
    );
  if (floatInputs.length > 1)
    notes.push(
      `probing with input "${input.name}" only; other inputs: ${floatInputs
        .filter((v) => v !== input)
        .map((v) => v.name)
        .join(', ')}`,
    );
  const dims = input.dims;

  let shape: number[];
  if (spec) shape = inputShape(spec, 1);
  else {
    if (dims.length === 0)
      throw new UserError('bad_model_spec', `input "${input.name}" of ${modelPath} records no shape; give a model spec (layout, height, width)`);
    const symbolic = dims.slice(1).filter((d) => typeof d !== 'number');
    if (symbolic.length > 0)
      throw new UserError(
        'bad_model_spec',
        `input "${input.name}" of ${modelPath} has symbolic dims [${dims.join(',')}]; give a model spec (layout, height, width) so the probe knows the image size`,
      );
    shape = [1, ...(dims.slice(1) as number[])];
  }

  const tensorNames = [...new Set(graph.tensors.map((t) => t.name))];
  const opTypeOf = new Map(graph.tensors.map((t) => [t.name, t.opType] as const));

  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(withExtraOutputs(bytes, tensorNames));
  } catch (err) {
    throw new UserError('bad_model', `onnxruntime cannot load ${modelPath}: ${(err as Error).message}`);
  }
  try {
    const size = shape.reduce((a, b) => a * b, 1);
    let fetched: ort.InferenceSession.OnnxValueMapType;
    try {
      fetched = await session.run({ [input.name]: new ort.Tensor('float32', new Float32Array(size), shape) }, tensorNames);
    } catch (err) {
      throw new UserError('bad_model_spec', `probe run of ${modelPath} with input "${input.name}" of shape [${shape}] failed: ${(err as Error).message}`);
    }
    const tensors = tensorNames.map((name) => {
      const t = fetched[name];
      const tshape = [...t.dims];
      return { name, opType: opTypeOf.get(name) ?? '', shape: tshape, size: tshape.reduce((a, b) => a * b, 1) };
    });
    return { input: { name: input.name, dims }, tensors, notes };
  } finally {
    await session.release();
  }
}
