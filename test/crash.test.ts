// Crashes: `cachet serve` killed with SIGKILL at seeded random points of an index job, restarted
// each time. The job goes on by itself after each restart; at the end the cache holds each item
// exactly once and predicts exactly as a build that was never interrupted.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { rng } from './fixtures/random.js';
import { call, PAPER_KEY_LAYERS, REPO, RESNET, SAMPLE, sampleFolder, start, tempDir, waitForJob } from './harness.js';
import { freePort } from './redis-harness.js';

const CLI = path.join(REPO, 'src', 'cli', 'main.ts');
const KILLS = 20;
const logs = tempDir('cachet-crash-logs-');
const HELDOUT = ['cat/4500.jpg', 'horse/4500.jpg', 'ship/4500.jpg', 'dog/4500.jpg', 'frog/4500.jpg'].map((f) => path.join(SAMPLE, 'heldout', f));
const DEFINITION = { name: 'crash', model: RESNET, keyLayers: PAPER_KEY_LAYERS, index: { type: 'exact' } };

async function serve(dataDir: string, run: number): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const out = openSync(path.join(logs, `serve-${run}.log`), 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve', '--port', String(port), '--data-dir', dataDir], {
    cwd: REPO,
    stdio: ['ignore', out, out],
  });
  const url = `http://127.0.0.1:${port}`;
  const end = Date.now() + 60_000;
  while ((await fetch(`${url}/readyz`).catch(() => null))?.status !== 200) {
    if (child.exitCode !== null || Date.now() > end) throw new Error(`cachet serve did not start (run ${run}); logs in ${logs}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, url };
}

const kill = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });

async function predictions(url: string) {
  const out = [];
  for (const file of HELDOUT) {
    const form = new FormData();
    form.append('image', new Blob([readFileSync(file)]), path.basename(file));
    const res = await fetch(`${url}/v1/caches/crash/predict?neighbours=5`, { method: 'POST', body: form });
    assert.equal(res.status, 200);
    out.push(await res.json());
  }
  return out;
}

test(`SIGKILL at ${KILLS} random points of an index job: each item once, predictions as an uninterrupted build`, { timeout: 600_000 }, async () => {
  const images = sampleFolder('cache', 200); // 2,000 items
  // the reference: one uninterrupted build
  const reference = await start();
  await call(reference.url, 'POST', '/v1/caches', DEFINITION);
  const refJob = (await call(reference.url, 'POST', '/v1/caches/crash/index-jobs', { source: { type: 'folder', path: images } })).body;
  assert.equal((await waitForJob(reference.url, refJob.id)).state, 'completed');
  const want = await predictions(reference.url);
  await reference.close();

  const dataDir = tempDir('cachet-crash-');
  const random = rng(12);
  let svc = await serve(dataDir, 0);
  assert.equal((await call(svc.url, 'POST', '/v1/caches', DEFINITION)).status, 201);
  const job = (await call(svc.url, 'POST', '/v1/caches/crash/index-jobs', { source: { type: 'folder', path: images } })).body;
  const sizes: number[] = [];
  for (let run = 1; run <= KILLS; run++) {
    await new Promise((r) => setTimeout(r, Math.floor(random() * 300))); // anywhere in the job, its restart and replay
    await kill(svc.child);
    svc = await serve(dataDir, run);
    sizes.push((await call(svc.url, 'GET', '/v1/caches/crash')).body.size);
  }
  const done = await waitForJob(svc.url, job.id);
  assert.equal(done.state, 'completed', `${done.failedReason}; logs in ${logs}`);
  // a resubmission adds nothing
  const again = (await call(svc.url, 'POST', '/v1/caches/crash/index-jobs', { source: { type: 'folder', path: images } })).body;
  assert.equal((await waitForJob(svc.url, again.id)).result.added, 0);
  const info = (await call(svc.url, 'GET', '/v1/caches/crash')).body;
  assert.equal(info.size, 2000, 'each item exactly once');
  assert.deepEqual(info.damage, [], 'a crash is not damage: a torn tail is the last write of a crash');
  assert.deepEqual(await predictions(svc.url), want, 'predictions as the uninterrupted build');
  console.log(`# sizes seen after each of the ${KILLS} kills: ${sizes.join(' ')}`);
  await kill(svc.child);
});
