// Model inference on a thread of its own.
//
// onnxruntime-node runs a session synchronously on the thread that calls run(), so on the engine
// thread a batch's inference and another batch's index search (hnswlib, the re-ranking addon:
// also synchronous) could only take turns. Here the engine thread searches batch i while this
// thread runs the model on batch i+1: on 2 cores, inference on one, search beside it.
import { Worker } from 'node:worker_threads';
import type { Extractor, ExtractorOptions } from './types.js';
import { normaliseKeys, type RawResult } from './normalise-keys.js';
import type { ModelSpec } from './spec.js';
import { threadEntry } from '../util/thread-entry.js';
import { threadCaller, type ThreadCaller } from '../util/thread-rpc.js';

interface Loaded {
  id: number;
  spec: ModelSpec;
  keyLayers: string[];
  modelHash: string;
  keyDimension: number;
  numClasses: number;
}

export class InferenceThread {
  private constructor(private readonly thread: ThreadCaller) {}

  static start(): InferenceThread {
    return new InferenceThread(threadCaller(new Worker(threadEntry(import.meta.url, 'inference-thread')), 'inference'));
  }

  /** Load a model in the thread (errors as KeyExtractor.create's: a UserError stays one). */
  async load(modelPath: string, spec: ModelSpec, keyLayers: string[], opts: ExtractorOptions = {}): Promise<Extractor> {
    const { id, ...info } = (await this.thread.call('load', [modelPath, spec, keyLayers, opts])) as Loaded;
    const thread = this.thread;
    return {
      ...info,
      run: async (batch, n) => normaliseKeys((await thread.call('run', [id, batch, n])) as RawResult, n, info.keyDimension),
      release: async () => void (await thread.call('release', [id])),
    };
  }

  async terminate(): Promise<void> {
    await this.thread.terminate();
  }
}
