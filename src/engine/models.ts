// The models a process runs: one onnxruntime session per (model, spec, key layers) for the life of
// the process (re-creating sessions leaks memory), all on one inference thread started on first use.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { CacheDefinition } from '../cache/definition.js';
import { UserError } from '../errors/user-error.js';
import { InferenceThread } from '../model/inference.js';
import { loadModelSpec } from '../model/spec-file.js';
import { INTRA_OP_THREADS } from '../model/threads.js';
import type { Extractor } from '../model/types.js';

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
