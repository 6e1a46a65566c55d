// How a process's caches stand: loaded or failed, and how far each index is behind its key log.
import { z } from 'zod';
import { CacheInfoSchema } from '../cache/info.js';

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
