import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ExactIndex } from '../src/index/exact.js';
import { DEFAULT_INDEX_OPTIONS, createIndex, loadIndex, migrateToHnsw, shouldMigrate } from '../src/index/factory.js';
import { HnswIndex } from '../src/index/hnsw.js';
import type { Neighbours, VectorIndex } from '../src/index/types.js';
import { gaussian, rng } from './fixtures/random.js';

// Deterministic random unit vectors for the index tests.

/** mulberry32: a small seeded PRNG, so failures reproduce */

function normalise(v: Float32Array, o: number, dim: number): void {
  let ss = 0;
  for (let j = 0; j < dim; j++) ss += v[o + j] * v[o + j];
  const inv = 1 / Math.sqrt(ss);
  for (let j = 0; j < dim; j++) v[o + j] *= inv;
}

/** n unit vectors around `clusters` random centres (noise per coordinate `spread`/√dim) */
function clustered(n: number, dim: number, clusters: number, seed: number, spread = 0.8): Float32Array {
  const r = rng(seed);
  const centres = new Float32Array(clusters * dim);
  for (let i = 0; i < centres.length; i++) centres[i] = gaussian(r);
  for (let c = 0; c < clusters; c++) normalise(centres, c * dim, dim);
  const out = new Float32Array(n * dim);
  const noise = spread / Math.sqrt(dim);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(r() * clusters);
    for (let j = 0; j < dim; j++) out[i * dim + j] = centres[c * dim + j] + noise * gaussian(r);
    normalise(out, i * dim, dim);
  }
  return out;
}

/** float64 inner products of one query with every key */
function referenceSimilarities(queries: Float32Array, q: number, keys: Float32Array, n: number, dim: number): Float64Array {
  const s = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let dot = 0;
    for (let j = 0; j < dim; j++) dot += queries[q * dim + j] * keys[i * dim + j];
    s[i] = dot;
  }
  return s;
}

/** positions of the k largest, best first, earlier position first on ties */
function referenceTopK(s: Float64Array, k: number): number[] {
  return Array.from(s.keys())
    .sort((a, b) => s[b] - s[a] || a - b)
    .slice(0, k);
}

const tmpDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cachet-index-'));
  tmpDirs.push(dir);
  return dir;
}
after(async () => {
  for (const dir of tmpDirs) await rm(dir, { recursive: true, force: true });
});

const hnswParams = { m: 16, efConstruction: 100, efSearch: 128 };

function assertSameNeighbours(a: Neighbours[], b: Neighbours[]): void {
  assert.equal(a.length, b.length);
  for (let q = 0; q < a.length; q++) {
    assert.deepEqual(Array.from(a[q].positions), Array.from(b[q].positions));
    assert.deepEqual(Array.from(a[q].similarities), Array.from(b[q].similarities));
  }
}

describe('ExactIndex', () => {
  const dim = 64;
  const n = 1000;
  const keys = clustered(n, dim, 20, 1);
  const nq = 70; // more than one query batch
  const queries = clustered(nq, dim, 20, 2);

  async function build(): Promise<ExactIndex> {
    const index = new ExactIndex(dim, { blockRows: 300 }); // 4 blocks, the last one partial
    await index.add(keys.subarray(0, 450 * dim), 450);
    await index.add(keys.subarray(450 * dim), n - 450);
    return index;
  }

  it('matches a float64 JS reference (top-k and every similarity)', async () => {
    const index = await build();
    assert.equal(index.size, n);
    const k = 15;
    const found = await index.search(queries, nq, k);
    const all = await index.similaritiesAll(queries, nq);
    for (let q = 0; q < nq; q++) {
      const ref = referenceSimilarities(queries, q, keys, n, dim);
      const top = referenceTopK(ref, k);
      assert.equal(found[q].positions.length, k);
      for (let i = 0; i < k; i++) {
        assert.ok(Math.abs(found[q].similarities[i] - ref[top[i]]) < 1e-4, `query ${q} rank ${i}: similarity`);
        // same order up to ties: a different position must have the same similarity
        if (found[q].positions[i] !== top[i]) {
          assert.ok(Math.abs(ref[found[q].positions[i]] - ref[top[i]]) < 1e-5, `query ${q} rank ${i}: position`);
        }
      }
      for (let i = 1; i < k; i++) assert.ok(found[q].similarities[i - 1] >= found[q].similarities[i]);
      assert.equal(all[q].length, n);
      for (let i = 0; i < n; i++) assert.ok(Math.abs(all[q][i] - ref[i]) < 1e-4);
    }
  });

  it('returns stored keys by position across blocks', async () => {
    const index = await build();
    for (const p of [0, 299, 300, 601, 999]) {
      assert.deepEqual(Array.from(index.key(p)), Array.from(keys.subarray(p * dim, (p + 1) * dim)));
    }
    assert.throws(() => index.key(n), RangeError);
  });

  it('k > size returns size results; an empty index returns empty results', async () => {
    const small = new ExactIndex(dim);
    await small.add(keys, 5);
    const r = await small.search(queries, 3, 50);
    assert.deepEqual(
      r.map((x) => x.positions.length),
      [5, 5, 5],
    );
    const empty = new ExactIndex(dim);
    const e = await empty.search(queries, 2, 10);
    assert.deepEqual(
      e.map((x) => x.positions.length),
      [0, 0],
    );
    assert.deepEqual(
      (await empty.similaritiesAll(queries, 2)).map((x) => x.length),
      [0, 0],
    );
  });

  it('save/load round trip gives identical search results', async () => {
    const index = await build();
    const dir = await tempDir();
    await index.save(dir);
    const loaded = await ExactIndex.load(dir, dim, { blockRows: 256 });
    assert.equal(loaded.size, n);
    assertSameNeighbours(await index.search(queries, nq, 10), await loaded.search(queries, nq, 10));
    await loaded.add(keys.subarray(0, dim), 1); // still growable after a load
    assert.equal(loaded.size, n + 1);
    await assert.rejects(ExactIndex.load(dir, dim + 1), /whole number/);
  });
});

describe('HnswIndex', () => {
  const dim = 256;
  const n = 3000;
  const keys = clustered(n, dim, 50, 3);
  const nq = 200;
  const queries = clustered(nq, dim, 50, 4);

  it('agrees with the exact index on the top-1 neighbour', async () => {
    const exact = new ExactIndex(dim);
    await exact.add(keys, n);
    const hnsw = HnswIndex.create(dim, hnswParams, n);
    await hnsw.add(keys, n);
    const e = await exact.search(queries, nq, 10);
    const h = await hnsw.search(queries, nq, 10);
    let agree = 0;
    for (let q = 0; q < nq; q++) {
      if (h[q].positions[0] === e[q].positions[0]) agree++;
      // hnsw reports 1 − distance: the same similarity as the exact index for the same item
      const ref = referenceSimilarities(queries, q, keys, n, dim);
      for (let i = 0; i < h[q].positions.length; i++) assert.ok(Math.abs(h[q].similarities[i] - ref[h[q].positions[i]]) < 1e-4);
      for (let i = 1; i < 10; i++) assert.ok(h[q].similarities[i - 1] >= h[q].similarities[i]);
    }
    assert.ok(agree / nq >= 0.97, `top-1 agreement ${agree}/${nq}`);
  });

  it('grows past its initial capacity', async () => {
    const hnsw = HnswIndex.create(dim, hnswParams, 10); // minimum capacity 1024
    const first = hnsw.capacity;
    await hnsw.add(keys, 2500);
    assert.equal(hnsw.size, 2500);
    assert.ok(hnsw.capacity >= 2500 && first < 2500);
    assert.ok(hnsw.resized, 'resized: the service reads such a graph back after its next snapshot (CacheState.snapshotWhenAsked)');
    const roomy = HnswIndex.create(dim, hnswParams, 2500);
    await roomy.add(keys, 2500);
    assert.ok(!roomy.resized, 'made with room for all: never resized');
    const p = 2400;
    const stored = hnsw.key(p);
    for (let j = 0; j < dim; j++) assert.equal(stored[j], keys[p * dim + j]);
    const [self] = await hnsw.search(keys.subarray(p * dim, (p + 1) * dim), 1, 1);
    assert.equal(self.positions[0], p);
  });

  it('k > size returns size results; an empty index returns empty results', async () => {
    const hnsw = HnswIndex.create(dim, hnswParams);
    assert.deepEqual(
      (await hnsw.search(queries, 2, 5)).map((x) => x.positions.length),
      [0, 0],
    );
    await hnsw.add(keys, 4);
    assert.deepEqual(
      (await hnsw.search(queries, 2, 50)).map((x) => x.positions.length),
      [4, 4],
    );
  });

  it('save/load round trip gives identical search results (what reading a grown graph back relies on)', async () => {
    const hnsw = HnswIndex.create(dim, hnswParams);
    await hnsw.add(keys, 1500);
    const dir = await tempDir();
    await hnsw.save(dir);
    const loaded = await HnswIndex.load(dir, dim, hnswParams);
    assert.equal(loaded.size, 1500);
    assert.deepEqual([hnsw.resized, loaded.resized], [true, false]);
    assertSameNeighbours(await hnsw.search(queries, nq, 10), await loaded.search(queries, nq, 10));
    await loaded.add(keys.subarray(1500 * dim), 1); // still growable after a load
    assert.equal(loaded.size, 1501);
  });

  it('load takes M and efConstruction from the file and checks the dimension', async () => {
    const hnsw = HnswIndex.create(dim, { m: 12, efConstruction: 60, efSearch: 50 });
    await hnsw.add(keys, 10);
    const dir = await tempDir();
    await hnsw.save(dir);
    const loaded = await HnswIndex.load(dir, dim, hnswParams);
    assert.deepEqual(loaded.params(), { m: 12, efConstruction: 60, efSearch: 128 });
    await assert.rejects(HnswIndex.load(dir, dim / 2, hnswParams), /dimension 256, expected 128/);
  });
});

describe('removing items (tombstones)', () => {
  const dim = 32;
  const n = 300;
  const keys = clustered(n, dim, 5, 11);
  const queries = keys.subarray(0, 20 * dim); // each query's nearest item is itself
  const removed = [0, 3, 7, 150, 299];

  for (const kind of ['exact', 'hnsw'] as const) {
    it(`${kind}: removed positions leave search results, k is clamped to the live items, and a reload keeps them out`, async () => {
      const make = () => (kind === 'exact' ? new ExactIndex(dim) : HnswIndex.create(dim, { ...hnswParams, efSearch: 400 }));
      const index = make();
      await index.add(keys, n);
      for (const p of removed) index.remove(p);
      index.remove(3); // idempotent
      assert.equal(index.removed, removed.length);
      assert.equal(index.size, n, 'positions do not move');
      const found = await index.search(queries, 20, 10);
      for (const f of found) for (const p of f.positions) assert.ok(!removed.includes(p), `removed position ${p} returned`);
      assert.equal(found[1].positions[0], 1, 'a live item still finds itself');
      assert.notEqual(found[0].positions[0], 0, 'a removed one does not');
      const all = await index.search(queries, 1, 10_000);
      assert.equal(all[0].positions.length, n - removed.length);
      const dir = await tempDir();
      await index.save(dir);
      const loaded = kind === 'exact' ? await ExactIndex.load(dir, dim) : await HnswIndex.load(dir, dim, hnswParams);
      for (const p of removed) loaded.remove(p); // the cache re-applies its tombstones after a load
      assert.equal(loaded.removed, removed.length);
      assertSameNeighbours(await loaded.search(queries, 20, 10), found);
    });
  }

  it('exact: similaritiesAll gives removed items −∞', async () => {
    const index = new ExactIndex(dim);
    await index.add(keys, n);
    index.remove(5);
    const [sims] = await index.similaritiesAll(queries, 1);
    assert.equal(sims[5], -Infinity);
    assert.ok(Number.isFinite(sims[6]));
  });
});

describe('factory', () => {
  const dim = 32;
  const keys = clustered(600, dim, 10, 5);

  it('auto picks exact up to the threshold and hnsw beyond it', () => {
    const options = { ...DEFAULT_INDEX_OPTIONS, exactThreshold: 100 };
    assert.equal(createIndex(dim, options).kind, 'exact');
    assert.equal(createIndex(dim, options, 100).kind, 'exact');
    assert.equal(createIndex(dim, options, 101).kind, 'hnsw');
    assert.equal(createIndex(dim, { ...options, type: 'hnsw' }).kind, 'hnsw');
    assert.throws(() => createIndex(dim, { ...options, m: 0 }), /m must be/);
  });

  it('migrateToHnsw preserves positions', async () => {
    const options = { ...DEFAULT_INDEX_OPTIONS, exactThreshold: 500 };
    const exact = createIndex(dim, options) as ExactIndex;
    await exact.add(keys, 600);
    assert.ok(shouldMigrate(exact, options));
    const hnsw = await migrateToHnsw(exact, options);
    assert.equal(hnsw.size, 600);
    for (let p = 0; p < 600; p++) assert.deepEqual(Array.from(hnsw.key(p)), Array.from(exact.key(p)));
    const found = await hnsw.search(keys, 600, 1);
    let self = 0;
    for (let p = 0; p < 600; p++) if (found[p].positions[0] === p) self++;
    assert.ok(self >= 590, `${self}/600 keys find themselves`);
  });

  it('loadIndex loads either kind', async () => {
    for (const type of ['exact', 'hnsw'] as const) {
      const options = { ...DEFAULT_INDEX_OPTIONS, type };
      const index: VectorIndex = createIndex(dim, options);
      await index.add(keys, 300);
      const dir = await tempDir();
      await index.save(dir);
      const loaded = await loadIndex(dir, type, dim, options);
      assert.equal(loaded.kind, type);
      assertSameNeighbours(await index.search(keys, 20, 5), await loaded.search(keys, 20, 5));
    }
  });
});
