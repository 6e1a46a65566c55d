// The data of Cachet's BullMQ jobs. Documented in docs/jobs.md, so that any BullMQ
// producer (not only our api) can submit an index job; the worker validates it.
import { z } from 'zod';
import { SourceSchema } from '../sources/sources.js';
import { RobustnessSettingsSchema } from '../robustness/settings.js';

/** One image of a chunk: a path or URL every worker can read, or (small inline batches only) its bytes. */
export const ItemRefSchema = z
  .object({
    id: z.string().min(1).max(4096).optional().describe("absent: the item's content id, the sha256 of its image bytes"),
    label: z.union([z.number().int(), z.string().min(1)]).describe('class index or class name'),
    path: z.string().min(1).optional().describe('a file path on storage every worker can read, or an http(s) URL'),
    image: z.string().min(1).optional().describe('the image bytes, base64 (small inline batches only)'),
  })
  .strict()
  .refine((i) => (i.path === undefined) !== (i.image === undefined), 'an item has either "path" or "image"');
export type ItemRef = z.infer<typeof ItemRefSchema>;

/** Queue cachet-index, job name "chunk". */
export const ChunkJobSchema = z
  .object({
    cache: z.string().min(1),
    flip: z.boolean().default(false),
    items: z.array(ItemRefSchema).min(1).max(10_000),
  })
  .strict();
export type ChunkJobData = z.input<typeof ChunkJobSchema>;

/** What a chunk job returns (its parent sums them). */
export interface ChunkResult {
  images: number;
  added: number;
  duplicates: number;
  failed: number;
  errors: { id: string; error: string }[];
}

/** Queue cachet-jobs, job name "index": the parent of an index job's chunks. */
export const IndexParentSchema = z
  .object({
    cache: z.string().min(1),
    total: z.number().int().min(0).describe('images in all chunks, for progress'),
    flip: z.boolean().default(false),
  })
  .strict();
export type IndexParentData = z.input<typeof IndexParentSchema>;

/** Queue cachet-eval, job name "eval" (processed by api replicas, which hold the indexes). */
export const EvalJobSchema = z
  .object({
    cache: z.string().min(1),
    items: z.array(ItemRefSchema).min(1),
    theta: z.number().optional(),
    lambda: z.number().optional(),
    compareWith: z.string().min(1).optional(),
    cacheSizes: z.array(z.number().gt(0).max(1)).max(20).optional(),
  })
  .strict();
export type EvalJobData = z.input<typeof EvalJobSchema>;

/** Queue cachet-eval, job name "tune": choose θ and λ on validation images (api replicas). */
export const TuneJobSchema = z
  .object({
    cache: z.string().min(1),
    items: z.array(ItemRefSchema).min(1),
    flip: z.boolean().default(false),
    thetas: z.array(z.number()).min(1),
    lambdas: z.array(z.number()).min(1),
    ks: z.array(z.number().int().min(1)).min(1).optional().describe("the k values to try; default 10, 20, 50, 100, 200 and the cache's own k"),
    dryRun: z.boolean().default(false),
  })
  .strict();
export type TuneJobData = z.input<typeof TuneJobSchema>;

/**
 * Queue cachet-eval, job name "layers": the layer advisor (api replicas, in a thread of their
 * own). Paths (model, folder and manifest sources) must be readable by every api replica.
 */
export const LayersJobSchema = z
  .object({
    model: z.string().min(1).describe('the .onnx model, an absolute path'),
    train: SourceSchema.describe('cache images'),
    val: SourceSchema.describe('labelled validation images'),
    candidates: z.array(z.string().min(1)).min(1).optional(),
    maxDimension: z.number().int().min(1).optional(),
    top: z.number().int().min(1).max(6).optional(),
    cacheSize: z.number().int().min(1).optional(),
    perClass: z.number().int().min(1).optional(),
    valPerClass: z.number().int().min(1).optional(),
    flip: z.boolean().default(false),
    thetas: z.array(z.number().min(0)).min(1).optional(),
    lambdas: z.array(z.number().min(0).max(1)).min(1).optional(),
    maxMemoryBytes: z.number().int().min(1).optional(),
    total: z.number().int().min(0).optional().describe('images to extract (train × 2 with flip, + val), for progress until the job starts'),
  })
  .strict();
export type LayersJobData = z.input<typeof LayersJobSchema>;

/** Queue cachet-eval, job name "robustness": errors under corruptions and attacks (api replicas, which hold the index). */
export const RobustnessJobSchema = RobustnessSettingsSchema.extend({
  cache: z.string().min(1),
  items: z.array(ItemRefSchema).min(1),
  total: z
    .number()
    .int()
    .min(0)
    .optional()
    .describe('images scored in all (once clean, once per corruption and severity, once per attack and ε), for progress until the job starts'),
}).strict();
export type RobustnessJobData = z.input<typeof RobustnessJobSchema>;

const REPLICA_JOB_TYPES = ['eval', 'tune', 'layers', 'robustness'] as const;
/** The job type of a cachet-eval job, by its name. */
export const replicaJobType = (name: string): (typeof REPLICA_JOB_TYPES)[number] => REPLICA_JOB_TYPES.find((t) => t === name) ?? 'eval';
