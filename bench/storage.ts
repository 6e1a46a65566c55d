// What checking stored data costs (issue 12): sha256 verification of a snapshot per GB, and export
// and import of a cache the size of the paper's (90,000 items, PCA-128 search keys in hnsw, the
// 12,288-d full keys as float16 for re-ranking), through the code the service runs
// (writeSnapshot, readSnapshot, packArchive, unpackArchive), and the latency of searches while a
// snapshot is written (issue 13). Prints figures; asserts nothing.
//
//   npm run bench:storage -- [--items 90000] [--full-dim 12288] [--search-dim 128] [--dir /tmp]
//
// The index is a real hnsw graph of the search keys; the full keys are a file of the size the
// re-ranking store writes (its content does not change what is measured: reading and hashing).
import { mkdtempSync, rmSync, statSync, createReadStream, createWriteStream, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { packArchive, unpackArchive, type ArchiveFile } from '../src/cache/archive.js';
import { HnswIndex } from '../src/index/hnsw.js';
import { manifestOf, readSnapshot, snapshotDirOf, writeSnapshot } from '../src/index/snapshot.js';
import { FullKeyStore } from '../src/index/full-keys.js';
import { checksumFile } from '../src/util/checksum.js';
import { Mutex } from '../src/util/mutex.js';
import { fmt, printTable } from './common.js';

const { values: args } = parseArgs({
  options: {
    items: { type: 'string', default: '90000' },
    'full-dim': { type: 'string', default: '12288' },
    'search-dim': { type: 'string', default: '128' },
    dir: { type: 'string', default: os.tmpdir() },
  },
});
const n = Number(args.items);
const D = Number(args['full-dim']);
const d = Number(args['search-dim']);
const root = mkdtempSync(path.join(args.dir!, 'cachet-bench-storage-'));
const seconds = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
  const t0 = performance.now();
  const r = await f();
  return [r, (performance.now() - t0) / 1000];
};

try {
  console.log(
    `a cache of ${n} items: hnsw over ${d}-d search keys, ${D}-d full keys as float16; ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}`,
  );
  const cacheDir = path.join(root, 'cache');
  const index = HnswIndex.create(d, { m: 16, efConstruction: 100, efSearch: 128 }, n);
  const keys = new Float32Array(4096 * d);
  for (let done = 0; done < n; done += 4096) {
    const b = Math.min(4096, n - done);
    for (let i = 0; i < b * d; i++) keys[i] = Math.random() - 0.5;
    await index.add(keys, b);
  }
  const fullKeys = { save: async (dir: string) => writeRandom(path.join(dir, 'fullkeys.bin'), 2 * D * n) };
  const ids = Array.from({ length: n }, (_, i) => `class-${i % 10}/${String(i).padStart(6, '0')}.jpg`);
  const labels = Uint16Array.from({ length: n }, (_, i) => i % 10);
  const manifest = {
    formatVersion: 2 as const,
    createdAt: new Date().toISOString(),
    logPosition: n,
    size: n,
    dimension: d,
    indexKind: 'hnsw' as const,
    indexParams: index.params(),
  };
  const [, writeS] = await seconds(() => writeSnapshot(cacheDir, manifest, ids, labels, index, [fullKeys]));

  // Searches while a snapshot is written, as the engine runs them: under the cache's lock, with the
  // snapshot holding it exclusively (before: every search waits for the whole snapshot) or as a
  // long reader (now). One search of k = 100 every ~5 ms, as a steady trickle of predictions.
  const searchesDuringSnapshot = async (mode: 'exclusive' | 'read') => {
    const lock = new Mutex();
    const query = Float32Array.from({ length: d }, () => Math.random() - 0.5);
    const write = () => writeSnapshot(path.join(root, `during-${mode}`), manifest, ids, labels, index, [fullKeys]);
    let writing = true;
    const t0 = performance.now();
    const snapshot = (mode === 'exclusive' ? lock.run(write) : lock.read(write, { long: true })).finally(() => (writing = false));
    const ms: number[] = [];
    while (writing) {
      const t = performance.now();
      await lock.read(() => index.search(query, 1, 100));
      ms.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 5));
    }
    await snapshot;
    ms.sort((a, b) => a - b);
    const at = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];
    return { searches: ms.length, p50: at(0.5), p99: at(0.99), max: ms[ms.length - 1], snapshotS: (performance.now() - t0) / 1000 };
  };
  const before = await searchesDuringSnapshot('exclusive');
  const now = await searchesDuringSnapshot('read');
  const snapshot = snapshotDirOf(cacheDir);
  const bytes = readdirSync(snapshot).reduce((s, f) => s + statSync(path.join(snapshot, f)).size, 0);
  const gb = bytes / 2 ** 30;

  const [, verifyS] = await seconds(() => readSnapshot(cacheDir)); // verifies every file, then reads the items
  const [, hnswLoadS] = await seconds(() => HnswIndex.load(snapshot, d, { m: 16, efConstruction: 100, efSearch: 128 }));

  const archive = path.join(root, 'cache.cachet.tar');
  const recorded = (await manifestOf(snapshot)).files ?? {};
  const files: ArchiveFile[] = readdirSync(snapshot).map((f) => ({
    name: `snapshot/${f}`,
    path: path.join(snapshot, f),
    checksum: recorded[f] ?? { bytes: 0, sha256: '' },
  }));
  for (const f of files) if (!f.checksum.sha256) f.checksum = await checksumFile(f.path);
  const definition = { name: 'bench', model: '/models/m.onnx', keyLayers: ['a'] } as never;
  const [, exportS] = await seconds(() => pipeline(packArchive(definition, files), createWriteStream(archive)));
  const [, importS] = await seconds(() => unpackArchive(createReadStream(archive), path.join(root, 'imported'), Number.MAX_SAFE_INTEGER));

  printTable(
    `Snapshot of ${n} items: ${fmt(gb, 2)} GiB in ${readdirSync(snapshot).length} files`,
    ['what', 'seconds', 'GiB/s'],
    [
      ['write the snapshot (with its checksums)', fmt(writeS), fmt(gb / writeS)],
      ['open it: verify every file (sha256) + read the items', fmt(verifyS), fmt(gb / verifyS)],
      ['load the hnsw graph (after verification)', fmt(hnswLoadS), '—'],
      ['export: stream the archive to a file', fmt(exportS), fmt(gb / exportS)],
      ['import: unpack it, checking every sha256', fmt(importS), fmt(gb / importS)],
    ],
  );
  console.log(`  verification: ${fmt(verifyS / gb)} s per GiB of snapshot`);
  printTable(
    'Searches (k = 100, one every ~5 ms) while a snapshot is written',
    ['the snapshot holds the lock', 'snapshot s', 'searches', 'p50 ms', 'p99 ms', 'max ms'],
    [before, now].map((r, i) => [
      i === 0 ? 'exclusively (before)' : 'as a reader (now)',
      fmt(r.snapshotS),
      String(r.searches),
      fmt(r.p50),
      fmt(r.p99),
      fmt(r.max),
    ]),
  );
  console.log(`  p99 during a snapshot: ${fmt(before.p99 / now.p99)}× lower now`);

  // The next snapshot, 10,000 items later (a replica's interval), with the real full-key store: its
  // full segments are linked from the previous snapshot and keep their recorded checksums (issue 13).
  const store = new FullKeyStore(D, 'float16');
  const chunk = Uint16Array.from({ length: 1024 * D }, () => (Math.random() * 0x3c00) | 0); // content does not matter here
  const grow = (rows: number) => {
    for (let done = 0; done < rows; done += 1024) store.add(chunk, Math.min(1024, rows - done));
  };
  grow(n);
  const incremental = path.join(root, 'incremental');
  const [, firstS] = await seconds(() => writeSnapshot(incremental, manifest, ids, labels, index, [store]));
  const more = 10_000;
  grow(more);
  for (let done = 0; done < more; done += 4096) await index.add(keys, Math.min(4096, more - done));
  const ids2 = [...ids, ...Array.from({ length: more }, (_, i) => `more-${i}`)];
  const labels2 = Uint16Array.from({ length: n + more }, (_, i) => i % 10);
  const manifest2 = { ...manifest, logPosition: n + more, size: n + more };
  const [, nextS] = await seconds(() => writeSnapshot(incremental, manifest2, ids2, labels2, index, [store]));
  const [, wholeS] = await seconds(() => writeSnapshot(path.join(root, 'whole'), manifest2, ids2, labels2, index, [store]));
  const [, reopenS] = await seconds(() => readSnapshot(incremental));
  printTable(
    `Snapshots with the real full-key store (${fmt((store.size * D * 2) / 2 ** 30, 2)} GiB of float16 keys, segments of ${store.blockRows} rows)`,
    ['what', 'seconds'],
    [
      [`first snapshot, ${n} items (everything written)`, fmt(firstS)],
      [`next snapshot, ${more} items later: full segments linked`, fmt(nextS)],
      [`the same ${n + more} items with nothing to link from`, fmt(wholeS)],
      ['open the linked snapshot (verify every file)', fmt(reopenS)],
    ],
  );
  console.log(`  the next snapshot: ${fmt(wholeS / nextS)}× faster than writing it whole`);
} finally {
  rmSync(root, { recursive: true, force: true });
}

async function writeRandom(file: string, size: number): Promise<void> {
  const handle = await open(file, 'w');
  const block = Buffer.alloc(1 << 24);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
  try {
    for (let at = 0; at < size; at += block.length) await handle.write(block, 0, Math.min(block.length, size - at), at);
  } finally {
    await handle.close();
  }
}
