// GET /metrics: Prometheus text exposition, one registry per service, route patterns (never raw
// URLs) as labels, batch sizes and engine-thread inference times of predicts, cache sizes and
// job outcomes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { call, PAPER_KEY_LAYERS, RESNET, SAMPLE, sampleFolder, start, tempDir, waitForJob } from './harness.js';

const CAT = readFileSync(path.join(SAMPLE, 'heldout', 'cat', '4500.jpg')).toString('base64');

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A strict reader of the Prometheus text format (0.0.4): throws on any line it does not understand. */
function parseExposition(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const sampleLine = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`);
  const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)/;
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  for (const line of text.split('\n').slice(0, -1)) {
    if (line === '') continue;
    const meta = new RegExp(`^# (HELP|TYPE) (${NAME})(?: (.*))?$`).exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        assert.match(meta[3], /^(counter|gauge|histogram|summary|untyped)$/, line);
        assert.ok(!types.has(meta[2]), `TYPE of ${meta[2]} twice`);
        types.set(meta[2], meta[3]);
      }
      continue;
    }
    assert.ok(!line.startsWith('#'), `comment: ${line}`);
    const m = sampleLine.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    let rest = m[2] ?? '';
    while (rest) {
      const l = label.exec(rest);
      assert.ok(l, `bad labels in: ${line}`);
      labels[l[1]] = l[2];
      rest = rest.slice(l[0].length);
    }
    // as Go's strconv.ParseFloat, which Prometheus uses: NaN and Inf in any letter case
    const special = /^(nan)$|^([+-]?)inf(inity)?$/i.exec(m[3]);
    const value = special ? (special[1] ? NaN : special[2] === '-' ? -Infinity : Infinity) : Number(m[3]);
    assert.ok(special || !Number.isNaN(value), `bad value: ${line}`);
    const family = m[1].replace(/_(bucket|sum|count|total|created)$/, '');
    assert.ok(types.has(m[1]) || types.has(family), `no TYPE for ${m[1]}`);
    samples.push({ name: m[1], labels, value });
  }
  return { types, samples };
}

const pick = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
const sum = (samples: Sample[]) => samples.reduce((a, s) => a + s.value, 0);

async function scrape(url: string) {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

describe('GET /metrics', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  let jobId: string;

  before(async () => {
    svc = await start();
    const created = await call(svc.url, 'POST', '/v1/caches', {
      name: 'met',
      model: RESNET,
      keyLayers: PAPER_KEY_LAYERS,
      theta: 80,
      lambda: 0.5111,
      index: { type: 'exact' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const r = await call(svc.url, 'POST', '/v1/caches/met/index-jobs', { source: { type: 'folder', path: sampleFolder('cache', 5) } });
    jobId = r.body.id;
    assert.equal((await waitForJob(svc.url, jobId)).state, 'completed');
    for (let i = 0; i < 3; i++) assert.equal((await call(svc.url, 'POST', '/v1/caches/met/predict', { image: CAT })).status, 200);
    const together = await Promise.all(Array.from({ length: 6 }, () => call(svc.url, 'POST', '/v1/caches/met/predict', { images: [CAT, CAT] })));
    assert.deepEqual(
      together.map((t) => t.status),
      Array(6).fill(200),
    );
    assert.equal((await call(svc.url, 'GET', '/v1/no/such/route')).status, 404);
    assert.equal((await call(svc.url, 'GET', '/v1/caches/nope')).status, 404);
  });
  after(async () => svc.close());

  test('HTTP request durations by method, route pattern and status', async () => {
    const { types, samples } = await scrape(svc.url);
    assert.equal(types.get('http_request_duration_seconds'), 'histogram');
    const predicts = pick(samples, 'http_request_duration_seconds_count', { method: 'POST', route: '/v1/caches/:name/predict', status: '200' });
    assert.equal(sum(predicts), 9);
    assert.equal(sum(pick(samples, 'http_request_duration_seconds_count', { method: 'POST', route: '/v1/caches/:name/index-jobs', status: '202' })), 1);
    assert.ok(sum(pick(samples, 'http_request_duration_seconds_count', { method: 'GET', route: '/v1/jobs/:id', status: '200' })) >= 1);
    assert.equal(sum(pick(samples, 'http_request_duration_seconds_count', { method: 'GET', route: '/v1/caches/:name', status: '404' })), 1);
    assert.equal(sum(pick(samples, 'http_request_duration_seconds_count', { method: 'GET', route: 'unmatched', status: '404' })), 1);
    const routes = new Set(pick(samples, 'http_request_duration_seconds_count').map((s) => s.labels.route));
    for (const r of routes) assert.ok(r === 'unmatched' || !/met|nope|such|[0-9a-f]{8}-/.test(r), `a raw URL as a route label: ${r}`);
    const inf = pick(samples, 'http_request_duration_seconds_bucket', { route: '/v1/caches/:name/predict', status: '200', le: '+Inf' });
    assert.equal(sum(inf), 9);
  });

  test('predict batch sizes and inference time on the engine thread', async () => {
    const { types, samples } = await scrape(svc.url);
    assert.equal(types.get('cachet_predict_batch_size'), 'histogram');
    const batches = sum(pick(samples, 'cachet_predict_batch_size_count'));
    assert.ok(batches >= 4 && batches <= 9, `${batches} engine calls for 9 requests`);
    assert.equal(sum(pick(samples, 'cachet_predict_batch_size_sum')), 15, 'every image in some batch');
    assert.equal(sum(pick(samples, 'cachet_model_inference_seconds_count', { cache: 'met' })), batches);
    const inference = sum(pick(samples, 'cachet_model_inference_seconds_sum', { cache: 'met' }));
    assert.ok(inference > 0 && inference < 60, `${inference} s`);
    assert.equal(sum(pick(samples, 'cachet_index_search_seconds_count', { cache: 'met' })), batches);
  });

  test('cache items, key-log lag, jobs in the queue and jobs finished', async () => {
    const { types, samples } = await scrape(svc.url);
    const size = (await call(svc.url, 'GET', '/v1/caches/met')).body.size;
    assert.equal(size, 50);
    assert.equal(types.get('cachet_cache_items'), 'gauge');
    assert.deepEqual(
      pick(samples, 'cachet_cache_items').map((s) => [s.labels.cache, s.value]),
      [['met', size]],
    );
    assert.deepEqual(
      pick(samples, 'cachet_keylog_lag').map((s) => [s.labels.cache, s.value]),
      [['met', 0]],
    );
    assert.equal(sum(pick(samples, 'cachet_jobs', { type: 'index', state: 'waiting' })), 0);
    assert.equal(sum(pick(samples, 'cachet_jobs', { type: 'index', state: 'active' })), 0);
    assert.equal(types.get('cachet_jobs_finished_total'), 'counter');
    assert.deepEqual(
      pick(samples, 'cachet_jobs_finished_total').map((s) => [s.labels.type, s.labels.outcome, s.value]),
      [['index', 'completed', 1]],
    );
    assert.equal(sum(pick(samples, 'cachet_predict_in_flight')), 0);
  });

  test("prom-client's process metrics, on this service's own registry", async () => {
    const { samples } = await scrape(svc.url);
    assert.ok(pick(samples, 'process_cpu_user_seconds_total').length === 1);
    assert.ok(pick(samples, 'nodejs_eventloop_lag_seconds').length === 1);
    // a second service in the same process has its own registry: nothing it counts leaks here
    const other = await start(tempDir());
    try {
      const mine = await scrape(other.url);
      assert.equal(sum(pick(mine.samples, 'http_request_duration_seconds_count', { route: '/v1/caches/:name/predict' })), 0);
      assert.deepEqual(pick(mine.samples, 'cachet_cache_items'), []);
    } finally {
      await other.close();
    }
  });
});
