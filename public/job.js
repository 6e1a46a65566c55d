// The job page: follows GET /v1/jobs/:id every 500 ms until the job ends, then shows its
// result and its reports (the SVG inline for eval and tune jobs).
import { apiFetch, apiJson, el, errorText, flagKeyField, percent, setupKeyField } from './api.js';

const POLL_MS = 500;
const $ = (id) => document.getElementById(id);
const keyInput = $('api-key');
let timer = null;
let generation = 0;
/** when and at what progress this page first saw the job running */
let firstSeen = null;

const id = jobIdFromUrl();
setupKeyField(keyInput, () => id && follow(id));
$('lookup').addEventListener('submit', (e) => {
  e.preventDefault();
  const v = $('job-id').value.trim();
  if (v) location.href = `/jobs/${encodeURIComponent(v)}`;
});
if (id) follow(id);
else showLookup('');

function showLookup(value) {
  $('lookup').hidden = false;
  $('job-id').value = value;
}

function jobIdFromUrl() {
  const m = /^\/jobs\/([^/]+)\/?$/.exec(location.pathname);
  if (m) return decodeURIComponent(m[1]);
  return new URLSearchParams(location.search).get('id');
}

function follow(jobId) {
  clearTimeout(timer);
  const gen = ++generation;
  document.title = `Cachet — job ${jobId}`;
  $('job').hidden = false;
  $('job-title').textContent = `Job ${jobId}`;
  const tick = async () => {
    let job;
    try {
      job = await apiJson(`/v1/jobs/${encodeURIComponent(jobId)}`);
    } catch (err) {
      if (gen !== generation) return;
      showMessage(errorText(err));
      if (err.isAuth) flagKeyField(keyInput);
      // a job that does not exist will not appear; anything else may pass
      if (err.status !== 404 && !err.isAuth) timer = setTimeout(tick, POLL_MS * 4);
      if (err.status === 404) {
        $('job').hidden = true;
        showLookup(jobId);
      }
      return;
    }
    if (gen !== generation) return;
    hideMessage();
    show(job);
    if (job.state === 'completed' || job.state === 'failed') void finished(job, gen);
    else timer = setTimeout(tick, POLL_MS);
  };
  void tick();
}

function show(job) {
  const section = $('job');
  section.dataset.state = job.state;
  const badge = $('job-state');
  badge.textContent = job.state;
  badge.className = `badge ${job.state}`;
  $('job-title').textContent = `${job.type[0].toUpperCase()}${job.type.slice(1)} job`;
  $('job-sub').replaceChildren('on cache ', el('a', { href: `/?cache=${encodeURIComponent(job.cache)}`, text: job.cache }), ' · id ', el('code', { text: job.id }));
  const { done, total } = job.progress ?? { done: 0, total: 0 };
  const pct = total > 0 ? (100 * done) / total : job.state === 'completed' ? 100 : 0;
  const bar = $('progress');
  bar.setAttribute('aria-valuenow', pct.toFixed(0));
  bar.setAttribute('aria-valuetext', `${done} of ${total} images`);
  bar.querySelector('.progress-fill').style.setProperty('--w', `${pct}%`);
  $('progress-count').textContent = `${done.toLocaleString('en')} / ${total.toLocaleString('en')}`;
  $('progress-pct').textContent = `images · ${pct.toFixed(0)} %${job.state === 'active' ? pace(done, total) : ''}`;
  $('error-count').textContent = String(job.errorCount ?? job.errors?.length ?? 0);
  $('error-count').classList.toggle('error-text', (job.errorCount ?? 0) > 0);
  $('created').textContent = when(job.createdAt);
  $('started').textContent = when(job.startedAt);
  $('finished').textContent = job.finishedAt ? `${when(job.finishedAt)}${job.startedAt ? ` (${seconds(job.startedAt, job.finishedAt)})` : ''}` : '—';
  const errors = job.errors ?? [];
  $('errors').hidden = errors.length === 0;
  $('error-list').replaceChildren(...errors.slice(0, 200).map((e) => el('li', {}, el('code', { text: e.id }), ` ${e.error}`)));
  if ((job.errorCount ?? 0) > errors.slice(0, 200).length) $('error-list').append(el('li', { class: 'muted', text: `… and ${job.errorCount - Math.min(200, errors.length)} more` }));
  const reason = $('failed-reason');
  reason.hidden = job.state !== 'failed';
  reason.textContent = job.state === 'failed' ? `The job failed: ${job.failedReason ?? 'no reason given'}` : '';
}

async function finished(job, gen) {
  if (job.state !== 'completed') return;
  $('result').hidden = false;
  $('result-summary').replaceChildren(summary(job));
  const base = `/v1/jobs/${encodeURIComponent(job.id)}/report`;
  let svg = null;
  let md = null;
  if (job.type !== 'index') {
    [svg, md] = await Promise.all([apiFetch(`${base}?format=svg`), apiFetch(`${base}?format=md`)]).catch(() => [null, null]);
    if (gen !== generation) return;
  }
  // an index job reports as JSON only; an eval job without cacheSizes has no chart
  const formats = job.type === 'index' ? ['json'] : [...(md?.ok ? ['md'] : []), ...(svg?.ok ? ['svg'] : []), 'json'];
  const links = $('report-links');
  links.replaceChildren();
  for (const f of formats) {
    const a = el('a', { href: `${base}?format=${f}`, text: { md: 'Markdown', svg: 'SVG', json: 'JSON' }[f], target: '_blank', rel: 'noopener', 'data-format': f });
    // with an API key, a plain link cannot authenticate: fetch with the key and open the bytes
    a.addEventListener('click', async (e) => {
      if (!keyInput.value.trim()) return;
      e.preventDefault();
      const res = await apiFetch(a.href);
      if (!res.ok) return void showMessage(`The report could not be fetched (${res.status}).`);
      window.open(URL.createObjectURL(await res.blob()), '_blank', 'noopener');
    });
    if (links.childElementCount) links.append(' · ');
    links.append(a);
  }
  if (svg?.ok) {
    $('svg-img').src = URL.createObjectURL(await svg.blob());
    const [alt, caption] = CHARTS[job.type] ?? CHARTS.eval;
    $('svg-img').alt = alt;
    $('svg-caption').textContent = caption;
    $('svg-report').hidden = false;
  }
  if (md?.ok) {
    $('md-text').textContent = await md.text();
    $('md-report').hidden = false;
  }
}

/** Each job type's chart: its alternative text and its caption. */
const CHARTS = {
  tune: ['Heatmap of top-1 accuracy over the θ × λ grid', 'Top-1 accuracy over θ × λ; the chosen point is marked.'],
  eval: ['Top-1 error against cache size', 'Top-1 error against the size of the cache.'],
  layers: ['Validation error of each candidate key', 'The cache model’s validation error with each candidate layer and concatenation.'],
  robustness: [
    'Top-1 error against corruption severity and attack radius',
    'Top-1 error of the model alone, the cache model and the cache alone against each corruption’s severity (0 = clean) and each attack’s ε.',
  ],
};

function summary(job) {
  const r = job.result ?? {};
  const rows = [];
  if (job.type === 'index') {
    rows.push(['Images', r.images], ['Items added', r.added], ['Already cached', r.duplicates], ['Failed', r.failed], ['Cache size now', r.cacheSize]);
  } else if (job.type === 'eval' && r.error) {
    rows.push(['Images', r.images], ['θ, λ', `${r.theta}, ${r.lambda}`], ['Cache size', r.cacheSize]);
    rows.push(['Top-1 error, model', percent(r.error.model)], ['Top-1 error, cache model', percent(r.error.cacheModel)], ['Top-1 error, cache alone', percent(r.error.cacheOnly)]);
  } else if (job.type === 'robustness' && r.clean) {
    rows.push(['Images', r.images], ['θ, λ', `${r.theta}, ${r.lambda}`], ['Cache size', r.cacheSize]);
    rows.push(['Top-1 error, clean (model / cache model / cache alone)', errors(r.clean)]);
    for (const a of r.attacks) rows.push([`${a.name.replace(/_/g, ' ')} attack, ε ${+(a.epsilon * 255).toFixed(2)}/255`, errors(a.error)]);
  } else if (job.type === 'tune' && r.best) {
    rows.push(['Images', r.images], ['Best θ, λ', `${r.best.theta}, ${r.best.lambda}`], ['Top-1 accuracy there', percent(r.best.accuracy)], ['Model alone', percent(r.model.accuracy)], ['Stored in the cache', r.applied ? 'yes' : 'no (dry run)']);
  }
  if (!rows.length) return el('pre', { text: JSON.stringify(r, null, 2) });
  return el('dl', { class: 'facts wide' }, rows.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: typeof v === 'number' ? v.toLocaleString('en') : String(v) })]));
}

function errors(e) {
  return [e.model, e.cacheModel, e.cacheOnly].map(percent).join(' / ');
}

function showMessage(text) {
  $('message').textContent = text;
  $('message').hidden = false;
}

function hideMessage() {
  $('message').hidden = true;
}

function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** " · 120 images/s · about 40 s left", measured on this page's clock since it first saw the job */
function pace(done, total) {
  const now = performance.now();
  if (!firstSeen || done < firstSeen.done) firstSeen = { t: now, done };
  const elapsed = (now - firstSeen.t) / 1000;
  if (elapsed < 1.5 || done === firstSeen.done) return '';
  const rate = (done - firstSeen.done) / elapsed;
  const left = (total - done) / rate;
  const eta = left < 60 ? `${Math.max(1, Math.round(left))} s` : `${Math.round(left / 60)} min`;
  return ` · ${rate >= 10 ? Math.round(rate) : rate.toFixed(1)} images/s · about ${eta} left`;
}

function seconds(a, b) {
  const s = (new Date(b).getTime() - new Date(a).getTime()) / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}
