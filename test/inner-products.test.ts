// The native addon's inner products (re-ranking's arithmetic): both kernels against a float64
// reference, every float16 value converted as float16.ts converts it, and every index checked.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import fc from 'fast-check';
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

  test('fuzzed arguments: the addon throws or computes what a float64 loop does, and never reads out of bounds', () => {
    // Valid calls, then one argument replaced by junk or one index pushed out of range. A read out of
    // bounds would crash this process, or show as a product unlike the reference's.
    const junk = fc.oneof(
      fc.constantFrom(null, undefined, 4, -1, 2 ** 32 + 4, 2.5, NaN, Infinity, '4', [1, 2], {}),
      fc.array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { maxLength: 6 }).map((v) => Int32Array.from(v)),
      fc.array(fc.float({ noNaN: true }), { maxLength: 6 }).map((v) => Float32Array.from(v)),
      fc.array(fc.integer({ min: 0, max: 65535 }), { maxLength: 6 }).map((v) => Uint16Array.from(v)),
      fc.array(fc.double({ noNaN: true }), { maxLength: 6 }).map((v) => Float64Array.from(v)),
    );
    const badIndex = fc.oneof(fc.integer({ min: -5, max: -1 }), fc.integer({ min: 0, max: 12 }), fc.constantFrom(2 ** 31 - 1, -(2 ** 31)));
    const call = fc.record({
      d: fc.integer({ min: 1, max: 40 }),
      nq: fc.integer({ min: 1, max: 3 }),
      half: fc.boolean(),
      blockRows: fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 3 }),
      picks: fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat()), { maxLength: 8 }),
      mutation: fc.option(
        fc.oneof(fc.record({ arg: fc.integer({ min: 0, max: 6 }), junk }), fc.record({ index: fc.integer({ min: 3, max: 5 }), at: fc.nat(), value: badIndex })),
      ),
    });
    let ran = 0;
    let refused = 0;
    fc.assert(
      fc.property(call, ({ d, nq, half, blockRows, picks, mutation }) => {
        const values = (n: number) => Float32Array.from({ length: n }, random);
        const blocks32 = blockRows.map((rows) => values(rows * d));
        const blocks = half ? blocks32.map((b) => new Uint16Array(b.length)) : blocks32;
        if (half) blocks32.forEach((b, i) => (float32ToFloat16(b, blocks[i] as Uint16Array), float16ToFloat32(blocks[i] as Uint16Array, b)));
        const usable = picks.filter(([, b]) => blockRows[b % blockRows.length] > 0);
        const qOf = Int32Array.from(usable, ([q]) => q % nq);
        const bOf = Int32Array.from(usable, ([, b]) => b % blockRows.length);
        const rOf = Int32Array.from(usable, ([, b, r]) => r % blockRows[b % blockRows.length]);
        const args: unknown[] = [values(nq * d), d, blocks, qOf, bOf, rOf, Float32Array.from({ length: usable.length }, () => 42)];
        if (mutation && 'arg' in mutation) args[mutation.arg] = mutation.junk;
        if (mutation && 'index' in mutation && usable.length > 0) (args[mutation.index] as Int32Array)[mutation.at % usable.length] = mutation.value;
        const out = args[6];
        const before = out instanceof Float32Array ? out.slice() : null;
        try {
          (innerProducts as (...a: unknown[]) => void)(...args);
        } catch (err) {
          assert.ok(err instanceof RangeError, String(err));
          if (before) assert.deepEqual(out, before, 'a call that throws writes nothing');
          refused++;
          return;
        }
        // it ran: then what it was given is a valid call, and each product is the reference's
        const [q, dd, bs, qo, bo, ro, o] = args as [Float32Array, number, (Float32Array | Uint16Array)[], Int32Array, Int32Array, Int32Array, Float32Array];
        assert.ok(Number.isInteger(dd) && dd >= 1, `ran with dimension ${dd}`);
        for (let i = 0; i < qo.length; i++) {
          const query = q.subarray(qo[i] * dd, (qo[i] + 1) * dd);
          const stored = bs[bo[i]].subarray(ro[i] * dd, (ro[i] + 1) * dd);
          const row = stored instanceof Float32Array ? stored : new Float32Array(stored.length);
          if (stored instanceof Uint16Array) float16ToFloat32(stored, row);
          assert.ok(qo[i] >= 0 && bo[i] >= 0 && ro[i] >= 0 && query.length === dd && row.length === dd, `product ${i} ran on a query or row out of bounds`);
          let want = 0;
          let scale = 0;
          for (let j = 0; j < dd; j++) {
            want += query[j] * row[j];
            scale += Math.abs(query[j] * row[j]);
          }
          assert.ok(Math.abs(o[i] - want) <= 1e-5 * scale + 1e-30, `${o[i]} vs ${want}`);
        }
        ran++;
      }),
      { numRuns: 3000, seed: 20261204 },
    );
    assert.ok(ran >= 300 && refused >= 300, `${ran} calls ran and ${refused} were refused: the fuzzing should reach both`);
  });

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
