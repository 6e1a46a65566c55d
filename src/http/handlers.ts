// Small pieces every route module uses: typed async handlers, path params, body parsing.
import type { NextFunction, Request, Response } from 'express';
import type { z } from 'zod';
import { describeZodError } from '../errors/zod.js';
import { UserError } from '../errors/user-error.js';

/** express 5 forwards rejected promises to the error handler; this keeps handlers typed. */
export function wrap(handler: (req: Request, res: Response) => Promise<void>) {
  return (req: Request, res: Response, next: NextFunction) => handler(req, res).catch(next);
}

export function param(req: Request, name: string): string {
  return String(req.params[name]);
}

export function requireObject(body: unknown): Record<string, unknown> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new UserError('invalid_body', 'send a JSON object with Content-Type: application/json');
  }
  return body as Record<string, unknown>;
}

/** The body (or query) as the schema reads it, or a 400 naming every problem. */
export function parse<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const r = schema.safeParse(body ?? {});
  if (!r.success) throw new UserError('invalid_request', describeZodError(r.error));
  return r.data;
}
