// Options for the small onnxruntime sessions that do our arithmetic (inner products, casts) on
// the thread that calls them. onnxruntime's default is a pool of one intra-op thread per physical
// core, whose threads spin between runs: on a 2-core machine that reports 2 cores, those pools
// beside the model's own thread took the service from 1.25 to 2.36 ms of CPU per predicted image
// and from 0.77 to 1.22 ms of wall clock (the paper's cache, requests of 64). Machines that report
// one core get no pool, which is why earlier measurements never saw it.
import type { InferenceSession } from 'onnxruntime-node';

export const ARITHMETIC_SESSION: InferenceSession.SessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  // Shapes change on every call (rows per block, per batch): memory patterns planned for one
  // shape would only be thrown away.
  enableMemPattern: false,
};
