// The HTTP API's schemas, in zod: the request schemas validate bodies and queries (app.ts),
// and, with the response schemas, they generate the OpenAPI document (openapi.ts).
// The cache definition (CacheDefinitionSchema, src/cache/definition.ts) and a job's image
// source (SourceSchema, src/sources/sources.ts) and the delete-items body (DeleteItemsSchema,
// items.ts) are defined beside the code that uses them.
// Where a TypeScript interface already describes a response, the checks at the end of this
// file fail to compile if the interface and its schema stop agreeing.
import { z } from 'zod';
import { linspace } from '../jobs/tune.js';
import { CacheDefinitionSchema, EfSearchSchema, KSchema, LambdaSchema, ThetaSchema, type CacheInfo } from '../cache/definition.js';
import { SourceSchema } from '../sources/sources.js';
import type { JobView } from '../jobs/types.js';
import type { CacheStatus, LogStatus } from '../engine/engine.js';
import type { EvalJobResult, IndexJobResult } from '../jobs/processors.js';
import type { TuneResult } from '../reports/tune-report.js';
import type { LayerAdvice } from '../advisor/layers.js';

// ---------------------------------------------------------------- requests

export const PredictOptionsSchema = z
  .object({
    topK: z.coerce.number().int().min(1).max(1000).default(5),
    neighbours: z.coerce.number().int().min(0).max(1000).default(0),
    theta: z.coerce.number().pipe(ThetaSchema).optional(),
    lambda: z.coerce.number().pipe(LambdaSchema).optional(),
  })
  .strict();

export const PredictJsonSchema = PredictOptionsSchema.extend({
  image: z.string().min(1).optional().describe('one image, base64'),
  images: z.array(z.string().min(1)).min(1).optional().describe('several images, base64'),
}).strict();

export const IndexJobSchema = z.object({ source: SourceSchema, flip: z.boolean().default(false) }).strict();
export const EvalJobSchema = z
  .object({
    source: SourceSchema,
    theta: ThetaSchema.optional(),
    lambda: LambdaSchema.optional(),
    compareWith: z.string().min(1).optional().describe('another cache to classify the same images with, e.g. an hnsw twin'),
    cacheSizes: z.array(z.number().gt(0).max(1)).min(1).max(20).optional().describe('also the error with these fractions of the cache (random subsets)'),
  })
  .strict();
/** A grid axis: the values, or {from, to, steps} (as numpy's linspace). */
export const axis = (value: z.ZodNumber) =>
  z.union([
    z.array(value).min(1).max(200),
    z.object({ from: value, to: value, steps: z.number().int().min(1).max(200) }).strict(),
  ]);
export const TuneJobSchema = z
  .object({
    source: SourceSchema,
    flip: z.boolean().default(false).describe("also score each image's mirror image, as the paper's validation set does"),
    theta: axis(ThetaSchema).optional().describe('default: the paper\'s 33 values from 10 to 90'),
    lambda: axis(LambdaSchema).optional().describe('default: the paper\'s 33 values from 0.1 to 0.9'),
    dryRun: z.boolean().default(false).describe('report the best θ and λ without storing them'),
  })
  .strict();

/** An axis's values: as given, or linspace(from, to, steps); undefined when absent. */
export function axisValues(a: z.infer<ReturnType<typeof axis>> | undefined): number[] | undefined {
  return a === undefined ? undefined : Array.isArray(a) ? a : linspace(a.from, a.to, a.steps);
}

export const UpdateCacheSchema = z
  .object({ theta: ThetaSchema.optional(), lambda: LambdaSchema.optional(), k: KSchema.optional(), efSearch: EfSearchSchema.optional() })
  .strict();

/** GET /v1/jobs/:id/report (documentation: the handler reads `format` itself) */
export const ReportQuerySchema = z
  .object({ format: z.enum(['json', 'md', 'svg', 'png']).default('json').describe('json: the result; md: a Markdown report; svg or png: the chart (tune heatmap, eval error against cache size, layers ranking)') })
  .strict();

/** POST /v1/caches/:name/predict as multipart/form-data (documentation: multer parses it, PredictOptionsSchema checks the fields). */
export const PredictMultipartSchema = PredictOptionsSchema.extend({
  image: z
    .array(z.file())
    .min(1)
    .describe('one or more image files (JPEG, PNG or WebP); any file field name is accepted, "image" is the usual one; at most 64 per request by default'),
}).strict();

// ---------------------------------------------------------------- responses

const int = () => z.number().int();
/** A number that is NaN (JSON null) when nothing was measured, e.g. an error rate over no image. */
export const NanableNumberSchema = z.union([z.number(), z.nan()]);

export const ErrorBodySchema = z
  .object({
    error: z
      .object({
        code: z.string().describe('stable, for programs: e.g. invalid_request, unknown_cache, payload_too_large'),
        message: z.string().describe('what happened and what to fix, for a person'),
        details: z.unknown().optional(),
      })
      .strict(),
  })
  .strict();

export const HealthSchema = z.object({ status: z.literal('ok') }).strict();

export const LogStatusSchema = z
  .object({
    name: z.string(),
    size: int(),
    appliedPosition: int(),
    logEnd: int(),
    lag: int().describe('records in the key log this replica has not applied yet'),
  })
  .strict();

export const ReadySchema = z
  .object({
    status: z.literal('ready'),
    mode: z.enum(['embedded', 'distributed']),
    caches: z.array(
      z
        .object({
          name: z.string(),
          status: z.enum(['ready', 'failed']),
          size: int().nullable(),
          error: z.string().optional(),
          log: LogStatusSchema.nullable(),
        })
        .strict(),
    ),
  })
  .strict();

export const NotReadySchema = z.object({ status: z.enum(['starting', 'stopping']) }).strict();

export const CacheInfoSchema = z
  .object({
    name: z.string(),
    model: z.string(),
    modelHash: z.string(),
    keyLayers: z.array(z.string()),
    dimension: int(),
    classes: z.array(z.string()),
    size: int(),
    theta: z.number(),
    lambda: z.number(),
    k: int(),
    index: z
      .object({
        type: z.enum(['exact', 'hnsw']),
        policy: z.enum(['auto', 'exact', 'hnsw']),
        scoring: z.enum(['all-items', 'k-nearest']),
        params: z.record(z.string(), z.union([z.number(), z.string()])),
      })
      .strict(),
    searchKey: z
      .object({
        reduce: z.enum(['none', 'pca', 'random']),
        dimension: int(),
        projection: z.string().nullable().describe('fingerprint of the projection; null while a PCA waits for its sample'),
        rerank: z.boolean(),
        fullKeysBytes: int(),
      })
      .strict(),
    logPosition: int(),
    snapshotPosition: int(),
    history: CacheDefinitionSchema.shape.history.unwrap().describe('earlier θ and λ, newest first'),
  })
  .strict();

export const CacheStatusSchema = z
  .object({
    name: z.string(),
    status: z.enum(['ready', 'failed']),
    error: z.string().optional(),
    info: CacheInfoSchema.optional(),
  })
  .strict();

export const CacheListSchema = z.object({ caches: z.array(CacheStatusSchema) }).strict();

export const IndexJobResultSchema = z
  .object({ images: int(), added: int(), duplicates: int(), failed: int(), cacheSize: int() })
  .strict();

const errorRates = z.object({ model: NanableNumberSchema, cacheModel: NanableNumberSchema, cacheOnly: NanableNumberSchema }).strict();
export const EvalJobResultSchema = z
  .object({
    cache: z.string(),
    images: int(),
    failed: int(),
    cacheSize: int(),
    theta: NanableNumberSchema,
    lambda: NanableNumberSchema,
    error: errorRates.describe('top-1 error, as a fraction'),
    correct: z.object({ model: int(), cacheModel: int(), cacheOnly: int() }).strict(),
    top5Error: errorRates.describe('top-5 error, as a fraction'),
    perClass: z.array(z.object({ class: z.string(), label: int(), images: int(), error: errorRates }).strict()),
    bySize: z
      .array(z.object({ fraction: z.number(), items: int(), error: z.object({ cacheModel: NanableNumberSchema, cacheOnly: NanableNumberSchema }).strict() }).strict())
      .optional(),
    compare: z
      .object({
        cache: z.string(),
        cacheSize: int(),
        error: errorRates,
        agreement: z.object({ cacheModel: NanableNumberSchema, cacheOnly: NanableNumberSchema }).strict(),
      })
      .strict()
      .optional(),
  })
  .strict();

const scored = z.object({ accuracy: z.number(), logLoss: z.number() }).strict();
export const TuneResultSchema = z
  .object({
    cache: z.string(),
    images: int().describe('validation queries scored (flips count)'),
    k: int(),
    thetas: z.array(z.number()),
    lambdas: z.array(z.number()),
    accuracy: z.array(z.array(z.number())).describe('[thetaIndex][lambdaIndex], top-1 accuracy in [0,1]'),
    logLoss: z.array(z.array(z.number())),
    best: z.object({ theta: z.number(), lambda: z.number(), accuracy: z.number(), logLoss: z.number() }).strict(),
    model: scored,
    cacheOnly: scored.nullable(),
    previous: z.object({ theta: z.number(), lambda: z.number(), accuracy: z.number().nullable() }).strict(),
    applied: z.boolean(),
    seconds: z.object({ extract: z.number(), grid: z.number() }).strict(),
  })
  .strict();

/** What a finished job computed (GET /v1/jobs/:id/report?format=json, and a job view's `result`). */
const layerScore = z
  .object({
    layers: z.array(z.string()),
    dimension: int(),
    error: z.number().describe('best top-1 validation error of the cache model over the grid'),
    theta: z.number(),
    lambda: z.number(),
    logLoss: z.number(),
    modelError: z.number(),
    cacheOnlyError: z.number(),
    cacheOnlyTheta: z.number(),
    kind: z.enum(['single', 'concatenation']),
  })
  .strict();
/** The result of a layers job (POST /v1/layer-jobs): which key layers to use. */
export const LayerAdviceSchema = z
  .object({
    model: z.string(),
    trainImages: int(),
    cacheItems: int(),
    valImages: int(),
    flip: z.boolean(),
    maxDimension: int(),
    thetas: z.array(z.number()),
    lambdas: z.array(z.number()),
    modelError: z.number(),
    ranking: z.array(layerScore).describe('best first: error, then fewer dimensions'),
    recommendation: layerScore,
    tooLarge: z.array(z.object({ layer: z.string(), dimension: int(), message: z.string() }).strict()),
    failedImages: z.array(z.object({ id: z.string(), error: z.string() }).strict()),
    seconds: z.object({ extract: z.number(), score: z.number() }).strict(),
  })
  .strict();

export const JobResultSchema = z.union([IndexJobResultSchema, EvalJobResultSchema, TuneResultSchema, LayerAdviceSchema]);

/** A job as the queues describe it; `result` is typed loosely here, as in JobView. */
export const JobViewSchema = z
  .object({
    id: z.string(),
    type: z.enum(['index', 'eval', 'tune', 'layers']),
    cache: z.string(),
    state: z.enum(['waiting', 'active', 'completed', 'failed']),
    progress: z.object({ done: int(), total: int() }).strict(),
    errors: z.array(z.object({ id: z.string(), error: z.string() }).strict()).describe('the first 1,000 per-item errors'),
    errorCount: int(),
    result: z.unknown(),
    failedReason: z.string().nullable(),
    createdAt: z.iso.datetime(),
    startedAt: z.iso.datetime().nullable(),
    finishedAt: z.iso.datetime().nullable(),
  })
  .strict();
/** The job view as documented: `result` is null until the job completes. */
export const JobViewDocSchema = JobViewSchema.extend({ result: JobResultSchema.nullable() }).strict();

export const PredictionSchema = z
  .object({
    top: z.array(
      z
        .object({ class: z.string(), label: int(), p: z.number(), pModel: z.number(), pCache: z.number().nullable().describe('null when λ = 0 or the cache is empty') })
        .strict(),
    ),
    neighbours: z.array(z.object({ id: z.string(), class: z.string(), label: int(), similarity: z.number() }).strict()),
  })
  .strict();

export const PredictResponseSchema = z
  .object({ cache: z.string(), theta: z.number(), lambda: z.number(), cacheSize: int(), predictions: z.array(PredictionSchema).describe('one per image, in order') })
  .strict();

export const DeleteCacheResponseSchema = z.object({ deleted: z.string().describe('the name of the deleted cache') }).strict();
export const DeleteItemsResponseSchema = z
  .object({ deleted: int(), notFound: z.array(z.string()).describe('ids that were not in the cache'), cacheSize: int() })
  .strict();
export const DeleteItemResponseSchema = z.object({ deleted: z.literal(1), cacheSize: int() }).strict();

// ---------------------------------------------------------------- schemas and interfaces agree

/** true only when A and B are the same type (optional fields included). */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const agree = <T extends true>(_: T) => undefined;
agree<Same<z.output<typeof CacheInfoSchema>, CacheInfo>>(true);
agree<Same<z.output<typeof CacheStatusSchema>, CacheStatus>>(true);
agree<Same<z.output<typeof LogStatusSchema>, LogStatus>>(true);
agree<Same<z.output<typeof JobViewSchema>, JobView>>(true);
agree<Same<z.output<typeof IndexJobResultSchema>, IndexJobResult>>(true);
agree<Same<z.output<typeof EvalJobResultSchema>, EvalJobResult>>(true);
agree<Same<z.output<typeof TuneResultSchema>, TuneResult>>(true);
agree<Same<z.output<typeof LayerAdviceSchema>, LayerAdvice>>(true);
