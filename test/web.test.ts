// The web page end to end: a real service on the paper's ResNet-20, driven in headless
// Chromium (Debian's chromium package, through playwright-core).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import sharp from 'sharp';
import express from 'express';
import type { AddressInfo } from 'node:net';
import { call, PAPER_KEY_LAYERS, REPO, RESNET, SAMPLE, sampleFolder, start, tempDir, waitForJob } from './harness.js';
import { findPublicDir, webRoutes } from '../src/http/web.js';
import { errorHandler } from '../src/http/error-handler.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CAT = path.join(SAMPLE, 'heldout', 'cat', '4500.jpg');
const CACHE = 'web';

/** as public/api.js shows a probability */
const percent = (p: number) => (p > 0 && p < 0.0005 ? '< 0.1 %' : p < 1 && p >= 0.9995 ? '> 99.9 %' : `${(p * 100).toFixed(1)} %`);

/** The standard deviation of every channel of a PNG: 0 for a blank picture. */
async function pixelSpread(png: Buffer): Promise<{ width: number; height: number; stdev: number[] }> {
  const { channels } = await sharp(png).stats();
  const meta = await sharp(png).metadata();
  return { width: meta.width!, height: meta.height!, stdev: channels.slice(0, 3).map((c) => c.stdev) };
}

describe('web page', () => {
  let svc: Awaited<ReturnType<typeof start>>;
  let browser: Browser;
  const shots = tempDir('cachet-web-shots-');
  const pageErrors: string[] = [];

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: run \`bash scripts/test-deps.sh\` (apt-get install chromium) or set CHROMIUM_PATH`);
    const launched = chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    svc = await start();
    const created = await call(svc.url, 'POST', '/v1/caches', {
      name: CACHE,
      model: RESNET,
      keyLayers: PAPER_KEY_LAYERS,
      theta: 80,
      lambda: 0.5111,
      index: { type: 'exact' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const r = await call(svc.url, 'POST', `/v1/caches/${CACHE}/index-jobs`, { source: { type: 'folder', path: sampleFolder('cache', 10) } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const job = await waitForJob(svc.url, r.body.id);
    assert.equal(job.state, 'completed', job.failedReason);
    browser = await launched;
  });
  after(async () => {
    await browser?.close();
    await svc?.close();
    console.log(`web test screenshots: ${shots}`);
  });

  async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
    const page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(`${page.url()}: ${err.message}`));
    // the API's 4xx answers show up as "Failed to load resource"; anything else (a CSP violation, say) is a bug
    page.on(
      'console',
      (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && pageErrors.push(`${page.url()}: console: ${m.text()}`),
    );
    return { context, page };
  }

  test('finds public/ from the TypeScript source and from the compiled file', async () => {
    const publicDir = path.join(REPO, 'public');
    assert.equal(findPublicDir(path.join(REPO, 'src', 'http')), publicDir);
    assert.equal(findPublicDir(path.join(REPO, 'dist', 'src', 'http')), publicDir);
    assert.equal(findPublicDir(), publicDir);
    assert.equal(findPublicDir(tempDir()), null);
    // without it, the API still works and / says why there is no page
    const server = express()
      .use(webRoutes(null))
      .use(errorHandler(() => {}))
      .listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const r = await call(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'GET', '/');
      assert.equal(r.status, 404);
      assert.equal(r.body.error.code, 'web_page_missing');
    } finally {
      server.close();
    }
  });

  test('serves the pages and keeps JSON errors for unknown routes', async () => {
    for (const [route, type] of [
      ['/', 'text/html'],
      ['/app.js', 'javascript'],
      ['/style.css', 'text/css'],
      ['/jobs/some-id', 'text/html'],
      ['/job.html?id=x', 'text/html'],
    ] as const) {
      const res = await fetch(svc.url + route);
      assert.equal(res.status, 200, route);
      assert.match(res.headers.get('content-type') ?? '', new RegExp(type), route);
      assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'self'/, route);
    }
    assert.match(await (await fetch(svc.url + '/jobs/abc')).text(), /job\.js/);
    const missing = await call(svc.url, 'GET', '/no-such-page');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'unknown_route');
  });

  test('an image dropped on the page shows the three top-5 columns, the neighbours, and renders', async () => {
    const { context, page } = await newPage();
    await page.goto(svc.url + '/');
    await page.locator(`#cache-select option[value="${CACHE}"]`).waitFor({ state: 'attached' });
    await page.selectOption('#cache-select', CACHE);
    await page.locator('#cache-info dd').first().waitFor();
    await page.setInputFiles('#file', CAT);
    await page.locator('#results[data-state="done"]').waitFor({ timeout: 15_000 });

    // the same image through the API, with the page's options (every class, 8 neighbours)
    const form = new FormData();
    form.append('image', new Blob([readFileSync(CAT)]), '4500.jpg');
    const api = await call(svc.url, 'POST', `/v1/caches/${CACHE}/predict?neighbours=8&topK=10`, form);
    assert.equal(api.status, 200, JSON.stringify(api.body));
    const [pred] = api.body.predictions;
    assert.equal(pred.top.length, 10);

    for (const [column, field] of [
      ['model', 'pModel'],
      ['cache', 'pCache'],
      ['combined', 'p'],
    ] as const) {
      const expected = [...pred.top].sort((a: any, b: any) => b[field] - a[field]).slice(0, 5);
      const rows = await page.locator(`#col-${column} li`).evaluateAll((lis) =>
        lis.map((li) => ({
          cls: li.querySelector('.cls')?.textContent,
          val: li.querySelector('.val')?.textContent,
          value: Number((li as HTMLElement).dataset.value),
        })),
      );
      assert.deepEqual(
        rows.map((r) => r.cls),
        expected.map((t: any) => t.class),
        `${column} column classes`,
      );
      rows.forEach((r, i) => {
        assert.ok(Math.abs(r.value - expected[i][field]) < 1e-6, `${column} row ${i}: ${r.value} vs ${expected[i][field]}`);
        assert.equal(r.val, percent(expected[i][field]), `${column} row ${i} text`);
      });
    }
    const best = [...pred.top].sort((a: any, b: any) => b.p - a.p)[0];
    assert.equal(await page.textContent('#verdict-class'), best.class);
    assert.match((await page.textContent('#verdict-params')) ?? '', /θ = 80 · λ = 0\.5111 · 100 cached items/);
    assert.ok(await page.evaluate(() => (document.getElementById('preview') as HTMLImageElement).naturalWidth > 0), 'the uploaded image shows');

    // neighbours: label and similarity of each, in the API's order
    const tiles = await page.locator('#neighbours .tile').evaluateAll((lis) =>
      lis.map((li) => ({
        id: (li as HTMLElement).dataset.id,
        label: li.querySelector('.tile-label')?.textContent,
        sim: li.querySelector('.tile-sim')?.textContent,
      })),
    );
    assert.equal(tiles.length, 8);
    assert.deepEqual(
      tiles,
      pred.neighbours.map((n: any) => ({ id: n.id, label: n.class, sim: n.similarity.toFixed(3) })),
    );

    // thumbnails: real images where the item image route answers, placeholders with the label where it does not
    await page.waitForFunction(() => document.querySelectorAll('#neighbours .thumb[data-thumb="loading"]').length === 0, undefined, { timeout: 10_000 });
    const thumbRoute = await fetch(`${svc.url}/v1/caches/${CACHE}/items/${encodeURIComponent(pred.neighbours[0].id)}/image`);
    await thumbRoute.arrayBuffer();
    const thumbs = await page.locator('#neighbours .thumb').evaluateAll((els) =>
      els.map((t) => ({
        state: (t as HTMLElement).dataset.thumb,
        width: (t.querySelector('img') as HTMLImageElement | null)?.naturalWidth ?? 0,
        text: t.textContent,
      })),
    );
    if (thumbRoute.status === 200) {
      for (const t of thumbs) assert.ok(t.state === 'image' && t.width > 0, JSON.stringify(t));
    } else {
      thumbs.forEach((t, i) => assert.deepEqual({ state: t.state, text: t.text }, { state: 'placeholder', text: pred.neighbours[i].class }));
    }

    // the picture: not blank, and the results region is far from uniform
    const file = path.join(shots, 'index-results.png');
    writeFileSync(file, await page.screenshot({ fullPage: true, animations: 'disabled' }));
    console.log(`screenshot: ${file}`);
    const whole = await pixelSpread(readFileSync(file));
    assert.ok(whole.width >= 1280 && whole.height >= 900, JSON.stringify(whole));
    assert.ok(Math.max(...whole.stdev) > 20, `the page screenshot looks blank: ${JSON.stringify(whole)}`);
    for (const region of ['#results', '.columns', '#neighbours']) {
      const spread = await pixelSpread(await page.locator(region).screenshot());
      assert.ok(spread.width > 200 && spread.height > 80, `${region}: ${JSON.stringify(spread)}`);
      assert.ok(Math.max(...spread.stdev) > 15, `${region} looks uniform: ${JSON.stringify(spread)}`);
    }
    await context.close();
  });

  test("a file that is not an image shows the API's message", async () => {
    const text = Buffer.from('these are not the pixels you are looking for\n');
    const form = new FormData();
    form.append('image', new Blob([text], { type: 'text/plain' }), 'notes.txt');
    const api = await call(svc.url, 'POST', `/v1/caches/${CACHE}/predict?neighbours=8&topK=10`, form);
    assert.equal(api.status, 400, JSON.stringify(api.body));

    const { context, page } = await newPage();
    await page.goto(svc.url + '/');
    await page.locator(`#cache-select option[value="${CACHE}"]`).waitFor({ state: 'attached' });
    await page.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: text });
    await page.locator('#results[data-state="error"]').waitFor({ timeout: 10_000 });
    assert.equal(await page.textContent('#message'), api.body.error.message);
    assert.ok(await page.isVisible('#message'));
    assert.ok(await page.isHidden('#outcome'));
    await context.close();
  });

  test('an index job submitted from the page is followed to completion on the job page', async () => {
    const { context, page } = await newPage();
    await page.goto(svc.url + '/');
    await page.locator(`#cache-select option[value="${CACHE}"]`).waitFor({ state: 'attached' });
    await page.selectOption('#cache-select', CACHE);
    const folder = sampleFolder('cache', 5, 10);
    writeFileSync(path.join(folder, 'cat', 'broken.jpg'), 'not a JPEG');
    await page.fill('#index-path', folder);
    await page.click('#index-submit');
    const link = page.locator('#index-job-link');
    await link.waitFor();
    const id = decodeURIComponent((await link.getAttribute('href'))!.replace('/jobs/', ''));
    // the page's own follower refreshes the cache list when the job ends
    await page.locator(`#cache-select option[value="${CACHE}"]`, { hasText: '150 items' }).waitFor({ state: 'attached', timeout: 20_000 });
    assert.match((await page.textContent('#index-status')) ?? '', /completed · 50 items added, 150 in the cache/);

    await link.click();
    await page.waitForURL(`**/jobs/${encodeURIComponent(id)}`);
    await page.locator('#job-state.completed').waitFor({ timeout: 20_000 });
    const job = await waitForJob(svc.url, id);
    assert.equal(job.state, 'completed');
    assert.deepEqual(job.progress, { done: 51, total: 51 });
    assert.equal(job.errorCount, 1);
    assert.equal(await page.textContent('#job-state'), 'completed');
    assert.equal(await page.textContent('#progress-count'), '51 / 51');
    assert.equal(await page.getAttribute('#progress', 'aria-valuenow'), '100');
    assert.equal(await page.textContent('#error-count'), '1');
    assert.match((await page.textContent('#error-list')) ?? '', /cat\/broken\.jpg.*not a readable image/);
    assert.match((await page.textContent('#result-summary')) ?? '', /Items added\s*50/);
    assert.deepEqual(await page.locator('#report-links a').evaluateAll((as) => as.map((a) => a.getAttribute('href'))), [`/v1/jobs/${id}/report?format=json`]);
    const file = path.join(shots, 'job-index-completed.png');
    writeFileSync(file, await page.screenshot({ fullPage: true, animations: 'disabled' }));
    console.log(`screenshot: ${file}`);
    await context.close();
  });

  test('the job page follows an eval job and inlines its SVG report', async () => {
    const r = await call(svc.url, 'POST', `/v1/caches/${CACHE}/eval-jobs`, {
      source: { type: 'folder', path: sampleFolder('heldout', 2) },
      cacheSizes: [0.5, 1],
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const { context, page } = await newPage();
    await page.goto(`${svc.url}/jobs/${encodeURIComponent(r.body.id)}`);
    await page.locator('#job-state.completed').waitFor({ timeout: 20_000 });
    assert.equal(await page.textContent('#progress-count'), '20 / 20');
    await page.locator('#svg-report:not([hidden])').waitFor();
    await page.waitForFunction(() => (document.getElementById('svg-img') as HTMLImageElement).naturalWidth > 0);
    assert.deepEqual(await page.locator('#report-links a').evaluateAll((as) => as.map((a) => (a as HTMLElement).dataset.format)), ['md', 'svg', 'json']);
    assert.match((await page.textContent('#result-summary')) ?? '', /Top-1 error, cache model/);
    await context.close();
  });

  test('the job page shows a robustness job: its chart with its own caption, and the errors per attack', async () => {
    const r = await call(svc.url, 'POST', `/v1/caches/${CACHE}/robustness-jobs`, {
      source: { type: 'folder', path: sampleFolder('heldout', 1) },
      corruptions: ['contrast'],
      severities: [3],
      attacks: ['adaptive'],
      queries: 3,
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const { context, page } = await newPage();
    await page.goto(`${svc.url}/jobs/${encodeURIComponent(r.body.id)}`);
    await page.locator('#job-state.completed').waitFor({ timeout: 30_000 });
    await page.locator('#svg-report:not([hidden])').waitFor();
    assert.match((await page.textContent('#svg-caption')) ?? '', /severity \(0 = clean\) and each attack’s ε/);
    const facts = (await page.textContent('#result-summary')) ?? '';
    assert.match(facts, /Top-1 error, clean \(model \/ cache model \/ cache alone\)/);
    assert.match(facts, /adaptive attack, ε 8\/255/);
    await context.close();
  });

  test('with API keys configured: a 401 points at the key field, the key is sent as a bearer token, a 403 says so', async () => {
    const ADMIN = 'admin-0123456789abcdef0123';
    const READ = 'read-0123456789abcdef01234';
    const secured = await start(undefined, undefined, { apiKeys: `admin:${ADMIN}:ops,read:${READ}:viewer` });
    const { context, page } = await newPage();
    try {
      const created = await call(
        secured.url,
        'POST',
        '/v1/caches',
        { name: 'locked', model: RESNET, keyLayers: PAPER_KEY_LAYERS, index: { type: 'exact' } },
        { authorization: `Bearer ${ADMIN}` },
      );
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const second = await call(
        secured.url,
        'POST',
        '/v1/caches',
        { name: 'second', model: RESNET, keyLayers: PAPER_KEY_LAYERS, index: { type: 'exact' } },
        { authorization: `Bearer ${ADMIN}` },
      );
      assert.equal(second.status, 201, JSON.stringify(second.body));

      // the page itself is public; its first API call is refused
      await page.goto(secured.url + '/');
      await page.locator('#message:not([hidden])').waitFor();
      assert.match((await page.textContent('#message')) ?? '', /needs a valid API key: enter it in the “API key” field.*401/);
      assert.ok(await page.evaluate(() => document.getElementById('api-key')!.classList.contains('attention')));
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'api-key');

      // a key typed in the field goes out as a bearer token, and is kept in the browser
      const sent = page.waitForRequest((req) => req.url().endsWith('/v1/caches'));
      await page.fill('#api-key', READ);
      await page.locator('#api-key').dispatchEvent('change');
      assert.equal((await sent).headers()['authorization'], `Bearer ${READ}`);
      await page.locator('#cache-select option[value="locked"]').waitFor({ state: 'attached' });
      assert.ok(await page.isHidden('#message'));
      assert.equal(await page.evaluate(() => localStorage.getItem('cachet.apiKey')), READ);
      // the stored key is used on the next visit; ?cache= picks the cache (the job page links to it so)
      await page.goto(`${secured.url}/?cache=second`);
      await page.locator('#cache-info dd').first().waitFor();
      assert.equal(await page.inputValue('#cache-select'), 'second');
      await page.selectOption('#cache-select', 'locked');

      // predict is allowed to a read key, indexing is not
      await page.setInputFiles('#file', CAT);
      await page.locator('#results[data-state="done"]').waitFor({ timeout: 15_000 });
      await page.fill('#index-path', '/nowhere');
      await page.click('#index-submit');
      await page.locator('#index-status.error').waitFor();
      assert.match((await page.textContent('#index-status')) ?? '', /may not do that.*403/);

      // the job page sends the stored key too: an unknown job is a 404, not a 401
      await page.goto(`${secured.url}/jobs/no-such-job`);
      await page.locator('#message:not([hidden])').waitFor();
      assert.match((await page.textContent('#message')) ?? '', /no job with id no-such-job/);
    } finally {
      await context.close();
      await secured.close();
    }
  });

  test('no script error on any page', () => {
    assert.deepEqual(pageErrors, []);
  });
});
