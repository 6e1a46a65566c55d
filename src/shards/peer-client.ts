// Asking a replica that holds a shard for its answer to a batch of query keys
// (POST /v1/caches/<cache>#<s>/answers). The peer's reply is checked before it is merged: a peer
// is another process, and what it sends is data like any other.
import { z } from 'zod';
import type { ShardAnswer } from './merge.js';

/** how long one peer has to answer before the next replica of the shard is tried */
const PEER_TIMEOUT_MS = 10_000;

export interface ShardQuery {
  /** n full keys, L2-normalised, n × dimension */
  keys: Float32Array;
  n: number;
  theta: number;
  wanted: number;
}

export interface HeldAnswer {
  size: number;
  answers: ShardAnswer[];
}

const logSum = z.number().nullable(); // JSON has no −∞: null stands for it
export const AnswersSchema = z
  .object({
    size: z.number().int().min(0),
    answers: z.array(
      z
        .object({
          candidates: z.array(z.object({ id: z.string(), label: z.number().int().min(0), similarity: z.number() }).strict()),
          classLogSums: z.array(logSum).optional(),
        })
        .strict(),
    ),
  })
  .strict();

/** The body a peer is asked with. */
export function answersRequest(q: ShardQuery): { keys: string; n: number; theta: number; wanted: number } {
  return { keys: Buffer.from(q.keys.buffer, q.keys.byteOffset, q.keys.byteLength).toString('base64'), n: q.n, theta: q.theta, wanted: q.wanted };
}

/** One peer's answer for one shard; throws, saying why, when the peer does not give a valid one. */
export async function askPeer(url: string, shard: string, q: ShardQuery, numClasses: number, apiKey?: string): Promise<HeldAnswer> {
  const res = await fetch(`${url.replace(/\/+$/, '')}/v1/caches/${encodeURIComponent(shard)}/answers`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
    body: JSON.stringify(answersRequest(q)),
    signal: AbortSignal.timeout(PEER_TIMEOUT_MS),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 300)}`);
  const parsed = AnswersSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`its answer does not validate: ${parsed.error.issues[0]?.message}`);
  const { size, answers } = parsed.data;
  if (answers.length !== q.n) throw new Error(`it answered ${answers.length} queries of ${q.n}`);
  for (const a of answers) {
    if (a.candidates.some((c) => c.label >= numClasses) || (a.classLogSums && a.classLogSums.length !== numClasses)) {
      throw new Error(`its answer has labels or class sums for another number of classes than ${numClasses}`);
    }
  }
  return {
    size,
    answers: answers.map((a) => ({
      candidates: a.candidates,
      ...(a.classLogSums && { classLogSums: a.classLogSums.map((l) => (l === null ? -Infinity : l)) }),
    })),
  };
}
