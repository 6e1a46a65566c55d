import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FullKeyStore, type KeyFormat } from '../src/index/full-keys.js';
import { castToFloat16, float16ToFloat32, float32ToFloat16 } from '../src/math/float16.js';
import { bestFirst } from '../src/engine/search-index.js';
import { gaussian, rng } from './fixtures/random.js';

/** mulberry32: a small seeded PRNG, so failures reproduce */

/** n random unit vectors of `dim` floats, row-major */
function unitVectors(n: number, dim: number, seed: number): Float32Array {
  const r = rng(seed);
  const v = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let j = 0; j < dim; j++) {
      const x = gaussian(r);
      v[i * dim + j] = x;
      ss += x * x;
    }
    const inv = 1 / Math.sqrt(ss);
    for (let j = 0; j < dim; j++) v[i * dim + j] *= inv;
  }
  return v;
}

/** float64 reference: q · keys[p] for each p */
function reference(q: Float32Array, keys: Float32Array, dim: number, positions: Int32Array): Float64Array {
  return Float64Array.from(positions, (p) => {
    let s = 0;
    for (let j = 0; j < dim; j++) s += q[j] * keys[p * dim + j];
    return s;
  });
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tol, `${what}[${i}]: ${actual[i]} vs ${expected[i]} (tolerance ${tol})`);
  }
}

const toHalf = (x: number): number => {
  const h = new Uint16Array(1);
  float32ToFloat16(Float32Array.of(x), h);
  return h[0];
};
const fromHalf = (h: number): number => {
  const f = new Float32Array(1);
  float16ToFloat32(Uint16Array.of(h), f);
  return f[0];
};
const isHalfNaN = (h: number): boolean => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;

describe('float16 conversion', () => {
  it('decodes known bit patterns', () => {
    assert.equal(fromHalf(0x3c00), 1);
    assert.equal(fromHalf(0xc000), -2);
    assert.equal(fromHalf(0x7bff), 65504);
    assert.equal(fromHalf(0x0400), 2 ** -14);
    assert.equal(fromHalf(0x0001), 2 ** -24);
    assert.equal(fromHalf(0x03ff), 1023 * 2 ** -24);
    assert.equal(fromHalf(0x3555), 0.333251953125);
    assert.ok(Object.is(fromHalf(0x0000), 0));
    assert.ok(Object.is(fromHalf(0x8000), -0));
    assert.equal(fromHalf(0x7c00), Infinity);
    assert.equal(fromHalf(0xfc00), -Infinity);
    assert.ok(Number.isNaN(fromHalf(0x7e00)));
    assert.ok(Number.isNaN(fromHalf(0xfc01)));
  });

  it('encodes edge cases, rounding to nearest even', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-1, 0xbc00],
      [65504, 0x7bff],
      [-65504, 0xfbff],
      [65519.99, 0x7bff], // below the midpoint to 65536
      [65520, 0x7c00], // the midpoint, 65504 is odd: rounds to Infinity
      [1e6, 0x7c00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [1023 * 2 ** -24, 0x03ff], // largest subnormal
      [1023.5 * 2 ** -24, 0x0400], // tie, 1023 odd: up into the normals
      [-(2 ** -24), 0x8001],
      [2 ** -25, 0x0000], // tie between 0 and 2⁻²⁴: to even (0)
      [-(2 ** -25), 0x8000],
      [2 ** -25 * 1.0001, 0x0001],
      [1.5 * 2 ** -24, 0x0002], // tie, 1 odd: up
      [2.5 * 2 ** -24, 0x0002], // tie, 2 even: down
      [1e-10, 0x0000],
      [1 + 2 ** -11, 0x3c00], // tie, mantissa 0 even: down
      [1 + 3 * 2 ** -11, 0x3c02], // tie, mantissa 1 odd: up
      [1 + 2 ** -11 + 2 ** -20, 0x3c01],
      [2 ** -14 - 2 ** -26, 0x0400], // subnormal range rounding up to the smallest normal
    ];
    for (const [x, h] of cases) assert.equal(toHalf(x), h, `${x} → 0x${toHalf(x).toString(16)}, expected 0x${h.toString(16)}`);
    assert.ok(isHalfNaN(toHalf(NaN)));
    // a NaN whose payload lies only in the low bits stays a NaN
    const nan = new Float32Array(1);
    new Uint32Array(nan.buffer)[0] = 0xff800001;
    const h = new Uint16Array(1);
    float32ToFloat16(nan, h);
    assert.ok(isHalfNaN(h[0]));
  });

  it('every float16 value survives float16 → float32 → float16', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = new Float32Array(65536);
    float16ToFloat32(all, f);
    const back = new Uint16Array(65536);
    float32ToFloat16(f, back);
    for (let i = 0; i < 65536; i++) {
      if (isHalfNaN(i)) assert.ok(isHalfNaN(back[i]), `NaN 0x${i.toString(16)}`);
      else assert.equal(back[i], i, `0x${i.toString(16)}`);
    }
  });

  it('random values round to the nearest float16 (ties to even), within float16 precision', () => {
    const r = rng(7);
    const n = 200_000;
    const src = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      // magnitudes from 2⁻³⁰ to 2¹⁷: subnormals, normals and overflow
      src[i] = (r() < 0.5 ? -1 : 1) * 2 ** (r() * 47 - 30) * (1 + r());
    }
    const h = new Uint16Array(n);
    float32ToFloat16(src, h);
    const back = new Float32Array(n);
    float16ToFloat32(h, back);
    for (let i = 0; i < n; i++) {
      const x = src[i];
      const a = Math.abs(x);
      if (a >= 65520) {
        assert.equal(back[i], Math.sign(x) * Infinity, `${x}`);
        continue;
      }
      // the neighbours one step either side (same sign) are no closer
      const mag = h[i] & 0x7fff;
      const err = Math.abs(Math.abs(back[i]) - a);
      for (const m of [mag - 1, mag + 1]) {
        if (m < 0 || m > 0x7bff) continue;
        const other = Math.abs(Math.abs(fromHalf(m)) - a);
        assert.ok(err < other || (err === other && (mag & 1) === 0), `${x}: 0x${h[i].toString(16)} is not the nearest`);
      }
      if (a >= 2 ** -14) assert.ok(err <= a * 2 ** -11, `${x}: relative error ${err / a}`);
      else assert.ok(err <= 2 ** -25, `${x}: absolute error ${err}`);
      if (back[i] !== 0) assert.equal(Math.sign(back[i]), Math.sign(x));
    }
  });

  it("onnxruntime's Cast (castToFloat16, for batches) gives the same bits as the reference loop", async () => {
    const r = rng(11);
    const finite = new Float32Array(100_000);
    for (let i = 0; i < finite.length; i++) finite[i] = (r() < 0.5 ? -1 : 1) * 2 ** (r() * 50 - 32) * (1 + r());
    // every float16 value and the midpoints between neighbours (ties), as float32
    const all = new Uint16Array(0x7c00).map((_, i) => i);
    const exact = new Float32Array(all.length);
    float16ToFloat32(all, exact);
    const ties = exact.slice(1).map((v, i) => (v + exact[i]) / 2);
    const edges = Float32Array.of(0, -0, 65504, 65519.99, 65520, -65520, Infinity, -Infinity, 2 ** -24, 2 ** -25, 2 ** -25 * 1.0001, 2 ** -14);
    for (const src of [finite, exact, ties, exact.map((v) => -v), edges]) {
      const expected = new Uint16Array(src.length);
      float32ToFloat16(src, expected);
      const got = await castToFloat16(src);
      const firstDiff = got.findIndex((h, i) => h !== expected[i]);
      assert.equal(
        firstDiff,
        -1,
        firstDiff < 0 ? '' : `${src[firstDiff]}: Cast 0x${got[firstDiff].toString(16)}, reference 0x${expected[firstDiff].toString(16)}`,
      );
    }
    assert.equal((await castToFloat16(new Float32Array(0))).length, 0);
  });
});

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cachet-fullkeys-'));
  dirs.push(dir);
  return dir;
}

const TOLERANCE: Record<KeyFormat, number> = { float32: 1e-5, float16: 2e-3 };

for (const format of ['float32', 'float16'] as const) {
  describe(`FullKeyStore (${format})`, () => {
    const dim = 300;
    const n = 60;
    const keys = unitVectors(n, dim, 1);
    const queries = unitVectors(5, dim, 2);

    function filled(blockRows?: number): FullKeyStore {
      const store = new FullKeyStore(dim, format, { blockRows });
      store.add(keys.subarray(0, 13 * dim), 13);
      store.add(keys.subarray(13 * dim), n - 13);
      return store;
    }

    it('stores keys: float32 exactly, float16 within its precision', () => {
      const store = filled();
      assert.equal(store.size, n);
      assert.equal(store.dimension, dim);
      assert.equal(store.format, format);
      for (let p = 0; p < n; p++) {
        const k = store.key(p);
        assert.ok(k instanceof Float32Array);
        assert.equal(k.length, dim);
        const original = keys.subarray(p * dim, (p + 1) * dim);
        if (format === 'float32') assert.deepEqual(k, original);
        else for (let j = 0; j < dim; j++) assert.ok(Math.abs(k[j] - original[j]) <= Math.abs(original[j]) * 2 ** -11 + 2 ** -25);
      }
      // key() is a copy
      store.key(0).fill(9);
      assert.notEqual(store.key(0)[0], 9);
      assert.throws(() => store.key(n), RangeError);
      assert.throws(() => store.key(-1), RangeError);
    });

    it('similarities match a float64 reference, for repeated and unordered positions', async () => {
      const store = filled();
      const positions = Int32Array.from([59, 3, 3, 0, 41, 17, 59, 22, 3, 8]);
      for (let qi = 0; qi < 5; qi++) {
        const q = queries.subarray(qi * dim, (qi + 1) * dim);
        const s = await store.similarities(q, positions);
        assert.ok(s instanceof Float32Array);
        assertClose(s, reference(q, keys, dim, positions), TOLERANCE[format], `query ${qi}`);
        assert.equal(s[1], s[2]);
        assert.equal(s[0], s[6]);
      }
      // a key with itself: ~1
      const self = await store.similarities(keys.subarray(17 * dim, 18 * dim), Int32Array.of(17));
      assertClose(self, [1], TOLERANCE[format], 'self');
      assert.equal((await store.similarities(queries.subarray(0, dim), new Int32Array(0))).length, 0);
      await assert.rejects(store.similarities(queries.subarray(0, dim), Int32Array.of(n)), RangeError);
      await assert.rejects(store.similarities(new Float32Array(dim - 1), Int32Array.of(0)), RangeError);
    });

    it('a batch equals the single queries', async () => {
      const store = filled();
      const r = rng(3);
      const lists = [
        Int32Array.from({ length: 25 }, () => Math.floor(r() * n)),
        new Int32Array(0),
        Int32Array.from({ length: 60 }, (_, i) => n - 1 - i),
        Int32Array.of(5),
        Int32Array.from({ length: 200 }, () => Math.floor(r() * n)),
      ];
      const batch = await store.similaritiesBatch(queries, 5, lists);
      assert.equal(batch.length, 5);
      for (let qi = 0; qi < 5; qi++) {
        const q = queries.subarray(qi * dim, (qi + 1) * dim);
        const single = await store.similarities(q, lists[qi]);
        assertClose(batch[qi], single, 1e-6, `query ${qi}`);
        assertClose(batch[qi], reference(q, keys, dim, lists[qi]), TOLERANCE[format], `query ${qi} vs reference`);
      }
      assert.deepEqual(await store.similaritiesBatch(new Float32Array(0), 0, []), []);
      await assert.rejects(store.similaritiesBatch(queries, 5, lists.slice(1)), RangeError);
    });

    it('long lists of wide keys, of mixed lengths and with repeats, match the reference', async () => {
      // 4,096 dims; lists far longer than the store (positions repeat), one call for all three
      const wide = 4096;
      const m = 40;
      const wideKeys = unitVectors(m, wide, 4);
      const qs = unitVectors(3, wide, 5);
      const store = new FullKeyStore(wide, format);
      store.add(wideKeys, m);
      const r = rng(6);
      const lists = [1300, 7, 513].map((len) => Int32Array.from({ length: len }, () => Math.floor(r() * m)));
      const batch = await store.similaritiesBatch(qs, 3, lists);
      for (let qi = 0; qi < 3; qi++) {
        const q = qs.subarray(qi * wide, (qi + 1) * wide);
        assertClose(batch[qi], reference(q, wideKeys, wide, lists[qi]), TOLERANCE[format], `query ${qi}`);
      }
    });

    it('grows past block boundaries', async () => {
      const store = new FullKeyStore(dim, format, { blockRows: 7 });
      for (let done = 0, step = 1; done < n; step = (step % 11) + 2) {
        const take = Math.min(step, n - done);
        store.add(keys.subarray(done * dim, (done + take) * dim), take);
        done += take;
        assert.equal(store.size, done);
      }
      const single = filled();
      const all = Int32Array.from({ length: n }, (_, i) => i);
      for (let p = 0; p < n; p++) assert.deepEqual(store.key(p), single.key(p));
      const q = queries.subarray(0, dim);
      assertClose(await store.similarities(q, all), reference(q, keys, dim, all), TOLERANCE[format], 'blocked');
      // the default blocks also grow (by doubling from 1,024 rows)
      const small = new FullKeyStore(4, format);
      const many = unitVectors(3000, 4, 8);
      small.add(many, 3000);
      for (const p of [0, 1023, 1024, 2047, 2048, 2999]) {
        const k = small.key(p);
        for (let j = 0; j < 4; j++) assert.ok(Math.abs(k[j] - many[p * 4 + j]) <= TOLERANCE[format] / 4);
      }
    });

    it('saves and loads', async () => {
      const dir = await tempDir();
      const store = filled(16);
      await store.save(dir);
      const loaded = await FullKeyStore.load(dir);
      assert.ok(loaded);
      assert.equal(loaded.size, n);
      assert.equal(loaded.dimension, dim);
      assert.equal(loaded.format, format);
      for (let p = 0; p < n; p++) assert.deepEqual(loaded.key(p), store.key(p));
      const positions = Int32Array.of(4, 50, 4, 33);
      const q = queries.subarray(dim, 2 * dim);
      assert.deepEqual(await loaded.similarities(q, positions), await store.similarities(q, positions));
      // a loaded store keeps growing
      loaded.add(keys.subarray(0, 3 * dim), 3);
      assert.equal(loaded.size, n + 3);
      assert.deepEqual(loaded.key(n + 1), store.key(1));
      // with other block sizes too
      const reblocked = await FullKeyStore.load(dir, { blockRows: 5 });
      assert.ok(reblocked);
      for (let p = 0; p < n; p++) assert.deepEqual(reblocked.key(p), store.key(p));
      // an empty store
      const emptyDir = await tempDir();
      await new FullKeyStore(dim, format).save(emptyDir);
      const empty = await FullKeyStore.load(emptyDir);
      assert.equal(empty?.size, 0);
    });

    it('a snapshot after another links its full segments instead of writing them again; only new rows are written', async () => {
      const store = filled(8); // segments of 8 rows: 7 full, one of 4
      const first = await tempDir();
      assert.deepEqual(await store.save(first), {}, 'nothing to link from');
      const files = Object.fromEntries(
        (await readdir(first)).filter((f) => f.endsWith('.bin')).map((f) => [f, { bytes: statSync(join(first, f)).size, sha256: 'recorded' }]),
      );
      store.add(keys.subarray(0, 10 * dim), 10); // the last segment fills and one more starts
      const second = await tempDir();
      const linked = await store.save(second, { dir: first, files });
      assert.deepEqual(
        Object.keys(linked).sort(),
        ['000000', '000001', '000002', '000003', '000004', '000005', '000006'].map((i) => `fullkeys-${i}.bin`),
      );
      assert.equal(linked['fullkeys-000000.bin'].sha256, 'recorded', 'checksums as the previous manifest recorded them');
      for (const name of Object.keys(linked)) assert.equal(statSync(join(second, name)).ino, statSync(join(first, name)).ino, `${name} is a link`);
      assert.notEqual(statSync(join(second, 'fullkeys-000007.bin')).ino, statSync(join(first, 'fullkeys-000007.bin')).ino, 'the segment that grew is written');
      const loaded = await FullKeyStore.load(second, { blockRows: 8 });
      assert.equal(loaded?.size, n + 10);
      for (let p = 0; p < n + 10; p++) assert.deepEqual(loaded!.key(p), store.key(p));
      // another layout (segment size) is never linked from
      const third = await tempDir();
      assert.deepEqual(await filled(16).save(third, { dir: first, files }), {});
    });
  });
}

describe('FullKeyStore', () => {
  it('load returns null where there are no full keys', async () => {
    assert.equal(await FullKeyStore.load(await tempDir()), null);
  });

  it('float16 halves the memory', () => {
    const dim = 100;
    const keys = unitVectors(2000, dim, 9);
    const f32 = new FullKeyStore(dim, 'float32');
    const f16 = new FullKeyStore(dim, 'float16');
    f32.add(keys, 2000);
    f16.add(keys, 2000);
    assert.ok(f32.memoryBytes >= 2000 * dim * 4);
    assert.equal(f16.memoryBytes * 2, f32.memoryBytes);
    assert.equal(new FullKeyStore(dim, 'float16').memoryBytes, 0);
  });

  it('rejects bad arguments', () => {
    assert.throws(() => new FullKeyStore(0, 'float32'), RangeError);
    assert.throws(() => new FullKeyStore(8, 'float64' as KeyFormat), RangeError);
    const store = new FullKeyStore(8, 'float16');
    assert.throws(() => store.add(new Float32Array(15), 2), RangeError);
  });
});

describe('re-ranked candidates, best first', () => {
  it('orders as a sort by similarity then position would, ties and repeats included, in place', () => {
    const random = rng(7);
    for (let trial = 0; trial < 200; trial++) {
      const n = Math.floor(random() * 60);
      // few distinct similarities, so that ties are common; positions unique, as an index returns them
      const positions = Int32Array.from({ length: n }, (_, i) => i * 7 + Math.floor(random() * 7));
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [positions[i], positions[j]] = [positions[j], positions[i]];
      }
      const similarities = Float32Array.from({ length: n }, () => Math.round(random() * 8) / 8 - 0.5);
      const expected = Array.from(positions.keys()).sort((a, b) => similarities[b] - similarities[a] || positions[a] - positions[b]);
      const want = { positions: Int32Array.from(expected, (i) => positions[i]), similarities: Float32Array.from(expected, (i) => similarities[i]) };
      const got = bestFirst(positions, similarities);
      assert.deepEqual(got, want);
      assert.equal(got.positions, positions, 'sorted in place');
    }
  });
});
