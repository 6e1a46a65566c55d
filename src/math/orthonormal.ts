// Orthonormalising the rows of a matrix: in float64 JS for reproducible random projections, and
// block Gram–Schmidt with the large products on onnxruntime's Gemm for PCA.
import { innerProducts } from './gemm.js';
import type { Rng } from './rng.js';

/**
 * Orthonormalises the rows of m in place, in order: modified Gram–Schmidt over
 * blocks of 16 rows (each finished row is read from memory once per block and
 * applied to the block four rows at a time), repeated for a block whose rows lost more than
 * half their norm ("twice is enough"); a row that vanishes is replaced by a
 * fresh Gaussian one.
 */
export function gramSchmidt64(m: Float64Array, rows: number, len: number, rng: Rng): void {
  const BS = 16;
  const before = new Float64Array(BS);
  for (let i0 = 0; i0 < rows; i0 += BS) {
    const bs = Math.min(BS, rows - i0);
    for (let attempt = 0; ; attempt++) {
      for (let k = 0; k < bs; k++) before[k] = Math.sqrt(dot64(m, (i0 + k) * len, m, (i0 + k) * len, len));
      let ok = true;
      for (let pass = 0; pass < 2; pass++) {
        for (let j = 0; j < i0; j++) {
          for (let g = 0; g < bs; g += 4) subtractProjections(m, len, j * len, (i0 + g) * len, Math.min(4, bs - g));
        }
        ok = true;
        let shrunk = false;
        for (let k = 0; k < bs; k++) {
          const o = (i0 + k) * len;
          for (let j = 0; j < k; j++) subtractProjections(m, len, (i0 + j) * len, o, 1);
          const after = Math.sqrt(dot64(m, o, m, o, len));
          if (!(after > 1e-10 * before[k] && after > 0)) ok = false;
          else {
            if (after < 0.5 * before[k]) shrunk = true;
            const inv = 1 / after;
            for (let t = 0; t < len; t++) m[o + t] *= inv;
            before[k] = 1;
          }
        }
        if (!ok || !shrunk) break;
      }
      if (ok) break;
      if (attempt >= 8) throw new Error('gram-schmidt: could not find independent rows');
      for (let t = i0 * len; t < (i0 + bs) * len; t++) m[t] = rng.gaussian();
    }
  }
}

/** For each of `count` consecutive rows at r0: row −= ⟨row, q⟩ q, with q the (unit) row at qo. */
function subtractProjections(m: Float64Array, len: number, qo: number, r0: number, count: number): void {
  if (count === 4) {
    const a = r0;
    const b = r0 + len;
    const c = r0 + 2 * len;
    const d = r0 + 3 * len;
    let sa = 0;
    let sb = 0;
    let sc = 0;
    let sd = 0;
    for (let t = 0; t < len; t++) {
      const q = m[qo + t];
      sa += q * m[a + t];
      sb += q * m[b + t];
      sc += q * m[c + t];
      sd += q * m[d + t];
    }
    for (let t = 0; t < len; t++) {
      const q = m[qo + t];
      m[a + t] -= sa * q;
      m[b + t] -= sb * q;
      m[c + t] -= sc * q;
      m[d + t] -= sd * q;
    }
    return;
  }
  for (let k = 0; k < count; k++) {
    const o = r0 + k * len;
    const s = dot64(m, qo, m, o, len);
    for (let t = 0; t < len; t++) m[o + t] -= s * m[qo + t];
  }
}

function dot64(a: Float64Array | Float32Array, ao: number, b: Float64Array | Float32Array, bo: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let t = 0;
  for (; t + 3 < n; t += 4) {
    s0 += a[ao + t] * b[bo + t];
    s1 += a[ao + t + 1] * b[bo + t + 1];
    s2 += a[ao + t + 2] * b[bo + t + 2];
    s3 += a[ao + t + 3] * b[bo + t + 3];
  }
  for (; t < n; t++) s0 += a[ao + t] * b[bo + t];
  return s0 + s1 + s2 + s3;
}

export function normaliseRow(v: Float32Array | Float64Array, o: number, n: number): void {
  let ss = 0;
  for (let t = 0; t < n; t++) ss += v[o + t] * v[o + t];
  if (ss === 0) return;
  const inv = 1 / Math.sqrt(ss);
  for (let t = 0; t < n; t++) v[o + t] *= inv;
}

const ORTH_BLOCK = 16;

/**
 * Orthonormalises the rows of m (rows × len, float32) in place, in order:
 * block classical Gram–Schmidt, twice (BCGS2), with the projections against
 * earlier blocks on the Gemm and modified Gram–Schmidt inside each block.
 * The finished rows are also kept transposed in t (len × rows, zero columns
 * for rows not finished yet), so both Gemms can run over all `rows`: the
 * unfinished rows' coefficients meet zero columns of t and drop out.
 * A row that is (numerically) in the span of the earlier ones is replaced by
 * a random one from `fill` when given, else set to zero.
 */
export async function orthonormaliseRows(m: Float32Array, rows: number, len: number, fill: Rng | null): Promise<void> {
  if (fill && rows > len) throw new RangeError(`cannot fit ${rows} orthonormal rows in ${len} dimensions`);
  const t = new Float32Array(len * rows);
  const res = new Float64Array(ORTH_BLOCK);
  for (let j0 = 0; j0 < rows; j0 += ORTH_BLOCK) {
    const bs = Math.min(ORTH_BLOCK, rows - j0);
    const block = m.subarray(j0 * len, (j0 + bs) * len);
    for (let attempt = 0; ; attempt++) {
      await orthBlockPass(m, rows, len, j0, bs, t, res);
      await orthBlockPass(m, rows, len, j0, bs, t, res);
      // After a first pass every row is unit (or zero); a second pass that
      // removes most of a row means it had no independent direction left.
      let bad = 0;
      for (let i = 0; i < bs; i++) if (!(res[i] >= 0.5)) bad++;
      if (bad === 0) break;
      if (!fill || attempt >= 8) {
        for (let i = 0; i < bs; i++) if (!(res[i] >= 0.5)) block.fill(0, i * len, (i + 1) * len);
        break;
      }
      for (let i = 0; i < bs; i++) {
        if (!(res[i] >= 0.5)) for (let x = i * len; x < (i + 1) * len; x++) block[x] = fill.gaussian();
      }
    }
    for (let i = 0; i < bs; i++) {
      const o = i * len;
      for (let r = 0; r < len; r++) t[r * rows + j0 + i] = block[o + r];
    }
  }
}

/** One pass over block rows j0…j0+bs−1: subtract the projection on rows < j0 (Gemm), then MGS within the block. */
async function orthBlockPass(m: Float32Array, rows: number, len: number, j0: number, bs: number, t: Float32Array, res: Float64Array): Promise<void> {
  const block = m.subarray(j0 * len, (j0 + bs) * len);
  if (j0 > 0) {
    const c = await innerProducts(block, bs, m.subarray(0, rows * len), rows, len); // bs × rows; only < j0 count
    const p = await innerProducts(c, bs, t, len, rows); // bs × len: c · (finished rows)
    for (let x = 0; x < bs * len; x++) block[x] -= p[x];
  }
  for (let i = 0; i < bs; i++) {
    const o = i * len;
    for (let k = 0; k < i; k++) {
      const q = k * len;
      const c = dot64(block, o, block, q, len);
      if (c !== 0) for (let x = 0; x < len; x++) block[o + x] -= c * block[q + x];
    }
    const nrm = Math.sqrt(dot64(block, o, block, o, len));
    res[i] = nrm;
    if (nrm > 0 && Number.isFinite(nrm)) {
      const inv = 1 / nrm;
      for (let x = 0; x < len; x++) block[o + x] *= inv;
    } else {
      block.fill(0, o, o + len);
      res[i] = 0;
    }
  }
}
