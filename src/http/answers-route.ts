// POST /v1/caches/<cache>#<s>/answers: what a shard held here answers for a batch of query keys,
// for the replica that fans a predict out over a cache's shards and merges the answers
// (shards/merge.ts). Replicas call it with the peer key; a client has no use for it.
import type express from 'express';
import { z } from 'zod';
import type { ServingApi } from '../engine/client.js';
import { UserError } from '../errors/user-error.js';
import { ThetaSchema } from '../cache/definition.js';
import { param, parse, wrap } from './handlers.js';

export const AnswersRequestSchema = z
  .object({
    keys: z.string().min(1).describe('n query keys (full keys, L2-normalised), float32 little-endian, n × dimension, base64'),
    n: z.number().int().min(1).max(4096),
    theta: ThetaSchema,
    wanted: z.number().int().min(0).max(2000).describe('nearest items wanted per query, besides the k p_cache sums over'),
  })
  .strict();

export function addAnswersRoute(app: express.Express, engine: ServingApi): void {
  app.post(
    '/v1/caches/:name/answers',
    wrap(async (req, res) => {
      const body = parse(AnswersRequestSchema, req.body);
      const bytes = Buffer.from(body.keys, 'base64');
      if (bytes.length === 0 || bytes.length % 4 !== 0)
        throw new UserError('invalid_request', `keys: ${bytes.length} bytes is not a whole number of float32 values`);
      const keys = new Float32Array(bytes.length / 4);
      Buffer.from(keys.buffer).set(bytes);
      if (!keys.every(Number.isFinite)) throw new UserError('invalid_request', 'keys: a value is not a finite number');
      res.json(await engine.answer(param(req, 'name'), keys, body.n, body.theta, body.wanted));
    }),
  );
}
