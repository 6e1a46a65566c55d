// A cache definition: which model, which key layers, θ and λ, and how to index.
// Stored as indexes/<cache>/cache.json; the API validates requests against the same schema.
import { z } from 'zod';
import { ModelSpecSchema } from '../model/spec.js';
import { DEFAULT_INDEX_OPTIONS } from '../index/factory.js';
import type { ErrorCode } from '../errors/catalogue.js';
import { UserError } from '../errors/user-error.js';
import { describeZodError } from '../errors/zod.js';

/**
 * Neighbours p_cache sums over when a cache searches (hnsw, reduced keys), with efSearch 64
 * (index/factory.ts). Chosen by error, then speed, on the paper's 90,000-item PCA-128 cache (θ 80,
 * λ 0.5111, all of val-5k; `npm run bench:search-settings`): every k from 20 to 100 at efSearch 64 to
 * 256 errs 14.18–14.38 % (exact search over every item: 14.42 %), and k 50 at efSearch 64 is among
 * the best (14.18 %) at 0.58× the time of k 100, efSearch 256 (14.24 %). README, "How it works".
 */
export const DEFAULT_K = 50;

export const CACHE_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/i;
/** what a process holds: a cache, or shard s of one as `<cache>#<s>` (shards/shards.ts) */
const HELD_NAME = /^[a-z0-9][a-z0-9_-]{0,63}(#\d{1,3})?$/i;
export const MAX_SHARDS = 256;

export const ThetaSchema = z.number().min(0).max(1000).describe('θ, the sharpness of exp(θ·similarity); the paper uses 10–90');
export const EfSearchSchema = z.number().int().min(8).max(5000).describe('hnsw candidate list size at search time; higher is closer to exact and slower');
export const KSchema = z.number().int().min(1).max(2000).describe('p_cache sums over this many nearest neighbours when the index is approximate');
export const LambdaSchema = z.number().min(0).max(1).describe('λ, the weight of p_cache: 0 is the model alone, 1 the cache alone');

// How a cache indexes its keys; the defaults are index/factory.ts's (efSearch chosen with k: DEFAULT_K above).
export const IndexOptionsSchema = z
  .object({
    type: z.enum(['auto', 'exact', 'hnsw']).default(DEFAULT_INDEX_OPTIONS.type),
    exactThreshold: z.number().int().min(0).default(DEFAULT_INDEX_OPTIONS.exactThreshold),
    m: z.number().int().min(2).max(128).default(DEFAULT_INDEX_OPTIONS.m),
    efConstruction: z.number().int().min(8).max(2000).default(DEFAULT_INDEX_OPTIONS.efConstruction),
    efSearch: EfSearchSchema.default(DEFAULT_INDEX_OPTIONS.efSearch),
  })
  .strict();

// A reduced search key: the index holds a projection of the full key (PCA fitted on the
// cache's first `fitSample` items, or a seeded random projection); p_cache then uses the
// full keys of the candidates, re-ranked exactly (`rerank`), or the reduced similarities.
// Defaults from `npm run bench:search-keys` on the paper's 90,000-item cache (12,288-d keys):
// with re-ranking, PCA 64/128/256 all matched or beat full exact search (held-out error
// 14.72/14.72/14.60 % vs 14.84 %) at 1.2/1.4/2.0 ms per search; without it they lost 0.2–1.0
// point. So re-ranking is on, and 128 dimensions leave recall some margin at 1.4 ms.
export const SearchKeySchema = z
  .object({
    reduce: z.enum(['none', 'pca', 'random']).default('none'),
    dimension: z.number().int().min(8).max(4096).default(128),
    fitSample: z.number().int().min(100).max(100_000).default(5000),
    rerank: z.boolean().default(true),
    fullKeys: z.enum(['float32', 'float16']).default('float16').describe('how the full keys kept for re-ranking are stored'),
  })
  .strict();
export type SearchKey = z.output<typeof SearchKeySchema>;

export const CacheDefinitionSchema = z
  .object({
    name: z.string().regex(HELD_NAME, 'a cache name is 1–64 letters, digits, "-" or "_", starting with a letter or digit'),
    model: z.string().min(1).describe('path of the .onnx file, as the service sees it'),
    spec: ModelSpecSchema.partial().optional().describe('overrides of the model spec file'),
    keyLayers: z.array(z.string().min(1)).min(1).max(16),
    theta: ThetaSchema.default(50),
    lambda: LambdaSchema.default(0.5),
    k: KSchema.default(DEFAULT_K),
    index: IndexOptionsSchema.default(IndexOptionsSchema.parse({})),
    searchKey: SearchKeySchema.default(SearchKeySchema.parse({})),
    shards: z
      .number()
      .int()
      .min(1)
      .max(MAX_SHARDS)
      .default(1)
      .describe(
        'how many shards the items are split over (by a hash of their id), each held by the replicas that serve it; fixed at creation; distributed mode',
      ),
    /** earlier θ and λ, newest first, for rolling back a tuning */
    history: z
      .array(z.object({ theta: z.number(), lambda: z.number(), until: z.string(), reason: z.string() }).strict())
      .max(50)
      .default([]),
  })
  .strict();

export type CacheDefinitionInput = z.input<typeof CacheDefinitionSchema>;
export type CacheDefinition = z.output<typeof CacheDefinitionSchema>;

const SETTINGS = {
  theta: { schema: ThetaSchema, error: 'invalid_theta' },
  lambda: { schema: LambdaSchema, error: 'invalid_lambda' },
  k: { schema: KSchema, error: 'invalid_k' },
  efSearch: { schema: EfSearchSchema, error: 'invalid_efSearch' },
} as const satisfies Record<string, { schema: unknown; error: ErrorCode }>;

/** A setting given with a request or an update, checked against the same schema as the definition. */
export function parseSetting(field: keyof typeof SETTINGS, value: unknown): number {
  const { schema, error } = SETTINGS[field];
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new UserError(error, `${field} = ${JSON.stringify(value)}: ${r.error.issues.map((i) => i.message).join('; ')}`);
}

const MAX_HISTORY = 20;

/** A definition with θ, λ (kept in its history, so a user can roll back), k or efSearch changed. */
export function changedDefinition(
  d: CacheDefinition,
  change: { theta?: number; lambda?: number; reason?: string; k?: number; efSearch?: number },
): CacheDefinition {
  const theta = change.theta === undefined ? d.theta : parseSetting('theta', change.theta);
  const lambda = change.lambda === undefined ? d.lambda : parseSetting('lambda', change.lambda);
  const history =
    theta !== d.theta || lambda !== d.lambda
      ? [{ theta: d.theta, lambda: d.lambda, until: new Date().toISOString(), reason: change.reason ?? 'set' }, ...d.history].slice(0, MAX_HISTORY)
      : d.history; // newest first
  return {
    ...d,
    theta,
    lambda,
    history,
    k: change.k === undefined ? d.k : parseSetting('k', change.k),
    index: { ...d.index, efSearch: change.efSearch === undefined ? d.index.efSearch : parseSetting('efSearch', change.efSearch) },
  };
}

/**
 * A new cache's definition from a client's request, checked: the schema, the name (no "#": it
 * marks a shard), no layer twice, and shards only where the service can hold them.
 */
export function newDefinition(input: unknown, shardsAllowed: boolean): CacheDefinition {
  const parsed = CacheDefinitionSchema.safeParse(input);
  if (!parsed.success) throw new UserError('invalid_cache_definition', describeZodError(parsed.error));
  const definition = parsed.data;
  if (!CACHE_NAME.test(definition.name)) {
    throw new UserError(
      'invalid_cache_definition',
      `name: "${definition.name}" is not a cache name: "#" marks a shard of one (1–64 letters, digits, "-" or "_")`,
    );
  }
  if (definition.shards > 1 && !shardsAllowed) {
    throw new UserError('distributed_only', `shards: ${definition.shards}: an embedded service holds a cache whole; shards need distributed mode (REDIS_URL)`);
  }
  if (definition.keyLayers.length !== new Set(definition.keyLayers).size) {
    throw new UserError('invalid_cache_definition', `keyLayers lists a layer twice: ${definition.keyLayers.join(', ')}`);
  }
  return definition;
}
