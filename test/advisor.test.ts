// The layer advisor on the shipped ResNet-20 and small samples of the repo's CIFAR-10 images.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { before, describe, test } from 'node:test';
import { adviseLayers, concatSimilarity, extractLayers, fitLearningCurve, layerDots } from '../src/advisor/layers.js';
import { KeyExtractor } from '../src/model/extractor.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import type { ModelSpec } from '../src/model/spec.js';
import { resolveSource } from '../src/sources/sources.js';
import { DEFAULT_LIMIT_INPUT_PIXELS, imageToTensor, stackBatch } from '../src/preprocess/image.js';
import { REPO, RESNET, SAMPLE, sampleFolder, tempDir } from './harness.js';
import { readFileSync } from 'node:fs';
import { LayerAdvice } from '../src/advisor/advice.js';

const run = promisify(execFile);
const CANDIDATES = ['activation_2', 'activation_10', 'activation_18', 'average_pooling2d_1', 'flatten_1'];
// activation_2 has 16,384 dims per image; the others 8,192, 4,096, 64 and 64 (flatten_1 flattens
// average_pooling2d_1: the same values).
const MAX_DIMENSION = 10_000;

describe('layer advisor', () => {
  let train: string;
  let val: string;
  let spec: ModelSpec;
  let advice: LayerAdvice;

  before(async () => {
    train = path.join(SAMPLE, 'cache'); // capped with perClass: 20
    val = sampleFolder('heldout', 10);
    spec = await loadModelSpec(RESNET);
    advice = await adviseLayers({ model: RESNET, train, val, perClass: 20, candidates: CANDIDATES, maxDimension: MAX_DIMENSION });
  });

  test('scores the candidates that fit, once per distinct key, lists the too-large one, and grows concatenations greedily', () => {
    assert.equal(advice.cacheItems, 200);
    assert.equal(advice.valImages, 100);
    assert.deepEqual(advice.tooLarge, [
      { layer: 'activation_2', dimension: 16384, message: 'too large to index (16384 dims): pick a later layer or use a reduced search key' },
    ]);
    assert.ok(advice.ranking.every((s) => !s.layers.includes('activation_2')));
    const singles = advice.ranking.filter((s) => s.kind === 'single');
    assert.deepEqual(singles.map((s) => s.layers[0]).sort(), ['activation_10', 'activation_18', 'average_pooling2d_1']);
    assert.deepEqual(advice.sameKeys, [{ layer: 'average_pooling2d_1', sameAs: ['flatten_1'] }], 'one key, named together');
    // greedy forward selection: every pair holds the best single layer; a triple, if any, the best pair
    const best = [...singles].sort((a, b) => a.error - b.error || a.dimension - b.dimension || a.logLoss - b.logLoss)[0].layers[0];
    const pairs = advice.ranking.filter((s) => s.layers.length === 2);
    assert.equal(pairs.length, 2);
    for (const p of pairs) assert.ok(p.layers.includes(best), `${p.layers} holds ${best}`);
    const triples = advice.ranking.filter((s) => s.layers.length === 3);
    assert.ok(triples.length <= 1);
    if (triples.length) {
      assert.deepEqual(triples[0].layers, ['activation_10', 'activation_18', 'average_pooling2d_1']); // graph order
      assert.equal(triples[0].dimension, 8192 + 4096 + 64);
    }
    assert.match(advice.search!, /greedy forward selection of up to 3 layers over the 3 best distinct single layers/);
    // every error with its bootstrap interval; "tied" exactly when it overlaps the recommendation's
    const [lo0, hi0] = advice.recommendation.interval!;
    for (const s of advice.ranking) {
      const [lo, hi] = s.interval!;
      assert.ok(lo <= s.error + 1e-9 && s.error <= hi + 1e-9, `${s.layers}: ${s.error} in [${lo}, ${hi}]`);
      if (s !== advice.recommendation) assert.equal(s.tied, lo <= hi0 && lo0 <= hi);
    }
    // ranked: error, then fewer dims; the recommendation is the first
    for (let i = 1; i < advice.ranking.length; i++) {
      const [a, b] = [advice.ranking[i - 1], advice.ranking[i]];
      assert.ok(a.error < b.error || (a.error === b.error && a.dimension <= b.dimension));
    }
    assert.deepEqual(advice.recommendation, advice.ranking[0]);
    for (const s of advice.ranking) {
      assert.ok(advice.thetas.includes(s.theta) && advice.lambdas.includes(s.lambda));
      assert.equal(s.modelError, advice.modelError);
    }
    assert.deepEqual(advice.thetas, [10, 20, 30, 40, 50, 60, 70, 80, 90]);
    assert.deepEqual(advice.lambdas, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]);
  });

  test('for a larger cache: each best key is scored at 1/8 … all of the sample and extrapolated; the recommendation is the best there', async () => {
    const big = await adviseLayers({ model: RESNET, train, val, perClass: 20, candidates: CANDIDATES, maxDimension: MAX_DIMENSION, cacheSize: 50_000 });
    const f = big.forCacheSize!;
    assert.equal(f.cacheSize, 50_000);
    assert.match(f.method, /25, 50, 100, 200 cache items/);
    assert.equal(f.ranking.length, big.ranking.length, 'every key (fewer than 8 here)');
    for (const k of f.ranking) {
      assert.deepEqual(
        k.curve.map((c) => c.items),
        [25, 50, 100, 200],
      );
      assert.ok(k.error >= 0 && k.error <= 1);
      assert.ok(k.fit.b >= 0, 'more items never predicted to hurt');
      const whole = big.ranking.find((r) => r.layers.join() === k.layers.join())!;
      assert.equal(k.curve[3].error, whole.error, "the whole sample is the ranking's own score");
    }
    for (let i = 1; i < f.ranking.length; i++) assert.ok(f.ranking[i - 1].error <= f.ranking[i].error);
    assert.deepEqual(big.recommendation.layers, f.ranking[0].layers);
    assert.equal(advice.forCacheSize, undefined, 'without a cache size, advice is for the sample');
  });

  test('a learning curve a + b·n^(−c) is recovered from its points, and a rising one is read flat', () => {
    const points = [100, 200, 400, 800].map((items) => ({ items, error: 0.1 + 2 * items ** -0.5 }));
    const fit = fitLearningCurve(points);
    assert.equal(fit.params.c, 0.5);
    assert.ok(Math.abs(fit.at(1_000_000) - 0.102) < 1e-9);
    const rising = fitLearningCurve([100, 200, 400, 800].map((items, i) => ({ items, error: 0.1 + 0.01 * i })));
    assert.equal(rising.params.b, 0);
    assert.ok(Math.abs(rising.at(1e6) - 0.115) < 1e-9, 'the mean: no trend is extrapolated the wrong way');
  });

  test('late layers make better keys than the early activation_10 (as in the paper)', () => {
    const single = (l: string) => advice.ranking.find((s) => s.kind === 'single' && s.layers[0] === l)!;
    const [early, late, pooled] = [single('activation_10'), single('activation_18'), single('average_pooling2d_1')];
    // On this small sample the cache model's best error is the same for every key (the cache
    // cannot fix any of the model's mistakes with 20 images per class), so the ranking of the
    // combined error alone says little. The cache alone (λ = 1) shows the key quality clearly:
    // about 16 % (average_pooling2d_1) and 24 % (activation_18) error against about 61 % (activation_10).
    assert.ok(late.cacheOnlyError < early.cacheOnlyError - 0.2, `${late.cacheOnlyError} vs ${early.cacheOnlyError}`);
    assert.ok(pooled.cacheOnlyError < early.cacheOnlyError - 0.2, `${pooled.cacheOnlyError} vs ${early.cacheOnlyError}`);
    assert.ok(late.error <= early.error && pooled.error <= early.error);
    const rank = (s: typeof early) => advice.ranking.indexOf(s);
    assert.ok(rank(pooled) < rank(early) && rank(late) < rank(early));
  });

  test('concatenation scoring equals the similarity of a real normalised-once concatenated key', async () => {
    const layers = ['activation_10', 'activation_18'];
    const trainItems = (await resolveSource({ type: 'folder', path: sampleFolder('cache', 2) }, { classes: spec.classes, requireLabels: true })).slice(0, 12);
    const valItems = (await resolveSource({ type: 'folder', path: val }, { classes: spec.classes, requireLabels: true })).filter((_, i) => i % 10 === 0);
    // the advisor's path: raw per-layer activations, per-layer dot products, combined
    const [tr, va] = await extractLayers(RESNET, spec, layers, [
      { items: trainItems, flip: false },
      { items: valItems, flip: false },
    ]);
    const dots = await Promise.all(layers.map((_, j) => layerDots(va.acts[j], va.n, tr.acts[j], tr.n, tr.sizes[j])));
    const combined = concatSimilarity(dots, va.sqNorms, tr.sqNorms, va.n, tr.n);
    // the real thing: KeyExtractor's concatenated, normalised-once key
    const extractor = await KeyExtractor.create(RESNET, spec, layers);
    const tensors = async (items: typeof trainItems) =>
      stackBatch(await Promise.all(items.map(async (it) => imageToTensor(it.image as string, spec, { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS }))));
    const tk = (await extractor.run(await tensors(trainItems), trainItems.length)).keys;
    const vk = (await extractor.run(await tensors(valItems), valItems.length)).keys;
    await extractor.release();
    const D = extractor.keyDimension;
    assert.equal(D, 8192 + 4096);
    let maxDiff = 0;
    for (let q = 0; q < va.n; q++) {
      for (let i = 0; i < tr.n; i++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += vk[q * D + d] * tk[i * D + d];
        maxDiff = Math.max(maxDiff, Math.abs(s - combined[q * tr.n + i]));
      }
    }
    assert.ok(maxDiff < 1e-4, `max |difference| ${maxDiff}`);
    // and a single layer is the plain cosine, not the concatenation's
    const single = concatSimilarity([dots[0]], [va.sqNorms[0]], [tr.sqNorms[0]], va.n, tr.n);
    assert.ok(Math.abs(single[0] - combined[0]) > 1e-3);
  });

  test('cachet layers --json prints the result with the recommendation, and writes the report', async () => {
    const reports = tempDir('cachet-layers-report-');
    const { stdout } = await run(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(REPO, 'src', 'cli', 'main.ts'),
        'layers',
        RESNET,
        '--train',
        sampleFolder('cache', 10),
        '--val',
        val,
        '--candidates',
        CANDIDATES.join(','),
        '--max-dimension',
        String(MAX_DIMENSION),
        '--top',
        '2',
        '--report-dir',
        reports,
        '--json',
      ],
      { cwd: REPO },
    );
    const r = JSON.parse(stdout) as LayerAdvice;
    assert.equal(r.cacheItems, 100);
    assert.deepEqual(r.recommendation, r.ranking[0]);
    assert.ok(r.recommendation.layers.length >= 1);
    // 3 single layers and, with --top 2, the pairs of the best one with each other
    assert.equal(r.ranking.filter((x) => x.kind === 'single').length, 3);
    assert.equal(r.ranking.filter((x) => x.kind === 'concatenation').length, 2);
    assert.equal(r.tooLarge[0].layer, 'activation_2');
    const dir = path.join(reports, 'layers-cifar10-resnet20');
    assert.match(readFileSync(path.join(dir, 'report.md'), 'utf8'), new RegExp(`--layers ${r.recommendation.layers.join(',')}`));
    const svg = readFileSync(path.join(dir, 'by-layer.svg'), 'utf8');
    assert.match(svg, /^<svg[\s\S]*model alone[\s\S]*<\/svg>\s*$/);
    assert.equal((svg.match(/<title>/g) ?? []).length, 2 * r.ranking.length, 'two bars per key');
  });
});
