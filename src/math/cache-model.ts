// The cache model of Orhan (2018), one implementation used by predict, tune and eval.
//
//   key φ(x)        = concat(flatten(layer) for layer in keyLayers), L2-normalised once
//   p_cache(y|x)    ∝ Σ_i 1[y_i = y] · exp(θ · φ(x)ᵀφ(x_i))
//   p(y|x)          = (1 − λ) · p_model(y|x) + λ · p_cache(y|x)
//
// p_cache is computed in log space: θ·s reaches 200 and exp(88) already overflows float32.

/** L2-normalise `n` rows of length `dim` in place. Returns false for a row that is zero or not finite. */
export function l2NormaliseRows(rows: Float32Array, n: number, dim: number): boolean[] {
  const ok: boolean[] = [];
  for (let r = 0; r < n; r++) {
    const row = rows.subarray(r * dim, (r + 1) * dim);
    const ss = sumOfSquares(row);
    const good = Number.isFinite(ss) && ss > 0;
    ok.push(good);
    if (good) scale(row, 1 / Math.sqrt(ss));
  }
  return ok;
}

// The loops are small functions of their own: written inline, V8 inlined the whole of this function
// into its hot caller (KeyExtractor.run, when it normalised on the model's thread) after a few
// hundred batches, where its loops ran ~3.5× slower: 0.51 → 0.61 ms per image at batch 64.
function sumOfSquares(v: Float32Array): number {
  let ss = 0;
  for (let j = 0; j < v.length; j++) ss += v[j] * v[j];
  return ss;
}

function scale(v: Float32Array, by: number): void {
  for (let j = 0; j < v.length; j++) v[j] *= by;
}

/** Softmax of `n` rows of `c` logits, in place, stable. */
export function softmaxRows(logits: Float32Array, n: number, c: number): void {
  for (let r = 0; r < n; r++) {
    const o = r * c;
    let max = -Infinity;
    for (let j = 0; j < c; j++) max = Math.max(max, logits[o + j]);
    let sum = 0;
    for (let j = 0; j < c; j++) sum += logits[o + j] = Math.exp(logits[o + j] - max);
    for (let j = 0; j < c; j++) logits[o + j] /= sum;
  }
}

/**
 * p_cache for one query from the similarities of the items it is summed over
 * (its k nearest neighbours, or every item of the cache) and their labels.
 * Returns a distribution over `numClasses`; all zeros if there are no items.
 */
export function cacheProbabilities(similarities: ArrayLike<number>, labels: ArrayLike<number>, theta: number, numClasses: number): Float64Array {
  const p = new Float64Array(numClasses);
  const n = similarities.length;
  if (n === 0) return p;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (similarities[i] > max) max = similarities[i];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const w = Math.exp(theta * (similarities[i] - max)); // ≤ 1: no overflow for any θ
    p[labels[i]] += w;
    total += w;
  }
  for (let c = 0; c < numClasses; c++) p[c] /= total;
  return p;
}

/** p = (1 − λ)·p_model + λ·p_cache. With an empty cache the model stands alone. */
export function mixProbabilities(pModel: ArrayLike<number>, pCache: ArrayLike<number>, lambda: number, cacheEmpty = false): Float64Array {
  const c = pModel.length;
  const p = new Float64Array(c);
  const l = cacheEmpty ? 0 : lambda;
  for (let j = 0; j < c; j++) p[j] = (1 - l) * pModel[j] + l * pCache[j];
  return p;
}

/** The index of the largest value (ties: the lower index, as topIndices). */
export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** Indices of the `k` largest values, largest first (ties: lower index first). */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => values[b] - values[a] || a - b);
  return idx.slice(0, Math.min(k, idx.length));
}
