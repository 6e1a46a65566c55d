// Errors a user can cause. The API turns them into a 4xx JSON body
// `{ error: { code, message } }`; `code` is stable, `message` says what to fix.
export class UserError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

export const badRequest = (code: string, message: string, details?: unknown) =>
  new UserError(400, code, message, details);
export const notFound = (code: string, message: string) => new UserError(404, code, message);
export const conflict = (code: string, message: string) => new UserError(409, code, message);

/** Plain-object form that survives postMessage between threads. */
export interface SerialisedError {
  status?: number;
  code?: string;
  message: string;
  details?: unknown;
}

export function serialiseError(err: unknown): SerialisedError {
  if (err instanceof UserError) return { status: err.status, code: err.code, message: err.message, details: err.details };
  return { message: err instanceof Error ? err.message : String(err) };
}

export function deserialiseError(e: SerialisedError): Error {
  return e.status ? new UserError(e.status, e.code ?? 'error', e.message, e.details) : new Error(e.message);
}
