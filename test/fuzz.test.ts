// Fuzzing the HTTP API: seeded, property-based (fast-check) malformed requests for every operation
// of the OpenAPI document, against a real service. Whatever is sent: never a 5xx, never a crash,
// an answer within its deadline, and what the service stored unchanged (a cache's size and a
// fixed prediction). `npm test` runs a bounded number of cases; `npm run fuzz` many more
// (FUZZ_RUNS, FUZZ_SEED).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { call, PAPER_KEY_LAYERS, RESNET, SAMPLE, sampleFolder, start, tempDir, waitForJob } from './harness.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
const SEED = Number(process.env.FUZZ_SEED ?? 20261202);
const DEADLINE_MS = 15_000;
const CACHE = 'fz';

let svc: Awaited<ReturnType<typeof start>>;
let operations: { method: string; path: string }[];
const cat = readFileSync(path.join(SAMPLE, 'heldout', 'cat', '4500.jpg')).toString('base64');
let reference: unknown;

const predict = async () => (await call(svc.url, 'POST', `/v1/caches/${CACHE}/predict`, { image: cat, neighbours: 3 })).body;

before(async () => {
  svc = await start(tempDir('cachet-fuzz-'), { maxBodyBytes: 256 * 1024 });
  await call(svc.url, 'POST', '/v1/caches', { name: CACHE, model: RESNET, keyLayers: PAPER_KEY_LAYERS, index: { type: 'exact' } });
  const job = await call(svc.url, 'POST', `/v1/caches/${CACHE}/index-jobs`, { source: { type: 'folder', path: sampleFolder('cache', 2) } });
  await waitForJob(svc.url, job.body.id);
  reference = await predict();
  const doc = (await call(svc.url, 'GET', '/openapi.json')).body;
  operations = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([p, item]) =>
    Object.keys(item).map((method) => ({ method: method.toUpperCase(), path: p })),
  );
});

after(async () => {
  assert.equal((await call(svc.url, 'GET', '/healthz')).status, 200, 'still alive');
  assert.equal((await call(svc.url, 'GET', `/v1/caches/${CACHE}`)).body.size, 20, 'nothing stored was lost');
  assert.deepEqual(await predict(), reference, 'and it predicts as before');
  await svc.close();
});

/** Values a careless or hostile client sends where a field goes. */
const junk = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.constantFrom(null, '', ' ', '====', 'NaN', '-1', '1e999', '../../etc/passwd', '/dev/zero', 'http://127.0.0.1:1/', '\u0000', 'a'.repeat(5000)),
  fc.string({ unit: 'binary', maxLength: 64 }),
);

/** A path parameter: random text, traversal, encodings; never the fuzzed cache's own name for writes. */
const param = fc.oneof(
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
  fc.constantFrom('..', '%2e%2e', '%00', 'a/b', '#flip', ' ', 'x'.repeat(300)),
);

const body = fc.oneof(
  junk.map((v) => ({ type: 'application/json', data: JSON.stringify(v) })),
  fc
    .dictionary(
      fc.constantFrom(
        'image',
        'images',
        'theta',
        'lambda',
        'neighbours',
        'topK',
        'name',
        'model',
        'keyLayers',
        'source',
        'ids',
        'k',
        'efSearch',
        'train',
        'val',
      ),
      junk,
    )
    .map((o) => ({
      type: 'application/json',
      data: JSON.stringify(o),
    })),
  fc.uint8Array({ maxLength: 2048 }).map((b) => ({
    type: fc.sample(
      fc.constantFrom('application/json', 'multipart/form-data', 'multipart/form-data; boundary=x', 'application/x-tar', 'text/plain', 'image/png'),
      1,
    )[0],
    data: b,
  })),
  fc.constant({ type: 'application/json', data: '{"a":'.repeat(200) + '1' + '}'.repeat(200) }),
);

test(`${RUNS} malformed requests to every operation: no 5xx, an answer in time, nothing stored changed`, { timeout: 600_000 }, async () => {
  const mutates = (method: string, p: string) => method !== 'GET' || p.includes('snapshot');
  await fc.assert(
    fc.asyncProperty(
      fc.nat(),
      param,
      body,
      fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 20 }), { maxKeys: 3 }),
      async (pick, name, b, query) => {
        const op = operations[pick % operations.length];
        // the fuzzed cache is read, never written: writes go to names of the fuzzer's
        const target = !mutates(op.method, op.path) && pick % 3 === 0 ? CACHE : name;
        const url =
          op.path.replace(/\{(\w+)\}/g, (_, key) => encodeURIComponent(key === 'name' ? target : name)) +
          (Object.keys(query).length ? `?${new URLSearchParams(query)}` : '');
        const init: RequestInit = { method: op.method, signal: AbortSignal.timeout(DEADLINE_MS) };
        if (op.method !== 'GET' && op.method !== 'DELETE') {
          init.body = b.data as BodyInit;
          init.headers = { 'content-type': b.type };
        }
        const res = await fetch(svc.url + url, init);
        await res.arrayBuffer();
        assert.ok(res.status < 500, `${op.method} ${url} (${b.type}, ${String(b.data).slice(0, 80)}) → ${res.status}`);
      },
    ),
    { numRuns: RUNS, seed: SEED, endOnFailure: true },
  );
});
