// The predict page: pick a cache, drop an image, see the model's, the cache's and the
// combined top classes and the nearest cached images. Plain JS module, no build step.
import { apiFetch, apiJson, el, errorText, flagKeyField, percent, setupKeyField } from './api.js';

const TOP = 5;
const NEIGHBOURS = 8;
const CACHE_STORAGE = 'cachet.cache';

const $ = (id) => document.getElementById(id);
const ui = {
  key: $('api-key'),
  select: $('cache-select'),
  refresh: $('refresh-caches'),
  info: $('cache-info'),
  dropzone: $('dropzone'),
  file: $('file'),
  results: $('results'),
  message: $('message'),
  empty: $('empty'),
  outcome: $('outcome'),
  preview: $('preview'),
  previewName: $('preview-name'),
  verdictClass: $('verdict-class'),
  verdictDetail: $('verdict-detail'),
  verdictParams: $('verdict-params'),
  columns: { model: $('col-model'), cache: $('col-cache'), combined: $('col-combined') },
  neighbours: $('neighbours'),
  indexForm: $('index-form'),
  indexPath: $('index-path'),
  indexFlip: $('index-flip'),
  indexSubmit: $('index-submit'),
  indexStatus: $('index-status'),
};

let caches = [];
/** the image being classified: {blob, name} */
let current = null;
/** object URLs of the preview and thumbnails, revoked when the next result replaces them */
let objectUrls = [];
/** counts predict calls: only the latest one's answer is shown */
let requestSeq = 0;

setupKeyField(ui.key, () => void loadCaches());
ui.refresh.addEventListener('click', () => void loadCaches());
ui.select.addEventListener('change', () => {
  remember(ui.select.value);
  showCacheInfo();
  if (current) void predict();
});
ui.file.addEventListener('change', () => {
  const f = ui.file.files?.[0];
  if (f) useImage(f, f.name);
  ui.file.value = ''; // choosing the same file again classifies it again
});
for (const type of ['dragenter', 'dragover']) {
  ui.dropzone.addEventListener(type, (e) => {
    e.preventDefault();
    ui.dropzone.classList.add('over');
  });
}
for (const type of ['dragleave', 'dragend']) ui.dropzone.addEventListener(type, () => ui.dropzone.classList.remove('over'));
ui.dropzone.addEventListener('drop', (e) => {
  e.preventDefault();
  ui.dropzone.classList.remove('over');
  const f = e.dataTransfer?.files?.[0];
  if (f) useImage(f, f.name);
});
// a file dropped outside the zone would make the browser navigate away from the page
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', (e) => e.preventDefault());
document.addEventListener('paste', (e) => {
  if (e.target instanceof HTMLInputElement && e.target.type === 'text') return;
  const f = [...(e.clipboardData?.files ?? [])].find((x) => x.type.startsWith('image/'));
  if (f) useImage(f, f.name || 'pasted image');
});
ui.indexForm.addEventListener('submit', (e) => {
  e.preventDefault();
  void submitIndexJob();
});

void loadCaches();

// --- caches ---------------------------------------------------------------------------

async function loadCaches() {
  const wanted = ui.select.value || new URLSearchParams(location.search).get('cache') || remembered();
  try {
    caches = (await apiJson('/v1/caches')).caches ?? [];
  } catch (err) {
    caches = [];
    ui.select.replaceChildren(el('option', { value: '', text: 'Could not list the caches' }));
    ui.select.disabled = true;
    ui.info.replaceChildren();
    showError(err);
    return;
  }
  hideMessage();
  if (caches.length === 0) {
    ui.select.replaceChildren(el('option', { value: '', text: 'No caches yet' }));
    ui.select.disabled = true;
    ui.info.replaceChildren(el('p', { class: 'hint', text: 'Create one with POST /v1/caches or `cachet cache create`.' }));
    return;
  }
  ui.select.replaceChildren(
    ...caches.map((c) =>
      el('option', {
        value: c.name,
        disabled: c.status !== 'ready',
        text: c.status === 'ready' ? `${c.name} · ${count(c.info?.size ?? 0, 'item')}` : `${c.name} (failed to load)`,
      }),
    ),
  );
  const ready = caches.filter((c) => c.status === 'ready');
  const pick = ready.find((c) => c.name === wanted) ?? ready[0];
  if (pick) ui.select.value = pick.name;
  ui.select.disabled = false;
  showCacheInfo();
}

function selectedCache() {
  return caches.find((c) => c.name === ui.select.value && c.status === 'ready') ?? null;
}

function showCacheInfo() {
  const c = caches.find((x) => x.name === ui.select.value);
  if (!c) return void ui.info.replaceChildren();
  if (c.status !== 'ready' || !c.info) {
    ui.info.replaceChildren(el('p', { class: 'hint error-text', text: c.error ?? 'This cache failed to load.' }));
    return;
  }
  const i = c.info;
  const facts = [
    ['Items', i.size.toLocaleString('en')],
    ['Classes', String(i.classes.length)],
    ['θ', String(i.theta)],
    ['λ', String(i.lambda)],
    ['Index', i.index?.type ?? '—'],
    ['Model', basename(i.model)],
  ];
  ui.info.replaceChildren(...facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v, title: k === 'Model' ? i.model : undefined })]));
}

// --- predict --------------------------------------------------------------------------

function useImage(blob, name) {
  current = { blob, name };
  void predict();
}

async function predict() {
  const cache = selectedCache();
  if (!cache) return void showError(new Error(caches.length ? 'Pick a cache first.' : 'There is no cache to classify with yet.'));
  if (!current) return;
  const seq = ++requestSeq;
  const classes = cache.info?.classes?.length ?? TOP;
  // every class, so that each column shows its own top 5 (not the model's view of the combined top 5)
  const topK = Math.max(TOP, Math.min(classes, 1000));
  const form = new FormData();
  form.append('image', current.blob, current.name);
  setState('loading');
  hideMessage();
  try {
    const body = await apiJson(`/v1/caches/${encodeURIComponent(cache.name)}/predict?neighbours=${NEIGHBOURS}&topK=${topK}`, { method: 'POST', body: form });
    if (seq !== requestSeq) return;
    render(body, current);
    setState('done');
  } catch (err) {
    if (seq !== requestSeq) return;
    setState('error');
    ui.outcome.hidden = true;
    ui.empty.hidden = false;
    showError(err);
  }
}

function setState(state) {
  ui.results.dataset.state = state;
  ui.results.setAttribute('aria-busy', String(state === 'loading'));
}

function render(body, image) {
  for (const u of objectUrls) URL.revokeObjectURL(u);
  objectUrls = [];
  const pred = body.predictions[0];
  const top = pred.top;

  const url = URL.createObjectURL(image.blob);
  objectUrls.push(url);
  ui.preview.src = url;
  ui.preview.alt = `The uploaded image, ${image.name}`;
  ui.previewName.textContent = image.name;

  const byP = sortBy(top, 'p');
  const byModel = sortBy(top, 'pModel');
  const cacheEmpty = top.every((t) => t.pCache === null || t.pCache === undefined);
  const byCache = cacheEmpty ? [] : sortBy(top, 'pCache');
  const winner = byP[0];
  ui.verdictClass.textContent = winner.class;
  ui.verdictDetail.textContent =
    `${percent(winner.p)} combined · the model alone says ${byModel[0].class} (${percent(byModel[0].pModel)})` +
    (cacheEmpty ? ' · the cache is empty' : `, the cache alone ${byCache[0].class} (${percent(byCache[0].pCache)})`);
  ui.verdictParams.textContent = `${body.cache} · θ = ${body.theta} · λ = ${body.lambda} · ${count(body.cacheSize, 'cached item')}`;

  fillColumn(ui.columns.model, byModel.slice(0, TOP), 'pModel', winner.class);
  if (cacheEmpty) {
    ui.columns.cache.replaceChildren(el('li', { class: 'none', text: 'The cache holds no items yet: add images to it, and its vote shows here.' }));
  } else {
    fillColumn(ui.columns.cache, byCache.slice(0, TOP), 'pCache', winner.class);
  }
  fillColumn(ui.columns.combined, byP.slice(0, TOP), 'p', winner.class);
  renderNeighbours(body.cache, pred.neighbours);

  ui.empty.hidden = true;
  ui.outcome.hidden = false;
}

function sortBy(top, field) {
  return [...top].sort((a, b) => b[field] - a[field]);
}

function fillColumn(list, rows, field, winner) {
  list.replaceChildren(
    ...rows.map((t) => {
      const fill = el('span', { class: 'fill' });
      fill.style.setProperty('--w', `${Math.max(0, Math.min(1, t[field])) * 100}%`);
      return el(
        'li',
        { class: t.class === winner ? 'bar-row winner' : 'bar-row', 'data-class': t.class, 'data-value': t[field] },
        el('span', { class: 'cls', text: t.class }),
        el('span', { class: 'val', text: percent(t[field]) }),
        el('span', { class: 'bar', 'aria-hidden': 'true' }, fill),
      );
    }),
  );
}

function renderNeighbours(cacheName, neighbours) {
  if (!neighbours.length) {
    ui.neighbours.replaceChildren(el('li', { class: 'none', text: 'No cached images yet.' }));
    return;
  }
  ui.neighbours.replaceChildren(
    ...neighbours.map((n, i) => {
      const thumb = el('div', { class: 'thumb', 'data-thumb': 'loading' }, placeholder(n));
      const tile = el(
        'li',
        { class: 'tile', 'data-id': n.id, 'data-class': n.class, 'data-similarity': n.similarity, title: n.id },
        thumb,
        el('div', { class: 'tile-text' }, el('span', { class: 'tile-label', text: n.class }), el('span', { class: 'tile-sim', text: n.similarity.toFixed(3), title: 'similarity' })),
        el('span', { class: 'rank', text: String(i + 1), 'aria-hidden': 'true' }),
      );
      void loadThumbnail(cacheName, n, thumb);
      return tile;
    }),
  );
}

function placeholder(n) {
  const p = el('div', { class: 'placeholder', role: 'img', 'aria-label': `${n.class} (no thumbnail)` }, el('span', { text: n.class }));
  p.style.setProperty('--hue', String((n.label * 137.508) % 360));
  return p;
}

async function loadThumbnail(cacheName, n, thumb) {
  try {
    const res = await apiFetch(`/v1/caches/${encodeURIComponent(cacheName)}/items/${encodeURIComponent(n.id)}/image`);
    if (!res.ok || !(res.headers.get('content-type') ?? '').startsWith('image/')) throw new Error(String(res.status));
    const url = URL.createObjectURL(await res.blob());
    objectUrls.push(url);
    const img = el('img', { alt: `Cached image ${n.id}, labelled ${n.class}`, src: url, decoding: 'async' });
    await img.decode().catch(() => {});
    thumb.replaceChildren(img);
    thumb.dataset.thumb = 'image';
  } catch {
    thumb.dataset.thumb = 'placeholder';
  }
}

// --- index jobs -----------------------------------------------------------------------

async function submitIndexJob() {
  const cache = selectedCache();
  if (!cache) return void status(ui.indexStatus, 'error', 'Pick a cache first.');
  const folder = ui.indexPath.value.trim();
  if (!folder) return void ui.indexPath.focus();
  ui.indexSubmit.disabled = true;
  status(ui.indexStatus, 'info', 'Submitting…');
  try {
    const job = await apiJson(`/v1/caches/${encodeURIComponent(cache.name)}/index-jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ source: { type: 'folder', path: folder }, flip: ui.indexFlip.checked }),
    });
    void followJob(job);
  } catch (err) {
    status(ui.indexStatus, 'error', errorText(err));
    if (err.isAuth) flagKeyField(ui.key);
  } finally {
    ui.indexSubmit.disabled = false;
  }
}

/** A small live view of the job; the job page has the whole of it. */
async function followJob(job) {
  const bar = el('progress', { max: 1, value: 0, 'aria-label': 'Index job progress' });
  const line = el('span', { class: 'job-line' });
  const link = el('a', { href: `/jobs/${encodeURIComponent(job.id)}`, id: 'index-job-link', text: 'Follow the job →', title: `job ${job.id}` });
  ui.indexStatus.className = 'status info';
  ui.indexStatus.replaceChildren(line, bar, link);
  for (;;) {
    const p = job.progress ?? { done: 0, total: 0 };
    bar.max = Math.max(1, p.total);
    bar.value = p.done;
    line.textContent = `${job.state} · ${p.done.toLocaleString('en')} / ${p.total.toLocaleString('en')} images${job.errorCount ? ` · ${count(job.errorCount, 'error')}` : ''}`;
    if (job.state === 'completed' || job.state === 'failed') break;
    await sleep(500);
    try {
      job = await apiJson(`/v1/jobs/${encodeURIComponent(job.id)}`);
    } catch (err) {
      line.textContent = errorText(err);
      return;
    }
  }
  ui.indexStatus.className = `status ${job.state === 'completed' ? 'ok' : 'error'}`;
  if (job.state === 'failed') line.textContent = `failed: ${job.failedReason ?? 'see the job page'}`;
  else if (job.result && typeof job.result.added === 'number') line.textContent = `completed · ${count(job.result.added, 'item')} added, ${job.result.cacheSize.toLocaleString('en')} in the cache`;
  await loadCaches();
}

// --- helpers --------------------------------------------------------------------------

function showError(err) {
  ui.message.textContent = errorText(err);
  ui.message.hidden = false;
  if (err && err.isAuth) flagKeyField(ui.key);
}

function hideMessage() {
  ui.message.hidden = true;
  ui.message.textContent = '';
}

function remember(name) {
  try {
    localStorage.setItem(CACHE_STORAGE, name);
  } catch {
    /* storage disabled */
  }
}

function remembered() {
  try {
    return localStorage.getItem(CACHE_STORAGE);
  } catch {
    return null;
  }
}

function status(node, kind, text) {
  node.className = `status ${kind}`;
  node.textContent = text;
}

function count(n, noun) {
  return `${Number(n).toLocaleString('en')} ${noun}${n === 1 ? '' : 's'}`;
}

function basename(p) {
  return String(p).split(/[\\/]/).pop();
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
