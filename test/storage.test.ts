// Damaged stored data: every snapshot file is verified before use, damage is repaired from an
// intact copy or reported loudly, never silently dropped or served as truth (engine/recovery.ts).
import assert from 'node:assert/strict';
import { cpSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CacheDefinitionSchema } from '../src/cache/definition.js';
import { CacheState } from '../src/engine/cache-state.js';
import { HnswIndex } from '../src/index/hnsw.js';
import { verifySnapshotDir } from '../src/index/snapshot.js';
import { FileKeyLog } from '../src/keylog/file-log.js';
import { KeyExtractor } from '../src/model/extractor.js';
import { loadModelSpec } from '../src/model/spec-file.js';
import { keyRecords } from './fixtures/random.js';
import { call, PAPER_KEY_LAYERS, RESNET, SAMPLE, sampleFolder, start, tempDir, waitForJob } from './harness.js';

/** Flip one byte of a file (xor 0x5a); a negative offset counts from the end. */
function flip(file: string, offset: number): void {
  const bytes = readFileSync(file);
  const at = offset < 0 ? bytes.length + offset : offset;
  bytes[at] ^= 0x5a;
  writeFileSync(file, bytes);
}

const HELDOUT = ['cat/4500.jpg', 'horse/4500.jpg', 'ship/4500.jpg', 'dog/4500.jpg'].map((f) => path.join(SAMPLE, 'heldout', f));

async function predictAll(url: string, cache: string) {
  const out = [];
  for (const file of HELDOUT) {
    const form = new FormData();
    form.append('image', new Blob([readFileSync(file)]), path.basename(file));
    const res = await fetch(`${url}/v1/caches/${cache}/predict?neighbours=3`, { method: 'POST', body: form });
    out.push({ status: res.status, body: (await res.json()) as any });
  }
  return out;
}

describe('damaged snapshots, through the service', () => {
  const CACHES = {
    // 64-d random search keys in hnsw: the snapshot keeps a copy of its keys
    graph: { index: { type: 'hnsw' }, searchKey: { reduce: 'random', dimension: 64, rerank: false } },
    flat: { index: { type: 'exact' } },
  };
  let dataDir: string;
  let pristine: string;
  const baseline: Record<string, any[]> = {};

  before(async () => {
    dataDir = tempDir('cachet-storage-');
    const svc = await start(dataDir);
    const images = sampleFolder('cache', 6);
    for (const [name, options] of Object.entries(CACHES)) {
      const created = await call(svc.url, 'POST', '/v1/caches', { name, model: RESNET, keyLayers: PAPER_KEY_LAYERS, ...options });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const job = await call(svc.url, 'POST', `/v1/caches/${name}/index-jobs`, { source: { type: 'folder', path: images } });
      assert.equal((await waitForJob(svc.url, job.body.id)).state, 'completed');
      baseline[name] = await predictAll(svc.url, name);
      assert.ok(baseline[name].every((r) => r.status === 200));
    }
    await svc.close();
    pristine = tempDir('cachet-storage-pristine-');
    copyTree(dataDir, pristine);
  });

  /** Restore the pristine data directory, damage it, start a service on it. */
  async function restartWith(damage: (dir: string) => void) {
    copyTree(pristine, dataDir);
    damage(dataDir);
    return start(dataDir);
  }

  test('an hnsw graph file cut short or missing is rebuilt from the verified keys too', async () => {
    for (const damage of [(f: string) => writeFileSync(f, readFileSync(f).subarray(0, 100)), (f: string) => rmSync(f)]) {
      const svc = await restartWith((dir) => damage(path.join(dir, 'graph', 'snapshot', 'hnsw.bin')));
      try {
        assert.deepEqual(await predictAll(svc.url, 'graph'), baseline.graph);
        assert.match((await call(svc.url, 'GET', '/v1/caches/graph')).body.damage[0].outcome, /rebuilt/);
      } finally {
        await svc.close();
      }
    }
  });

  test('an hnsw graph file damaged at its entry point is rebuilt from the verified keys: same predictions, a warning', async () => {
    const svc = await restartWith((dir) => flip(path.join(dir, 'graph', 'snapshot', 'hnsw.bin'), 54));
    try {
      const info = (await call(svc.url, 'GET', '/v1/caches/graph')).body;
      assert.equal(info.size, 60);
      assert.equal(info.damage.length, 1);
      assert.match(info.damage[0].outcome, /repaired: the hnsw graph was rebuilt/);
      assert.equal(info.damage[0].lostRecords, 0);
      assert.deepEqual(await predictAll(svc.url, 'graph'), baseline.graph);
      const ready = (await call(svc.url, 'GET', '/readyz')).body;
      assert.equal(ready.status, 'degraded', 'the repair is reported until cleared');
      const verified = (await call(svc.url, 'POST', '/v1/caches/graph/verify')).body;
      assert.equal(verified.ok, true, `the repair was snapshotted at once: ${JSON.stringify(verified.problems)}`);
      assert.ok(verified.snapshot.files.some((f: any) => f.name === 'hnsw.bin' && f.problem === null));
      assert.equal(verified.damage.length, 1);
      assert.equal((await call(svc.url, 'DELETE', '/v1/caches/graph/damage')).body.damage.length, 0);
      assert.equal((await call(svc.url, 'GET', '/readyz')).body.status, 'ready');
    } finally {
      await svc.close();
    }
  });

  const truncate = (file: string) => writeFileSync(file, readFileSync(file).subarray(0, Math.floor(readFileSync(file).length / 2)));
  for (const [file, how, damage] of [
    ['keys.f32', 'a flipped byte', (f: string) => flip(f, 1000)],
    ['manifest.json', 'a flipped byte', (f: string) => flip(f, -40)],
    ['items.jsonl', 'a flipped byte', (f: string) => flip(f, 30)],
    ['keys.f32', 'cut in half', truncate],
    ['items.jsonl', 'cut in half', truncate],
    ['keys.f32', 'missing', (f: string) => rmSync(f)],
    ['manifest.json', 'missing', (f: string) => rmSync(f)],
  ] as const) {
    test(`${file} ${how}, with no intact copy: the cache is damaged (503 cache_damaged), the others serve`, async () => {
      const svc = await restartWith((dir) => damage(path.join(dir, 'flat', 'snapshot', file)));
      try {
        const predicted = await predictAll(svc.url, 'flat');
        for (const r of predicted) {
          assert.equal(r.status, 503);
          assert.equal(r.body.error.code, 'cache_damaged');
          assert.match(r.body.error.message, new RegExp(`${file.replace('.', '\\.')}`), 'names the damaged file');
          assert.match(r.body.error.message, /import|index its images again/, 'says what to do');
        }
        assert.deepEqual(await predictAll(svc.url, 'graph'), baseline.graph, 'the other cache serves as before');
        const list = (await call(svc.url, 'GET', '/v1/caches')).body.caches;
        assert.equal(list.find((c: any) => c.name === 'flat').status, 'damaged');
        const ready = await call(svc.url, 'GET', '/readyz');
        assert.equal(ready.status, 200);
        assert.equal(ready.body.status, 'degraded');
        const verified = (await call(svc.url, 'POST', '/v1/caches/flat/verify')).body;
        assert.equal(verified.ok, false);
        assert.ok(
          verified.problems.some((p: string) => p.includes(file)),
          JSON.stringify(verified.problems),
        );
        const metrics = await (await fetch(`${svc.url}/metrics`)).text();
        assert.match(metrics, /cachet_cache_damaged\{cache="flat"\} 1/);
      } finally {
        await svc.close();
      }
    });
  }

  after(() => copyTree(pristine, dataDir));
});

describe('damage in the key log and snapshots, on a cache', () => {
  const LAYERS = ['activation_18'];
  // without sources: the test computes record offsets in the log file
  const records = (from: number, n: number, dim: number) => keyRecords(from, n, dim).map(({ source: _, ...r }) => r);

  const publish = async (_: string, p: any) => p;

  async function setUp() {
    const extractor = await KeyExtractor.create(RESNET, await loadModelSpec(RESNET), LAYERS);
    const definition = CacheDefinitionSchema.parse({ name: 'c', model: RESNET, keyLayers: LAYERS, index: { type: 'exact' } });
    const dir = tempDir('cachet-keylog-damage-');
    const logFile = path.join(dir, 'keylog.bin');
    const open = async () => CacheState.open(definition, dir, extractor, await FileKeyLog.open(logFile, extractor.keyDimension), publish, () => {});
    return { extractor, dir, logFile, open, D: extractor.keyDimension };
  }

  test('a damaged record mid-log: every intact record opens, the lost id is reported and kept through snapshots', async () => {
    const { logFile, open, D } = await setUp();
    let cache = await open();
    for (let from = 0; from < 30; from += 10) await cache.add(records(from, 10, D));
    await cache.close();
    const recordBytes = 8 + 2 + 'item-12'.length + 4 + 4 * D;
    flip(logFile, 32 + 12 * recordBytes + 100); // inside record 12's key

    cache = await open();
    assert.equal(cache.size, 29, 'the 17 records after the damaged one are kept');
    assert.ok(!cache.items.has('item-12') && cache.items.has('item-13') && cache.items.has('item-29'));
    const [damage] = cache.info().damage;
    assert.equal(damage.lostRecords, 1);
    assert.deepEqual(damage.lostIds, ['item-12']);
    assert.match(damage.what, /key log: 1 damaged record\(s\) at position\(s\) 12/);
    await cache.lock.run(() => cache.snapshot()); // compacts the damaged bytes away
    await cache.close();

    cache = await open();
    assert.equal(cache.size, 29);
    assert.deepEqual(
      cache.info().damage.map((d) => d.lostIds),
      [['item-12']],
      'the report outlives the compaction',
    );
    await cache.add(records(12, 1, D)); // the user indexes the lost image again
    assert.equal(cache.size, 30);
    await cache.close();
  });

  test('a resized hnsw graph is read back from its snapshot only once its bytes match the manifest', async () => {
    const extractor = await KeyExtractor.create(RESNET, await loadModelSpec(RESNET), LAYERS);
    const definition = CacheDefinitionSchema.parse({ name: 'h', model: RESNET, keyLayers: LAYERS, index: { type: 'hnsw' } });
    const dir = tempDir('cachet-readback-');
    const reports: string[] = [];
    const log = await FileKeyLog.open(path.join(dir, 'keylog.bin'), extractor.keyDimension);
    const cache = await CacheState.open(definition, dir, extractor, log, publish, (level, msg) => reports.push(`${level}: ${msg}`));
    await cache.add(records(0, 1100, extractor.keyDimension)); // past hnsw's first room of 1024: resized
    const grown = cache.search.index;
    const before = (await cache.search.nearest(grown.key(0), 1, 10))[0];

    // a byte flipped on disk after the snapshot was written: not read; said, and the snapshot written again
    await cache.lock.read(() => cache.snapshot(), { long: true });
    flip(path.join(dir, 'snapshot', 'hnsw.bin'), 1000);
    await cache.snapshotWhenAsked();
    assert.equal(cache.search.index, grown, 'the graph in memory is kept');
    assert.equal(reports.length, 1);
    assert.match(reports[0], /^error: cache "h": the snapshot's hnsw\.bin, read back after writing: sha256 .* recorded; the graph in memory is kept/);
    assert.deepEqual((await verifySnapshotDir(path.join(dir, 'snapshot'))).damaged, {}, 'written again, sound');

    // sound: read back and searched from here on, with the same answers
    await cache.snapshotWhenAsked();
    assert.notEqual(cache.search.index, grown);
    assert.equal((cache.search.index as HnswIndex).resized, false);
    assert.deepEqual((await cache.search.nearest(grown.key(0), 1, 10))[0], before);
    assert.equal(reports.length, 1);
    await cache.close();
  });

  test('a damaged snapshot while the key log still holds every record: rebuilt from the log', async () => {
    const { dir, logFile, open, D } = await setUp();
    let cache = await open();
    await cache.add(records(0, 25, D));
    await cache.close();
    const wholeLog = readFileSync(logFile);
    cache = await open();
    await cache.lock.run(() => cache.snapshot());
    await cache.close();
    writeFileSync(logFile, wholeLog); // as a Redis stream is: never trimmed
    flip(path.join(dir, 'snapshot', 'keys.f32'), 77);

    cache = await open();
    assert.equal(cache.size, 25);
    assert.match(cache.info().damage[0].outcome, /repaired: rebuilt from the key log/);
    assert.ok(
      readdirSync(dir).some((n) => n.startsWith('snapshot.damaged-')),
      'the damaged snapshot is kept aside',
    );
    await cache.close();
  });
});

function copyTree(from: string, to: string): void {
  rmSync(to, { recursive: true, force: true });
  cpSync(from, to, { recursive: true });
}

describe('export and import', () => {
  let a: Awaited<ReturnType<typeof start>>;
  let b: Awaited<ReturnType<typeof start>>;
  let archive: Buffer;
  let baseline: any[];

  before(async () => {
    a = await start();
    b = await start();
    const created = await call(a.url, 'POST', '/v1/caches', {
      name: 'travels',
      model: RESNET,
      keyLayers: PAPER_KEY_LAYERS,
      index: { type: 'hnsw' },
      searchKey: { reduce: 'pca', dimension: 16, fitSample: 100, rerank: true },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const job = await call(a.url, 'POST', '/v1/caches/travels/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 12) }, flip: false });
    assert.equal((await waitForJob(a.url, job.body.id)).state, 'completed');
    baseline = await predictAll(a.url, 'travels');
    const res = await fetch(`${a.url}/v1/caches/travels/snapshot`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/x-tar');
    archive = Buffer.from(await res.arrayBuffer());
  });
  after(async () => {
    await a.close();
    await b.close();
  });

  const post = (url: string, body: Buffer, query = '') =>
    fetch(`${url}/v1/caches/import${query}`, { method: 'POST', headers: { 'content-type': 'application/x-tar' }, body: new Uint8Array(body) }).then(
      async (r) => ({
        status: r.status,
        body: (await r.json()) as any,
      }),
    );

  test('an exported cache imported into another service predicts the same', async () => {
    const imported = await post(b.url, archive, '?name=restored');
    assert.equal(imported.status, 201, JSON.stringify(imported.body));
    assert.equal(imported.body.name, 'restored');
    assert.equal(imported.body.size, 120);
    assert.ok(imported.body.searchKey.projection, 'the PCA projection travels with it');
    const named = (rs: any[], cache: string) => rs.map((r) => ({ ...r, body: { ...r.body, cache } }));
    assert.deepEqual(named(await predictAll(b.url, 'restored'), 'travels'), baseline);
    // it is a cache like any other: it takes new items, and survives a restart
    assert.equal((await call(b.url, 'POST', '/v1/caches/restored/verify')).body.ok, true);
    assert.equal((await post(b.url, archive, '?name=restored')).body.error.code, 'cache_exists');
  });

  test('a damaged, cut or foreign archive is refused whole, and leaves nothing behind', async () => {
    const flipped = Buffer.from(archive);
    flipped[Math.floor(flipped.length / 2)] ^= 0x5a;
    const cases: [string, Buffer][] = [
      ['a flipped byte', flipped],
      ['cut short', archive.subarray(0, Math.floor(archive.length * 0.7))],
      ['not a tar', Buffer.from('{"hello": "world"}')],
      ['empty', Buffer.alloc(0)],
    ];
    for (const [what, body] of cases) {
      const r = await post(b.url, body, '?name=broken').catch((err) => assert.fail(`${what}: ${err.cause ?? err}`));
      assert.equal(r.status, 400, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'bad_archive', what);
    }
    assert.equal((await call(b.url, 'GET', '/v1/caches/broken')).status, 404);
    assert.deepEqual(
      readdirSync(b.dataDir).filter((n) => n.startsWith('.import-') || n === 'broken'),
      [],
      'no staging directory or half-made cache is left',
    );
  });
});

describe('embedded jobs across restarts', () => {
  test('a job interrupted by a stop goes on at the next start, under the same id, to the exact count', async () => {
    const dataDir = tempDir('cachet-jobs-');
    let svc = await start(dataDir, undefined, { batchSize: 8 });
    const created = await call(svc.url, 'POST', '/v1/caches', { name: 'j', model: RESNET, keyLayers: PAPER_KEY_LAYERS, index: { type: 'exact' } });
    assert.equal(created.status, 201);
    const images = sampleFolder('cache', 20);
    const job = (await call(svc.url, 'POST', '/v1/caches/j/index-jobs', { source: { type: 'folder', path: images } })).body;
    const finished = (await call(svc.url, 'POST', '/v1/caches/j/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 1) } })).body;
    // stop while the first job runs (the second one waits behind it)
    for (;;) {
      const view = (await call(svc.url, 'GET', `/v1/jobs/${job.id}`)).body;
      if (view.progress.done > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await svc.close();

    svc = await start(dataDir, undefined, { batchSize: 8 });
    try {
      const done = await waitForJob(svc.url, job.id);
      assert.equal(done.state, 'completed', JSON.stringify(done.failedReason));
      assert.equal(done.result.cacheSize >= 200, true);
      assert.equal((await waitForJob(svc.url, finished.id)).state, 'completed', 'the job that waited runs too');
      assert.equal((await call(svc.url, 'GET', '/v1/caches/j')).body.size, 200, 'every item once: those added before the stop were skipped');
    } finally {
      await svc.close();
    }
    // a finished job still answers after another restart
    svc = await start(dataDir);
    try {
      assert.equal((await call(svc.url, 'GET', `/v1/jobs/${job.id}`)).body.state, 'completed');
    } finally {
      await svc.close();
    }
  });
});
