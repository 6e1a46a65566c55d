// Inner products q·kᵀ computed by onnxruntime's Gemm, used as a BLAS: a one-node
// graph `Gemm(q[B,D], k[N,D], transB=1) → s[B,N]`. ORT reads Float32Array inputs
// in place and runs ~12× faster than a plain JS loop.
//
// One session per process (per thread), created lazily and kept for the process's
// life: re-creating ORT sessions leaks memory. `run` is synchronous native work on
// the calling thread, like every index operation.
import onnxProto from 'onnx-proto';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { ARITHMETIC_SESSION } from './arithmetic-session.js';

const { onnx } = onnxProto;

function similarityModel(): Uint8Array {
  const F = onnx.TensorProto.DataType.FLOAT;
  const valueInfo = (name: string, dims: string[]) => ({
    name,
    type: { tensorType: { elemType: F, shape: { dim: dims.map((d) => ({ dimParam: d })) } } },
  });
  return onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'similarity',
      node: [
        {
          opType: 'Gemm',
          input: ['q', 'k'],
          output: ['s'],
          attribute: [{ name: 'transB', type: onnx.AttributeProto.AttributeType.INT, i: 1 }],
        },
      ],
      input: [valueInfo('q', ['B', 'D']), valueInfo('k', ['N', 'D'])],
      output: [valueInfo('s', ['B', 'N'])],
    },
  }).finish();
}

let session: Promise<InferenceSession> | null = null;

function getSession(): Promise<InferenceSession> {
  session ??= InferenceSession.create(similarityModel(), ARITHMETIC_SESSION);
  return session;
}

/**
 * s[b, n] = Σ_d q[b, d] · k[n, d] for `b` query rows and `n` key rows of `dim`
 * floats. `q` and `k` must hold exactly b·dim and n·dim floats (subarrays are fine).
 */
export async function innerProducts(q: Float32Array, b: number, k: Float32Array, n: number, dim: number): Promise<Float32Array> {
  const s = await getSession();
  const out = await s.run({ q: new Tensor('float32', q, [b, dim]), k: new Tensor('float32', k, [n, dim]) });
  return out.s.data as Float32Array;
}
