// A cache definition: which model, which key layers, θ and λ, and how to index.
// Stored as indexes/<cache>/cache.json; the API validates requests against the same schema.
import { z } from 'zod';
import { ModelSpecSchema } from '../model/spec.js';

export const CACHE_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/i;

export const ThetaSchema = z.number().min(0).max(1000).describe('θ, the sharpness of exp(θ·similarity); the paper uses 10–90');
export const LambdaSchema = z.number().min(0).max(1).describe('λ, the weight of p_cache: 0 is the model alone, 1 the cache alone');

export const IndexOptionsSchema = z
  .object({
    type: z.enum(['auto', 'exact', 'hnsw']).default('auto'),
    exactThreshold: z.number().int().min(0).default(20_000),
    m: z.number().int().min(2).max(128).default(16),
    efConstruction: z.number().int().min(8).max(2000).default(100),
    efSearch: z.number().int().min(8).max(5000).default(128),
  })
  .strict();

export const CacheDefinitionSchema = z
  .object({
    name: z.string().regex(CACHE_NAME, 'a cache name is 1–64 letters, digits, "-" or "_", starting with a letter or digit'),
    model: z.string().min(1).describe('path of the .onnx file, as the service sees it'),
    spec: ModelSpecSchema.partial().optional().describe('overrides of the model spec file'),
    keyLayers: z.array(z.string().min(1)).min(1).max(16),
    theta: ThetaSchema.default(50),
    lambda: LambdaSchema.default(0.5),
    /** p_cache sums over this many nearest neighbours when the index is approximate */
    k: z.number().int().min(1).max(2000).default(50),
    index: IndexOptionsSchema.default(IndexOptionsSchema.parse({})),
  })
  .strict();

export type CacheDefinitionInput = z.input<typeof CacheDefinitionSchema>;
export type CacheDefinition = z.output<typeof CacheDefinitionSchema>;

export interface CacheInfo {
  name: string;
  model: string;
  modelHash: string;
  keyLayers: string[];
  dimension: number;
  classes: string[];
  size: number;
  theta: number;
  lambda: number;
  k: number;
  index: { type: 'exact' | 'hnsw'; policy: 'auto' | 'exact' | 'hnsw'; scoring: 'all-items' | 'k-nearest'; params: Record<string, number | string> };
  logPosition: number;
  snapshotPosition: number;
}
