// Once a cache has its search-key projection, writers log reduced records (the search key,
// and the full key in float16 when the cache re-ranks) instead of full float32 keys; a
// reader replaying the log builds the same index either way.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { CacheDefinitionSchema } from '../src/cache/definition.js';
import { CacheState, type ProjectionPublisher } from '../src/engine/cache-state.js';
import { Projection } from '../src/index/projection.js';
import { FileKeyLog } from '../src/keylog/file-log.js';
import { isDelete, isReduced, type KeyRecord, type LogRecord } from '../src/keylog/types.js';
import { KeyExtractor } from '../src/model/extractor.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import { keyRecords } from './fixtures/random.js';
import { RESNET, tempDir } from './harness.js';

const LAYERS = ['activation_18']; // 4,096-d keys

const records = keyRecords;

/** As the engine does in embedded mode: the first projection stored in a directory is kept. */
function publisher(dir: string): ProjectionPublisher {
  return async (_cache, make) => {
    const stored = await Projection.load(dir);
    if (stored) return stored;
    const projection = await make();
    mkdirSync(dir, { recursive: true });
    await projection.save(dir);
    return projection;
  };
}

async function readLog(log: FileKeyLog): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  await log.readFrom(log.base(), (batch) => void out.push(...batch));
  return out;
}

describe('reduced key-log records', () => {
  const cases = [
    { rerank: true, snapshotFirst: false },
    { rerank: false, snapshotFirst: false },
    { rerank: true, snapshotFirst: true },
  ];
  for (const { rerank, snapshotFirst } of cases) {
    const replay = snapshotFirst ? 'from a snapshot taken before the fit' : 'of the whole log';
    test(`rerank ${rerank}: records after the PCA fit are logged reduced, and a replay ${replay} builds the same cache`, async () => {
      const spec = await loadModelSpec(RESNET);
      const extractor = await KeyExtractor.create(RESNET, spec, LAYERS);
      const D = extractor.keyDimension;
      const definition = CacheDefinitionSchema.parse({
        name: 'reduced',
        model: RESNET,
        keyLayers: LAYERS,
        index: { type: 'hnsw', efSearch: 400 },
        k: 20,
        searchKey: { reduce: 'pca', dimension: 16, fitSample: 100, rerank, fullKeys: 'float16' },
      });
      const root = tempDir('cachet-reduced-');
      const logPath = path.join(root, 'keylog.bin');
      let fits = 0; // how many times a PCA was fitted (rather than taken from the store)
      const store = publisher(path.join(root, 'projection'));
      const publish: ProjectionPublisher = (cache, make) => store(cache, () => (fits++, make()));
      const log = await FileKeyLog.open(logPath, D);
      const writer = await CacheState.open(definition, path.join(root, 'writer'), extractor, log, publish);
      for (let from = 0; from < 200; from += 50) {
        await writer.add(records(from, 50, D));
        if (snapshotFirst && from === 0) await writer.snapshot(); // covers 0–49 and compacts the log to 50
      }
      await writer.delete(['item-3', 'item-150']);
      assert.ok(writer.search.projection, 'the PCA was fitted at 100 items');
      assert.equal(writer.size, 198);

      const logged = await readLog(log);
      const adds = logged.filter((r): r is KeyRecord => !isDelete(r));
      const held = snapshotFirst ? 150 : 200;
      assert.equal(adds.length, held);
      assert.equal(logged.length, held + 2);
      // the fit happens after the batch that reaches fitSample: records 0–99 full, 100–199 reduced
      assert.deepEqual(
        adds.map((r) => (isReduced(r) ? 'reduced' : 'full')),
        [...Array(held - 100).fill('full'), ...Array(100).fill('reduced')],
      );
      for (const r of adds.slice(held - 100)) {
        assert.ok(isReduced(r));
        assert.equal(r.searchKey.length, 16);
        assert.equal(r.fullKey16?.length, rerank ? D : undefined);
        assert.match(r.source!, /^\/images\//);
      }
      const fullBytes = 4 * D;
      const reducedBytes = 4 * 16 + (rerank ? 2 * D : 0);
      console.log(`# a record's key: ${fullBytes} B full, ${reducedBytes} B reduced (rerank ${rerank})`);

      // a reader replaying the log (over the snapshot, if any) ends up with the same cache
      const readerDir = path.join(root, 'reader');
      if (snapshotFirst) cpSync(path.join(root, 'writer'), readerDir, { recursive: true });
      const reader = await CacheState.open(definition, readerDir, extractor, await FileKeyLog.open(logPath, D), publish);
      assert.equal(reader.size, 198);
      assert.equal(reader.search.projection?.fingerprint, writer.search.projection!.fingerprint);
      assert.equal(fits, 1, 'the reader took the stored projection: the PCA was fitted once');
      const queries = new Float32Array(5 * D);
      records(1000, 5, D).forEach((r, i) => queries.set(r.key, i * D));
      const probe = async (c: CacheState) => c.lock.run(() => c.search.nearest(queries, 5, 20));
      const want = await probe(writer);
      assert.deepEqual(await probe(reader), want);
      for (const n of want) assert.ok(!n.positions.includes(3) && !n.positions.includes(150), 'deleted items stay out');
      assert.deepEqual(reader.items.ids, writer.items.ids);
      assert.equal(reader.items.sourceOf('item-120'), '/images/120.png');
      await writer.close();
      await reader.close();
    });
  }
});
