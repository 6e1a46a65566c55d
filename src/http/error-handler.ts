// The last middleware: every error becomes a JSON error response through the one writer
// (errors/respond.ts). Errors of express's body parsers and of multer get their codes here.
import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import multer from 'multer';
import { UserError } from '../errors/user-error.js';
import { sendError } from '../errors/respond.js';

export const notFoundRoute: RequestHandler = (req, _res, next) => {
  next(new UserError('unknown_route', `no route ${req.method} ${req.path}; GET /openapi.json lists them`));
};

interface HttpParserError extends Error {
  type?: string;
  status?: number;
  limit?: number;
}

export function errorHandler(log: (err: unknown, req?: Request) => void): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const e = toUserError(err);
    if (e) return sendError(res, e);
    log(err, req);
    // the request id (also in the X-Request-Id header) finds the details in the service's log
    const requestId = req.id === undefined ? undefined : String(req.id);
    const where = requestId ? ` under request id ${requestId}` : '';
    sendError(res, new UserError('internal', `internal error; the service logged the details${where}`), requestId);
  };
}

function toUserError(err: unknown): UserError | null {
  if (err instanceof UserError) return err;
  if (err instanceof multer.MulterError) {
    const tooBig = err.code === 'LIMIT_FILE_SIZE' || err.code === 'LIMIT_FILE_COUNT' || err.code === 'LIMIT_PART_COUNT';
    return new UserError(tooBig ? 'payload_too_large' : 'bad_multipart', `multipart upload: ${err.message}${err.field ? ` (field "${err.field}")` : ''}`);
  }
  const e = err as HttpParserError;
  if (e && typeof e === 'object') {
    if (e.type === 'entity.too.large') {
      return new UserError('payload_too_large', `the request body is over the ${e.limit} byte limit: send fewer or smaller images per request`);
    }
    if (e.type === 'entity.parse.failed') return new UserError('invalid_json', `the body is not valid JSON: ${e.message}`);
    if (e.status === 415) return new UserError('unsupported_encoding', e.message);
    if (e.status && e.status >= 400 && e.status < 500) return new UserError('bad_request', e.message);
  }
  return null;
}
