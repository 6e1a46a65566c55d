// A robustness job on a running service, and what it costs the predictions served meanwhile:
// single-image predict latency (5 requests/s from a client in this process) while idle, then
// while the job runs; the job's time and its errors. Prints figures; asserts nothing.
//
//   node --import tsx bench/robustness.ts --url http://127.0.0.1:8080 --cache paper --images <manifest or folder>
//        [--idle-seconds 30] [--body '{"epsilons":[0.0313725],"queries":300}']
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { CachetClient } from '../src/cli/client.js';
import type { JobView } from '../src/jobs/types.js';
import type { RobustnessResult } from '../src/robustness/result.js';
import { fmt, listFolder, listManifest, printTable } from './common.js';

const { values: o } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080' },
    cache: { type: 'string' },
    images: { type: 'string' },
    'idle-seconds': { type: 'string', default: '30' },
    body: { type: 'string', default: '{}' },
  },
});
if (!o.cache || !o.images) throw new Error('give --cache and --images (a manifest or a folder of labelled images)');
const images = path.resolve(o.images);
const probe = (images.endsWith('.csv') ? await listManifest(images) : await listFolder(images))[0];
const image = readFileSync(probe.path).toString('base64');
const api = new CachetClient(o.url!);

/** Single-image predicts, one every 200 ms, until `until()` says stop. */
async function latencies(until: () => boolean): Promise<number[]> {
  const ms: number[] = [];
  while (!until()) {
    const t = performance.now();
    await api.request('POST', `/v1/caches/${o.cache}/predict`, { image });
    ms.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 200));
  }
  return ms.sort((a, b) => a - b);
}
const q = (ms: number[], p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))];

const idleEnd = Date.now() + Number(o['idle-seconds']) * 1000;
const idle = await latencies(() => Date.now() > idleEnd);

const source = images.endsWith('.csv') ? { type: 'manifest', path: images } : { type: 'folder', path: images };
let job = await api.request<JobView>('POST', `/v1/caches/${o.cache}/robustness-jobs`, { source, ...JSON.parse(o.body!) });
let finished = false;
const during = latencies(() => finished);
job = await api.waitForJob(job.id, () => {});
finished = true;
const busy = await during;
if (job.state !== 'completed') throw new Error(`the job ${job.state}: ${job.failedReason}`);
const r = job.result as RobustnessResult;

printTable(
  'Predictions served meanwhile',
  ['single-image predict', 'requests', 'p50 ms', 'p99 ms', 'max ms'],
  [
    ['idle', String(idle.length), fmt(q(idle, 0.5)), fmt(q(idle, 0.99)), fmt(idle[idle.length - 1])],
    ['during the robustness job', String(busy.length), fmt(q(busy, 0.5)), fmt(q(busy, 0.99)), fmt(busy[busy.length - 1])],
  ],
);
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
printTable(
  `The job: ${r.images} images, ${r.seconds.toFixed(0)} s; top-1 error`,
  ['images', 'model alone', 'cache model', 'cache alone', 'attack success'],
  [
    ['clean', pct(r.clean.model), pct(r.clean.cacheModel), pct(r.clean.cacheOnly), ''],
    ...r.corruptions.flatMap((c) =>
      c.severities.map((s) => [`${c.name} ${s.severity}`, pct(s.error.model), pct(s.error.cacheModel), pct(s.error.cacheOnly), '']),
    ),
    ...r.attacks.map((a) => [
      `${a.name} ε=${+(a.epsilon * 255).toFixed(2)}/255`,
      pct(a.error.model),
      pct(a.error.cacheModel),
      pct(a.error.cacheOnly),
      pct(a.successRate),
    ]),
  ],
);
