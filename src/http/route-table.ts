// The HTTP API's route table: each operation's method, path, role, parameters, bodies and
// responses, with the zod schemas that validate its requests. The OpenAPI document (openapi.ts)
// and the API-key check (auth.ts, through routeRoles) are made from it; test/openapi.test.ts
// checks that every express route is in the table, and the reverse.
import { z } from 'zod';
import { CacheDefinitionSchema } from '../cache/definition.js';
import type { ErrorStatus } from '../errors/catalogue.js';
import { DeleteItemsSchema } from './items.js';
import { LayerJobSchema } from './layers-route.js';
import * as S from './schemas.js';

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
export const retryAfter = { 'Retry-After': { description: 'seconds to wait before trying again', schema: z.string() } };
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
    responses: { 200: text('text/html', 'the page') },
    errors: { 404: 'the web page was not installed with this service (web_page_missing)' },
  },
  {
    method: 'GET',
    path: '/jobs/:id',
    operationId: 'webJobPage',
    summary: 'The web page that follows a job',
    tags: ['web'],
    role: 'public',
    params: jobId,
    responses: { 200: text('text/html', 'the page (it reads the job with GET /v1/jobs/{id})') },
    errors: { 404: 'the web page was not installed with this service (web_page_missing)' },
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
    errors: {
      400: 'the definition does not validate, or the model or its key layers are not usable',
      409: 'a cache of that name exists (cache_exists)',
      413: true,
    },
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
    errors: {
      404: 'no such cache (unknown_cache)',
      409: 'the cache could not be loaded (cache_unavailable)',
      503: 'the cache is damaged beyond repair (cache_damaged)',
    },
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
    method: 'GET',
    path: '/v1/caches/:name/snapshot',
    operationId: 'exportCache',
    summary: "Export a cache: one archive of a consistent snapshot, with every file's sha256 (cachet cache export)",
    description:
      "A tar archive: cachet-export.json (the definition and each file's size and sha256), snapshot/ and projection/. POST it to /v1/caches/import on any Cachet to restore the cache.",
    tags: ['caches'],
    role: 'admin',
    params: cacheName,
    responses: { 200: { description: 'the archive', content: { 'application/x-tar': { schema: z.file() } } } },
    errors: { 404: 'no such cache (unknown_cache)', 503: 'the cache is damaged (cache_damaged)' },
  },
  {
    method: 'POST',
    path: '/v1/caches/import',
    operationId: 'importCache',
    summary: 'Import a cache from an export archive (cachet cache import); embedded mode',
    description: 'Every file is checked against its recorded sha256 as it arrives; nothing becomes a cache until all of it checks out.',
    tags: ['caches'],
    role: 'admin',
    query: S.ImportQuerySchema,
    body: { 'application/x-tar': { schema: z.file() } },
    responses: { 201: ok('the imported cache', S.CacheInfoSchema) },
    errors: {
      400: 'not a Cachet export, or a file that does not match its checksum (bad_archive, invalid_request)',
      409: 'a cache of that name exists (cache_exists), another model (snapshot_model_mismatch), or a distributed service (embedded_only)',
      413: 'over the import limit (archive_too_large)',
    },
  },
  {
    method: 'POST',
    path: '/v1/caches/:name/verify',
    operationId: 'verifyCache',
    summary: 'Check every stored file of a cache against its checksums, and read its whole key log again',
    description: 'Reads the whole snapshot (it may take seconds per GB). Works on a damaged cache too: it says what does not check out.',
    tags: ['caches'],
    role: 'write',
    params: cacheName,
    responses: { 200: ok('what was checked and what does not check out', S.CacheVerificationSchema) },
    errors: { 404: 'no such cache (unknown_cache)' },
  },
  {
    method: 'DELETE',
    path: '/v1/caches/:name/damage',
    operationId: 'clearCacheDamage',
    summary: "Forget a cache's damage records, once its lost images are indexed again",
    tags: ['caches'],
    role: 'write',
    params: cacheName,
    responses: { 200: ok('the cache, its damage cleared', S.CacheInfoSchema) },
    errors: { 404: 'no such cache (unknown_cache)', 503: 'the cache is damaged beyond repair (cache_damaged)' },
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
    description:
      'Belongs to no cache (the job view\'s `cache` is ""). The model, the sources, the candidate layers and the memory the job needs are checked at submission.',
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
    summary: 'A job: state, progress, per-item errors and, once completed, its result',
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
    summary:
      "A finished job's report: its result (json), a Markdown report (md: eval, tune, layers), or a chart as SVG or PNG (tune heatmap, eval error against cache size, layers ranking)",
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
      503: 'the cache is damaged beyond repair (cache_damaged): the message says what was lost and what to do',
    },
  },
];

/** The table as the API-key middleware takes it (auth.ts RouteRole): public routes need no role. */
export const routeRoles: { method: Method; path: string; role: Exclude<Role, 'public'> | null }[] = routes.map((r) => ({
  method: r.method,
  path: r.path,
  role: r.role === 'public' ? null : r.role,
}));
