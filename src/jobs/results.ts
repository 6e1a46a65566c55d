// What index, eval and tune jobs compute: the `result` of their job view and the JSON of their
// reports. The schemas are the types (z.infer) and document the API (OpenAPI).
import { z } from 'zod';

const int = () => z.number().int();
/** A number that is NaN (JSON null) when nothing was measured, e.g. an error rate over no image. */
export const NanableNumberSchema = z.union([z.number(), z.nan()]);

export const IndexJobResultSchema = z.object({ images: int(), added: int(), duplicates: int(), failed: int(), cacheSize: int() }).strict();
export type IndexJobResult = z.infer<typeof IndexJobResultSchema>;

export const ErrorRatesSchema = z.object({ model: NanableNumberSchema, cacheModel: NanableNumberSchema, cacheOnly: NanableNumberSchema }).strict();
export type ErrorRates = z.infer<typeof ErrorRatesSchema>;

export const EvalJobResultSchema = z
  .object({
    cache: z.string(),
    images: int(),
    failed: int(),
    cacheSize: int(),
    theta: NanableNumberSchema,
    lambda: NanableNumberSchema,
    error: ErrorRatesSchema.describe('top-1 error, as a fraction'),
    correct: z.object({ model: int(), cacheModel: int(), cacheOnly: int() }).strict(),
    top5Error: ErrorRatesSchema.describe('top-5 error, as a fraction'),
    perClass: z.array(z.object({ class: z.string(), label: int(), images: int(), error: ErrorRatesSchema }).strict()),
    bySize: z
      .array(
        z
          .object({ fraction: z.number(), items: int(), error: z.object({ cacheModel: NanableNumberSchema, cacheOnly: NanableNumberSchema }).strict() })
          .strict(),
      )
      .optional(),
    compare: z
      .object({
        cache: z.string(),
        cacheSize: int(),
        error: ErrorRatesSchema,
        agreement: z.object({ cacheModel: NanableNumberSchema, cacheOnly: NanableNumberSchema }).strict(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type EvalJobResult = z.infer<typeof EvalJobResultSchema>;

const scored = z.object({ accuracy: z.number(), logLoss: z.number() }).strict();
export const TuneResultSchema = z
  .object({
    cache: z.string(),
    images: int().describe('validation queries scored (flips count)'),
    k: int().describe('the k chosen (the neighbours p_cache sums over); for a cache that sums over every item, the neighbours kept'),
    ks: z.array(int()).nullable().describe('the k values tried, ascending; null for a cache that sums over every item'),
    byK: z
      .array(z.object({ k: int(), theta: z.number(), lambda: z.number(), accuracy: z.number(), logLoss: z.number() }).strict())
      .nullable()
      .describe('the best θ and λ at each k tried'),
    thetas: z.array(z.number()),
    lambdas: z.array(z.number()),
    accuracy: z.array(z.array(z.number())).describe('[thetaIndex][lambdaIndex], top-1 accuracy in [0,1], at the k chosen'),
    logLoss: z.array(z.array(z.number())),
    best: z.object({ theta: z.number(), lambda: z.number(), accuracy: z.number(), logLoss: z.number() }).strict(),
    model: scored,
    cacheOnly: scored.nullable(),
    previous: z.object({ theta: z.number(), lambda: z.number(), accuracy: z.number().nullable() }).strict(),
    applied: z.boolean(),
    seconds: z
      .object({ extract: z.number(), grid: z.number() })
      .strict()
      .describe(
        'extract: the whole pass over the images, each batch scored on the grid as it came back; grid: the part of it spent scoring, beside the model and the search',
      ),
  })
  .strict();
export type TuneResult = z.infer<typeof TuneResultSchema>;
