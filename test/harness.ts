// Test harness: a real service (engine thread, onnxruntime, hnswlib) on a free port
// with its own data directory, and small helpers to call it.
import { mkdtempSync, mkdirSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startService, RunningService, type ServeOptions } from '../src/server.js';
import { silentLogger } from '../src/util/logging.js';
import type { ApiLimits } from '../src/http/limits.js';

export const REPO = new URL('..', import.meta.url).pathname;
export const RESNET = path.join(REPO, 'models', 'cifar10-resnet20.onnx');
export const SAMPLE = path.join(REPO, 'samples', 'cifar10');
export const PAPER_KEY_LAYERS = ['activation_14', 'activation_16', 'activation_18'];
export const CIFAR_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

export function tempDir(prefix = 'cachet-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** `options` override the rest (e.g. apiKeys, or a logger: silent unless given, so tests stay quiet). */
export async function start(
  dataDir = tempDir(),
  limits?: Partial<ApiLimits>,
  options: Partial<ServeOptions> = {},
): Promise<RunningService & { dataDir: string }> {
  const service = await startService({ port: 0, host: '127.0.0.1', dataDir, limits, logger: silentLogger(), ...options });
  return Object.assign(service, { dataDir });
}

export interface Reply<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export async function call<T = any>(base: string, method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body instanceof FormData) init.body = body;
  else if (typeof body === 'string') init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await fetch(base + route, init);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

/** Waits for a job to end and returns it. */
export async function waitForJob(base: string, id: string, headers: Record<string, string> = {}): Promise<any> {
  for (;;) {
    const { body } = await call(base, 'GET', `/v1/jobs/${id}`, undefined, headers);
    if (body.state === 'completed' || body.state === 'failed') return body;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A class-folder copy of the first `perClass` images of each class of the repo's sample. */
export function sampleFolder(part: 'cache' | 'heldout', perClass: number, from = 0): string {
  const dir = tempDir('cachet-sample-');
  for (const c of CIFAR_CLASSES) {
    mkdirSync(path.join(dir, c));
    const files = readdirSync(path.join(SAMPLE, part, c))
      .sort()
      .slice(from, from + perClass);
    for (const f of files) copyFileSync(path.join(SAMPLE, part, c, f), path.join(dir, c, f));
  }
  return dir;
}
