// The shape of an entry of the route table (route-table.ts), and helpers to write one.
import { z } from 'zod';
import type { ErrorStatus } from '../errors/catalogue.js';

/** What an API key needs to call a route (admin ⊃ write ⊃ read); `public` needs no key. */
export type Role = 'public' | 'read' | 'write' | 'admin';
export type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
export interface MediaSpec {
  /** the body; null for one that has no schema (HTML, Prometheus text) */
  schema: z.ZodType | null;
  /** multipart/form-data: each field's content type */
  encoding?: Record<string, { contentType: string }>;
}

export interface ResponseSpec {
  description: string;
  /** by media type */
  content?: Record<string, MediaSpec>;
  headers?: Record<string, { description: string; schema: z.ZodType }>;
}

export interface RouteSpec {
  method: Method;
  /** express style: '/v1/caches/:name' */
  path: string;
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  role: Role;
  /** the path's parameters, by name (each `:param` of the path needs one) */
  params?: Record<string, { description: string; schema: z.ZodType }>;
  query?: z.ZodObject;
  /** the request body, by media type */
  body?: Record<string, MediaSpec>;
  responses: Record<number, ResponseSpec>;
  /** the error responses that apply, with this route's own description or the shared one (true);
   *  401 and 403 are added to every route that is not public, and 500 to every route. */
  errors?: Partial<Record<ErrorStatus, string | true>>;
}

// ---------------------------------------------------------------- the route table

export const json = (schema: z.ZodType): Record<string, MediaSpec> => ({ 'application/json': { schema } });
export const ok = (description: string, schema: z.ZodType): ResponseSpec => ({ description, content: json(schema) });
export const text = (mediaType: string, description: string): ResponseSpec => ({ description, content: { [mediaType]: { schema: z.string() } } });
