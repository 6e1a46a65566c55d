// The settings of a robustness job, validated where it is submitted (HTTP) and where it runs
// (a BullMQ job taken by an api replica): which corruptions, attacks, radii and budgets.
import { z } from 'zod';
import { LambdaSchema, ThetaSchema } from '../cache/definition.js';
import { CORRUPTION_NAMES, SEVERITIES } from './corruptions.js';
import { ATTACK_NAMES } from './result.js';

const distinct = <T extends z.ZodType>(item: T) =>
  z
    .array(item)
    .refine((v) => new Set(v).size === v.length, 'list each value once')
    .max(20);

/** What a robustness job does, beside its images: the HTTP body adds `source`, the BullMQ job data `cache` and `items`. */
export const RobustnessSettingsSchema = z
  .object({
    theta: ThetaSchema.optional(),
    lambda: LambdaSchema.optional(),
    corruptions: distinct(z.enum(CORRUPTION_NAMES))
      .default([...CORRUPTION_NAMES])
      .describe('natural corruptions to score under (default: all six; [] for none)'),
    severities: distinct(z.number().int().min(1).max(5).describe('1 (mildest) to 5'))
      .min(1)
      .default([...SEVERITIES]),
    attacks: distinct(z.enum(ATTACK_NAMES))
      .default([...ATTACK_NAMES])
      .describe(
        'transfer: crafted against the model alone (the paper); adaptive: against the cache model; adaptive_cache_alone: against the cache alone. [] for none',
      ),
    epsilons: distinct(z.number().gt(0).max(1))
      .min(1)
      .max(8)
      .default([8 / 255])
      .describe('L∞ radii as fractions of the pixel range (default 8/255); several give error against ε'),
    queries: z.number().int().min(1).max(100_000).default(200).describe('queries per image per attack, at most'),
    pInit: z.number().gt(0).max(1).default(0.05).describe("Square Attack's initial window fraction"),
    seed: z.number().int().min(0).max(0xffffffff).default(0),
    maxSeconds: z
      .number()
      .gt(0)
      .max(7 * 24 * 3600)
      .default(3600)
      .describe(
        'time budget of the job, counted from its start: the attacks share what scoring the clean and corrupted images leaves of it; an attack out of time stops and says so',
      ),
  })
  .strict();

export type RobustnessSettings = z.output<typeof RobustnessSettingsSchema>;
