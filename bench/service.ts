// A `cachet serve` process for a benchmark: a process of its own (the bench's client work — JSON,
// base64, HTTP — does not share its event loop), with huge pages as the Dockerfile starts it, its
// log in a file. Ready once /readyz answers 200.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CachetClient } from '../src/cli/client.js';
import { withHugePages } from '../src/util/huge-pages.js';
import { freePort } from '../test/redis-harness.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface BenchService {
  url: string;
  api: CachetClient;
  /** the service's log file */
  log: string;
  /** rejects when the process exits before stop() */
  exited: Promise<never>;
  stop(): Promise<void>;
}

/** Starts `cachet serve` on a free port with its data under `dir`; extra flags in `args`. */
export async function startService(dir: string, args: string[] = []): Promise<BenchService> {
  const port = await freePort();
  const log = path.join(dir, 'service.log');
  const fd = openSync(log, 'a');
  const child = spawn(
    process.execPath,
    [
      '--initial-old-space-size=256',
      '--import',
      'tsx',
      path.join(ROOT, 'src/cli/main.ts'),
      'serve',
      '--port',
      String(port),
      '--data-dir',
      path.join(dir, 'indexes'),
      ...args,
    ],
    { cwd: ROOT, stdio: ['ignore', fd, fd], env: { ...withHugePages(process.env), LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' } },
  );
  closeSync(fd);
  process.once('exit', () => child.kill()); // whatever way the bench ends
  let stopping = false;
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => {
      if (!stopping) reject(new Error(`cachet serve exited (code ${code}); its log: ${log}`));
    }),
  );
  exited.catch(() => {}); // awaited where it matters
  const url = `http://127.0.0.1:${port}`;
  const ready = () =>
    fetch(`${url}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
  while (!(await ready())) await Promise.race([new Promise((r) => setTimeout(r, 100)), exited]);
  return {
    url,
    api: new CachetClient(url),
    log,
    exited,
    async stop() {
      if (child.exitCode !== null) return;
      stopping = true;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}
