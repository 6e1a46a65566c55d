// The robustness job: the paper's third claim, measured. Top-1 error of the model alone, the
// cache model and the cache alone on labelled images under natural corruptions (5 severities
// each), under a transfer attack (crafted against the model alone, the paper's setup) and under
// adaptive attacks (crafted against the cache model, and against the cache alone, so that a
// memory that only hides the gradient-free attack's signal is not taken for a robust one).
// The model runs in the inference thread and the search in the engine thread, a batch at a
// time like every job, so predictions keep being served between them.
import pLimit from 'p-limit';
import type { ServingApi } from '../engine/client.js';
import { Tally } from '../jobs/eval-job.js';
import type { ErrorRates } from '../jobs/results.js';
import type { JobContext, ProcessorSettings } from '../jobs/types.js';
import { Rng } from '../math/rng.js';
import type { ModelSpec } from '../model/spec.js';
import { imageToPixels, pixelsToBatch } from '../preprocess/image.js';
import { imageBytes } from '../sources/fetch.js';
import { itemName, type SourceItem } from '../sources/sources.js';
import { corrupt, CORRUPTIONS } from './corruptions.js';
import { ATTACK_TARGETS, type AttackName, type AttackReport, type RobustnessResult } from './result.js';
import type { RobustnessSettings } from './settings.js';
import { squareAttack, type ProbabilityQuery } from './square-attack.js';

/** Where the job's settings are documented: robustness/settings.ts. */
export type RobustnessJobData = RobustnessSettings & { cache: string; items: SourceItem[] };

/**
 * Memory per pixel value of every image: its 8-bit copy, and the attack's best image and the
 * candidate of a step as float32.
 */
export const ROBUSTNESS_BYTES_PER_VALUE = 1 + 4 + 4;

/** The job's progress counts images scored: once clean, once per corruption and severity, once per attack and ε. */
export const robustnessUnits = (d: Pick<RobustnessJobData, 'corruptions' | 'severities' | 'attacks' | 'epsilons'> & { items: unknown[] }) =>
  d.items.length * (1 + d.corruptions.length * d.severities.length + d.attacks.length * d.epsilons.length);

export const SQUARE_ATTACK_NOTE =
  'Square Attack (Andriushchenko et al., ECCV 2020), L∞, score-based: it reads only class probabilities, since onnxruntime computes no gradients. ' +
  "A transfer attack crafts images against the model alone and scores all three on them (the paper's setup); an adaptive attack crafts them against the classifier it names. " +
  'A score-based attack is weaker than a gradient attack, and it sees no signal while every neighbour of an image agrees (the cache alone then gives probability 1): ' +
  'a low success rate against the cache is an upper bound on its robustness, not a proof of it.';

export async function runRobustnessJob(engine: ServingApi, settings: ProcessorSettings, data: RobustnessJobData, ctx: JobContext): Promise<RobustnessResult> {
  const t0 = performance.now();
  const spec = await engine.modelSpec(data.cache);
  const total = robustnessUnits(data);
  let done = 0;
  const advance = (k: number) => ctx.progress((done += k), total);
  const { images, labels, failed } = await decodeAll(data.items, spec, settings, ctx);
  advance(failed * (total / Math.max(1, data.items.length)));
  const options = { theta: data.theta, lambda: data.lambda };
  const used = { theta: NaN, lambda: NaN, cacheSize: 0 };

  /** The three errors on these images (interleaved RGB, 0…255), counted as the eval job counts them, a batch per engine call. */
  const score = async (pixels: ArrayLike<number>[]): Promise<ErrorRates> => {
    const tally = new Tally();
    for (let start = 0; start < pixels.length; start += settings.batchSize) {
      ctx.signal.throwIfAborted();
      const batch = pixels.slice(start, start + settings.batchSize);
      const r = await engine.classify(data.cache, pixelsToBatch(batch, spec), batch.length, options);
      Object.assign(used, { theta: r.theta, lambda: r.lambda, cacheSize: r.cacheSize });
      r.results.forEach((c, i) => tally.add(c, labels[start + i]));
    }
    return tally.errors(pixels.length);
  };

  const clean = await score(images);
  advance(images.length);

  const corruptions: RobustnessResult['corruptions'] = [];
  const limit = pLimit(4); // sharp works on libuv's pool
  for (const name of data.corruptions) {
    const c = CORRUPTIONS[name];
    const values = c.values(Math.min(spec.width, spec.height));
    const severities = [];
    for (const severity of data.severities) {
      const corrupted = await Promise.all(
        images.map((image, i) =>
          limit(() => corrupt({ data: image, width: spec.width, height: spec.height }, name, severity, new Rng(seedOf(data.seed, name, severity, i)))),
        ),
      );
      severities.push({ severity, value: values[severity - 1], error: await score(corrupted) });
      advance(images.length);
    }
    corruptions.push({ name, parameter: c.parameter, severities });
  }

  const deadline = t0 + data.maxSeconds * 1000;
  const runs = data.attacks.flatMap((name) => data.epsilons.map((epsilon) => ({ name, epsilon })));
  const attacks: AttackReport[] = [];
  for (const [r, { name, epsilon }] of runs.entries()) {
    const share = (deadline - performance.now()) / (runs.length - r); // the time left, shared by the attacks left
    const outcome = await squareAttack(images, labels, spec, queryOf(engine, data, spec, name), {
      epsilon: epsilon * 255,
      queries: data.queries,
      pInit: data.pInit,
      rng: new Rng(seedOf(data.seed, name, Math.round(epsilon * 1e6), -1)),
      batchSize: settings.batchSize,
      deadline: performance.now() + Math.max(0, share),
      signal: ctx.signal,
      onImageDone: () => advance(1),
    });
    const attacked = outcome.alreadyWrong.filter((w) => !w).length;
    const fooledCounts = outcome.queries.filter((_, i) => !outcome.alreadyWrong[i] && outcome.fooled[i]);
    attacks.push({
      name,
      craftedAgainst: ATTACK_TARGETS[name],
      epsilon,
      error: await score(outcome.adversarial),
      attacked,
      fooled: fooledCounts.length,
      successRate: attacked ? round(fooledCounts.length / attacked) : NaN,
      queries: { total: outcome.queries.reduce((a, b) => a + b, 0), meanPerFooled: round(mean(fooledCounts)), medianPerFooled: median(fooledCounts) },
      stoppedBy: outcome.stoppedBy,
    });
  }

  return {
    cache: data.cache,
    images: images.length,
    failed,
    cacheSize: used.cacheSize,
    theta: used.theta,
    lambda: used.lambda,
    seed: data.seed,
    clean,
    corruptions,
    attack: { method: 'Square Attack', norm: 'Linf', pInit: data.pInit, queryBudget: data.queries, note: SQUARE_ATTACK_NOTE },
    attacks,
    seconds: round((performance.now() - t0) / 1000),
  };
}

/** What an attack reads: the probabilities of the classifier it is crafted against. */
function queryOf(engine: ServingApi, data: RobustnessJobData, spec: ModelSpec, name: AttackName): ProbabilityQuery {
  const tensor = (images: Float32Array[]) => pixelsToBatch(images, spec);
  const target = ATTACK_TARGETS[name];
  if (target === 'model') return (images) => engine.modelProbabilities(data.cache, tensor(images), images.length);
  return async (images) => {
    const r = await engine.classify(data.cache, tensor(images), images.length, { theta: data.theta, lambda: data.lambda });
    return Float32Array.from(r.results.flatMap((c) => (target === 'cacheModel' ? c.p : (c.pCache ?? c.pModel))));
  };
}

/** The source images as the model sees them before normalisation; an item that cannot be read is reported and left out. */
async function decodeAll(items: SourceItem[], spec: ModelSpec, settings: ProcessorSettings, ctx: JobContext) {
  const limit = pLimit(4);
  const decoded = await Promise.all(
    items.map((item) =>
      limit(async () => {
        ctx.signal.throwIfAborted();
        try {
          const bytes = await imageBytes(item.image, settings.readRoots);
          return { pixels: await imageToPixels(bytes, spec, { limitInputPixels: settings.limitInputPixels }), label: item.label };
        } catch (err) {
          ctx.itemErrors([{ id: itemName(item), error: err instanceof Error ? err.message : String(err) }]);
          return null;
        }
      }),
    ),
  );
  const ok = decoded.filter((d) => d !== null && d.label !== null) as { pixels: Buffer; label: number }[];
  return { images: ok.map((d) => d.pixels), labels: ok.map((d) => d.label), failed: items.length - ok.length };
}

/** A seed per (job seed, what, which, image): every image's noise and every attack reproducible on its own. */
function seedOf(seed: number, what: string, which: number, image: number): number {
  let h = (seed ^ 0x811c9dc5) >>> 0;
  for (const ch of `${what}/${which}/${image}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h;
}

const round = (x: number) => (Number.isFinite(x) ? Math.round(x * 1e6) / 1e6 : NaN);
const mean = (v: number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);

function median(v: number[]): number {
  if (!v.length) return NaN;
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
