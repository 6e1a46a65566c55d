// The OpenAPI 3.1 document of the HTTP API (GET /openapi.json), generated from the route
// table (route-table.ts), the error catalogue (errors/catalogue.ts) and the zod schemas that validate the requests (schemas.ts, the cache
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
import { ERROR_CATALOGUE, ERROR_CODES, type ErrorStatus } from '../errors/catalogue.js';
import { DeleteItemsSchema } from './items.js';
import { LayerJobSchema } from './layers-route.js';
import { RobustnessJobSchema } from './robustness-route.js';
import { retryAfter, routes, type MediaSpec } from './route-table.js';
import * as S from './schemas.js';

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
  RobustnessJobRequest: RobustnessJobSchema,
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
  CacheVerification: S.CacheVerificationSchema,
  CacheList: S.CacheListSchema,
  JobView: S.JobViewDocSchema,
  JobResult: S.JobResultSchema,
  IndexJobResult: S.IndexJobResultSchema,
  EvalJobResult: S.EvalJobResultSchema,
  TuneResult: S.TuneResultSchema,
  LayerAdvice: S.LayerAdviceSchema,
  RobustnessResult: S.RobustnessResultSchema,
  Prediction: S.PredictionSchema,
  PredictResponse: S.PredictResponseSchema,
  DeletedCache: S.DeleteCacheResponseSchema,
  DeletedItems: S.DeleteItemsResponseSchema,
  DeletedItem: S.DeleteItemResponseSchema,
};

const STANDARD_ERRORS: Record<ErrorStatus, { name: string; description: string }> = {
  400: { name: 'BadRequest', description: 'the request does not validate: the message says what to fix' },
  401: { name: 'Unauthorized', description: 'no API key, or not a valid one; only when the service is configured with API keys' },
  403: {
    name: 'Forbidden',
    description: "the API key's role is below the one the operation needs (x-cachet-role); or a file the request names is outside the service's read roots",
  },
  404: { name: 'NotFound', description: 'no such cache, job or item' },
  408: { name: 'RequestTimeout', description: 'the request was not received in time' }, // no code yet: not in the document
  409: { name: 'Conflict', description: 'the request conflicts with the state of a cache or job' },
  413: { name: 'PayloadTooLarge', description: 'the body is over the byte limit (16 MiB by default)' },
  415: { name: 'UnsupportedMediaType', description: 'the body uses a content encoding or charset the service does not read' },
  429: { name: 'TooManyRequests', description: 'over a limit of this service; try again after Retry-After seconds' },
  500: { name: 'InternalError', description: 'a fault of the service; it logged the details' },
  503: { name: 'Unavailable', description: 'the service or this replica cannot answer now' },
};

/** The error codes of the catalogue that answer with `status`. */
const codesOf = (status: ErrorStatus) => ERROR_CODES.filter((c) => ERROR_CATALOGUE[c].status === status);

/**
 * The error body of one status: the shared Error shape, its code one of the catalogue's codes of
 * that status; the description lists each code with its meaning.
 */
function errorSchemaOf(status: ErrorStatus): Json {
  const codes = codesOf(status);
  return {
    description: `Error codes with status ${status}:\n${codes.map((c) => `- \`${c}\`: ${ERROR_CATALOGUE[c].description}`).join('\n')}`,
    allOf: [{ $ref: ref('Error') }, { type: 'object', properties: { error: { type: 'object', properties: { code: { type: 'string', enum: codes } } } } }],
  };
}

/** An error response of one status: its code schema and, for 429, Retry-After. */
const errorResponse = (status: ErrorStatus, description: string): Json => ({
  description,
  content: { 'application/json': { schema: { $ref: ref(`Error${status}`) } } },
  ...(status === 429 && { headers: { 'Retry-After': { $ref: '#/components/headers/RetryAfter' } } }),
});

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
        ...(res.headers && {
          headers: Object.fromEntries(Object.entries(res.headers).map(([h, v]) => [h, { description: v.description, schema: schemaOf(v.schema, 'output') }])),
        }),
        ...(res.content && { content: content(res.content, 'output') }),
      };
    }
    const errors: Partial<Record<ErrorStatus, string | true>> = { ...r.errors };
    if (r.role !== 'public') {
      errors[401] ??= true;
      errors[403] ??= true;
    }
    if (r.body) errors[415] ??= true; // any body may come with an encoding the service does not read
    errors[500] ??= true;
    if (r.path.startsWith('/v1/')) errors[503] ??= 'the service is starting: it opens its caches (starting; Retry-After)';
    for (const [status, description] of Object.entries(errors) as [string, string | true][]) {
      const standard = STANDARD_ERRORS[Number(status) as ErrorStatus];
      if (responses[status]) continue;
      responses[status] =
        description === true ? { $ref: `#/components/responses/${standard.name}` } : errorResponse(Number(status) as ErrorStatus, description);
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

  const statuses = (Object.keys(STANDARD_ERRORS).map(Number) as ErrorStatus[]).filter((status) => codesOf(status).length > 0);
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
      schemas: { ...requests, ...responses, ...Object.fromEntries(statuses.map((status) => [`Error${status}`, errorSchemaOf(status)])) },
      responses: Object.fromEntries(statuses.map((status) => [STANDARD_ERRORS[status].name, errorResponse(status, STANDARD_ERRORS[status].description)])),
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
