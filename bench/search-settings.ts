// Error and eval time of a running service's cache over a grid of k × efSearch, with the cache's θ
// and λ as they are: the cache is set to each pair (PATCH), an eval job runs on the images, and the
// cache's settings are put back at the end. Prints figures; asserts nothing.
//
//   node --import tsx bench/search-settings.ts --url http://127.0.0.1:8080 --cache paper \
//        --images ../shared/datasets/cifar10/val-5k.csv [--k 10,20,50,100] [--ef 32,64,128,256]
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CachetClient } from '../src/cli/client.js';
import type { CacheInfo } from '../src/cache/info.js';
import type { JobView } from '../src/jobs/types.js';
import type { EvalJobResult } from '../src/jobs/results.js';
import { fmt, printTable } from './common.js';

const { values: o } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080' },
    cache: { type: 'string' },
    images: { type: 'string' },
    k: { type: 'string', default: '10,20,50,100' },
    ef: { type: 'string', default: '32,64,128,256' },
  },
});
if (!o.cache || !o.images) throw new Error('give --cache and --images (a manifest or a folder of labelled images)');
const numbers = (v: string) => v.split(',').map(Number);
const images = path.resolve(o.images);
const source = images.endsWith('.csv') ? { type: 'manifest', path: images } : { type: 'folder', path: images };
const api = new CachetClient(o.url!);
const route = `/v1/caches/${encodeURIComponent(o.cache)}`;
const before = await api.request<CacheInfo>('GET', route);

const rows: string[][] = [];
try {
  for (const k of numbers(o.k!))
    for (const efSearch of numbers(o.ef!)) {
      if (efSearch < k) continue; // hnswlib searches max(k, efSearch) candidates: the same as efSearch = k
      await api.request('PATCH', route, { k, efSearch });
      const job = await api.waitForJob((await api.request<JobView>('POST', `${route}/eval-jobs`, { source })).id, () => {});
      if (job.state !== 'completed') throw new Error(`eval job ${job.state}: ${job.failedReason}`);
      const r = job.result as EvalJobResult;
      const seconds = (Date.parse(job.finishedAt!) - Date.parse(job.startedAt!)) / 1000;
      rows.push([
        String(k),
        String(efSearch),
        `${fmt(100 * r.error.cacheModel)} %`,
        `${fmt(100 * r.error.cacheOnly)} %`,
        fmt(seconds, 1),
        fmt((1000 * seconds) / r.images),
      ]);
      console.error(rows[rows.length - 1].join('  '));
    }
} finally {
  await api.request('PATCH', route, { k: before.k, efSearch: before.index.params.efSearch });
}
printTable(
  `cache ${o.cache} (${before.size} items), θ ${before.theta}, λ ${before.lambda}; eval of ${path.basename(images)}`,
  ['k', 'efSearch', 'cache model', 'cache alone', 'eval s', 'ms / image'],
  rows,
);
