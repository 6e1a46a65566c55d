// Micro-batching of predict requests: concurrent requests for the same cache with the same
// classify options share one engine.classify call, i.e. one onnxruntime run and one index search.
//
// When a batch is sent (the rule, and why):
// - at once when the batcher has nothing in flight on the engine: a lone request pays no wait,
//   and nothing would be gained by waiting, since the engine could start on it right away;
// - otherwise the request joins the open batch of its key, which is sent when the engine frees up
//   (the last batch in flight returns), when it holds maxBatch images, or maxWaitMs after its
//   first request joined, whichever comes first. While the engine is busy, a request could not
//   start anyway, so collecting costs it little, and the batch grows with the load on its own;
//   maxWaitMs bounds the wait when a run is long (a large batch, a large exact cache).
// A request's images stay together in one batch; a request of more than maxBatch images is split
// into parts of maxBatch. Each request gets its own results, in order; an error of the engine call
// (a UserError stays a UserError) goes to every request of that batch.
// Other engine calls (index and eval jobs) are not seen here: "idle" means no predict batch in flight.
import type { ServingApi } from '../engine/client.js';
import { ClassifyResult, ClassifyOptions } from '../engine/types.js';
import type { ModelSpec } from '../model/spec.js';
import { writeTensor } from '../preprocess/image.js';

export interface BatcherOptions {
  /** the most images in one engine call */
  maxBatch: number;
  /** the longest a request waits for others to join its batch while the engine is busy */
  maxWaitMs: number;
}

export const DEFAULT_BATCHER_OPTIONS: BatcherOptions = { maxBatch: 64, maxWaitMs: 2 };

export interface BatcherStats {
  /** engine.classify calls made */
  batches: number;
  /** requests served (a request split into parts counts once per part) */
  requests: number;
  images: number;
  /** the most images in one engine call so far */
  largestBatch: number;
  /** images collected in open batches, not yet sent to the engine */
  waiting: number;
}

interface Waiting {
  /** a request's images as decoded pixels, made model input (per its spec) straight into the batch tensor */
  pixels: ArrayLike<number>[];
  spec: ModelSpec;
  resolve: (r: ClassifyResult) => void;
  reject: (err: unknown) => void;
}

interface Batch {
  name: string;
  options: ClassifyOptions;
  waiting: Waiting[];
  images: number;
  timer: NodeJS.Timeout | null;
}

export class PredictBatcher {
  readonly options: BatcherOptions;
  /** batches still collecting, by cache and options */
  private readonly open = new Map<string, Batch>();
  private inFlight = 0;
  private readonly counts: Omit<BatcherStats, 'waiting'> = { batches: 0, requests: 0, images: 0, largestBatch: 0 };

  constructor(
    private readonly engine: Pick<ServingApi, 'classify'>,
    options: Partial<BatcherOptions> = {},
  ) {
    this.options = { ...DEFAULT_BATCHER_OPTIONS, ...options };
    const { maxBatch, maxWaitMs } = this.options;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new Error(`maxBatch must be a positive integer, got ${maxBatch}`);
    if (!(maxWaitMs >= 0)) throw new Error(`maxWaitMs must be ≥ 0, got ${maxWaitMs}`);
  }

  /** Classify one request's images, decoded to pixels (imageToPixels) for the cache's model, whose spec is `spec`. */
  async classify(name: string, pixels: ArrayLike<number>[], spec: ModelSpec, options: ClassifyOptions = {}): Promise<ClassifyResult> {
    const { maxBatch } = this.options;
    if (pixels.length <= maxBatch) return this.enqueue(name, pixels, spec, options);
    const parts: Promise<ClassifyResult>[] = [];
    for (let s = 0; s < pixels.length; s += maxBatch) parts.push(this.enqueue(name, pixels.slice(s, s + maxBatch), spec, options));
    const done = await Promise.all(parts);
    // θ and λ are those of every part; cacheSize is the last part's (the cache may grow meanwhile)
    const missing = [...new Set(done.flatMap((r) => r.missingShards ?? []))].sort((a, b) => a - b);
    return { ...done[done.length - 1], results: done.flatMap((r) => r.results), ...(missing.length && { missingShards: missing }) };
  }

  stats(): BatcherStats {
    let waiting = 0;
    for (const b of this.open.values()) waiting += b.images;
    return { ...this.counts, waiting };
  }

  private enqueue(name: string, pixels: ArrayLike<number>[], spec: ModelSpec, given: ClassifyOptions): Promise<ClassifyResult> {
    const options: ClassifyOptions = { neighbours: given.neighbours ?? 0 };
    if (given.theta !== undefined) options.theta = given.theta;
    if (given.lambda !== undefined) options.lambda = given.lambda;
    if (given.partial) options.partial = true;
    const key = JSON.stringify([name, options.theta ?? null, options.lambda ?? null, options.neighbours, options.partial ?? false]);
    const { maxBatch, maxWaitMs } = this.options;
    return new Promise((resolve, reject) => {
      let batch = this.open.get(key);
      if (batch && batch.images + pixels.length > maxBatch) {
        this.send(key, batch); // this request does not fit: it starts the next batch
        batch = undefined;
      }
      if (!batch) {
        batch = { name, options, waiting: [], images: 0, timer: null };
        this.open.set(key, batch);
      }
      batch.waiting.push({ pixels, spec, resolve, reject });
      batch.images += pixels.length;
      if (batch.images >= maxBatch || this.inFlight === 0) this.send(key, batch);
      else if (!batch.timer) {
        const b = batch;
        b.timer = setTimeout(() => this.send(key, b), maxWaitMs);
      }
    });
  }

  private send(key: string, batch: Batch): void {
    if (this.open.get(key) === batch) this.open.delete(key);
    if (batch.timer) clearTimeout(batch.timer);
    batch.timer = null;
    const n = batch.images;
    this.inFlight++;
    this.counts.batches++;
    this.counts.requests += batch.waiting.length;
    this.counts.images += n;
    this.counts.largestBatch = Math.max(this.counts.largestBatch, n);
    let call: Promise<ClassifyResult>;
    try {
      // a fresh tensor per batch: the engine client transfers (detaches) its buffer
      call = this.engine.classify(batch.name, batchTensor(batch.waiting), n, batch.options);
    } catch (err) {
      call = Promise.reject(err);
    }
    call.then(
      (r) => {
        this.inFlight--;
        if (r.results.length !== n) {
          const err = new Error(`the engine returned ${r.results.length} results for ${n} images`);
          for (const w of batch.waiting) w.reject(err);
        } else {
          let at = 0;
          for (const w of batch.waiting) w.resolve({ ...r, results: r.results.slice(at, (at += w.pixels.length)) });
        }
        this.whenIdle();
      },
      (err: unknown) => {
        this.inFlight--;
        for (const w of batch.waiting) w.reject(err);
        this.whenIdle();
      },
    );
  }

  /** The engine is free: send what collected meanwhile, oldest batch first. */
  private whenIdle(): void {
    if (this.inFlight > 0) return;
    for (const [key, batch] of [...this.open]) this.send(key, batch);
  }
}

/**
 * The batch's model input: every request's pixels written straight into one tensor, each per the
 * spec it was decoded for (no tensor per image: a request of 64 CIFAR images would allocate 64
 * arrays, 786 KB, only to copy them here).
 */
function batchTensor(waiting: Waiting[]): Float32Array {
  let floats = 0;
  for (const w of waiting) floats += w.pixels.length * w.spec.width * w.spec.height * 3;
  const tensor = new Float32Array(floats);
  let at = 0;
  for (const w of waiting) {
    const size = w.spec.width * w.spec.height * 3;
    for (const rgb of w.pixels) {
      writeTensor(rgb, w.spec, tensor, at);
      at += size;
    }
  }
  return tensor;
}
