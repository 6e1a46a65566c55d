// The models a process runs: one onnxruntime session per (model, spec, key layers) for the life of
// the process (re-creating sessions leaks memory), all on one inference thread started on first use.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { CacheDefinition } from '../cache/definition.js';
import { UserError } from '../errors/user-error.js';
import { InferenceThread } from '../model/inference.js';
import { loadModelSpec } from '../model/spec-file.js';
import type { Extractor } from '../model/types.js';

/**
 * onnxruntime threads per model session. Measured on 2 cores with ResNet-20: a second intra-op
 * thread gains ≤ 10 % on one run, but overlapping runs (a predict batch beside an index batch) were
 * 2–3× slower per image with 2 threads each. Large models on many cores may want more:
 * CACHET_INTRA_OP_THREADS.
 */
const INTRA_OP_THREADS = Number(process.env.CACHET_INTRA_OP_THREADS ?? 1);

export class ModelRegistry {
  private readonly extractors = new Map<string, Promise<Extractor>>();
  private inference: InferenceThread | null = null;

  /** The cache's model session; loading it checks the model file, its spec and the key layers. */
  extractorFor(d: CacheDefinition): Promise<Extractor> {
    const key = JSON.stringify([path.resolve(d.model), d.spec ?? {}, d.keyLayers]);
    let extractor = this.extractors.get(key);
    if (!extractor) {
      extractor = fs
        .access(d.model)
        .catch(() => {
          throw new UserError('bad_model', `model ${d.model}: no such file; give the path of the .onnx file as the service sees it`);
        })
        .then(() => loadModelSpec(d.model, d.spec))
        .then((spec) => (this.inference ??= InferenceThread.start()).load(d.model, spec, d.keyLayers, { intraOpNumThreads: INTRA_OP_THREADS }));
      this.extractors.set(key, extractor);
      extractor.catch(() => this.extractors.delete(key)); // a failed load may succeed once the user fixes the file
    }
    return extractor;
  }

  async close(): Promise<void> {
    await this.inference?.terminate();
  }
}
