import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Projection, fitPca, randomProjection } from '../src/index/projection.js';
import { gaussian, rng } from './fixtures/random.js';

/** mulberry32: a small seeded PRNG, so failures reproduce */

function dot(a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[ao + i] * b[bo + i];
  return s;
}

function normaliseRows(v: Float32Array, n: number, dim: number): Float32Array {
  for (let i = 0; i < n; i++) {
    const inv = 1 / Math.sqrt(dot(v, i * dim, v, i * dim, dim));
    for (let j = 0; j < dim; j++) v[i * dim + j] *= inv;
  }
  return v;
}

/** Orthonormal rows by Gram–Schmidt (float64), for building test subspaces. */
function orthonormal(m: Float64Array, rows: number, dim: number): Float64Array {
  for (let i = 0; i < rows; i++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < i; j++) {
        const c = dot(m, i * dim, m, j * dim, dim);
        for (let t = 0; t < dim; t++) m[i * dim + t] -= c * m[j * dim + t];
      }
    }
    const inv = 1 / Math.sqrt(dot(m, i * dim, m, i * dim, dim));
    for (let t = 0; t < dim; t++) m[i * dim + t] *= inv;
  }
  return m;
}

/** Cyclic Jacobi eigen-decomposition of a symmetric n×n matrix (independent of the module's solver). */
function jacobiEigen(aIn: Float64Array, n: number): { values: number[]; vectors: Float64Array[] } {
  const a = Float64Array.from(aIn);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k];
          const aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => a[y * n + y] - a[x * n + x]);
  return {
    values: order.map((i) => a[i * n + i]),
    vectors: order.map((i) => Float64Array.from({ length: n }, (_, k) => v[k * n + i])),
  };
}

function maxOrthonormalityError(c: Float32Array, rows: number, dim: number): number {
  let worst = 0;
  for (let i = 0; i < rows; i++) {
    for (let j = i; j < rows; j++) {
      worst = Math.max(worst, Math.abs(dot(c, i * dim, c, j * dim, dim) - (i === j ? 1 : 0)));
    }
  }
  return worst;
}

function topK(scores: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: scores.length }, (_, i) => i)
    .sort((x, y) => scores[y] - scores[x] || x - y)
    .slice(0, k);
}

/** n rows: a rank-`rank` signal (coefficients N(0,1) on an orthonormal basis) plus per-coordinate noise. */
function lowRank(n: number, dim: number, rank: number, noise: number, seed: number, basis?: Float64Array) {
  const r = rng(seed);
  const u =
    basis ??
    orthonormal(
      Float64Array.from({ length: rank * dim }, () => gaussian(r)),
      rank,
      dim,
    );
  const x = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < rank; k++) {
      const c = gaussian(r);
      for (let j = 0; j < dim; j++) x[i * dim + j] += c * u[k * dim + j];
    }
    for (let j = 0; j < dim; j++) x[i * dim + j] += noise * gaussian(r);
  }
  return { x, basis: u };
}

describe('randomProjection', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = randomProjection(300, 40, 7);
    const b = randomProjection(300, 40, 7);
    const c = randomProjection(300, 40, 8);
    assert.deepEqual(a.components, b.components);
    assert.equal(a.fingerprint, b.fingerprint);
    assert.notEqual(a.fingerprint, c.fingerprint);
    assert.equal(a.kind, 'random');
    assert.equal(a.inputDimension, 300);
    assert.equal(a.outputDimension, 40);
    assert.equal(a.components.length, 300 * 40);
    assert.match(a.fingerprint, /^[0-9a-f]{64}$/);
  });

  it('has orthonormal rows when outputDimension ≤ inputDimension', () => {
    const p = randomProjection(512, 128, 1);
    assert.ok(maxOrthonormalityError(p.components, 128, 512) < 1e-4);
    const square = randomProjection(64, 64, 2);
    assert.ok(maxOrthonormalityError(square.components, 64, 64) < 1e-4);
  });

  it('has unit rows when outputDimension > inputDimension', () => {
    const p = randomProjection(16, 40, 3);
    for (let i = 0; i < 40; i++) assert.ok(Math.abs(dot(p.components, i * 16, p.components, i * 16, 16) - 1) < 1e-5);
  });

  it('approximately preserves inner products of unit vectors (Johnson–Lindenstrauss)', async () => {
    const D = 1024;
    const d = 256;
    const pairs = 400;
    const r = rng(11);
    // pairs (x, y) with true cosine spread over [-1, 1]
    const xs = new Float32Array(pairs * D);
    const ys = new Float32Array(pairs * D);
    for (let i = 0; i < pairs; i++) {
      const rho = 2 * r() - 1;
      for (let j = 0; j < D; j++) {
        const x = gaussian(r);
        xs[i * D + j] = x;
        ys[i * D + j] = rho * x + Math.sqrt(1 - rho * rho) * gaussian(r);
      }
    }
    normaliseRows(xs, pairs, D);
    normaliseRows(ys, pairs, D);
    const p = randomProjection(D, d, 5);
    const px = await p.project(xs, pairs);
    const py = await p.project(ys, pairs);
    let err = 0;
    let worst = 0;
    for (let i = 0; i < pairs; i++) {
      assert.ok(Math.abs(dot(px, i * d, px, i * d, d) - 1) < 1e-5, 'projected rows are unit');
      const e = Math.abs(dot(px, i * d, py, i * d, d) - dot(xs, i * D, ys, i * D, D));
      err += e;
      worst = Math.max(worst, e);
    }
    err /= pairs;
    // the error of a cosine under a d-dim random projection is ~ (1 − ρ²)/√d ≈ 0.04 here
    assert.ok(err < 0.05, `mean abs error ${err}`);
    assert.ok(worst < 0.25, `worst abs error ${worst}`);
  });
});

describe('fitPca', () => {
  it('finds a planted low-rank subspace and keeps nearest neighbours', async () => {
    const D = 512;
    const rank = 16;
    const n = 2000;
    const { x, basis } = lowRank(n, D, rank, 0.02, 21);
    const p = await fitPca(x, n, D, rank, { seed: 3 });
    assert.equal(p.kind, 'pca');
    assert.equal(p.outputDimension, rank);
    assert.ok(maxOrthonormalityError(p.components, rank, D) < 1e-4);
    const energy = p.info.energyFraction as number;
    assert.ok(energy > 0.95, `energy fraction ${energy}`);

    // principal angles: singular values of C·Uᵀ are their cosines
    const m = new Float64Array(rank * rank);
    for (let i = 0; i < rank; i++) for (let j = 0; j < rank; j++) m[i * rank + j] = dot(p.components, i * D, basis, j * D, D);
    const mmt = new Float64Array(rank * rank);
    for (let i = 0; i < rank; i++) for (let j = 0; j < rank; j++) mmt[i * rank + j] = dot(m, i * rank, m, j * rank, rank);
    const cos2 = jacobiEigen(mmt, rank).values;
    const minCos = Math.sqrt(Math.min(...cos2));
    assert.ok(minCos > 0.99, `largest principal angle has cosine ${minCos}`);

    // top-10 neighbours by projected inner product vs by full inner product
    const keys = normaliseRows(x, n, D);
    const nq = 50;
    const queries = normaliseRows(lowRank(nq, D, rank, 0.02, 22, basis).x, nq, D);
    const pk = await p.project(keys, n);
    const pq = await p.project(queries, nq);
    const k = 10;
    let hits = 0;
    for (let q = 0; q < nq; q++) {
      const full = new Float64Array(n);
      const reduced = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        full[i] = dot(queries, q * D, keys, i * D, D);
        reduced[i] = dot(pq, q * rank, pk, i * rank, rank);
      }
      const truth = new Set(topK(full, k));
      for (const i of topK(reduced, k)) if (truth.has(i)) hits++;
    }
    const recall = hits / (nq * k);
    assert.ok(recall > 0.9, `recall@${k} ${recall}`);
  });

  it('equals the exact top eigenvectors of XᵀX (up to sign) on a small case', async () => {
    const D = 64;
    const n = 300;
    const d = 8;
    const r = rng(31);
    // X = G · diag(0.85^j) · R: a decaying spectrum in a random orientation
    const rot = orthonormal(
      Float64Array.from({ length: D * D }, () => gaussian(r)),
      D,
      D,
    );
    const x = new Float32Array(n * D);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < D; j++) {
        const g = gaussian(r) * 0.85 ** j + 0.3; // + a mean: uncentred moments differ from the covariance
        for (let t = 0; t < D; t++) x[i * D + t] += g * rot[j * D + t];
      }
    }
    const xtx = new Float64Array(D * D);
    for (let i = 0; i < n; i++) {
      for (let a = 0; a < D; a++) {
        const xa = x[i * D + a];
        for (let b = 0; b < D; b++) xtx[a * D + b] += xa * x[i * D + b];
      }
    }
    const exact = jacobiEigen(xtx, D);
    const p = await fitPca(x, n, D, d, { seed: 9 });
    const eig = p.info.eigenvalues as number[];
    let total = 0;
    for (let i = 0; i < n * D; i++) total += x[i] * x[i];
    let top = 0;
    for (let i = 0; i < d; i++) {
      const c = Math.abs(dot(p.components, i * D, exact.vectors[i], 0, D));
      assert.ok(c > 0.999, `component ${i}: |cos| with the exact eigenvector is ${c}`);
      assert.ok(Math.abs(eig[i] - exact.values[i]) / exact.values[i] < 1e-3, `eigenvalue ${i}: ${eig[i]} vs ${exact.values[i]}`);
      top += exact.values[i];
    }
    assert.ok(Math.abs((p.info.energyFraction as number) - top / total) < 1e-4);
  });

  it('is deterministic for a seed', async () => {
    const { x } = lowRank(400, 96, 8, 0.1, 41);
    const a = await fitPca(x, 400, 96, 12, { seed: 1 });
    const b = await fitPca(x, 400, 96, 12, { seed: 1 });
    assert.equal(a.fingerprint, b.fingerprint);
    assert.deepEqual(a.components, b.components);
  });

  it('completes the basis when the sample has fewer directions than requested', async () => {
    // 5 rows of rank 3 → only 3 directions; 10 components asked for
    const { x } = lowRank(5, 40, 3, 0, 51);
    const p = await fitPca(x, 5, 40, 10, { seed: 2 });
    assert.ok(maxOrthonormalityError(p.components, 10, 40) < 1e-4);
    assert.ok((p.info.energyFraction as number) > 0.9999);
  });

  it('rejects more components than dimensions', async () => {
    await assert.rejects(fitPca(new Float32Array(40), 10, 4, 5), RangeError);
  });
});

describe('Projection persistence', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const tempDir = async () => {
    const d = await mkdtemp(join(tmpdir(), 'cachet-projection-'));
    dirs.push(d);
    return d;
  };

  it('round-trips through save/load and toBuffer/fromBuffer', async () => {
    const { x } = lowRank(200, 48, 6, 0.05, 61);
    for (const p of [randomProjection(48, 12, 4), await fitPca(x, 200, 48, 12, { seed: 5 })]) {
      const dir = await tempDir();
      await p.save(dir);
      const loaded = await Projection.load(dir);
      assert.ok(loaded);
      assert.equal(loaded.kind, p.kind);
      assert.equal(loaded.inputDimension, 48);
      assert.equal(loaded.outputDimension, 12);
      assert.deepEqual(loaded.components, p.components);
      assert.equal(loaded.fingerprint, p.fingerprint);
      assert.deepEqual(loaded.info, p.info);

      const buf = p.toBuffer();
      // an unaligned copy, as a Buffer from Redis may be
      const unaligned = Buffer.alloc(buf.length + 1).subarray(1);
      buf.copy(unaligned);
      const back = Projection.fromBuffer(unaligned);
      assert.deepEqual(back.components, p.components);
      assert.equal(back.fingerprint, p.fingerprint);
      assert.equal(back.kind, p.kind);
    }
  });

  it('load gives null when the files are absent and rejects inconsistent files', async () => {
    const dir = await tempDir();
    assert.equal(await Projection.load(dir), null);
    const p = randomProjection(8, 4, 1);
    await p.save(dir);
    await writeFile(join(dir, 'projection.f32'), Buffer.from(randomProjection(8, 4, 2).components.buffer));
    await assert.rejects(Projection.load(dir), /fingerprint/);
    await writeFile(join(dir, 'projection.f32'), Buffer.alloc(12));
    await assert.rejects(Projection.load(dir), /bytes/);
  });

  it('fromBuffer rejects garbage and truncation', () => {
    const buf = randomProjection(8, 4, 1).toBuffer();
    assert.throws(() => Projection.fromBuffer(Buffer.from('nonsense')), /magic/);
    assert.throws(() => Projection.fromBuffer(buf.subarray(0, buf.length - 4)));
    const flipped = Buffer.from(buf);
    flipped[flipped.length - 1] ^= 0x01;
    assert.throws(() => Projection.fromBuffer(flipped), /fingerprint/);
  });

  it('project() keeps a zero row zero and normalises the rest', async () => {
    const p = randomProjection(32, 8, 3);
    const keys = new Float32Array(3 * 32);
    for (let j = 0; j < 32; j++) keys[j] = j + 1; // row 0
    for (let j = 0; j < 32; j++) keys[64 + j] = -0.001 * j; // row 2; row 1 stays zero
    const out = await p.project(keys, 3);
    assert.equal(out.length, 24);
    assert.deepEqual(Array.from(out.subarray(8, 16)), new Array(8).fill(0));
    assert.ok(Math.abs(dot(out, 0, out, 0, 8) - 1) < 1e-5);
    assert.ok(Math.abs(dot(out, 16, out, 16, 8) - 1) < 1e-5);
    assert.equal((await p.project(new Float32Array(0), 0)).length, 0);
    await assert.rejects(p.project(new Float32Array(10), 1), RangeError);
  });
});
