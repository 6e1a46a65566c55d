// A tiny typed ONNX model builder, for building float32 graphs in code (test fixtures, demos).
//
// Attribute rule, one line: a string is STRING; a number is INT if it is an integer, else FLOAT;
// a number[] is INTS if every element is an integer, else FLOATS; wrap in `{ f: ... }` to force
// FLOAT/FLOATS (e.g. Gemm `alpha: { f: 1 }` — ORT rejects an INT where the op wants a float).
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
const AttributeType = onnx.AttributeProto.AttributeType;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

export type AttributeValue = number | number[] | string | { f: number | number[] };
export type Dims = (number | string)[];

export interface ModelDefinition {
  inputs: { name: string; dims: Dims }[];
  outputs: { name: string; dims: Dims }[];
  nodes: { opType: string; inputs: string[]; outputs: string[]; attributes?: Record<string, AttributeValue>; name?: string }[];
  initializers?: { name: string; dims: number[]; data: Float32Array }[];
  /** default opset 13 */
  opset?: number;
  metadata?: Record<string, string>;
}

function attribute(name: string, v: AttributeValue): onnxProto.onnx.IAttributeProto {
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') return Number.isInteger(v) ? { name, type: AttributeType.INT, i: v } : { name, type: AttributeType.FLOAT, f: v };
  if (Array.isArray(v)) return v.every(Number.isInteger) ? { name, type: AttributeType.INTS, ints: v } : { name, type: AttributeType.FLOATS, floats: v };
  return Array.isArray(v.f) ? { name, type: AttributeType.FLOATS, floats: v.f } : { name, type: AttributeType.FLOAT, f: v.f };
}

function valueInfo(name: string, dims: Dims): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

export function buildModel(def: ModelDefinition): Uint8Array {
  for (const t of def.initializers ?? []) {
    const size = t.dims.reduce((a, b) => a * b, 1);
    if (size !== t.data.length) throw new Error(`initializer ${t.name}: dims [${t.dims}] hold ${size} values, data has ${t.data.length}`);
  }
  const model: onnxProto.onnx.IModelProto = {
    irVersion: 8,
    producerName: 'cachet-builder',
    opsetImport: [{ domain: '', version: def.opset ?? 13 }],
    metadataProps: Object.entries(def.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: {
      name: 'graph',
      input: def.inputs.map((i) => valueInfo(i.name, i.dims)),
      output: def.outputs.map((o) => valueInfo(o.name, o.dims)),
      node: def.nodes.map((n, k) => ({
        name: n.name ?? `${n.opType.toLowerCase()}_${k}`,
        opType: n.opType,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attributes ?? {}).map(([key, v]) => attribute(key, v)),
      })),
      initializer: (def.initializers ?? []).map((t) => ({
        name: t.name,
        dims: t.dims,
        dataType: FLOAT,
        // rawData is little-endian float32, which is what a Float32Array holds on every platform Node runs on
        rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      })),
    },
  };
  return onnx.ModelProto.encode(model).finish();
}
