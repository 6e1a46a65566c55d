// API keys: bearer tokens, each with a role. Roles are ordered admin ⊃ write ⊃ read.
//
// Keys come from CACHET_API_KEYS (`role:key[:name]`, separated by commas or newlines) and/or a
// file (`role key [name]` per line, `#` comments). Only sha256 digests of the keys are kept, and a
// token is compared with every configured key in constant time (no early exit), so neither the
// time of a reply nor its order says how much of a key was right.
//
// Everything under /v1/ needs a key; the rest (health, readiness, metrics, the OpenAPI document,
// the web page's static files) is public. Each route's role comes from the route table in
// openapi.ts; a /v1 route the table does not know needs `read`, so that an anonymous caller
// cannot tell a missing route (404) from a protected one (401).
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToRegexp } from 'path-to-regexp';
import type { Request, RequestHandler, Response } from 'express';
import { UserError } from '../errors/user-error.js';

export type Role = 'read' | 'write' | 'admin';
export const ROLES: readonly Role[] = ['read', 'write', 'admin'];
const RANK: Record<Role, number> = { read: 1, write: 2, admin: 3 };

/** Whether a key of role `has` may call a route that needs `needs`. */
export const roleAllows = (has: Role, needs: Role): boolean => RANK[has] >= RANK[needs];

export const MIN_KEY_LENGTH = 16;

/**
 * A route and the role it needs (null: public), as openapi.ts's `routeRoles` gives them: the
 * route table there is the one place that says which role each route needs.
 */
export interface RouteRole {
  method: string;
  /** express style: '/v1/caches/:name' */
  path: string;
  role: Role | null;
}

export interface ApiKeyEntry {
  role: Role;
  key: string;
  /** for logs and messages; never the key */
  name: string;
}

export interface Principal {
  role: Role;
  name: string;
}

const badKeys = (message: string) => new UserError('bad_api_keys', message);

function entry(role: string, key: string, name: string | undefined, where: string, fallbackName: string): ApiKeyEntry {
  if (!(ROLES as readonly string[]).includes(role)) throw badKeys(`${where}: role "${role}" is not one of ${ROLES.join(', ')}`);
  if (!key) throw badKeys(`${where}: no key after the role`);
  if (key.length < MIN_KEY_LENGTH) {
    throw badKeys(
      `${where}: the ${role} key is ${key.length} characters long; a key needs at least ${MIN_KEY_LENGTH} (make one with \`openssl rand -hex 24\`)`,
    );
  }
  return { role: role as Role, key, name: name || fallbackName };
}

/** CACHET_API_KEYS: `role:key` or `role:key:name`, separated by commas or newlines. */
export function parseApiKeysEnv(text: string, source = 'CACHET_API_KEYS'): ApiKeyEntry[] {
  const out: ApiKeyEntry[] = [];
  text
    .split(/[,\n\r]+/)
    .map((s) => s.trim())
    .filter(Boolean)
    .forEach((item, i) => {
      const [role, key, ...rest] = item.split(':');
      const where = `${source} entry ${i + 1}`;
      if (key === undefined) throw badKeys(`${where}: write it as role:key or role:key:name (role read, write or admin)`);
      if (rest.length > 1) throw badKeys(`${where}: too many ":" (write role:key or role:key:name; a key cannot contain ":" or ",")`);
      out.push(entry(role.trim(), key.trim(), rest[0]?.trim(), where, `${source}#${i + 1}`));
    });
  return out;
}

/** A keys file: `role key [name]` per line; blank lines and lines starting with `#` are skipped. */
export function parseApiKeysFile(text: string, file: string): ApiKeyEntry[] {
  const out: ApiKeyEntry[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const [role, key, ...name] = line.split(/\s+/);
    const where = `${file} line ${i + 1}`;
    if (key === undefined) throw badKeys(`${where}: write "role key [name]" (role read, write or admin)`);
    out.push(entry(role, key, name.join(' '), where, `${file}:${i + 1}`));
  });
  return out;
}

/** Read the keys of CACHET_API_KEYS-style text and/or a keys file. */
export function loadApiKeys(opts: { keys?: string; keysFile?: string }): ApiKeyEntry[] {
  const entries: ApiKeyEntry[] = [];
  if (opts.keys) entries.push(...parseApiKeysEnv(opts.keys));
  if (opts.keysFile) {
    let text: string;
    try {
      text = readFileSync(opts.keysFile, 'utf8');
    } catch (err) {
      throw badKeys(`cannot read the API keys file ${opts.keysFile}: ${(err as Error).message}`);
    }
    const fromFile = parseApiKeysFile(text, opts.keysFile);
    if (fromFile.length === 0) throw badKeys(`the API keys file ${opts.keysFile} holds no key: write "role key [name]" per line`);
    entries.push(...fromFile);
  }
  return entries;
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Matches a presented token against every configured key in constant time. */
export class KeyMatcher {
  private readonly keys: { digest: Buffer; principal: Principal }[];

  constructor(entries: ApiKeyEntry[]) {
    this.keys = [];
    for (const e of entries) {
      const d = digest(e.key);
      if (this.keys.some((k) => timingSafeEqual(k.digest, d)))
        throw badKeys(`the API key named "${e.name}" is listed twice: give every key once, with one role`);
      this.keys.push({ digest: d, principal: { role: e.role, name: e.name } });
    }
  }

  get size(): number {
    return this.keys.length;
  }

  /** The key's role and name, or null. Both sides are hashed (equal lengths), and every key is compared. */
  match(token: string): Principal | null {
    const d = digest(token);
    let found: Principal | null = null;
    for (const k of this.keys) {
      const equal = timingSafeEqual(d, k.digest);
      if (equal && found === null) found = k.principal;
    }
    return found;
  }
}

// Route patterns ----------------------------------------------------------------------------------

export interface CompiledRoute<R extends RouteRole = RouteRole> {
  route: R;
  method: string;
  regex: RegExp;
}

/**
 * An express pattern as a regex, by express's own path-to-regexp with express's defaults:
 * case-insensitive, one trailing slash allowed.
 */
export function patternToRegex(pattern: string): RegExp {
  return pathToRegexp(pattern, { sensitive: false, trailing: true, end: true }).regexp;
}

export function compileRoutes<R extends RouteRole>(routes: readonly R[]): CompiledRoute<R>[] {
  return routes.map((route) => ({ route, method: route.method.toUpperCase(), regex: patternToRegex(route.path) }));
}

/** The route a request would match (HEAD matches GET routes), or null. */
export function findRoute<R extends RouteRole>(compiled: readonly CompiledRoute<R>[], method: string, path: string): R | null {
  const m = method.toUpperCase();
  for (const c of compiled) {
    if ((c.method === m || (m === 'HEAD' && c.method === 'GET')) && c.regex.test(path)) return c.route;
  }
  return null;
}

/** Whether a path is the API's (needs a key): /v1 and below, in any letter case. */
export const isApiPath = (path: string): boolean => /^\/+v1(\/|$)/i.test(path);

// The middleware -----------------------------------------------------------------------------------

/** 401s carry WWW-Authenticate (RFC 6750), with error="invalid_token" for a key that is not known. */
function deny(code: 'unauthorized' | 'invalid_api_key' | 'forbidden', message: string): UserError {
  if (code === 'forbidden') return new UserError(code, message);
  const challenge = code === 'invalid_api_key' ? 'Bearer realm="cachet", error="invalid_token"' : 'Bearer realm="cachet"';
  return new UserError(code, message, { headers: { 'WWW-Authenticate': challenge } });
}

declare module 'http' {
  interface IncomingMessage {
    /** the API key a request came with (set by authenticate()) */
    principal?: Principal;
  }
}

/**
 * Requires an API key of a sufficient role on every /v1 route (see the module comment).
 * `routes` gives each route's role; a /v1 route not in it (or public in it) needs `read`.
 */
export function authenticate(keys: KeyMatcher, routes: readonly RouteRole[]): RequestHandler {
  const compiled = compileRoutes(routes.filter((r) => r.role));
  return (req: Request, _res: Response, next) => {
    if (!isApiPath(req.path)) return next();
    const route = findRoute(compiled, req.method, req.path);
    const needs: Role = route?.role ?? 'read';
    const what = route ? `${route.method.toUpperCase()} ${route.path}` : `${req.method} ${req.path}`;
    const header = req.get('authorization');
    const bearer = header === undefined ? null : /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(header);
    if (!bearer) {
      return next(
        deny(
          'unauthorized',
          `${what} needs an API key: send the header "Authorization: Bearer <key>"${header === undefined ? '' : ' (the Authorization header given is not of that form)'}`,
        ),
      );
    }
    const principal = keys.match(bearer[1]);
    if (!principal) return next(deny('invalid_api_key', 'the API key is not valid: send a configured key as "Authorization: Bearer <key>"'));
    req.principal = principal;
    if (req.log) req.log = req.log.child({ apiKey: principal.name });
    if (!roleAllows(principal.role, needs)) {
      return next(
        deny('forbidden', `${what} needs role "${needs}"${needs === 'admin' ? '' : ' or higher'}; this key ("${principal.name}") has role "${principal.role}"`),
      );
    }
    next();
  };
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || /^::ffff:127(\.\d{1,3}){3}$/.test(h);
}
