// Predict timings on a running service's cache, beside bare onnxruntime on the same images
// (issue 15): single images sent one at a time, then requests of 64 images from 2 clients, each
// against the engine's own timings (the metrics' model-run and search histograms).
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import type { ModelSpec } from '../src/model/spec.js';
import { DEFAULT_LIMIT_INPUT_PIXELS, imageToTensor, stackBatch } from '../src/preprocess/image.js';

/**
 * Bare onnxruntime, one intra-op thread, on the first 64 images decoded once: ms per image at batch 1
 * and 64, each the median of 7 rounds (one round of 20 batches of 64 varied 0.47–0.60 ms per image
 * from run to run on our VMs, which made the throughput ratio a coin toss).
 */
export async function bareInference(model: string, spec: ModelSpec, bytes: Buffer[]): Promise<{ batch1: number; batch64: number }> {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  const tensors = await Promise.all(bytes.slice(0, 64).map((b) => imageToTensor(b, spec, { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS })));
  const shape = spec.layout === 'NCHW' ? [3, spec.height, spec.width] : [spec.height, spec.width, 3];
  const run = (count: number) => session.run({ [spec.input]: new ort.Tensor('float32', stackBatch(tensors.slice(0, count)), [count, ...shape]) });
  const ROUNDS = 7;
  const medianOfRounds = async (count: number, runs: number) => {
    const rounds: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const t = performance.now();
      for (let i = 0; i < runs; i++) await run(count);
      rounds.push((performance.now() - t) / runs / count);
    }
    return rounds.sort((a, b) => a - b)[Math.floor(ROUNDS / 2)];
  };
  for (let i = 0; i < 5; i++) await run(64);
  const batch1 = await medianOfRounds(1, 100);
  const batch64 = await medianOfRounds(64, 10);
  await session.release();
  return { batch1, batch64 };
}

export interface PredictTimings {
  single: { p50: number; inference: number; search: number };
  batch: { msPerImage: number; inference: number; search: number; requests: number; calls: number };
}

/** `n` single-image predicts one at a time, then 200 requests of 64 images from 2 clients (steady state: ~10 s here); ms. */
export async function predictTimings(url: string, cache: string, bytes: Buffer[], n: number): Promise<PredictTimings> {
  const metric = async () => {
    const text = await (await fetch(`${url}/metrics`)).text();
    const read = (name: string) => {
      const value = (field: string) => Number(new RegExp(`^${name}_${field}\\{[^}]*cache="${cache}"[^}]*\\} (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
      return { sum: value('sum'), count: value('count') };
    };
    return { inference: read('cachet_model_inference_seconds'), search: read('cachet_index_search_seconds') };
  };
  const predict = async (images: Buffer[]) => {
    const r = await fetch(`${url}/v1/caches/${cache}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ images: images.map((b) => b.toString('base64')), topK: 1 }),
    });
    if (r.status !== 200) throw new Error(`predict: ${r.status} ${await r.text()}`);
    await r.arrayBuffer();
  };

  for (let i = 0; i < 20; i++) await predict([bytes[i % bytes.length]]); // warm
  let before = await metric();
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await predict([bytes[i % bytes.length]]);
    ms.push(performance.now() - t0);
  }
  let after = await metric();
  ms.sort((a, b) => a - b);
  const per = (m: 'inference' | 'search') => ((after[m].sum - before[m].sum) / (after[m].count - before[m].count)) * 1000;
  const single = { p50: ms[Math.floor(ms.length / 2)], inference: per('inference'), search: per('search') };

  const batchOf64 = (i: number) => Array.from({ length: 64 }, (_, j) => bytes[(i * 64 + j) % bytes.length]);
  for (let i = 0; i < 4; i++) await predict(batchOf64(i)); // warm the batch path
  before = await metric();
  const requests = 200;
  const t = performance.now();
  await Promise.all(
    [0, 1].map(async (c) => {
      for (let i = c; i < requests; i += 2) await predict(batchOf64(i));
    }),
  );
  const msPerImage = (performance.now() - t) / (requests * 64);
  after = await metric();
  const total = (m: 'inference' | 'search') => ((after[m].sum - before[m].sum) * 1000) / (requests * 64);
  return {
    single,
    batch: { msPerImage, inference: total('inference'), search: total('search'), requests, calls: after.inference.count - before.inference.count },
  };
}
