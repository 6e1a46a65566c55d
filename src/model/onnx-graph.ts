// Reading an ONNX graph's interface, and making inner tensors fetchable.
// onnxruntime returns only graph outputs, so key layers must be added to the outputs.
import { createHash } from 'node:crypto';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export interface GraphInfo {
  /** elemType: ONNX TensorProto.DataType (1 = float32; 0 = not recorded) */
  inputs: { name: string; dims: (number | string)[]; elemType: number }[];
  outputs: string[];
  /** every node output, in graph order */
  tensors: { name: string; opType: string }[];
  /** names of the weights (initializers) */
  initializers: string[];
  metadata: Record<string, string>;
  opset: number;
  irVersion: number;
}

type Int64 = number | { toNumber(): number };
const toNumber = (v: Int64 | null | undefined): number => (v == null ? 0 : typeof v === 'number' ? v : v.toNumber());

/** Dims of a value's tensor type: numbers for fixed dims, the symbol (or '?') for symbolic ones. */
export function valueDims(v: onnxProto.onnx.IValueInfoProto): (number | string)[] {
  const dims = v.type?.tensorType?.shape?.dim ?? [];
  return dims.map((d) => (d.dimParam ? d.dimParam : d.dimValue != null ? toNumber(d.dimValue) : '?'));
}

/** ONNX element type of a value (1 = float), or 0 if unknown. */
export function valueElemType(v: onnxProto.onnx.IValueInfoProto): number {
  return v.type?.tensorType?.elemType ?? 0;
}

/**
 * Decodes a model. Unlike C++ protobuf (and so onnxruntime), protobufjs keeps only the LAST
 * occurrence of a singular message field instead of merging them, so a model patched by
 * withExtraOutputs would decode as just the patch. Merge the `graph` occurrences ourselves:
 * decoding their concatenated payloads is exactly protobuf's merge (repeated fields append).
 */
export function decodeModel(modelBytes: Uint8Array): onnxProto.onnx.ModelProto {
  const model = onnx.ModelProto.decode(modelBytes);
  const graphs = fieldPayloads(modelBytes, MODEL_GRAPH_FIELD);
  if (graphs.length > 1) model.graph = onnx.GraphProto.decode(Buffer.concat(graphs));
  return model;
}

const MODEL_GRAPH_FIELD = 7; // ModelProto.graph

/** Payloads of every top-level length-delimited occurrence of field `field` in a protobuf message. */
function fieldPayloads(bytes: Uint8Array, field: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  const varint = (): number => {
    let result = 0;
    let mul = 1;
    for (;;) {
      if (pos >= bytes.length) throw new Error('truncated protobuf varint');
      const b = bytes[pos++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
  };
  while (pos < bytes.length) {
    const tag = varint();
    const wire = tag % 8;
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const len = varint();
      if (Math.floor(tag / 8) === field) out.push(bytes.subarray(pos, pos + len));
      pos += len;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
  return out;
}

/** Graph inputs that are real inputs (not initializers, which older exporters also list as inputs). */
export function realInputs(model: onnxProto.onnx.IModelProto): onnxProto.onnx.IValueInfoProto[] {
  const graph = model.graph ?? {};
  const init = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  return (graph.input ?? []).filter((v) => !init.has(v.name ?? ''));
}

export function readGraph(modelBytes: Uint8Array): GraphInfo {
  return graphInfo(decodeModel(modelBytes));
}

export function graphInfo(model: onnxProto.onnx.IModelProto): GraphInfo {
  const graph = model.graph ?? {};
  const tensors: GraphInfo['tensors'] = [];
  for (const node of graph.node ?? []) {
    for (const out of node.output ?? []) if (out) tensors.push({ name: out, opType: node.opType ?? '' });
  }
  const metadata: Record<string, string> = {};
  for (const p of model.metadataProps ?? []) if (p.key) metadata[p.key] = p.value ?? '';
  const defaultOpset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return {
    inputs: realInputs(model).map((v) => ({ name: v.name ?? '', dims: valueDims(v), elemType: valueElemType(v) })),
    outputs: (graph.output ?? []).map((v) => v.name ?? ''),
    tensors,
    initializers: (graph.initializer ?? []).map((t) => t.name ?? ''),
    metadata,
    opset: toNumber(defaultOpset?.version),
    irVersion: toNumber(model.irVersion),
  };
}

/**
 * The model with `names` added as graph outputs.
 *
 * Safe and lossless: protobuf parsers merge a message field that occurs twice, and
 * concatenate repeated fields. So appending a serialised `ModelProto { graph { output: [...] } }`
 * to the original bytes yields the original model with extra entries in graph.output — no
 * re-encoding, weights are untouched byte for byte. The appended outputs carry no type;
 * onnxruntime infers it.
 */
export function withExtraOutputs(modelBytes: Uint8Array, names: string[]): Uint8Array {
  const extra = newOutputs(readGraph(modelBytes), names);
  if (extra.length === 0) return modelBytes;
  const patch = onnx.ModelProto.encode({ graph: { output: extra.map((name) => ({ name })) } }).finish();
  return Buffer.concat([modelBytes, patch]);
}

/** `names` that are not graph outputs yet, each once. */
const newOutputs = (graph: GraphInfo, names: string[]) => [...new Set(names)].filter((n) => !graph.outputs.includes(n));

export function modelHash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * The model (`graph`: what it holds, as graphInfo read it) with the key layers and `outputs` as
 * graph outputs, as withExtraOutputs makes them, and one more output, returned as `key`: the key
 * layers flattened per image and concatenated, [N, Σ sizes] — the cache key before
 * normalisation. onnxruntime writes it once, where copying each layer's rows into place in JS
 * cost ~0.1 ms per image of the paper's 12,288-value keys. Appended as one patch: the original
 * nodes and weights are untouched.
 */
export function withKeyOutput(modelBytes: Uint8Array, graph: GraphInfo, outputs: string[], keyLayers: string[]): { bytes: Uint8Array; key: string } {
  const taken = new Set([...graph.tensors.map((t) => t.name), ...graph.outputs, ...graph.inputs.map((i) => i.name), ...graph.initializers]);
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; taken.has(name); i++) name = `${base}.${i}`;
    taken.add(name);
    return name;
  };
  const axis1 = [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }];
  const flat = keyLayers.map((layer) => ({ layer, name: fresh(`cachet.flat.${layer}`) }));
  const key = fresh('cachet.key');
  const node = flat.map(({ layer, name }) => ({ opType: 'Flatten', input: [layer], output: [name], attribute: axis1 }));
  node.push({ opType: 'Concat', input: flat.map((f) => f.name), output: [key], attribute: axis1 });
  const output = [...newOutputs(graph, [...outputs, ...keyLayers]), key].map((name) => ({ name }));
  const patch = onnx.ModelProto.encode({ graph: { node, output } }).finish();
  return { bytes: Buffer.concat([modelBytes, patch]), key };
}
