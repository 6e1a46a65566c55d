// The OpenAPI 3.1 document of the HTTP API (GET /openapi.json), generated from the route
// table below and the zod schemas that validate the requests (schemas.ts, the cache
// definition, the job sources). OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what
// zod's z.toJSONSchema writes: request schemas as their input type (defaults optional,
// coerced query values as numbers), response schemas as their output type.
// test/openapi.test.ts checks that every express route is in the table (and the reverse),
// and that the bodies the service sends validate against this document.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { CacheDefinitionSchema } from '../cache/definition.js';
import { SourceSchema } from '../sources/sources.js';
import { DeleteItemsSchema } from './items.js';
import { LayerJobSchema } from './layers-route.js';
import * as S from './schemas.js';

/** What an API key needs to call a route (admin ⊃ write ⊃ read); `public` needs no key. */
export type Role = 'public' | 'read' | 'write' | 'admin';
export type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
/** The error responses every route shares the shape of: `{error: {code, message, details?}}`. */
export type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 429 | 500;

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

const json = (schema: z.ZodType): Record<string, MediaSpec> => ({ 'application/json': { schema } });
const ok = (description: string, schema: z.ZodType): ResponseSpec => ({ description, content: json(schema) });
const text = (mediaType: string, description: string): ResponseSpec => ({ description, content: { [mediaType]: { schema: z.string() } } });

const cacheName = { name: { description: 'the cache', schema: z.string().min(1) } };
const jobId = { id: { description: 'the job id, as its submission returned it', schema: z.string().min(1) } };
const itemId = {
  ...cacheName,
  id: { description: "an item's id as its index job gave it (a folder source's are `class/file`; URL-encode `/` as %2F)", schema: z.string().min(1) },
};
const location = { Location: { description: 'the job: GET it for progress and result', schema: z.string() } };
const accepted: ResponseSpec = { description: 'the job, waiting; GET the Location to follow it', content: json(S.JobViewDocSchema), headers: location };
const retryAfter = { 'Retry-After': { description: 'seconds to wait before trying again', schema: z.string() } };
const jobErrors = {
  400: 'the body or its source does not validate (invalid_request, invalid_json, bad_source, missing_label, label_out_of_range, bad_image)',
  404: 'no such cache (unknown_cache)',
  413: true,
  429: 'the cache already has as many unfinished jobs as it takes (too_many_jobs; Retry-After)',
} as const;

export const routes: RouteSpec[] = [
  {
    method: 'GET',
    path: '/healthz',
    operationId: 'health',
    summary: 'Liveness: the process answers',
    tags: ['operations'],
    role: 'public',
    responses: { 200: ok('alive', S.HealthSchema) },
  },
  {
    method: 'GET',
    path: '/readyz',
    operationId: 'ready',
    summary: 'Readiness: caches loaded, and how far each one is behind its key log',
    tags: ['operations'],
    role: 'public',
    responses: {
      200: ok('ready to serve', S.ReadySchema),
      503: ok('starting (caches loading) or stopping', S.NotReadySchema),
    },
  },
  {
    method: 'GET',
    path: '/metrics',
    operationId: 'metrics',
    summary: 'Prometheus metrics of this process',
    tags: ['operations'],
    role: 'public',
    responses: { 200: text('text/plain', 'Prometheus text exposition format (version 0.0.4)') },
  },
  {
    method: 'GET',
    path: '/openapi.json',
    operationId: 'openapi',
    summary: 'This document',
    tags: ['operations'],
    role: 'public',
    responses: { 200: ok('the OpenAPI 3.1 document of the API', z.object({ openapi: z.string() }).loose()) },
  },
  {
    method: 'GET',
    path: '/',
    operationId: 'webPage',
    summary: 'The web page: predict with an image, browse caches (its scripts, styles and images are static files beside it)',
    tags: ['web'],
    role: 'public',
    responses: { 200: text('text/html', 'the page'), 404: ok('the web page was not installed with this service', S.ErrorBodySchema) },
  },
  {
    method: 'GET',
    path: '/jobs/:id',
    operationId: 'webJobPage',
    summary: 'The web page that follows a job',
    tags: ['web'],
    role: 'public',
    params: jobId,
    responses: { 200: text('text/html', 'the page (it reads the job with GET /v1/jobs/{id})'), 404: ok('the web page was not installed with this service', S.ErrorBodySchema) },
  },
  {
    method: 'POST',
    path: '/v1/caches',
    operationId: 'createCache',
    summary: 'Create a cache',
    description: 'A model, its key layers, θ and λ, and how to index. The model is read by path, as the service sees it.',
    tags: ['caches'],
    role: 'admin',
    body: json(CacheDefinitionSchema),
    responses: { 201: ok('created, empty', S.CacheInfoSchema) },
    errors: { 400: 'the definition does not validate, or the model or its key layers are not usable', 409: 'a cache of that name exists (cache_exists)', 413: true },
  },
  {
    method: 'GET',
    path: '/v1/caches',
    operationId: 'listCaches',
    summary: 'Every cache, loaded or failed',
    tags: ['caches'],
    role: 'read',
    responses: { 200: ok('the caches, by name', S.CacheListSchema) },
  },
  {
    method: 'GET',
    path: '/v1/caches/:name',
    operationId: 'getCache',
    summary: 'A cache: size, dimension, θ, λ, index type and parameters, log and snapshot positions',
    tags: ['caches'],
    role: 'read',
    params: cacheName,
    responses: { 200: ok('the cache', S.CacheInfoSchema) },
    errors: { 404: 'no such cache (unknown_cache)', 409: 'the cache could not be loaded (cache_unavailable)' },
  },
  {
    method: 'PATCH',
    path: '/v1/caches/:name',
    operationId: 'updateCache',
    summary: 'Change what changes without re-indexing: θ, λ, k, efSearch',
    tags: ['caches'],
    role: 'admin',
    params: cacheName,
    body: json(S.UpdateCacheSchema),
    responses: { 200: ok('the cache as changed', S.CacheInfoSchema) },
    errors: { 400: true, 404: 'no such cache (unknown_cache)', 413: true },
  },
  {
    method: 'DELETE',
    path: '/v1/caches/:name',
    operationId: 'deleteCache',
    summary: 'Delete a cache: its definition, key log and snapshots',
    tags: ['caches'],
    role: 'admin',
    params: cacheName,
    responses: { 200: ok('deleted', S.DeleteCacheResponseSchema) },
    errors: { 404: 'no such cache (unknown_cache)' },
  },
  {
    method: 'POST',
    path: '/v1/caches/:name/delete-items',
    operationId: 'deleteItems',
    summary: 'Delete items by id',
    tags: ['items'],
    role: 'write',
    params: cacheName,
    body: json(DeleteItemsSchema),
    responses: { 200: ok('what was deleted, and the ids the cache did not hold', S.DeleteItemsResponseSchema) },
    errors: { 400: true, 404: 'no such cache (unknown_cache)', 413: true },
  },
  {
    method: 'DELETE',
    path: '/v1/caches/:name/items/:id',
    operationId: 'deleteItem',
    summary: 'Delete one item',
    tags: ['items'],
    role: 'write',
    params: itemId,
    responses: { 200: ok('deleted', S.DeleteItemResponseSchema) },
    errors: { 404: 'no such cache (unknown_cache) or item (unknown_item)' },
  },
  {
    method: 'GET',
    path: '/v1/caches/:name/items/:id/image',
    operationId: 'itemImage',
    summary: "A thumbnail of an item's image (PNG, at most 128 px a side), read from where it was indexed from",
    tags: ['items'],
    role: 'read',
    params: itemId,
    responses: { 200: { description: 'the thumbnail', content: { 'image/png': { schema: z.file().mime('image/png') } } } },
    errors: { 404: 'no such cache or item, or no image to read: inline items keep none (unknown_item, no_image, image_unavailable)' },
  },
  {
    method: 'POST',
    path: '/v1/caches/:name/index-jobs',
    operationId: 'submitIndexJob',
    summary: "Add a source's labelled images to the cache",
    description: 'Ids are idempotent: an item already in the cache is skipped. The result counts images, added, duplicates and failures.',
    tags: ['jobs'],
    role: 'write',
    params: cacheName,
    body: json(S.IndexJobSchema),
    responses: { 202: accepted },
    errors: jobErrors,
  },
  {
    method: 'POST',
    path: '/v1/caches/:name/eval-jobs',
    operationId: 'submitEvalJob',
    summary: 'Top-1 and top-5 error of the model, the cache model and the cache alone on labelled images',
    tags: ['jobs'],
    role: 'write',
    params: cacheName,
    body: json(S.EvalJobSchema),
    responses: { 202: accepted },
    errors: { ...jobErrors, 404: 'no such cache, or no compareWith cache (unknown_cache)' },
  },
  {
    method: 'POST',
    path: '/v1/caches/:name/tune-jobs',
    operationId: 'submitTuneJob',
    summary: 'Choose θ and λ on labelled validation images (a grid search); stores them unless dryRun',
    tags: ['jobs'],
    role: 'admin',
    params: cacheName,
    body: json(S.TuneJobSchema),
    responses: { 202: accepted },
    errors: { ...jobErrors, 409: 'the cache holds no items yet (empty_cache)' },
  },
  {
    method: 'POST',
    path: '/v1/layer-jobs',
    operationId: 'submitLayerJob',
    summary: 'The layer advisor: which inner layers of a model make the best cache key, scored on labelled train and val images',
    description: 'Belongs to no cache (the job view\'s `cache` is ""). The model, the sources, the candidate layers and the memory the job needs are checked at submission.',
    tags: ['jobs'],
    role: 'write',
    body: json(LayerJobSchema),
    responses: { 202: accepted },
    errors: {
      400: 'the body, the model, a source or a candidate layer is not usable, or the job needs more memory than allowed (invalid_request, bad_model, bad_source, unknown_layer, too_much_memory, …)',
      413: true,
      429: 'as many layers jobs wait or run as the service takes at once (too_many_jobs; Retry-After)',
    },
  },
  {
    method: 'GET',
    path: '/v1/jobs/:id',
    operationId: 'getJob',
    summary: "A job: state, progress, per-item errors and, once completed, its result",
    tags: ['jobs'],
    role: 'read',
    params: jobId,
    responses: { 200: ok('the job', S.JobViewDocSchema) },
    errors: { 404: 'no such job (unknown_job); embedded mode forgets jobs when the service restarts' },
  },
  {
    method: 'GET',
    path: '/v1/jobs/:id/report',
    operationId: 'getJobReport',
    summary: "A finished job's report: its result (json), a Markdown report (md: eval, tune, layers), or a chart as SVG or PNG (tune heatmap, eval error against cache size, layers ranking)",
    tags: ['jobs'],
    role: 'read',
    params: jobId,
    query: S.ReportQuerySchema,
    responses: {
      200: {
        description: 'the report, in the format asked for',
        content: {
          'application/json': { schema: S.JobResultSchema },
          'text/markdown': { schema: z.string() },
          'image/svg+xml': { schema: z.string() },
          'image/png': { schema: z.file().mime('image/png') },
        },
      },
    },
    errors: {
      400: 'no such format, or no such report for this job (invalid_request, no_such_report)',
      404: 'no such job (unknown_job)',
      409: 'the job has not completed (job_not_finished)',
    },
  },
  {
    method: 'POST',
    path: '/v1/caches/:name/predict',
    operationId: 'predict',
    summary: 'Classify images with the cache model; with `neighbours`, the nearest cached items that explain it',
    description:
      'Images come as a multipart upload (any file field; one or more files) or as JSON `{image}` / `{images: [...]}` (base64). ' +
      'The options `topK`, `neighbours`, `theta`, `lambda` come as JSON fields, form fields or query parameters.',
    tags: ['predict'],
    role: 'read',
    params: cacheName,
    query: S.PredictOptionsSchema,
    body: {
      'application/json': { schema: S.PredictJsonSchema },
      'multipart/form-data': { schema: S.PredictMultipartSchema, encoding: { image: { contentType: 'image/jpeg, image/png, image/webp' } } },
    },
    responses: { 200: ok('one prediction per image, in order', S.PredictResponseSchema) },
    errors: {
      400: 'no image, both image and images, options out of range, or an image that does not decode (missing_images, invalid_request, bad_image, bad_multipart)',
      404: 'no such cache (unknown_cache)',
      413: 'a body or file over the byte limit (payload_too_large), too many images (too_many_images), or an image over the pixel limit (image_too_large)',
      429: 'this process serves as many predict requests as it takes at once (busy; Retry-After)',
    },
  },
];

/** The table as the API-key middleware takes it (auth.ts RouteRole): public routes need no role. */
export const routeRoles: { method: Method; path: string; role: Exclude<Role, 'public'> | null }[] = routes.map((r) => ({
  method: r.method,
  path: r.path,
  role: r.role === 'public' ? null : r.role,
}));

// ---------------------------------------------------------------- components

/** Named request schemas (JSON Schema of the input type). */
const requestComponents: Record<string, z.ZodType> = {
  CacheDefinition: CacheDefinitionSchema,
  CacheUpdate: S.UpdateCacheSchema,
  Source: SourceSchema,
  IndexJobRequest: S.IndexJobSchema,
  EvalJobRequest: S.EvalJobSchema,
  TuneJobRequest: S.TuneJobSchema,
  PredictRequest: S.PredictJsonSchema,
  PredictUpload: S.PredictMultipartSchema,
  DeleteItemsRequest: DeleteItemsSchema,
  LayerJobRequest: LayerJobSchema,
};

/** Named response schemas (JSON Schema of the output type). */
const responseComponents: Record<string, z.ZodType> = {
  Error: S.ErrorBodySchema,
  Health: S.HealthSchema,
  Ready: S.ReadySchema,
  NotReady: S.NotReadySchema,
  LogStatus: S.LogStatusSchema,
  CacheInfo: S.CacheInfoSchema,
  CacheStatus: S.CacheStatusSchema,
  CacheList: S.CacheListSchema,
  JobView: S.JobViewDocSchema,
  JobResult: S.JobResultSchema,
  IndexJobResult: S.IndexJobResultSchema,
  EvalJobResult: S.EvalJobResultSchema,
  TuneResult: S.TuneResultSchema,
  LayerAdvice: S.LayerAdviceSchema,
  Prediction: S.PredictionSchema,
  PredictResponse: S.PredictResponseSchema,
  DeletedCache: S.DeleteCacheResponseSchema,
  DeletedItems: S.DeleteItemsResponseSchema,
  DeletedItem: S.DeleteItemResponseSchema,
};

const STANDARD_ERRORS: Record<ErrorStatus, { name: string; description: string }> = {
  400: { name: 'BadRequest', description: 'the request does not validate (invalid_request, invalid_json, invalid_body, …): the message says what to fix' },
  401: { name: 'Unauthorized', description: 'no API key, or not a valid one (unauthorized, invalid_api_key); only when the service is configured with API keys' },
  403: {
    name: 'Forbidden',
    description:
      "the API key's role is below the one the operation needs (x-cachet-role) (forbidden); or a file the request names is outside the service's read roots (path_not_allowed)",
  },
  404: { name: 'NotFound', description: 'no such cache, job or item' },
  409: { name: 'Conflict', description: 'the request conflicts with the state of a cache or job' },
  413: { name: 'PayloadTooLarge', description: 'the body is over the byte limit (payload_too_large; 16 MiB by default)' },
  429: { name: 'TooManyRequests', description: 'over a limit of this service; try again after Retry-After seconds' },
  500: { name: 'InternalError', description: 'a fault of the service (internal); it logged the details' },
};

const ref = (id: string) => `#/components/schemas/${id}`;

type Json = Record<string, unknown>;

/** JSON Schema options: NaN (a measure over nothing) is written by JSON.stringify as null. */
function conversion(io: 'input' | 'output') {
  return {
    target: 'draft-2020-12' as const,
    io,
    unrepresentable: (ctx: { zodSchema: z.core.$ZodTypes }) => (ctx.zodSchema._zod.def.type === 'nan' ? { type: 'null' as const } : undefined),
    override: ({ zodSchema, jsonSchema }: { zodSchema: z.core.$ZodTypes; jsonSchema: Json }) => {
      // JSON Schema patterns have no flags: spell out a case-insensitive [a-z] (cache names)
      const checks = (zodSchema._zod.def as { checks?: z.core.$ZodCheck[] }).checks ?? [];
      const caseless = checks.some((c) => (c._zod.def as { pattern?: RegExp }).pattern?.flags.includes('i'));
      if (typeof jsonSchema.pattern === 'string' && caseless) {
        jsonSchema.pattern = jsonSchema.pattern.replace(/a-z(?!A-Z)/g, 'a-zA-Z');
      }
      // z.coerce.number().pipe(ThetaSchema) (query and form values): its input is a number
      // within the bounds of the schema it is piped to
      const def = zodSchema._zod.def as { type: string; in?: z.core.$ZodType; out?: z.core.$ZodType };
      if (io === 'input' && def.type === 'pipe' && def.in?._zod.def.type === 'number' && def.out?._zod.def.type === 'number') {
        Object.assign(jsonSchema, strip(z.toJSONSchema(def.out, { target: 'draft-2020-12' }) as Json));
      }
    },
  };
}

function strip(schema: Json): Json {
  const { $schema: _s, $id: _i, ...rest } = schema;
  return rest;
}

/** The components of one registry, with refs between them. */
function componentSchemas(named: Record<string, z.ZodType>, io: 'input' | 'output'): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(named)) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, { ...conversion(io), uri: ref });
  const out: Record<string, Json> = {};
  for (const [id, schema] of Object.entries(schemas)) {
    if (id === '__shared') throw new Error('openapi: schemas shared between components must be named components');
    out[id] = strip(schema as Json);
  }
  return out;
}

// ---------------------------------------------------------------- the document

/** The express path as an OpenAPI path: '/v1/caches/:name' → '/v1/caches/{name}'. */
export const openApiPath = (expressPath: string) => expressPath.replace(/:([A-Za-z_$][\w$]*)/g, '{$1}');

let cached: Json | null = null;

/** The OpenAPI 3.1 document (built once: the table and the schemas do not change while running). */
export function openApiDocument(): object {
  cached ??= buildDocument();
  return cached;
}

function buildDocument(): Json {
  const requestIds = new Map(Object.entries(requestComponents).map(([id, s]) => [s, id]));
  const responseIds = new Map(Object.entries(responseComponents).map(([id, s]) => [s, id]));
  const schemaOf = (schema: z.ZodType, io: 'input' | 'output'): Json => {
    const id = (io === 'input' ? requestIds : responseIds).get(schema);
    return id ? { $ref: ref(id) } : strip(z.toJSONSchema(schema, conversion(io)) as Json);
  };
  const content = (media: Record<string, MediaSpec>, io: 'input' | 'output') =>
    Object.fromEntries(
      Object.entries(media).map(([type, m]) => [type, { ...(m.schema && { schema: schemaOf(m.schema, io) }), ...(m.encoding && { encoding: m.encoding }) }]),
    );

  const paths: Record<string, Record<string, Json>> = {};
  for (const r of routes) {
    const pathParams = [...r.path.matchAll(/:([A-Za-z_$][\w$]*)/g)].map((m) => m[1]);
    const parameters: Json[] = pathParams.map((name) => {
      const p = r.params?.[name];
      if (!p) throw new Error(`openapi: ${r.method} ${r.path} does not describe its path parameter "${name}"`);
      return { name, in: 'path', required: true, description: p.description, schema: schemaOf(p.schema, 'input') };
    });
    if (r.query) {
      const q = schemaOf(r.query, 'input') as { properties?: Record<string, Json>; required?: string[] };
      for (const [name, schema] of Object.entries(q.properties ?? {})) {
        const { description, ...rest } = schema;
        parameters.push({ name, in: 'query', required: q.required?.includes(name) ?? false, ...(description !== undefined && { description }), schema: rest });
      }
    }
    const responses: Record<string, Json> = {};
    for (const [status, res] of Object.entries(r.responses)) {
      responses[status] = {
        description: res.description,
        ...(res.headers && { headers: Object.fromEntries(Object.entries(res.headers).map(([h, v]) => [h, { description: v.description, schema: schemaOf(v.schema, 'output') }])) }),
        ...(res.content && { content: content(res.content, 'output') }),
      };
    }
    const errors: Partial<Record<ErrorStatus, string | true>> = { ...r.errors };
    if (r.role !== 'public') {
      errors[401] ??= true;
      errors[403] ??= true;
    }
    errors[500] ??= true;
    for (const [status, description] of Object.entries(errors) as [string, string | true][]) {
      const standard = STANDARD_ERRORS[Number(status) as ErrorStatus];
      if (responses[status]) continue;
      responses[status] =
        description === true
          ? { $ref: `#/components/responses/${standard.name}` }
          : { description, content: { 'application/json': { schema: { $ref: ref('Error') } } }, ...(status === '429' && { headers: { 'Retry-After': { $ref: '#/components/headers/RetryAfter' } } }) };
    }
    const operation: Json = {
      operationId: r.operationId,
      summary: r.summary,
      ...(r.description && { description: r.description }),
      tags: r.tags,
      ...(parameters.length && { parameters }),
      ...(r.body && { requestBody: { required: true, content: content(r.body, 'input') } }),
      responses: Object.fromEntries(Object.entries(responses).sort(([a], [b]) => Number(a) - Number(b))),
      security: r.role === 'public' ? [] : [{ bearerAuth: [] }],
      'x-cachet-role': r.role,
    };
    const p = (paths[openApiPath(r.path)] ??= {});
    const method = r.method.toLowerCase();
    if (p[method]) throw new Error(`openapi: ${r.method} ${r.path} is in the route table twice`);
    p[method] = operation;
  }

  const requests = componentSchemas(requestComponents, 'input');
  const responses = componentSchemas(responseComponents, 'output');
  for (const id of Object.keys(requests)) if (id in responses) throw new Error(`openapi: component ${id} is both a request and a response schema`);

  return {
    openapi: '3.1.0',
    info: {
      title: 'Cachet',
      version: packageVersion(),
      summary: 'A cache model (Orhan 2018) for ONNX image classifiers',
      description:
        'JSON in and out. Every error is `{"error": {"code", "message", "details"?}}` with a 4xx status for anything the caller can fix. ' +
        'When the service is configured with API keys, every /v1 route needs `Authorization: Bearer <key>` of a role at least `x-cachet-role` (admin ⊃ write ⊃ read).',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    tags: [
      { name: 'caches', description: 'create, describe, change and delete caches' },
      { name: 'items', description: "a cache's items" },
      { name: 'jobs', description: 'index, eval and tune jobs, and their reports' },
      { name: 'predict', description: 'classify images with the cache model' },
      { name: 'operations', description: 'health, readiness, metrics, this document' },
      { name: 'web', description: 'the web page' },
    ],
    paths,
    components: {
      schemas: { ...requests, ...responses },
      responses: Object.fromEntries(
        Object.entries(STANDARD_ERRORS).map(([status, e]) => [
          e.name,
          { description: e.description, content: { 'application/json': { schema: { $ref: ref('Error') } } }, ...(status === '429' && { headers: { 'Retry-After': { $ref: '#/components/headers/RetryAfter' } } }) },
        ]),
      ),
      headers: { RetryAfter: { description: retryAfter['Retry-After'].description, schema: { type: 'string' } } },
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'an API key (CACHET_API_KEYS or --api-keys-file)' } },
    },
  };
}

/** package.json's version: from src/api (tsx) or dist/src/api (compiled), the first package.json up. */
function packageVersion(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) return String((JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version ?? '0.0.0');
    if (path.dirname(dir) === dir) return '0.0.0';
  }
}
