// The eval job: top-1 and top-5 error of the model alone, the cache model and the cache alone on
// labelled images, in all and per class; optionally against another cache, and against cache size.
import type { ServingApi } from '../engine/client.js';
import type { Classification, NeighbourScores } from '../engine/types.js';
import { argmax, cacheProbabilities, mixProbabilities } from '../math/cache-model.js';
import type { ModelSpec } from '../model/spec.js';
import type { SourceItem } from '../sources/sources.js';
import { forEachBatch } from './pipeline.js';
import type { ErrorRates, EvalJobResult } from './results.js';
import type { JobContext, ProcessorSettings } from './types.js';

export interface EvalJobData {
  cache: string;
  items: SourceItem[];
  theta?: number;
  lambda?: number;
  /** also classify with this cache (e.g. an hnsw twin of an exact cache) and count agreement */
  compareWith?: string;
  /** also the error with random subsets of the cache: fractions of its items, in (0, 1] */
  cacheSizes?: number[];
}

/** Top-1 and top-5 hits of the model alone, the cache model and the cache alone, in all and per class. */
export class Tally {
  readonly correct: ErrorRates = zeroRates();
  readonly correctTop5: ErrorRates = zeroRates();
  readonly perClass = new Map<number, { images: number; correct: ErrorRates }>();

  add(c: Classification, label: number): void {
    const classTally = this.perClass.get(label) ?? { images: 0, correct: zeroRates() };
    this.perClass.set(label, classTally);
    classTally.images++;
    const distributions: [keyof ErrorRates, ArrayLike<number>][] = [
      ['model', c.pModel],
      ['cacheModel', c.p],
      ['cacheOnly', c.pCache ?? c.pModel],
    ];
    for (const [which, p] of distributions) {
      if (argmax(p) === label) {
        this.correct[which]++;
        classTally.correct[which]++;
      }
      if (rankOf(p, label) < 5) this.correctTop5[which]++;
    }
  }

  errors(n: number, correct = this.correct): ErrorRates {
    const e = (k: number) => (n ? round(1 - k / n) : NaN);
    return { model: e(correct.model), cacheModel: e(correct.cacheModel), cacheOnly: e(correct.cacheOnly) };
  }

  classErrors(classes: string[]): EvalJobResult['perClass'] {
    return [...this.perClass.entries()]
      .sort(([a], [b]) => a - b)
      .map(([label, t]) => ({ class: classes[label], label, images: t.images, error: this.errors(t.images, t.correct) }));
  }
}

const zeroRates = (): ErrorRates => ({ model: 0, cacheModel: 0, cacheOnly: 0 });

/**
 * Error against cache size without rebuilding anything: each fraction f keeps the items
 * whose position hashes below f (a fixed random subset), and p_cache sums over the k
 * nearest kept items among each query's nearest of the whole cache (enough of them are
 * kept when f·SEARCHED ≫ k).
 */
class SubsetTally {
  static readonly SEARCHED = 2000;
  readonly k: number;
  private readonly correct: { cacheModel: number; cacheOnly: number }[];
  private n = 0;

  constructor(
    private readonly fractions: number[],
    private readonly perQuery: number,
    private readonly size: number,
    private readonly classes: number,
  ) {
    this.k = Math.max(1, Math.min(size, SubsetTally.SEARCHED));
    this.correct = fractions.map(() => ({ cacheModel: 0, cacheOnly: 0 }));
  }

  add(s: NeighbourScores, labels: (number | null)[], theta: number, lambda: number): void {
    const { k, classes: C } = this;
    labels.forEach((label, q) => {
      if (label === null) return;
      this.n++;
      const pModel = s.pModel.subarray(q * C, (q + 1) * C);
      this.fractions.forEach((f, i) => {
        const sims: number[] = [];
        const labs: number[] = [];
        for (let j = q * k; j < (q + 1) * k && sims.length < this.perQuery; j++) {
          const position = s.positions[j];
          if (position >= 0 && kept(position, f)) {
            sims.push(s.similarities[j]);
            labs.push(s.labels[j]);
          }
        }
        const pCache = cacheProbabilities(sims, labs, theta, C);
        if (argmax(mixProbabilities(pModel, pCache, lambda, sims.length === 0)) === label) this.correct[i].cacheModel++;
        if (sims.length > 0 && argmax(pCache) === label) this.correct[i].cacheOnly++;
      });
    });
  }

  result() {
    return this.fractions.map((fraction, i) => ({
      fraction,
      items: Math.round(fraction * this.size),
      error: { cacheModel: round(1 - this.correct[i].cacheModel / this.n), cacheOnly: round(1 - this.correct[i].cacheOnly / this.n) },
    }));
  }
}

/** A fixed pseudo-random subset: Knuth's multiplicative hash of the position. */
const kept = (position: number, fraction: number) => Math.imul(position + 1, 2654435761) >>> 0 < fraction * 2 ** 32;

/** How many classes score higher than `label` (0 = it is the top-1). */
function rankOf(p: ArrayLike<number>, label: number): number {
  let above = 0;
  for (let i = 0; i < p.length; i++) if (p[i] > p[label]) above++;
  return above;
}

export async function runEvalJob(engine: ServingApi, settings: ProcessorSettings, data: EvalJobData, ctx: JobContext): Promise<EvalJobResult> {
  const spec: ModelSpec = await engine.modelSpec(data.cache);
  const tally = new Tally();
  const other = new Tally();
  const agree = { cacheModel: 0, cacheOnly: 0 };
  let scored = 0;
  let failed = 0;
  const options = { theta: data.theta, lambda: data.lambda };
  const info = data.cacheSizes?.length ? await engine.getCache(data.cache) : null;
  const sizes = info ? new SubsetTally(data.cacheSizes!, info.k, info.size, spec.classes.length) : null;
  let used = { theta: NaN, lambda: NaN, cacheSize: 0, otherSize: 0 };
  await forEachBatch(
    data.items,
    { spec, flip: false, signal: ctx.signal, overlap: 2, ...settings }, // the model runs on one batch while the other is searched
    async ({ items, tensor }) => {
      const copy = data.compareWith ? tensor.slice() : null; // the engine call takes the buffer
      const forSizes = sizes ? tensor.slice() : null;
      const r = await engine.classify(data.cache, tensor, items.length, options);
      if (sizes && forSizes)
        sizes.add(
          await engine.neighbourScores(data.cache, forSizes, items.length, sizes.k),
          items.map((i) => i.label),
          r.theta,
          r.lambda,
        );
      const r2 = copy && data.compareWith ? await engine.classify(data.compareWith, copy, items.length, options) : null;
      used = { theta: r.theta, lambda: r.lambda, cacheSize: r.cacheSize, otherSize: r2?.cacheSize ?? 0 };
      r.results.forEach((c, i) => {
        const label = items[i].label;
        if (label === null) return;
        scored++;
        tally.add(c, label);
        if (!r2) return;
        const c2 = r2.results[i];
        other.add(c2, label);
        if (argmax(c.p) === argmax(c2.p)) agree.cacheModel++;
        if (argmax(c.pCache ?? c.pModel) === argmax(c2.pCache ?? c2.pModel)) agree.cacheOnly++;
      });
    },
    (done, errors) => {
      failed += errors.length;
      if (errors.length) ctx.itemErrors(errors);
      ctx.progress(done, data.items.length);
    },
  );
  return {
    cache: data.cache,
    images: scored,
    failed,
    cacheSize: used.cacheSize,
    theta: used.theta,
    lambda: used.lambda,
    error: tally.errors(scored),
    correct: tally.correct,
    top5Error: tally.errors(scored, tally.correctTop5),
    perClass: tally.classErrors(spec.classes),
    ...(sizes && { bySize: sizes.result() }),
    ...(data.compareWith && {
      compare: {
        cache: data.compareWith,
        cacheSize: used.otherSize,
        error: other.errors(scored),
        agreement: { cacheModel: round(agree.cacheModel / scored), cacheOnly: round(agree.cacheOnly / scored) },
      },
    }),
  };
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;
