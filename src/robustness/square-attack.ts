// Square Attack, L∞ (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): a score-based
// black-box attack. It needs only the class probabilities of the model it attacks — onnxruntime
// computes no gradients, and the cache model is a black box anyway. A random search: start from
// vertical stripes of ±ε, then at each step move one random square window of the perturbation to
// a new ±ε per channel, and keep it if the margin loss (log p_label − max log p_other) drops. The
// window shrinks on the paper's schedule. Written from the paper and its reference code
// (github.com/max-andr/square-attack), which this follows step for step.
import { argmax } from '../math/cache-model.js';
import type { Rng } from '../math/rng.js';

/** Probabilities (n × classes, row-major) of n images given as interleaved RGB floats in [0, 255]. */
export type ProbabilityQuery = (images: Float32Array[]) => Promise<Float32Array>;

export interface SquareAttackOptions {
  /** the L∞ radius, in pixel units (0…255): 8 = ε of 8/255 */
  epsilon: number;
  /** queries per image at most, the first (the initial stripes) included */
  queries: number;
  /** the fraction of the image the first windows cover (the paper's p) */
  pInit: number;
  rng: Rng;
  /** images per query call */
  batchSize: number;
  /** performance.now() at which to stop, leaving the images not yet fooled as they are */
  deadline?: number;
  signal?: AbortSignal;
  /** an image is finished (fooled, out of queries, or misclassified before any perturbation) */
  onImageDone?: () => void;
}

export interface AttackOutcome {
  /** per image: the perturbed image with the lowest margin found (the clean image if it was misclassified already) */
  adversarial: Float32Array[];
  /** the attacked model misclassified the clean image: no query was spent on it */
  alreadyWrong: boolean[];
  /** the attacked model misclassifies the adversarial image */
  fooled: boolean[];
  /** queries spent on each image */
  queries: number[];
  /** why the attack stopped before every image was fooled or out of queries, if it did */
  stoppedBy: 'time' | null;
}

export interface ImageShape {
  width: number;
  height: number;
}

const CHANNELS = 3;

export async function squareAttack(
  clean: Uint8Array[],
  labels: number[],
  shape: ImageShape,
  query: ProbabilityQuery,
  opts: SquareAttackOptions,
): Promise<AttackOutcome> {
  const n = clean.length;
  const { width: w, height: h } = shape;
  const eps = opts.epsilon;
  const x = clean; // read only
  const best: Float32Array[] = clean.map((img) => Float32Array.from(img));
  const margin = new Float64Array(n);
  const fooled = new Array<boolean>(n).fill(false);
  const queries = new Array<number>(n).fill(0);
  const done = (i: number) => {
    opts.onImageDone?.();
    return i;
  };

  const probs = await queryAll(query, best, opts.batchSize); // the clean images, as floats
  const classes = probs.length / n;
  const alreadyWrong = labels.map((y, i) => argmax(probs.subarray(i * classes, (i + 1) * classes)) !== y);
  alreadyWrong.forEach((wrong, i) => {
    fooled[i] = wrong;
    if (wrong) done(i);
  });

  // The first perturbation: vertical stripes, one random sign per column and channel.
  let active = labels.map((_, i) => i).filter((i) => !alreadyWrong[i]);
  for (const i of active) {
    const signs = Array.from({ length: w * CHANNELS }, () => (opts.rng.u32() & 1 ? eps : -eps));
    for (let y = 0; y < h; y++)
      for (let col = 0; col < w; col++)
        for (let c = 0; c < CHANNELS; c++) {
          const at = (y * w + col) * CHANNELS + c;
          best[i][at] = clampPixel(x[i][at] + signs[col * CHANNELS + c]);
        }
  }
  const measure = async (which: number[], images: Float32Array[]) => {
    const p = await queryAll(query, images, opts.batchSize);
    return which.map((i, j) => {
      queries[i]++;
      return { i, margin: marginLoss(p, j, classes, labels[i]), wrong: argmax(p.subarray(j * classes, (j + 1) * classes)) !== labels[i] };
    });
  };
  for (const r of await measure(
    active,
    active.map((i) => best[i]),
  )) {
    margin[r.i] = r.margin;
    fooled[r.i] = r.wrong;
  }

  let stoppedBy: AttackOutcome['stoppedBy'] = null;
  for (let step = 1; ; step++) {
    active = active.filter((i) => (fooled[i] || queries[i] >= opts.queries ? (done(i), false) : true));
    if (active.length === 0) break;
    opts.signal?.throwIfAborted();
    if (opts.deadline !== undefined && performance.now() > opts.deadline) {
      stoppedBy = 'time';
      active.forEach(done);
      break;
    }
    const p = windowFraction(opts.pInit, step, opts.queries);
    const s = Math.min(Math.max(Math.round(Math.sqrt(p * w * h)), 1), Math.min(w, h) - 1);
    const candidates = active.map((i) => moveWindow(x[i], best[i], s, shape, eps, opts.rng));
    (await measure(active, candidates)).forEach((r, j) => {
      if (r.margin < margin[r.i]) {
        margin[r.i] = r.margin;
        best[r.i] = candidates[j];
        fooled[r.i] = r.wrong;
      }
    });
  }
  return { adversarial: best, alreadyWrong, fooled, queries, stoppedBy };
}

/** The best perturbation so far with one s × s window set to a new ±ε per channel (one that changes the image). */
function moveWindow(x: Uint8Array, best: Float32Array, s: number, shape: ImageShape, eps: number, rng: Rng) {
  const { width: w, height: h } = shape;
  const top = rng.u32() % (h - s);
  const left = rng.u32() % (w - s);
  const out = best.slice();
  for (let attempt = 0; attempt < 100; attempt++) {
    const delta = [0, 1, 2].map(() => (rng.u32() & 1 ? eps : -eps));
    let changed = false;
    for (let y = top; y < top + s; y++)
      for (let col = left; col < left + s; col++)
        for (let c = 0; c < CHANNELS; c++) {
          const at = (y * w + col) * CHANNELS + c;
          out[at] = clampPixel(x[at] + delta[c]);
          if (Math.abs(out[at] - best[at]) > 1e-4) changed = true;
        }
    if (changed) break; // else the same window again would waste a query: draw other signs
  }
  return out;
}

/**
 * The paper's schedule for p, the fraction of the image a window covers: halved at fixed points
 * of a 10,000-query run, rescaled to the budget.
 */
export function windowFraction(pInit: number, step: number, budget: number): number {
  const it = Math.floor((step / budget) * 10000);
  const halvings = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000].filter((at) => it > at).length;
  return pInit / 2 ** halvings;
}

/** log p_label − max over other classes of log p: negative once the image is misclassified. */
function marginLoss(p: Float32Array, row: number, classes: number, label: number): number {
  let other = 0;
  for (let c = 0; c < classes; c++) if (c !== label) other = Math.max(other, p[row * classes + c]);
  return Math.log(Math.max(p[row * classes + label], 1e-30)) - Math.log(Math.max(other, 1e-30));
}

async function queryAll(query: ProbabilityQuery, images: Float32Array[], batchSize: number): Promise<Float32Array> {
  const parts: Float32Array[] = [];
  for (let i = 0; i < images.length; i += batchSize) parts.push(await query(images.slice(i, i + batchSize)));
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const clampPixel = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : v);
