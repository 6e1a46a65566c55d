// Every error leaves as JSON: { error: { code, message, details? } }.
// `code` is stable for programs; `message` tells a person what to fix.
import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import multer from 'multer';
import { UserError } from '../errors/user-error.js';
import { RetryLaterError } from './limits.js';

export const notFoundRoute: RequestHandler = (req, res) => {
  res.status(404).json({ error: { code: 'unknown_route', message: `no route ${req.method} ${req.path}; see the README for the API` } });
};

interface HttpParserError extends Error {
  type?: string;
  status?: number;
  limit?: number;
}

export function errorHandler(log: (err: unknown, req?: Request) => void): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const e = toUserError(err);
    if (!e) {
      log(err, req);
      // the request id (also in the X-Request-Id header) finds the details in the service's log
      const requestId = req.id === undefined ? undefined : String(req.id);
      const where = requestId ? ` under request id ${requestId}` : '';
      res.status(500).json({ error: { code: 'internal', message: `internal error; the service logged the details${where}`, ...(requestId && { requestId }) } });
      return;
    }
    if (e instanceof RetryLaterError) res.set('Retry-After', String(e.retryAfter));
    res.status(e.status).json({ error: { code: e.code, message: e.message, ...(e.details === undefined ? {} : { details: e.details }) } });
  };
}

function toUserError(err: unknown): UserError | null {
  if (err instanceof UserError) return err;
  if (err instanceof multer.MulterError) {
    const tooBig = err.code === 'LIMIT_FILE_SIZE' || err.code === 'LIMIT_FILE_COUNT' || err.code === 'LIMIT_PART_COUNT';
    return new UserError(tooBig ? 413 : 400, tooBig ? 'payload_too_large' : 'bad_multipart', `multipart upload: ${err.message}${err.field ? ` (field "${err.field}")` : ''}`);
  }
  const e = err as HttpParserError;
  if (e && typeof e === 'object') {
    if (e.type === 'entity.too.large') {
      return new UserError(413, 'payload_too_large', `the request body is over the ${e.limit} byte limit: send fewer or smaller images per request`);
    }
    if (e.type === 'entity.parse.failed') return new UserError(400, 'invalid_json', `the body is not valid JSON: ${e.message}`);
    if (e.status && e.status >= 400 && e.status < 500) return new UserError(e.status, 'bad_request', e.message);
  }
  return null;
}
