// Worker-thread entry: holds onnxruntime sessions (KeyExtractors) and runs them for the engine.
import { parentPort } from 'node:worker_threads';
import { KeyExtractor } from './extractor.js';
import type { ExtractorOptions } from './types.js';
import type { ModelSpec } from './spec.js';
import { serveThread } from '../util/thread-rpc.js';

const extractors = new Map<number, KeyExtractor>();
let nextId = 1;

function get(id: number): KeyExtractor {
  const x = extractors.get(id);
  if (!x) throw new Error(`no model session ${id} in the inference thread (released?)`);
  return x;
}

serveThread(parentPort, {
  async load(modelPath: string, spec: ModelSpec, keyLayers: string[], opts: ExtractorOptions) {
    const x = await KeyExtractor.create(modelPath, spec, keyLayers, opts);
    const id = nextId++;
    extractors.set(id, x);
    return { id, spec: x.spec, keyLayers: x.keyLayers, modelHash: x.modelHash, keyDimension: x.keyDimension, numClasses: x.numClasses };
  },
  // the keys go back as the layers gave them: the engine thread normalises them (KeyExtractor.runRaw)
  run: (id: number, batch: Float32Array, n: number) => get(id).runRaw(batch, n),
  async release(id: number) {
    await get(id).release();
    extractors.delete(id);
  },
});
