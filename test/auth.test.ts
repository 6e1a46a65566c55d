// API keys: bearer tokens with roles (admin ⊃ write ⊃ read), from CACHET_API_KEYS-style text
// or a keys file, compared in constant time; public routes need none; without keys the service
// listens on loopback only, and says so.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, mock, test } from 'node:test';
import { KeyMatcher, isLoopback, parseApiKeysEnv, parseApiKeysFile, patternToRegex } from '../src/http/auth.js';
import { capturingLogger } from '../src/util/logging.js';
import { startService } from '../src/server.js';
import { call, PAPER_KEY_LAYERS, REPO, RESNET, SAMPLE, sampleFolder, start, tempDir, waitForJob } from './harness.js';

const READ = 'read-key-0123456789abcdef';
const WRITE = 'write-key-0123456789abcdef';
const ADMIN = 'admin-key-0123456789abcdef';
const FROM_FILE = 'file-key-0123456789abcdef';
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const CAT = readFileSync(path.join(SAMPLE, 'heldout', 'cat', '4500.jpg')).toString('base64');

describe('the key matcher', () => {
  const keys = new KeyMatcher([
    { role: 'read', key: READ, name: 'reader' },
    { role: 'write', key: WRITE, name: 'writer' },
    { role: 'admin', key: ADMIN, name: 'boss' },
  ]);

  test('the right key, a wrong key of the same length, a prefix, an extension', () => {
    assert.deepEqual(keys.match(WRITE), { role: 'write', name: 'writer' });
    assert.deepEqual(keys.match(ADMIN), { role: 'admin', name: 'boss' });
    const sameLength = WRITE.slice(0, -1) + (WRITE.endsWith('f') ? 'e' : 'f');
    assert.equal(sameLength.length, WRITE.length);
    assert.equal(keys.match(sameLength), null);
    assert.equal(keys.match(WRITE.slice(0, 16)), null);
    assert.equal(keys.match(WRITE + 'x'), null);
    assert.equal(keys.match(''), null);
  });

  test('compares with crypto.timingSafeEqual, every configured key, without an early exit', () => {
    const spy = mock.method(crypto, 'timingSafeEqual');
    syncBuiltinESMExports(); // auth.ts's named import sees the spy
    try {
      assert.deepEqual(keys.match(READ), { role: 'read', name: 'reader' }); // the first key matches…
      assert.equal(spy.mock.callCount(), 3); // …and the other two are compared all the same
      for (const c of spy.mock.calls) {
        assert.equal((c.arguments[0] as Buffer).length, 32, 'sha256 digests: equal lengths whatever the token');
        assert.equal((c.arguments[1] as Buffer).length, 32);
      }
      keys.match('x');
      assert.equal(spy.mock.callCount(), 6);
    } finally {
      spy.mock.restore();
      syncBuiltinESMExports();
    }
  });

  test('the same key twice is refused', () => {
    assert.throws(
      () =>
        new KeyMatcher([
          { role: 'read', key: READ, name: 'a' },
          { role: 'admin', key: READ, name: 'b' },
        ]),
      /listed twice/,
    );
  });
});

describe('key lists', () => {
  test('CACHET_API_KEYS: role:key[:name], commas or newlines', () => {
    const keys = parseApiKeysEnv(` read:${READ}:dashboard,\nwrite:${WRITE}\n\nadmin:${ADMIN}:ops , `);
    assert.deepEqual(
      keys.map((k) => [k.role, k.key, k.name]),
      [
        ['read', READ, 'dashboard'],
        ['write', WRITE, 'CACHET_API_KEYS#2'],
        ['admin', ADMIN, 'ops'],
      ],
    );
  });

  test('a keys file: role key [name] per line, # comments', () => {
    const keys = parseApiKeysFile(`# who may do what\n\nread ${READ} the dashboard\n  write ${WRITE}\n#admin ${ADMIN}\n`, 'keys.txt');
    assert.deepEqual(
      keys.map((k) => [k.role, k.name]),
      [
        ['read', 'the dashboard'],
        ['write', 'keys.txt:4'],
      ],
    );
  });

  test('a short key, an unknown role or a malformed entry is refused with a message', () => {
    assert.throws(() => parseApiKeysEnv('read:short-key'), /entry 1: the read key is 9 characters long; a key needs at least 16/);
    assert.throws(() => parseApiKeysEnv(`root:${READ}`), /role "root" is not one of read, write, admin/);
    assert.throws(() => parseApiKeysEnv(READ), /role:key/);
    assert.throws(() => parseApiKeysFile(`read ${READ}\nwrite tooshort`, 'k.txt'), /k\.txt line 2: the write key is 8 characters long/);
  });

  test('a short key stops the service at start, before it listens', async () => {
    await assert.rejects(startService({ port: 0, host: '127.0.0.1', dataDir: tempDir(), apiKeys: 'admin:0123456789' }), /at least 16/);
  });

  test('route patterns and loopback addresses', () => {
    assert.ok(patternToRegex('/v1/caches/:name/items/:id').test('/v1/caches/a/items/b'));
    assert.ok(patternToRegex('/v1/caches/:name').test('/V1/Caches/x/'));
    assert.ok(!patternToRegex('/v1/caches/:name').test('/v1/caches/x/predict'));
    for (const h of ['127.0.0.1', 'localhost', '::1', '[::1]', '127.1.2.3']) assert.ok(isLoopback(h), h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.org']) assert.ok(!isLoopback(h), h);
  });
});

describe('a service without keys', () => {
  test('listens on 127.0.0.1 when asked for 0.0.0.0, and says so loudly', async () => {
    const lines: Record<string, any>[] = [];
    const svc = await start(tempDir(), undefined, { host: '0.0.0.0', logger: capturingLogger(lines) });
    try {
      assert.equal(new URL(svc.url).hostname, '127.0.0.1');
      const warning = lines.find((l) => l.level === 40 && /NO API KEYS/.test(l.msg));
      assert.ok(warning, JSON.stringify(lines));
      assert.match(warning.msg, /Asked to listen on 0\.0\.0\.0: listening on 127\.0\.0\.1 instead/);
      assert.match(warning.msg, /CACHET_API_KEYS/);
      assert.equal((await call(svc.url, 'GET', '/v1/caches')).status, 200, 'no key needed: the API is open on loopback');
    } finally {
      await svc.close();
    }
  });
});

describe('a service with keys', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  const lines: Record<string, any>[] = [];
  const keysFile = path.join(tempDir(), 'keys.txt');

  before(async () => {
    writeFileSync(keysFile, `# a key from a file\nwrite ${FROM_FILE} ci-pipeline\n`);
    svc = await start(tempDir(), undefined, {
      apiKeys: `read:${READ}:dashboard,write:${WRITE}:indexer\nadmin:${ADMIN}:ops`,
      apiKeysFile: keysFile,
      logger: capturingLogger(lines),
    });
  });
  after(async () => svc.close());

  test('binds as asked and logs no warning', () => {
    assert.equal(new URL(svc.url).hostname, '127.0.0.1');
    assert.ok(!lines.some((l) => /NO API KEYS/.test(l.msg)));
    assert.ok(lines.some((l) => /4 configured/.test(l.msg)));
  });

  test('no Authorization header: 401 with WWW-Authenticate: Bearer, and how to send a key', async () => {
    for (const [method, route] of [
      ['GET', '/v1/caches'],
      ['POST', '/v1/caches'],
      ['GET', '/v1/no-such-route'],
      ['GET', '/V1/caches'],
    ]) {
      const r = await call(svc.url, method, route);
      assert.equal(r.status, 401, `${method} ${route}: ${JSON.stringify(r.body)}`);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
      assert.equal(r.body.error.code, 'unauthorized');
      assert.match(r.body.error.message, /Authorization: Bearer <key>/);
    }
    const basic = await call(svc.url, 'GET', '/v1/caches', undefined, { authorization: 'Basic dXNlcjpwYXNz' });
    assert.equal(basic.status, 401);
  });

  test('a wrong key: 401', async () => {
    const r = await call(svc.url, 'GET', '/v1/caches', undefined, bearer(READ.replace('read', 'reed')));
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer .*invalid_token/);
    assert.equal(r.body.error.code, 'invalid_api_key');
    assert.match(r.body.error.message, /Authorization: Bearer <key>/);
  });

  test('public routes need no key', async () => {
    for (const route of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
      const res = await fetch(svc.url + route);
      assert.equal(res.status, 200, route);
    }
    assert.notEqual((await fetch(svc.url + '/')).status, 401, 'the web page');
  });

  test('admin creates caches; read and write keys may not (403 naming the roles)', async () => {
    const body = { name: 'auth', model: RESNET, keyLayers: PAPER_KEY_LAYERS, theta: 80, lambda: 0.5111, index: { type: 'exact' } };
    const denied = await call(svc.url, 'POST', '/v1/caches', body, bearer(WRITE));
    assert.equal(denied.status, 403);
    assert.equal(denied.body.error.code, 'forbidden');
    assert.match(denied.body.error.message, /needs role "admin"; this key \("indexer"\) has role "write"/);
    const created = await call(svc.url, 'POST', '/v1/caches', body, bearer(ADMIN));
    assert.equal(created.status, 201, JSON.stringify(created.body));
  });

  test('a read key may not submit an index job (403 naming "write"); a write key may', async () => {
    const source = { source: { type: 'folder', path: sampleFolder('cache', 1) } };
    const denied = await call(svc.url, 'POST', '/v1/caches/auth/index-jobs', source, bearer(READ));
    assert.equal(denied.status, 403);
    assert.match(denied.body.error.message, /index-jobs needs role "write" or higher; this key \("dashboard"\) has role "read"/);
    const r = await call(svc.url, 'POST', '/v1/caches/auth/index-jobs', source, bearer(WRITE));
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const job = await waitForJob(svc.url, r.body.id, bearer(READ));
    assert.equal(job.state, 'completed', job.failedReason);
    assert.equal(job.result.cacheSize, 10);
  });

  test('a key from the keys file works with its role', async () => {
    const r = await call(svc.url, 'POST', '/v1/caches/auth/eval-jobs', { source: { type: 'folder', path: sampleFolder('heldout', 1) } }, bearer(FROM_FILE));
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal((await waitForJob(svc.url, r.body.id, bearer(FROM_FILE))).state, 'completed');
    const tune = await call(svc.url, 'POST', '/v1/caches/auth/tune-jobs', { source: { type: 'folder', path: sampleFolder('heldout', 1) } }, bearer(FROM_FILE));
    assert.equal(tune.status, 403);
    assert.match(tune.body.error.message, /needs role "admin"; this key \("ci-pipeline"\) has role "write"/);
  });

  test('a read key predicts and reads; an unknown /v1 route is a 404 only with a key', async () => {
    const p = await call(svc.url, 'POST', '/v1/caches/auth/predict', { image: CAT }, bearer(READ));
    assert.equal(p.status, 200, JSON.stringify(p.body));
    assert.equal((await call(svc.url, 'GET', '/v1/caches/auth', undefined, bearer(READ))).status, 200);
    assert.equal((await call(svc.url, 'GET', '/v1/no-such-route', undefined, bearer(READ))).status, 404);
    assert.equal((await call(svc.url, 'PATCH', '/v1/caches/auth', { theta: 60 }, bearer(READ))).status, 403);
    assert.equal((await call(svc.url, 'PATCH', '/v1/caches/auth', { theta: 60 }, bearer(ADMIN))).status, 200);
  });

  test('the key never reaches the logs; its name does', async () => {
    const text = lines.map((l) => JSON.stringify(l)).join('\n');
    for (const key of [READ, WRITE, ADMIN, FROM_FILE]) assert.ok(!text.includes(key), 'a key in the logs');
    assert.ok(lines.some((l) => l.apiKey === 'dashboard'));
  });

  test('the CLI sends CACHET_API_KEY (or --api-key) as the bearer token', async () => {
    const run = promisify(execFile);
    const cli = (args: string[], env: Record<string, string> = {}) =>
      run(process.execPath, ['--import', 'tsx', path.join(REPO, 'src', 'cli', 'main.ts'), ...args], {
        cwd: REPO,
        env: { ...process.env, CACHET_API_KEY: '', ...env },
      }).then(
        (r) => ({ code: 0, ...r }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
    const ok = await cli(['cache', 'list', '--url', svc.url], { CACHET_API_KEY: READ });
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(
      JSON.parse(ok.stdout).caches.map((c: { name: string }) => c.name),
      ['auth'],
    );
    const flag = await cli(['cache', 'show', 'auth', '--url', svc.url, '--api-key', READ]);
    assert.equal(flag.code, 0, flag.stderr);
    const none = await cli(['cache', 'list', '--url', svc.url]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /Authorization: Bearer <key>.*CACHET_API_KEY or --api-key/);
  });
});
