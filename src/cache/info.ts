// What GET /v1/caches/:name shows of a cache: its definition as it stands, and what the
// process holding it knows (size, index, search key, log and snapshot positions).
import { z } from 'zod';
import { CacheDefinitionSchema } from './definition.js';

const int = () => z.number().int();

/** What was found damaged in a cache's stored data, and what was done about it. */
export const DamageSchema = z
  .object({
    detectedAt: z.string(),
    what: z.string().describe('the file or log span that did not check out, and how'),
    outcome: z.string().describe('repaired (from what), or lost (which records)'),
    lostRecords: int().describe('records of the key log that could not be read: index their images again'),
    lostIds: z.array(z.string()).describe('the ids of the lost records, where they could be read'),
  })
  .strict();
export type Damage = z.infer<typeof DamageSchema>;

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
        pending: z.string().nullable().describe('what the search key still waits for (a PCA waiting for its sample), in words; null when it is final'),
      })
      .strict(),
    logPosition: int(),
    snapshotPosition: int(),
    history: CacheDefinitionSchema.shape.history.unwrap().describe('earlier θ and λ, newest first'),
    damage: z.array(DamageSchema).describe('damage found in stored data and what was done, oldest first; empty when none'),
    shards: z
      .array(
        z
          .object({
            shard: int(),
            size: int().describe("items in the shard's key log"),
            heldHere: z.boolean().describe('whether the replica that answered holds this shard'),
            replicas: z.array(z.object({ id: z.string(), url: z.string(), lastSeen: z.string() }).strict()).describe('the replicas serving it, freshest first'),
          })
          .strict(),
      )
      .optional()
      .describe('a cache of several shards: each one (size summed over them; positions summed over the shards held here)'),
  })
  .strict();
export type CacheInfo = z.infer<typeof CacheInfoSchema>;
