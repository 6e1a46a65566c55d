// The embedded role: one process holds its caches and writes their key logs itself, as files
// under the data directory (<dataDir>/<cache>/keylog.bin), beside definitions and projections.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { CacheInfo } from '../cache/info.js';
import { UserError } from '../errors/user-error.js';
import { manifestOf } from '../index/snapshot.js';
import { importedDefinition, installImport } from './cache-export.js';
import { checkSnapshotMatches } from './cache-snapshot.js';
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
    const cache = this.held.get(name);
    const { records, failed } = await extractRecords(cache.extractor, images, ids, labels, sources);
    const { added, duplicates } = await cache.add(records);
    return { added, duplicates, failed };
  }

  /** Make an unpacked, verified export archive a cache: its snapshot, its projection, an empty key log after it. */
  override async importCache(staging: string, overrides: { name?: string; model?: string } = {}): Promise<CacheInfo> {
    try {
      const { definition } = await importedDefinition(staging, overrides);
      const name = definition.name;
      const taken = () => new UserError('cache_exists', `a cache named "${name}" already exists: import under another name (--name)`);
      if (this.held.knows(name)) throw taken();
      const extractor = await this.models.extractorFor(definition); // the model must be here
      checkSnapshotMatches(await manifestOf(path.join(staging, 'snapshot')), definition, extractor);
      const target = path.join(this.options.dataDir, name);
      if (
        await fs.stat(target).then(
          () => true,
          () => false,
        )
      )
        throw taken();
      const { logPosition } = await installImport(staging, target);
      try {
        await (await FileKeyLog.create(path.join(target, LOG_FILE), extractor.keyDimension, logPosition)).close();
        if (!(await this.definitions.create(definition))) throw taken();
        await this.openCache(definition);
        const failure = this.held.failed.get(name);
        if (failure !== undefined) throw new UserError('bad_archive', `the imported cache does not open: ${failure}`);
        return this.held.get(name).info();
      } catch (err) {
        this.held.forget(name);
        await this.definitions.delete(name); // and the directory
        throw err;
      }
    } finally {
      await fs.rm(staging, { recursive: true, force: true });
    }
  }

  protected openLog(_name: string, dir: string, dimension: number): Promise<KeyLog> {
    return FileKeyLog.open(path.join(dir, LOG_FILE), dimension);
  }

  protected deleteLogged(cache: CacheState, ids: string[]): Promise<string[]> {
    return cache.delete(ids);
  }
}

const LOG_FILE = 'keylog.bin';
