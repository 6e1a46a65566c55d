import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ExactIndex } from '../src/index/exact.js';
import { DEFAULT_INDEX_OPTIONS, loadIndex } from '../src/index/factory.js';
import { HnswIndex } from '../src/index/hnsw.js';
import { readSnapshot, writeSnapshot, type SnapshotManifest } from '../src/index/snapshot.js';
import type { VectorIndex } from '../src/index/types.js';

const dim = 16;
const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});
async function cacheDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cachet-snapshot-'));
  dirs.push(dir);
  return join(dir, 'my-cache');
}

function keys(n: number, seed: number): Float32Array {
  const k = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) k[i * dim + j] = Math.sin(seed * 31 + i * 7 + j * 13);
    const ss = Math.sqrt(k.subarray(i * dim, (i + 1) * dim).reduce((s, x) => s + x * x, 0));
    for (let j = 0; j < dim; j++) k[i * dim + j] /= ss;
  }
  return k;
}

async function cache(index: VectorIndex, n: number, seed: number, logPosition: number) {
  await index.add(keys(n, seed), n);
  const ids = Array.from({ length: n }, (_, i) => `item "${seed}-${i}"\n`); // ids needing escapes
  const labels = Uint16Array.from({ length: n }, (_, i) => (i * seed) % 10);
  const manifest: SnapshotManifest = {
    formatVersion: 1,
    createdAt: new Date().toISOString(),
    logPosition,
    size: n,
    dimension: dim,
    indexKind: index.kind,
    indexParams: index.params(),
    theta: 50,
    lambda: 0.4,
  };
  return { ids, labels, manifest };
}

describe('snapshot', () => {
  it('is null for a cache without one', async () => {
    assert.equal(await readSnapshot(await cacheDir()), null);
  });

  for (const kind of ['exact', 'hnsw'] as const) {
    it(`round-trips manifest, items and a ${kind} index`, async () => {
      const dir = await cacheDir();
      const index = kind === 'exact' ? new ExactIndex(dim) : HnswIndex.create(dim, DEFAULT_INDEX_OPTIONS);
      const { ids, labels, manifest } = await cache(index, 200, 3, 207);
      await writeSnapshot(dir, manifest, ids, labels, index);

      const snap = await readSnapshot(dir);
      assert.ok(snap);
      const { files, checksum, ...rest } = snap.manifest;
      assert.deepEqual(rest, { ...manifest, formatVersion: 2 }, 'the manifest as written, sealed with its files and checksum');
      assert.ok(files?.['items.jsonl'] && typeof checksum === 'string');
      assert.ok(snap.verified);
      assert.deepEqual(snap.damaged, {});
      assert.deepEqual(snap.ids, ids);
      assert.deepEqual(Array.from(snap.labels), Array.from(labels));
      const loaded = await loadIndex(snap.dir, snap.manifest.indexKind, dim, DEFAULT_INDEX_OPTIONS);
      const q = keys(5, 9);
      assert.deepEqual(await loaded.search(q, 5, 7), await index.search(q, 5, 7));
      assert.deepEqual(await readdir(dir), ['snapshot']);
    });
  }

  it('replaces the previous snapshot', async () => {
    const dir = await cacheDir();
    const firstIndex = new ExactIndex(dim);
    const first = await cache(firstIndex, 10, 1, 10);
    await writeSnapshot(dir, first.manifest, first.ids, first.labels, firstIndex);
    const index = new ExactIndex(dim);
    const second = await cache(index, 30, 2, 30);
    await writeSnapshot(dir, second.manifest, second.ids, second.labels, index);
    const snap = await readSnapshot(dir);
    assert.equal(snap?.manifest.logPosition, 30);
    assert.deepEqual(snap?.ids, second.ids);
    assert.deepEqual(await readdir(dir), ['snapshot']);
  });

  it('refuses items that do not match the index', async () => {
    const dir = await cacheDir();
    const index = await filled(10, 1);
    const { ids, labels, manifest } = await cache(new ExactIndex(dim), 10, 1, 10);
    await assert.rejects(writeSnapshot(dir, manifest, ids.slice(1), labels, index), /9 ids/);
    await assert.rejects(writeSnapshot(dir, { ...manifest, indexKind: 'hnsw' }, ids, labels, index), /indexKind/);
  });

  it('recovers from a crash between the two renames, and cleans stale tmp dirs', async () => {
    const dir = await cacheDir();
    const old = await cache(new ExactIndex(dim), 10, 1, 10);
    await writeSnapshot(dir, old.manifest, old.ids, old.labels, await filled(10, 1));

    // crash: snapshot → snapshot.old done, tmp (complete or not) never renamed
    await rename(join(dir, 'snapshot'), join(dir, 'snapshot.old'));
    await mkdir(join(dir, 'snapshot.tmp-deadbeef'));
    await writeFile(join(dir, 'snapshot.tmp-deadbeef', 'keys.f32'), 'partial');

    const snap = await readSnapshot(dir);
    assert.ok(snap);
    assert.equal(snap.manifest.logPosition, 10);
    assert.deepEqual(snap.ids, old.ids);
    const index = await loadIndex(snap.dir, 'exact', dim, DEFAULT_INDEX_OPTIONS);
    assert.equal(index.size, 10);
    assert.deepEqual(await readdir(dir), ['snapshot']);
  });

  it('drops snapshot.old left by a crash after the swap', async () => {
    const dir = await cacheDir();
    const a = await cache(new ExactIndex(dim), 10, 1, 10);
    await writeSnapshot(dir, a.manifest, a.ids, a.labels, await filled(10, 1));
    const b = await cache(new ExactIndex(dim), 12, 2, 12);
    await mkdir(join(dir, 'snapshot.old'));
    await writeFile(join(dir, 'snapshot.old', 'manifest.json'), JSON.stringify(b.manifest));
    const snap = await readSnapshot(dir);
    assert.equal(snap?.manifest.logPosition, 10);
    assert.deepEqual(await readdir(dir), ['snapshot']);
  });
});

async function filled(n: number, seed: number): Promise<ExactIndex> {
  const index = new ExactIndex(dim);
  await index.add(keys(n, seed), n);
  return index;
}
