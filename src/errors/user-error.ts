// Errors a user can cause. Each has a code from the catalogue (which gives its HTTP status) and a
// message that says what to fix; the API sends them as `{ error: { code, message, details? } }`.
import { ERROR_CATALOGUE, isErrorCode, statusOf, type ErrorCode, type ErrorStatus } from './catalogue.js';

export interface UserErrorOptions {
  /** machine-readable particulars, sent as `details` */
  details?: unknown;
  /** response headers that go with it (Retry-After, WWW-Authenticate) */
  headers?: Record<string, string>;
}

export class UserError extends Error {
  readonly status: ErrorStatus;
  readonly details?: unknown;
  readonly headers?: Record<string, string>;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options: UserErrorOptions = {},
  ) {
    super(message);
    this.name = 'UserError';
    this.status = statusOf(code);
    this.details = options.details;
    this.headers = options.headers;
  }

  /** The same error, its message prefixed with where it happened (e.g. "image 3: "). */
  at(where: string): UserError {
    return new UserError(this.code, `${where}${this.message}`, { details: this.details, headers: this.headers });
  }
}

/** Plain-object form that survives postMessage between threads. */
export interface SerialisedError {
  code?: ErrorCode;
  message: string;
  details?: unknown;
  headers?: Record<string, string>;
}

export function serialiseError(err: unknown): SerialisedError {
  if (err instanceof UserError) return { code: err.code, message: err.message, details: err.details, headers: err.headers };
  return { message: err instanceof Error ? err.message : String(err) };
}

export function deserialiseError(e: SerialisedError): Error {
  return isErrorCode(e.code) ? new UserError(e.code, e.message, { details: e.details, headers: e.headers }) : new Error(e.message);
}

export { ERROR_CATALOGUE, type ErrorCode };
