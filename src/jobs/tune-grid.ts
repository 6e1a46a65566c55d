// The k × θ × λ grid of a tune job, scored query by query as the batches come back from the engine:
// the arithmetic runs on the job's thread while the model and the search work on the next batch,
// and no query's neighbours are kept once scored. The sums are the cache math's (cacheProbabilities,
// mixProbabilities) in the same order, so a point of the grid scores exactly as an eval job would.

export interface GridPoint {
  k: number;
  theta: number;
  lambda: number;
  accuracy: number;
  logLoss: number;
}

export interface Scored {
  accuracy: number;
  logLoss: number;
}

export interface GridOutcome {
  images: number;
  /** [kIndex] → [thetaIndex][lambdaIndex] */
  accuracy: number[][][];
  logLoss: number[][][];
  best: GridPoint;
  bestByK: GridPoint[];
  /** λ = 1 (p_cache alone) at its best θ and k */
  cacheOnly: Scored | null;
  /** λ = 0 */
  model: Scored;
  /** accuracy at the cache's current θ and λ, at `current.k` (null when that k was not searched) */
  currentAccuracy: number | null;
}

export class TuneGrid {
  private readonly C: number;
  private readonly K: number;
  private readonly T: number;
  private readonly L: number;
  /** per (k, θ, λ): correct answers and the summed log-loss */
  private readonly correct: Int32Array;
  private readonly loss: Float64Array;
  /** per (k, θ): λ = 1 */
  private readonly aloneCorrect: Int32Array;
  private readonly aloneLoss: Float64Array;
  private modelCorrect = 0;
  private modelLoss = 0;
  private currentCorrect = 0;
  private readonly currentKIndex: number;
  private n = 0;
  /** scratch: p_cache at one θ for every k, [kIndex × C] */
  private readonly pCaches: Float64Array;
  private readonly sums: Float64Array;

  /**
   * `ks` ascending; the queries will bring the neighbours of the largest. `current` is the cache's
   * own θ, λ and k, scored beside the grid (k: null when it is not among `ks`).
   */
  constructor(
    readonly ks: readonly number[],
    readonly thetas: readonly number[],
    readonly lambdas: readonly number[],
    numClasses: number,
    private readonly current: { theta: number; lambda: number; k: number | null },
  ) {
    this.C = numClasses;
    [this.K, this.T, this.L] = [ks.length, thetas.length, lambdas.length];
    this.correct = new Int32Array(this.K * this.T * this.L);
    this.loss = new Float64Array(this.K * this.T * this.L);
    this.aloneCorrect = new Int32Array(this.K * this.T);
    this.aloneLoss = new Float64Array(this.K * this.T);
    this.currentKIndex = current.k === null ? -1 : ks.indexOf(current.k);
    this.pCaches = new Float64Array(this.K * this.C);
    this.sums = new Float64Array(this.C);
  }

  get images(): number {
    return this.n;
  }

  /** Scores `n` queries: p_model rows [n × C], the largest k's neighbours best first [n × k] with their labels, and the true labels. */
  add(pModel: Float32Array, similarities: Float32Array, labels: Uint16Array, truth: ArrayLike<number>, n: number): void {
    const { C, K, T, L } = this;
    const k = this.ks[K - 1];
    if (pModel.length !== n * C || similarities.length !== n * k || labels.length !== n * k)
      throw new Error(
        `tune grid: ${n} queries need ${n * C} p_model values and ${n * k} neighbours; got ${pModel.length}, ${similarities.length}, ${labels.length}`,
      );
    for (let q = 0; q < n; q++) {
      const o = q * C;
      const t = truth[q];
      const sims = similarities.subarray(q * k, (q + 1) * k);
      const labs = labels.subarray(q * k, (q + 1) * k);
      for (let ti = 0; ti < T; ti++) {
        pCachesByKInto(sims, labs, this.thetas[ti], C, this.ks, this.sums, this.pCaches);
        for (let ki = 0; ki < K; ki++) {
          const po = ki * C;
          const cell = (ki * T + ti) * L;
          for (let li = 0; li < L; li++) {
            const lambda = this.lambdas[li];
            if (this.top1(pModel, o, po, lambda) === t) this.correct[cell + li]++;
            this.loss[cell + li] += this.surprise(pModel, o, po, t, lambda);
          }
          if (this.top1(pModel, o, po, 1) === t) this.aloneCorrect[ki * T + ti]++;
          this.aloneLoss[ki * T + ti] += this.surprise(pModel, o, po, t, 1);
        }
        if (ti === 0) {
          if (this.top1(pModel, o, 0, 0) === t) this.modelCorrect++;
          this.modelLoss += this.surprise(pModel, o, 0, t, 0);
        }
      }
      if (this.currentKIndex >= 0) {
        pCachesByKInto(sims, labs, this.current.theta, C, this.ks, this.sums, this.pCaches);
        if (this.top1(pModel, o, this.currentKIndex * C, this.current.lambda) === t) this.currentCorrect++;
      }
      this.n++;
    }
  }

  // mixProbabilities' arithmetic for one query (p_model at o, p_cache at po of the scratch), inline:
  // this runs k × θ × λ × images times, and an array per call made the grid 10× slower

  /** the class of largest p = (1 − λ) p_model + λ p_cache (the first, on a tie) */
  private top1(pModel: Float32Array, o: number, po: number, lambda: number): number {
    const pc = this.pCaches;
    let best = 0;
    let bestP = -Infinity;
    for (let c = 0; c < this.C; c++) {
      const p = (1 - lambda) * pModel[o + c] + lambda * pc[po + c];
      if (p > bestP) {
        bestP = p;
        best = c;
      }
    }
    return best;
  }

  /** −log p(truth), p floored at 1e-12 */
  private surprise(pModel: Float32Array, o: number, po: number, t: number, lambda: number): number {
    return -Math.log(Math.max((1 - lambda) * pModel[o + t] + lambda * this.pCaches[po + t], 1e-12));
  }

  /** The grid's figures; ties go to the smaller k, then the earlier θ and λ. */
  outcome(): GridOutcome {
    const { K, T, L, n } = this;
    const better = (a: Scored, b: Scored) => a.accuracy > b.accuracy || (a.accuracy === b.accuracy && a.logLoss < b.logLoss);
    const accuracy = this.ks.map(() => [] as number[][]);
    const logLoss = this.ks.map(() => [] as number[][]);
    let best: GridPoint = { k: this.ks[0], theta: NaN, lambda: NaN, accuracy: -1, logLoss: Infinity };
    const bestByK: GridPoint[] = this.ks.map((k) => ({ k, theta: NaN, lambda: NaN, accuracy: -1, logLoss: Infinity }));
    let cacheOnly: Scored | null = null;
    // θ outermost, then k, then λ: the order the grid was always searched in, so ties resolve as before
    for (let ti = 0; ti < T; ti++) {
      for (let ki = 0; ki < K; ki++) {
        const cell = (ki * T + ti) * L;
        const row = Array.from({ length: L }, (_, li) => ({ accuracy: this.correct[cell + li] / n, logLoss: this.loss[cell + li] / n }));
        accuracy[ki].push(row.map((r) => r.accuracy));
        logLoss[ki].push(row.map((r) => r.logLoss));
        row.forEach((r, li) => {
          const point = { k: this.ks[ki], theta: this.thetas[ti], lambda: this.lambdas[li], ...r };
          if (better(r, bestByK[ki])) bestByK[ki] = point;
          if (better(r, best)) best = point;
        });
        const alone = { accuracy: this.aloneCorrect[ki * T + ti] / n, logLoss: this.aloneLoss[ki * T + ti] / n };
        if (!cacheOnly || alone.accuracy > cacheOnly.accuracy) cacheOnly = alone;
      }
    }
    return {
      images: n,
      accuracy,
      logLoss,
      best,
      bestByK,
      cacheOnly,
      model: { accuracy: this.modelCorrect / n, logLoss: this.modelLoss / n },
      currentAccuracy: this.currentKIndex >= 0 ? this.currentCorrect / n : null,
    };
  }
}

/**
 * p_cache at θ over the first k neighbours (sorted best first) for each k of `ks` (ascending), in one
 * pass: the same sums as cacheProbabilities over each prefix, in the same order. Writes [ks.length × C]
 * into `out`; `sums` is scratch of C.
 */
export function pCachesByKInto(
  similarities: ArrayLike<number>,
  labels: ArrayLike<number>,
  theta: number,
  C: number,
  ks: readonly number[],
  sums: Float64Array,
  out: Float64Array,
): void {
  sums.fill(0);
  const max = similarities.length ? similarities[0] : 0;
  let total = 0;
  let next = 0;
  for (let i = 0; i < similarities.length && next < ks.length; i++) {
    const w = Math.exp(theta * (similarities[i] - max));
    sums[labels[i]] += w;
    total += w;
    for (; next < ks.length && ks[next] === i + 1; next++) for (let c = 0; c < C; c++) out[next * C + c] = sums[c] / total;
  }
  // fewer neighbours than k: the larger ks sum over all of them (none at all: zeros)
  while (next < ks.length) {
    for (let c = 0; c < C; c++) out[next * C + c] = total > 0 ? sums[c] / total : 0;
    next++;
  }
}

/** pCachesByKInto, one array per k. */
export function pCachesByK(similarities: ArrayLike<number>, labels: ArrayLike<number>, theta: number, C: number, ks: readonly number[]): Float64Array[] {
  const out = new Float64Array(ks.length * C);
  pCachesByKInto(similarities, labels, theta, C, ks, new Float64Array(C), out);
  return ks.map((_, i) => out.subarray(i * C, (i + 1) * C));
}
