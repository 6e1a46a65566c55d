// The web page: static files from the top-level public/ folder (plain HTML, CSS and JS
// modules, no build step). `/` is the predict page, `/jobs/:id` the page that follows a job.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { UserError } from '../errors/user-error.js';

/**
 * The public/ folder: walks up from this file (src/http/web.ts when run from source,
 * dist/src/http/web.js when compiled) to the first directory that holds both
 * package.json and public/index.html.
 */
export function findPublicDir(from = path.dirname(fileURLToPath(import.meta.url))): string | null {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'public', 'index.html'))) return path.join(dir, 'public');
    if (path.dirname(dir) === dir) return null;
  }
}

/** The pages load nothing from elsewhere; thumbnails and reports come in as blob: URLs. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "img-src 'self' blob: data:",
  "style-src 'self'",
  "script-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function webRoutes(publicDir: string | null = findPublicDir()): express.Router {
  const router = express.Router();
  if (!publicDir) {
    router.get(['/', '/jobs/:id'], (_req, _res, next) => {
      next(
        new UserError('web_page_missing', 'the web page was not installed with this service (no public/ folder beside package.json); the API under /v1 works'),
      );
    });
    return router;
  }
  const headers = (res: express.Response) => {
    res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
  };
  router.get('/jobs/:id', (_req, res, next) => {
    headers(res);
    res.sendFile(path.join(publicDir, 'job.html'), (err) => err && next(err));
  });
  router.use(express.static(publicDir, { index: 'index.html', redirect: false, setHeaders: headers }));
  return router;
}
