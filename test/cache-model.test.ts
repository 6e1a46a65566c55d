// The cache model's own arithmetic (src/math/cache-model.ts) on its own, beside the jobs that use it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { l2NormaliseRows } from '../src/math/cache-model.js';
import { gaussian, rng } from './fixtures/random.js';

describe('L2 normalisation of keys', () => {
  test('each row scaled by 1/‖row‖ summed in float64, bit for bit; zero and non-finite rows flagged and left as they were', () => {
    const random = rng(3);
    const dim = 1000;
    const rows = Float32Array.from({ length: 5 * dim }, () => gaussian(random));
    rows.fill(0, dim, 2 * dim); // row 1: zero
    rows[2 * dim + 7] = NaN; // row 2: not finite
    rows[3 * dim + 9] = Infinity; // row 3: not finite
    const before = rows.slice();
    assert.deepEqual(l2NormaliseRows(rows, 5, dim), [true, false, false, false, true]);
    for (const r of [0, 4]) {
      let ss = 0;
      for (let j = 0; j < dim; j++) ss += before[r * dim + j] * before[r * dim + j];
      const want = before.subarray(r * dim, (r + 1) * dim).map((x) => x * (1 / Math.sqrt(ss)));
      assert.deepEqual(rows.subarray(r * dim, (r + 1) * dim), want);
      let norm = 0;
      for (const x of want) norm += x * x;
      assert.ok(Math.abs(norm - 1) < 1e-5);
    }
    for (const r of [1, 2, 3]) assert.deepEqual(rows.subarray(r * dim, (r + 1) * dim), before.subarray(r * dim, (r + 1) * dim));
  });
});
