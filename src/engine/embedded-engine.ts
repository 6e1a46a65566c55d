// The embedded role: one process holds its caches and writes their key logs itself, as files
// under the data directory (<dataDir>/<cache>/keylog.bin), beside definitions and projections.
import path from 'node:path';
import { FileKeyLog } from '../keylog/file-log.js';
import type { KeyLog } from '../keylog/types.js';
import type { CacheState } from './cache-state.js';
import { FileDefinitions } from './definitions.js';
import { CacheEngine } from './engine.js';
import { extractRecords } from './extract-records.js';
import { FileProjectionStore } from './projection-store.js';
import type { EngineLogEntry, EngineOptions, IndexBatchResult } from './types.js';

export class EmbeddedEngine extends CacheEngine {
  constructor(options: EngineOptions, report: (entry: EngineLogEntry) => void) {
    super(options, new FileDefinitions(options.dataDir), new FileProjectionStore(options.dataDir), report);
  }

  /**
   * Extract the keys of a batch of decoded images and add them as items. `images` is n images
   * laid out as the model's input; labels are class indices.
   */
  async indexBatch(name: string, images: Float32Array, ids: string[], labels: number[], sources?: (string | null)[]): Promise<IndexBatchResult> {
    const cache = this.cache(name);
    const { records, failed } = await extractRecords(cache.extractor, images, ids, labels, sources);
    const { added, duplicates } = await cache.add(records);
    return { added, duplicates, failed };
  }

  protected openLog(_name: string, dir: string, dimension: number): Promise<KeyLog> {
    return FileKeyLog.open(path.join(dir, LOG_FILE), dimension);
  }

  protected deleteLogged(cache: CacheState, ids: string[]): Promise<string[]> {
    return cache.delete(ids);
  }
}

const LOG_FILE = 'keylog.bin';
