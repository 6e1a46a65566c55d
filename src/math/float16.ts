// IEEE 754 binary16 conversion: full keys are kept as float16 for re-ranking (index/full-keys.ts),
// and reduced key-log records carry them so.
import onnxProto from 'onnx-proto';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { ARITHMETIC_SESSION } from './arithmetic-session.js';

const { onnx } = onnxProto;

/** float32 → float16 bits, rounding to nearest even; keeps ±0, subnormals, ±Infinity and NaN (quiet). */
export function float32ToFloat16(src: Float32Array, dst: Uint16Array): void {
  const n = src.length;
  if (dst.length < n) throw new RangeError(`float32ToFloat16: ${n} values but room for ${dst.length}`);
  const u = new Uint32Array(src.buffer, src.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const x = u[i];
    const sign = (x >>> 16) & 0x8000;
    const abs = x & 0x7fffffff;
    let h: number;
    if (abs >= 0x7f800000) {
      // Infinity, or NaN: keep the top payload bits and make sure it stays a NaN
      h = abs === 0x7f800000 ? 0x7c00 : 0x7e00 | ((abs >>> 13) & 0x3ff);
    } else if (abs >= 0x477ff000) {
      h = 0x7c00; // ≥ 65520 rounds past 65504, the largest finite float16
    } else if (abs >= 0x38800000) {
      // normal: re-bias the exponent (127 → 15), round the 13 dropped bits to nearest even
      const m = abs - 0x38000000;
      h = (m + 0x0fff + ((m >>> 13) & 1)) >>> 13;
    } else if (abs >= 0x33000000) {
      // float16 subnormal: value = q · 2⁻²⁴, q = mantissa >> (126 − exponent), rounded to even
      const shift = 126 - (abs >>> 23);
      const mant = (abs & 0x7fffff) | 0x800000;
      let q = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (q & 1) === 1)) q++;
      h = q; // q = 0x400 is the smallest normal, encoded the same way
    } else {
      h = 0; // ≤ 2⁻²⁵ rounds to zero
    }
    dst[i] = sign | h;
  }
}

let table: Float32Array | null = null;

/** float16 bits → float32 for all 65,536 values (256 KB, built on first use). */
function float16Table(): Float32Array {
  if (table) return table;
  const t = new Float32Array(65536);
  const u = new Uint32Array(t.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0)
      t[h] = (sign ? -m : m) * 2 ** -24; // ±0 or subnormal: exact in float32 (-0 · 2⁻²⁴ = -0)
    else if (e === 31) u[h] = (sign | 0x7f800000 | (m << 13)) >>> 0;
    else u[h] = (sign | ((e + 112) << 23) | (m << 13)) >>> 0;
  }
  table = t;
  return t;
}

/** float16 bits → float32, through a 65,536-entry lookup table. */
export function float16ToFloat32(src: Uint16Array, dst: Float32Array): void {
  const n = src.length;
  if (dst.length < n) throw new RangeError(`float16ToFloat32: ${n} values but room for ${dst.length}`);
  const t = float16Table();
  for (let i = 0; i < n; i++) dst[i] = t[src[i]];
}

// ---------------------------------------------------------------------------
// The same conversion by onnxruntime's Cast (native code), for whole batches of keys: 64 keys of
// 12,288 values in 5.0 ms against the loop's 8.0 ms (measured here with other work running), and
// one array for the batch instead of one per key. The loop stays for single rows and as the
// reference the tests hold the Cast to, bit for bit. One session per process (per thread), kept:
// re-creating ORT sessions leaks memory.

let castSession: Promise<InferenceSession> | null = null;

function castModel(): Uint8Array {
  const { FLOAT, FLOAT16 } = onnx.TensorProto.DataType;
  const valueInfo = (name: string, elemType: number) => ({ name, type: { tensorType: { elemType, shape: { dim: [{ dimParam: 'N' }] } } } });
  return onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'to-float16',
      node: [{ opType: 'Cast', input: ['x'], output: ['y'], attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: FLOAT16 }] }],
      input: [valueInfo('x', FLOAT)],
      output: [valueInfo('y', FLOAT16)],
    },
  }).finish();
}

/** float32 → float16 bits (round to nearest even), as float32ToFloat16, for a whole array at once. */
export async function castToFloat16(src: Float32Array): Promise<Uint16Array> {
  if (src.length === 0) return new Uint16Array(0);
  castSession ??= InferenceSession.create(castModel(), ARITHMETIC_SESSION);
  const { y } = await (await castSession).run({ x: new Tensor('float32', src, [src.length]) });
  return y.data as Uint16Array;
}
