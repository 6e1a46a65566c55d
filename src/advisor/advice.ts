// What the layer advisor answers: every candidate key scored, best first, and its recommendation.
import { z } from 'zod';

const int = () => z.number().int();

/** One candidate key (a layer, or a concatenation of layers) scored on validation images. */
export const LayerScoreSchema = z
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
    interval: z.tuple([z.number(), z.number()]).optional().describe('95 % bootstrap interval of the error over the validation images'),
    tied: z.boolean().optional().describe("its interval overlaps the recommendation's: the validation set cannot tell them apart"),
  })
  .strict();
export type LayerScore = z.infer<typeof LayerScoreSchema>;

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
    ranking: z.array(LayerScoreSchema).describe('best first: error, then fewer dimensions'),
    recommendation: LayerScoreSchema,
    sameKeys: z
      .array(z.object({ layer: z.string(), sameAs: z.array(z.string()) }).strict())
      .optional()
      .describe('layers that compute the same values as another candidate (a Flatten or Reshape of it): scored once, under the first name'),
    search: z.string().optional().describe('how concatenations were chosen, in words'),
    forCacheSize: z
      .object({
        cacheSize: int().describe('the size the cache will have (cacheSize of the request)'),
        method: z.string().describe('how the errors at that size were found, in words'),
        ranking: z.array(
          z
            .object({
              layers: z.array(z.string()),
              dimension: int(),
              error: z.number().describe('the validation error extrapolated to cacheSize'),
              curve: z.array(z.object({ items: int(), error: z.number() }).strict()).describe('the error measured at each sample size'),
              fit: z.object({ a: z.number(), b: z.number(), c: z.number() }).strict().describe('error(n) = a + b·n^(−c)'),
            })
            .strict(),
        ),
      })
      .strict()
      .optional()
      .describe('when cacheSize is larger than the train sample: the best keys extrapolated to it; the recommendation is the best there'),
    tooLarge: z.array(z.object({ layer: z.string(), dimension: int(), message: z.string() }).strict()),
    failedImages: z.array(z.object({ id: z.string(), error: z.string() }).strict()),
    seconds: z.object({ extract: z.number(), score: z.number() }).strict(),
  })
  .strict();
export type LayerAdvice = z.infer<typeof LayerAdviceSchema>;
