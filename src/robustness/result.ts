// What a robustness job computes: the `result` of its job view and the JSON of its report.
import { z } from 'zod';
import { ErrorRatesSchema, NanableNumberSchema } from '../jobs/results.js';
import { CORRUPTION_NAMES } from './corruptions.js';

const int = () => z.number().int();

export const ATTACK_NAMES = ['transfer', 'adaptive', 'adaptive_cache_alone'] as const;
export type AttackName = (typeof ATTACK_NAMES)[number];
/** Which of the three classifiers each attack crafts its images against. */
export const ATTACK_TARGETS = { transfer: 'model', adaptive: 'cacheModel', adaptive_cache_alone: 'cacheOnly' } as const;

export const RobustnessResultSchema = z
  .object({
    cache: z.string(),
    images: int().describe('labelled images scored'),
    failed: int().describe('images that could not be read or decoded'),
    cacheSize: int(),
    theta: NanableNumberSchema,
    lambda: NanableNumberSchema,
    seed: int(),
    clean: ErrorRatesSchema.describe('top-1 error on the images as they are'),
    corruptions: z.array(
      z
        .object({
          name: z.enum(CORRUPTION_NAMES),
          parameter: z.string().describe('what the value of each severity is'),
          severities: z.array(z.object({ severity: int(), value: z.number(), error: ErrorRatesSchema }).strict()),
        })
        .strict(),
    ),
    attack: z
      .object({
        method: z.string(),
        norm: z.literal('Linf'),
        pInit: z.number(),
        queryBudget: int().describe('queries per image at most'),
        note: z.string(),
      })
      .strict(),
    attacks: z.array(
      z
        .object({
          name: z.enum(ATTACK_NAMES),
          craftedAgainst: z.enum(['model', 'cacheModel', 'cacheOnly']),
          epsilon: z.number().describe('L∞ radius, as a fraction of the pixel range'),
          error: ErrorRatesSchema.describe('top-1 error of the three on the adversarial images'),
          attacked: int().describe('images the attacked classifier got right before the attack (the others need no query)'),
          fooled: int().describe('of those, images it gets wrong after the attack'),
          successRate: NanableNumberSchema.describe('fooled / attacked'),
          queries: z
            .object({ total: int(), meanPerFooled: NanableNumberSchema, medianPerFooled: NanableNumberSchema })
            .strict()
            .describe('queries spent; per fooled image, those it took'),
          stoppedBy: z.enum(['time']).nullable().describe('"time": the time budget ran out before every image was fooled or out of queries'),
        })
        .strict(),
    ),
    seconds: z.number(),
  })
  .strict();
export type RobustnessResult = z.infer<typeof RobustnessResultSchema>;
export type AttackReport = RobustnessResult['attacks'][number];
