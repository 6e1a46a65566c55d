// Runs the layer advisor in a worker thread of its own (thread.ts), one per request: it runs
// onnxruntime and large Gemms synchronously, which must stall neither the HTTP thread nor the
// engine thread (predictions). Progress comes back as messages; an abort stops the thread.
import { Worker } from 'node:worker_threads';
import { deserialiseError, type SerialisedError } from '../errors/user-error.js';
import type { InspectedTensor } from '../model/inspect.js';
import type { ModelSpec } from '../model/spec.js';
import { threadEntry } from '../util/thread-entry.js';
import type { LayerJobData } from './layers.js';
import { LayerAdvice } from './advice.js';

export type AdvisorRequest = { command: 'inspect'; model: string; spec: ModelSpec } | { command: 'advise'; data: LayerJobData; batchSize?: number };

export type AdvisorReply = { type: 'progress'; done: number; total: number } | { type: 'result'; result: unknown } | { type: 'error'; error: SerialisedError };

export interface ThreadOptions {
  /** images extracted so far, of `total` (train images × 2 with flip, + val images) */
  onProgress?: (done: number, total: number) => void;
  /** stops the thread at its next batch or key: the promise rejects with the signal's reason */
  signal?: AbortSignal;
}

/** The advisor on `data`, in a thread of its own. */
export function adviseInThread(data: LayerJobData, opts: ThreadOptions & { batchSize?: number } = {}): Promise<LayerAdvice> {
  return runInThread<LayerAdvice>({ command: 'advise', data, batchSize: opts.batchSize }, opts);
}

/** Every tensor of a model with its per-image size (one probe run of onnxruntime), in a thread. */
export function inspectInThread(model: string, spec: ModelSpec, opts: ThreadOptions = {}): Promise<InspectedTensor[]> {
  return runInThread<InspectedTensor[]>({ command: 'inspect', model, spec }, opts);
}

/** How long a cancelled thread may take to stop at its next batch or key before it is terminated. */
export const CANCEL_GRACE_MS = 30_000;
/** How long a thread that answered may take to end by itself before it is terminated. */
const EXIT_GRACE_MS = 5_000;

async function runInThread<T>(request: AdvisorRequest, opts: ThreadOptions): Promise<T> {
  const { signal, onProgress } = opts;
  signal?.throwIfAborted();
  // libvips must be loaded by the main thread before threads use sharp, or the first thread to
  // exit unloads it under the others
  await import('sharp');
  signal?.throwIfAborted();
  const worker = new Worker(threadEntry(import.meta.url, 'thread'), { workerData: request });
  // Terminating a thread while onnxruntime or sharp has work in flight can abort the process
  // (a native callback into a dead thread), so a cancelled thread is asked to stop, and the
  // thread ends by itself once it has answered; terminate() is only the last resort.
  const lastResort = (ms: number) => setTimeout(() => void worker.terminate(), ms).unref();
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let cancelled: Error | null = null;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      worker.unref();
      lastResort(EXIT_GRACE_MS);
      fn();
    };
    const onAbort = () => {
      cancelled = signal!.reason instanceof Error ? signal!.reason : new Error('the layers job was cancelled');
      worker.postMessage({ type: 'cancel' });
      lastResort(CANCEL_GRACE_MS);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    worker.on('message', (m: AdvisorReply) => {
      if (m.type === 'progress') onProgress?.(m.done, m.total);
      else if (m.type === 'result') settle(() => resolve(m.result as T));
      else settle(() => reject(cancelled ?? deserialiseError(m.error)));
    });
    worker.on('error', (err) => settle(() => reject(cancelled ?? err)));
    worker.on('exit', (code) => settle(() => reject(cancelled ?? new Error(`the layer advisor's thread exited (code ${code}) before it answered`))));
  });
}
