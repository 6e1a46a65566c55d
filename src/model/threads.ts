import { threadCount } from '../math/arithmetic-session.js';

/**
 * onnxruntime intra-op threads per model session, set explicitly: the default is one per physical
 * core, and those threads spin between runs. Measured on 2 cores with ResNet-20: a second intra-op
 * thread gains ≤ 10 % on one run, but overlapping runs (a predict batch beside an index batch) were
 * 2–3× slower per image with 2 threads each. Large models on many cores may want more:
 * CACHET_INTRA_OP_THREADS.
 */
export const INTRA_OP_THREADS = threadCount('CACHET_INTRA_OP_THREADS');
