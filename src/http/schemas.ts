// The HTTP API's schemas, in zod: the request schemas validate bodies and queries (app.ts),
// and, with the response schemas, they generate the OpenAPI document (openapi.ts).
// The cache definition (CacheDefinitionSchema, src/cache/definition.ts) and a job's image
// source (SourceSchema, src/sources/sources.ts) and the delete-items body (DeleteItemsSchema,
// items.ts) are defined beside the code that uses them.
import { z } from 'zod';
import { linspace } from '../jobs/tune-job.js';
import { EfSearchSchema, KSchema, LambdaSchema, ThetaSchema } from '../cache/definition.js';
import { CacheInfoSchema, DamageSchema } from '../cache/info.js';
import { SourceSchema } from '../sources/sources.js';
import { JobViewSchema } from '../jobs/types.js';
import { CacheStatusSchema, CacheVerificationSchema, LogStatusSchema, StartProgressSchema } from '../engine/status.js';
export { CacheVerificationSchema };
import { EvalJobResultSchema, IndexJobResultSchema, NanableNumberSchema, TuneResultSchema } from '../jobs/results.js';
import { LayerAdviceSchema } from '../advisor/advice.js';
import { RobustnessResultSchema } from '../robustness/result.js';

// the response schemas defined beside the code that produces them
export {
  CacheInfoSchema,
  CacheStatusSchema,
  EvalJobResultSchema,
  IndexJobResultSchema,
  JobViewSchema,
  LayerAdviceSchema,
  LogStatusSchema,
  NanableNumberSchema,
  RobustnessResultSchema,
  TuneResultSchema,
};

// ---------------------------------------------------------------- requests

/**
 * A number: in JSON a number, in a query or form field its decimal text. Nothing else (null, "",
 * true, [1] are refused, not taken as 0 or 1).
 */
const numeric = <T extends z.ZodType<number, number>>(schema: T) =>
  z
    .union(
      [
        z.number(),
        z
          .string()
          .regex(/^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/)
          .transform(Number),
      ],
      {
        error: 'expected a number (in a query or form field, its decimal text)',
      },
    )
    .pipe(schema);

export const PredictOptionsSchema = z
  .object({
    topK: numeric(z.number().int().min(1).max(1000)).default(5),
    neighbours: numeric(z.number().int().min(0).max(1000)).default(0),
    theta: numeric(ThetaSchema).optional(),
    lambda: numeric(LambdaSchema).optional(),
    partial: z
      .union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')])
      .optional()
      .describe('a cache of several shards: when a shard has no healthy replica, answer over the others (listed in missingShards) instead of 503'),
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
  z.union([z.array(value).min(1).max(200), z.object({ from: value, to: value, steps: z.number().int().min(1).max(200) }).strict()]);
export const TuneJobSchema = z
  .object({
    source: SourceSchema,
    flip: z.boolean().default(false).describe("also score each image's mirror image, as the paper's validation set does"),
    theta: axis(ThetaSchema).optional().describe("default: the paper's 33 values from 10 to 90"),
    lambda: axis(LambdaSchema).optional().describe("default: the paper's 33 values from 0.1 to 0.9"),
    k: z
      .array(KSchema)
      .min(1)
      .max(20)
      .optional()
      .describe("the k values to try (the neighbours p_cache sums over; caches that search): default 10, 20, 50, 100, 200 and the cache's own k"),
    dryRun: z.boolean().default(false).describe('report the best θ, λ and k without storing them'),
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
  .object({
    format: z
      .enum(['json', 'md', 'svg', 'png'])
      .default('json')
      .describe('json: the result; md: a Markdown report; svg or png: the chart (tune heatmap, eval error against cache size, layers ranking)'),
  })
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

export const ExportQuerySchema = z
  .object({
    stored: z
      .enum(['true', 'false'])
      .optional()
      .describe('true: the snapshot this replica last wrote, as it is (how a new replica starts from a peer); default: the cache as it is now'),
  })
  .strict();

export const ImportQuerySchema = z
  .object({
    name: z.string().min(1).optional().describe("the imported cache's name (default: the name it was exported under)"),
    model: z
      .string()
      .min(1)
      .optional()
      .describe("the .onnx file on this machine (default: the exported definition's path); it must be the same model (sha256)"),
  })
  .strict();

export const ReadySchema = z
  .object({
    status: z
      .enum(['ready', 'degraded'])
      .describe(
        "degraded: a cache is damaged or lost records (see each cache's damage), or the key log (Redis) is unreachable (see keyLog); what can serve, serves",
      ),
    mode: z.enum(['embedded', 'distributed']),
    keyLog: z
      .object({
        status: z.literal('unreachable'),
        since: z.string().describe('when this process last failed to reach Redis (ISO 8601)'),
        error: z.string(),
        message: z.string().describe('what is served meanwhile, in words'),
      })
      .strict()
      .optional()
      .describe('distributed mode, while Redis is unreachable: predictions go on from the indexes in memory'),
    caches: z.array(
      z
        .object({
          name: z.string(),
          status: z.enum(['ready', 'failed', 'damaged']),
          size: int().nullable(),
          error: z.string().optional(),
          log: LogStatusSchema.nullable(),
          logPosition: int().optional().describe('the key-log position its index has applied (what it serves)'),
          damage: z.array(DamageSchema).optional().describe('damage found in its stored data, and what was done'),
        })
        .strict(),
    ),
  })
  .strict();

export const NotReadySchema = z
  .object({
    status: z.enum(['starting', 'stopping', 'unresponsive']).describe('unresponsive: the engine did not answer within 2 s'),
    caches: z.array(StartProgressSchema).optional().describe("while starting: how far each cache's opening has got"),
  })
  .strict();

export const CacheListSchema = z.object({ caches: z.array(CacheStatusSchema) }).strict();

export const JobResultSchema = z.union([IndexJobResultSchema, EvalJobResultSchema, TuneResultSchema, LayerAdviceSchema, RobustnessResultSchema]);

/** The job view as documented: `result` is null until the job completes. */
export const JobViewDocSchema = JobViewSchema.extend({ result: JobResultSchema.nullable() }).strict();

export const PredictionSchema = z
  .object({
    top: z.array(
      z
        .object({
          class: z.string(),
          label: int(),
          p: z.number(),
          pModel: z.number(),
          pCache: z.number().nullable().describe('null when λ = 0 or the cache is empty'),
        })
        .strict(),
    ),
    neighbours: z.array(z.object({ id: z.string(), class: z.string(), label: int(), similarity: z.number() }).strict()),
  })
  .strict();

export const PredictResponseSchema = z
  .object({
    cache: z.string(),
    theta: z.number(),
    lambda: z.number(),
    cacheSize: int(),
    missingShards: z.array(int()).optional().describe('with partial: the shards the predictions were made without (no healthy replica)'),
    predictions: z.array(PredictionSchema).describe('one per image, in order'),
  })
  .strict();

export const DeleteCacheResponseSchema = z.object({ deleted: z.string().describe('the name of the deleted cache') }).strict();
export const DeleteItemsResponseSchema = z
  .object({ deleted: int(), notFound: z.array(z.string()).describe('ids that were not in the cache'), cacheSize: int() })
  .strict();
export const DeleteItemResponseSchema = z.object({ deleted: z.literal(1), cacheSize: int() }).strict();
