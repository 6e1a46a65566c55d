// The one writer of error JSON: `{ error: { code, message, details?, requestId? } }`, with the
// status from the catalogue and the error's headers. Every other module throws (or passes to
// express's next) a UserError.
import type { ServerResponse } from 'node:http';
import { UserError } from './user-error.js';

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown; requestId?: string };
}

export function errorBody(err: UserError, requestId?: string): ErrorBody {
  return {
    error: {
      code: err.code,
      message: err.message,
      ...(err.details !== undefined && { details: err.details }),
      ...(requestId !== undefined && { requestId }),
    },
  };
}

/** Sends `err` as the response (nothing is sent if headers already went out). */
export function sendError(res: ServerResponse, err: UserError, requestId?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const [name, value] of Object.entries(err.headers ?? {})) res.setHeader(name, value);
  const body = JSON.stringify(errorBody(err, requestId));
  res.statusCode = err.status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}
