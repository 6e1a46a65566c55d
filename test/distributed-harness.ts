// Distributed mode with real processes, for the tests: api replicas (`cachet serve` with REDIS_URL)
// and `cachet worker` processes on a redis-server of the test's own, each logging to a file.
import assert from 'node:assert/strict';
import { spawn, ChildProcess } from 'node:child_process';
import { openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { call, REPO, SAMPLE, tempDir, CIFAR_CLASSES, RESNET } from './harness.js';
import { freePort } from './redis-harness.js';
import { withHugePages } from '../src/util/huge-pages.js';

const CLI = path.join(REPO, 'src', 'cli', 'main.ts');
export const logs = tempDir('cachet-dist-logs-');
export const LOCK_MS = 2000;

export interface Proc {
  child: ChildProcess;
  url?: string;
}

export function spawnCachet(name: string, args: string[], extraEnv: Record<string, string> = {}): ChildProcess {
  const out = openSync(path.join(logs, `${name}.log`), 'a');
  // definitions are never polled here: replicas learn of other replicas' changes by Redis pub/sub alone
  const env = { ...withHugePages(process.env), CACHET_DEFINITIONS_POLL_MS: String(3_600_000), ...extraEnv };
  return spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: REPO, env, stdio: ['ignore', out, out] });
}

export async function startApi(redis: { url: string }, dataDir: string, name: string, env: Record<string, string> = {}): Promise<Proc> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = ['serve', '--port', String(port), '--data-dir', dataDir, '--redis-url', redis.url, '--chunk-size', '100'];
  const child = spawnCachet(name, args, { CACHET_ADVERTISE_URL: url, ...env }); // where peers fetch its snapshots
  await until(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, `${name} ready`); // replaying every cache: slow on a loaded machine
  return { child, url };
}

export function startWorker(redis: { url: string }, name: string): Proc {
  return { child: spawnCachet(name, ['worker', '--redis-url', redis.url, '--lock-duration', String(LOCK_MS)]) };
}

export async function stop(p: Proc, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return p.child.exitCode;
  return new Promise((resolve) => {
    p.child.once('exit', (code) => resolve(code));
    p.child.kill(signal);
  });
}

export async function until(check: () => Promise<boolean>, what: string, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}; logs in ${logs}`);
}

/** A manifest of n distinct items (ids img-0 … img-n−1) over the repo's sample images. */
export function manifest(n: number): string {
  const files = CIFAR_CLASSES.flatMap((c) => readdirSync(path.join(SAMPLE, 'cache', c)).map((f) => [path.join(SAMPLE, 'cache', c, f), c]));
  const dir = tempDir('cachet-manifest-');
  const rows = Array.from({ length: n }, (_, i) => `${files[i % files.length][0]},${files[i % files.length][1]},img-${i}`);
  writeFileSync(path.join(dir, 'items.csv'), `path,label,id\n${rows.join('\n')}\n`);
  return path.join(dir, 'items.csv');
}

export async function createCache(api: Proc, name: string) {
  const r = await call(api.url!, 'POST', '/v1/caches', { name, model: RESNET, keyLayers: ['activation_18'], theta: 50, lambda: 0.5, index: { type: 'hnsw' } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
}

export async function submit(api: Proc, cache: string, n: number): Promise<string> {
  const r = await call(api.url!, 'POST', `/v1/caches/${cache}/index-jobs`, { source: { type: 'manifest', path: manifest(n) } });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return r.body.id;
}

export async function job(api: Proc, id: string) {
  return (await call(api.url!, 'GET', `/v1/jobs/${id}`)).body;
}

export async function finished(api: Proc, id: string) {
  let j: any;
  await until(async () => ['completed', 'failed'].includes((j = await job(api, id)).state), `job ${id}`);
  return j;
}

export async function caughtUp(api: Proc, cache: string, size: number) {
  await until(async () => {
    const r = await call(api.url!, 'GET', '/readyz');
    const c = r.body.caches.find((x: any) => x.name === cache);
    return c?.log?.lag === 0 && c.size === size;
  }, `${api.url} caught up on ${cache}`);
}

export const probe = {
  images: ['cat', 'ship', 'frog'].map((c) => readFileSync(path.join(SAMPLE, 'heldout', c, '4500.jpg')).toString('base64')),
  topK: 10,
  neighbours: 5,
};

export async function predictions(api: Proc, cache: string, request: object = probe) {
  const r = await call(api.url!, 'POST', `/v1/caches/${cache}/predict`, request);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.predictions;
}
