// `npm start`: the service on the embedded default with a demo cache built from
// the CIFAR-10 sample and the paper's ResNet-20 shipped in the repo; prints the
// error of the model alone vs the cache model on the sample's held-out part.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveSource } from '../sources/sources.js';
import { loadModelSpec } from '../model/spec-file.js';
import { CachetClient } from './client.js';
import { followJob } from './progress.js';
import { startService } from '../server.js';
import { createLogger } from '../util/logging.js';
import { closeOnSignals } from '../util/signals.js';
import type { JobView } from '../jobs/types.js';
import { CacheStatus } from '../engine/status.js';
import { EvalJobResult } from '../jobs/results.js';
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', ...(import.meta.url.includes('/dist/') ? ['..'] : []));
const DEMO = {
  name: 'cifar10-demo',
  model: path.join(REPO, 'models', 'cifar10-resnet20.onnx'),
  // The paper's key layers for ResNet-20 (Keras layers 49, 57, 64) and its θ and λ.
  keyLayers: ['activation_14', 'activation_16', 'activation_18'],
  theta: 80,
  lambda: 0.5111,
  index: { type: 'exact' as const },
};
const SAMPLE = path.join(REPO, 'samples', 'cifar10');

export async function runDemo(opts: { port: number; host: string; dataDir: string; exit?: boolean }): Promise<void> {
  // the demo talks to people: the service's JSON logs only from warnings up (LOG_LEVEL overrides)
  const service = await startService({ ...opts, logger: createLogger({ level: process.env.LOG_LEVEL ?? 'warn' }) });
  const api = new CachetClient(service.url);
  try {
    const caches = await api.request<{ caches: CacheStatus[] }>('GET', '/v1/caches');
    const existing = caches.caches.find((c) => c.name === DEMO.name);
    if (!existing) {
      await api.request('POST', '/v1/caches', DEMO);
      console.log(
        `created cache ${DEMO.name}: ResNet-20 (paper's CIFAR-10 model), key layers ${DEMO.keyLayers.join(' + ')}, θ=${DEMO.theta}, λ=${DEMO.lambda}`,
      );
    }
    // An earlier run stopped while indexing leaves part of the sample in the cache: index it again
    // (items already there are skipped as duplicates), or the figures below would be of that part.
    const sample = await resolveSource(
      { type: 'folder', path: path.join(SAMPLE, 'cache') },
      { classes: (await loadModelSpec(DEMO.model)).classes, requireLabels: true },
    );
    const expected = 2 * sample.length; // with flips
    const size = existing?.info?.size ?? 0;
    if (existing && size > 0 && size < expected)
      console.log(`cache ${DEMO.name} holds ${size} of the sample's ${expected} items (an earlier run stopped while indexing): indexing the rest`);
    if (size < expected) {
      const job = await api.request<JobView>('POST', `/v1/caches/${DEMO.name}/index-jobs`, {
        source: { type: 'folder', path: path.join(SAMPLE, 'cache') },
        flip: true,
      });
      const done = await followJob(api, job, 'indexing sample (with flips)', 250);
      const r = done.result as { added: number; cacheSize: number };
      console.log(`indexed ${r.added} items; the cache holds ${r.cacheSize}`);
    }
    const evalJob = await api.request<JobView>('POST', `/v1/caches/${DEMO.name}/eval-jobs`, { source: { type: 'folder', path: path.join(SAMPLE, 'heldout') } });
    const r = (await followJob(api, evalJob, 'evaluating held-out sample', 250)).result as EvalJobResult;
    const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
    console.log(`\nheld-out sample: ${r.images} images the cache has never seen, cache of ${r.cacheSize} items, θ=${r.theta}, λ=${r.lambda}`);
    console.log(`  top-1 error, model alone:  ${pct(r.error.model)}`);
    console.log(`  top-1 error, cache model:  ${pct(r.error.cacheModel)}`);
    console.log(`  top-1 error, cache alone:  ${pct(r.error.cacheOnly)}`);
    const example = path.relative(process.cwd(), path.join(SAMPLE, 'heldout', 'cat', '4500.jpg'));
    console.log(`\nCachet is serving at ${service.url}. Open ${service.url}/ in a browser and drop an image, or try:`);
    console.log(`  curl -s -F image=@${example} '${service.url}/v1/caches/${DEMO.name}/predict?neighbours=3'`);
    console.log(`  curl -s ${service.url}/v1/caches/${DEMO.name}`);
  } catch (err) {
    await service.close();
    throw err;
  }
  if (opts.exit) return service.close();
  console.log(`serving at ${service.url}; Ctrl-C stops it (the caches are kept in ${opts.dataDir})`);
  // the demo's logger shows warnings only: say here what stopping does
  closeOnSignals('cachet demo', async () => {
    await service.close();
    console.log('cachet demo: stopped');
  });
}
