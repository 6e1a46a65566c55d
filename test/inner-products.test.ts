// The native addon's inner products (re-ranking's arithmetic): both kernels against a float64
// reference, every float16 value converted as float16.ts converts it, and every index checked.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { innerProductKernel, innerProducts, innerProductsPortable } from '../src/math/inner-products.js';
import { float16ToFloat32, float32ToFloat16 } from '../src/math/float16.js';

let seed = 3;
const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5;
const kernels = { [innerProductKernel()]: innerProducts, portable: innerProductsPortable };

describe('inner products (native addon)', () => {
  test('the CPU gets the vector kernel where it has AVX2, FMA and F16C', () => {
    const flags = process.arch === 'x64' ? readFileSync('/proc/cpuinfo', 'utf8') : '';
    const vector = /\bavx2\b/.test(flags) && /\bfma\b/.test(flags) && /\bf16c\b/.test(flags);
    assert.equal(innerProductKernel(), vector ? 'avx2' : 'portable');
  });

  for (const [name, run] of Object.entries(kernels)) {
    for (const format of ['float32', 'float16'] as const) {
      test(`${name} kernel, ${format} rows in several blocks: a float64 reference, for dimensions around the vector width`, () => {
        for (const d of [1, 7, 31, 32, 33, 100, 12288]) {
          const rowsPerBlock = 5;
          const nq = 3;
          const blocks32 = [0, 1, 2].map(() => Float32Array.from({ length: rowsPerBlock * d }, random));
          const blocks = format === 'float32' ? blocks32 : blocks32.map((b) => new Uint16Array(b.length));
          if (format === 'float16') blocks32.forEach((b, i) => (float32ToFloat16(b, blocks[i] as Uint16Array), float16ToFloat32(blocks[i] as Uint16Array, b)));
          const queries = Float32Array.from({ length: nq * d }, random);
          const n = 20;
          const queryOf = Int32Array.from({ length: n }, (_, i) => i % nq);
          const blockOf = Int32Array.from({ length: n }, (_, i) => (i * 7) % 3);
          const rowOf = Int32Array.from({ length: n }, (_, i) => (i * 3) % rowsPerBlock);
          const out = new Float32Array(n);
          run(queries, d, blocks, queryOf, blockOf, rowOf, out);
          for (let i = 0; i < n; i++) {
            let want = 0;
            let scale = 0;
            for (let j = 0; j < d; j++) {
              const p = queries[queryOf[i] * d + j] * blocks32[blockOf[i]][rowOf[i] * d + j];
              want += p;
              scale += Math.abs(p);
            }
            assert.ok(Math.abs(out[i] - want) <= 1e-6 * scale + 1e-30, `d ${d}, product ${i}: ${out[i]} vs ${want}`);
          }
        }
      });
    }

    test(`${name} kernel: every float16 value, including subnormals, infinities and NaN, is the value float16.ts reads`, () => {
      for (const d of [32, 33]) {
        // row h holds the half h in its last place (the vector loop for d = 32, the tail for 33)
        const rows = new Uint16Array(65536 * d);
        for (let h = 0; h < 65536; h++) rows[h * d + d - 1] = h;
        const query = new Float32Array(d);
        query[d - 1] = 1;
        const out = new Float32Array(65536);
        run(
          query,
          d,
          [rows],
          new Int32Array(65536),
          new Int32Array(65536),
          Int32Array.from({ length: 65536 }, (_, h) => h),
          out,
        );
        const want = new Float32Array(65536);
        float16ToFloat32(
          Uint16Array.from({ length: 65536 }, (_, h) => h),
          want,
        );
        for (let h = 0; h < 65536; h++)
          assert.ok(Object.is(out[h], want[h]) || (want[h] === 0 && out[h] === 0), `d ${d}, half 0x${h.toString(16)}: ${out[h]} vs ${want[h]}`);
      }
    });
  }

  test('every index and type is checked before a row is read', () => {
    const d = 4;
    const blocks = [new Float32Array(2 * d), new Float32Array(3 * d)];
    const q = new Float32Array(2 * d);
    const one = (x: number) => Int32Array.of(x);
    const out = Float32Array.of(42);
    const call =
      (...args: unknown[]) =>
      () =>
        (innerProducts as (...a: unknown[]) => void)(...args);
    assert.throws(call(q, d, blocks, one(2), one(0), one(0), out), /queryOf: a query index is out of range/);
    assert.throws(call(q, d, blocks, one(-1), one(0), one(0), out), /queryOf/);
    assert.throws(call(q, d, blocks, one(0), one(2), one(0), out), /blockOf: a block index is out of range/);
    assert.throws(call(q, d, blocks, one(0), one(0), one(2), out), /rowOf: a row index is out of range/);
    assert.throws(call(q, d, blocks, one(0), one(1), one(-1), out), /rowOf/);
    assert.throws(call(q, d, [blocks[0], new Uint16Array(d)], one(0), one(0), one(0), out), /all be float32 or all float16/);
    assert.throws(call(q, d, [new Float64Array(d)], one(0), one(0), one(0), out), /Float32Arrays or Uint16Arrays/);
    assert.throws(call(q, d, blocks, one(0), one(0), Int32Array.of(0, 0), out), /one length/);
    assert.throws(call(q, d, blocks, Int32Array.of(0, 0), Int32Array.of(0, 0), Int32Array.of(0, 0), out), /out must be/);
    assert.throws(call(q, 0, blocks, one(0), one(0), one(0), out), /dimension/);
    assert.throws(call(q, d, 'blocks', one(0), one(0), one(0), out), /blocks must be an array/);
    assert.throws(call(q, d, blocks), /7 arguments/);
    // a detached buffer holds no rows
    const gone = new Float32Array(d);
    structuredClone(gone.buffer, { transfer: [gone.buffer] });
    assert.throws(call(q, d, [gone], one(0), one(0), one(0), out), /rowOf/);
    assert.equal(out[0], 42, 'a call that throws writes nothing');
    innerProducts(q, d, blocks, one(1), one(1), one(2), out);
    assert.equal(out[0], 0);
  });
});
