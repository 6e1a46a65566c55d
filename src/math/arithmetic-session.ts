// Options for the small onnxruntime sessions that do the search's arithmetic (projections, exact
// search, float16 casts) on the engine thread; re-ranking is the native addon's (inner-products.ts).
// onnxruntime's default is a pool of one intra-op thread per physical core, whose threads spin
// between runs: on a VM that reports 2 cores, those pools beside the model's thread took the
// service from 1.25 to 2.36 ms of CPU per predicted image and from 0.77 to 1.22 ms of wall clock
// (the paper's cache, requests of 64).
// So one thread, unless CACHET_SEARCH_THREADS says more (many cores, large exact caches); then
// the pool does not spin. On 2 cores, 2 threads that do not spin still cost 11 % (0.75 vs 0.67 ms).
import type { InferenceSession } from 'onnxruntime-node';

/** A thread count from the environment variable `name`: 1 when unset, else a whole number from 1 to 1024 (else the process stops, naming it). */
export function threadCount(name: string): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return 1;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new Error(`${name}=${raw}: give a whole number of threads from 1 to 1024`);
  return n;
}

export const SEARCH_THREADS = threadCount('CACHET_SEARCH_THREADS');

export const ARITHMETIC_SESSION: InferenceSession.SessionOptions = {
  intraOpNumThreads: SEARCH_THREADS,
  interOpNumThreads: 1,
  // Shapes change on every call (rows per block, per batch): memory patterns planned for one
  // shape would only be thrown away.
  enableMemPattern: false,
  extra: { session: { intra_op: { allow_spinning: '0' } } },
};
