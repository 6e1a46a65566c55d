// How a process's caches stand: loaded or failed, and how far each index is behind its key log.
import { z } from 'zod';
import { CacheInfoSchema, DamageSchema } from '../cache/info.js';

const int = () => z.number().int();

export const LogStatusSchema = z
  .object({
    name: z.string(),
    size: int(),
    appliedPosition: int(),
    logEnd: int(),
    lag: int().describe('records in the key log this replica has not applied yet'),
  })
  .strict();
export type LogStatus = z.infer<typeof LogStatusSchema>;

export const CacheStatusSchema = z
  .object({
    name: z.string(),
    status: z.enum(['ready', 'failed', 'damaged']),
    error: z.string().optional(),
    info: CacheInfoSchema.optional(),
  })
  .strict();
export type CacheStatus = z.infer<typeof CacheStatusSchema>;

/** What `cachet cache verify` (POST /v1/caches/:name/verify) found. */
export const CacheVerificationSchema = z
  .object({
    cache: z.string(),
    checkedAt: z.string(),
    ok: z.boolean(),
    problems: z.array(z.string()).describe('each thing that does not check out now'),
    snapshot: z
      .object({
        logPosition: int().nullable(),
        verified: z.boolean().describe('false for a snapshot written before checksums'),
        files: z.array(z.object({ name: z.string(), bytes: int().nullable(), problem: z.string().nullable() }).strict()),
      })
      .strict()
      .nullable()
      .describe('null: no snapshot yet'),
    log: z
      .object({ base: int(), end: int(), damaged: z.array(z.object({ position: int(), id: z.string().optional() }).strict()) })
      .strict()
      .nullable()
      .describe('null when the cache could not be loaded'),
    damage: z.array(DamageSchema).describe('damage found earlier, and what was done'),
  })
  .strict();
export type CacheVerification = z.infer<typeof CacheVerificationSchema>;

/** How a cache being opened is getting on (GET /readyz while a replica starts). */
export const StartProgressSchema = z
  .object({
    name: z.string(),
    phase: z.enum(['fetching a peer snapshot', 'replaying the key log', 'warming up', 'ready', 'failed']),
    done: int().describe('bytes of the peer snapshot received, or the log position applied'),
    total: int().nullable().describe("the log's end while replaying; null when not known"),
    from: z.string().optional().describe('the peer the snapshot comes from'),
  })
  .strict();
export type StartProgress = z.infer<typeof StartProgressSchema>;
