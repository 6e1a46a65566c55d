// Shared by the pages: calls to the Cachet API with the API key, errors, formatting.
const KEY_STORAGE = 'cachet.apiKey';

export function getApiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return '';
  }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: the key lives as long as the page */
  }
}

/** An error answered by the API ({error: {code, message}}) or a failed request. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  get isAuth() {
    return this.status === 401 || this.status === 403;
  }
}

/** fetch() with the API key as a bearer token (an <img src> or a plain link cannot send it). */
export async function apiFetch(path, init = {}) {
  const headers = new Headers(init.headers ?? {});
  const key = getApiKey();
  if (key) headers.set('Authorization', `Bearer ${key}`);
  try {
    return await fetch(path, { ...init, headers });
  } catch (err) {
    throw new ApiError(0, 'network', `could not reach the service (${err instanceof Error ? err.message : err}): is it running?`);
  }
}

/** The JSON body of a successful call; an ApiError with the API's message otherwise. */
export async function apiJson(path, init = {}) {
  const res = await apiFetch(path, init);
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: a proxy's error page, say */
  }
  if (!res.ok) {
    const e = body && body.error;
    if (e && typeof e.message === 'string') throw new ApiError(res.status, e.code ?? 'error', e.message);
    throw new ApiError(res.status, 'http_error', `the service answered ${res.status} ${res.statusText}`.trim());
  }
  return body;
}

/** What to tell a person about an error; 401 and 403 point at the API key field. */
export function errorText(err) {
  if (err instanceof ApiError) {
    if (err.status === 401) return `This service needs a valid API key: enter it in the “API key” field at the top of the page. (401: ${err.message})`;
    if (err.status === 403) return `This API key may not do that: use a key with more rights in the “API key” field at the top of the page. (403: ${err.message})`;
    return err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

/** Wires the API key field of a page: shows the stored key, stores what is typed. */
export function setupKeyField(input, onChange = () => {}) {
  input.value = getApiKey();
  input.addEventListener('change', () => {
    setApiKey(input.value.trim());
    input.classList.remove('attention');
    onChange();
  });
}

/** Draws the eye to the key field after a 401/403. */
export function flagKeyField(input) {
  input.classList.add('attention');
  input.focus({ preventScroll: false });
}

/** A probability as a percentage with one decimal; "< 0.1 %" and "> 99.9 %" rather than a misleading 0.0 % or 100.0 %. */
export function percent(p) {
  if (p > 0 && p < 0.0005) return '< 0.1 %';
  if (p < 1 && p >= 0.9995) return '> 99.9 %';
  return `${(p * 100).toFixed(1)} %`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role' || k === 'for') node.setAttribute(k, v === true ? '' : String(v));
    else node[k] = v;
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}
