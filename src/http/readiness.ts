// GET /readyz: whether a load balancer should send this process requests, and why not. Starting:
// 503 with each cache's progress; a frozen engine thread: 503; Redis away or damage found: 200,
// "degraded", saying so — predictions go on from the indexes in memory.
import type { RequestHandler } from 'express';
import type { ServingApi } from '../engine/client.js';
import type { Operations } from './operations.js';

/** What readiness needs of the service (a part of app.ts's ApiContext). */
export interface ReadinessContext {
  engine: Pick<ServingApi, 'startup' | 'listCaches' | 'logStatus'>;
  mode: 'embedded' | 'distributed';
  isReady: () => boolean;
  /** distributed mode: since when, and why, this process has not reached Redis (null: it has) */
  redisOutage?: () => { since: number; error: string } | null;
  ops?: Pick<Operations, 'isStopping'>;
}

export function readiness(ctx: ReadinessContext): RequestHandler {
  return async (_req, res) => {
    const { engine } = ctx;
    if (!ctx.isReady()) {
      if (ctx.ops?.isStopping) return void res.status(503).json({ status: 'stopping' });
      // how far each cache's opening has got: a peer snapshot's bytes, the log replayed
      const starting = await withDeadline(engine.startup(), READY_ENGINE_MS);
      return void res.status(503).json({ status: 'starting', ...(starting && { caches: starting }) });
    }
    // A frozen engine thread must take this replica out of a load balancer: no answer in time is 503.
    const caches = await withDeadline(engine.listCaches(), READY_ENGINE_MS);
    if (!caches) return void res.status(503).json({ status: 'unresponsive' });
    // The log positions come from the key logs' store (Redis): slow or down, readiness goes on
    // without them. Predictions go on from the indexes in memory, so the replica stays in (200),
    // degraded: taking every replica out because Redis is away would stop what still works.
    const known = ctx.redisOutage?.() ?? null; // known to be down: no need to wait for the positions
    const logs = known ? null : await withDeadline(engine.logStatus(), READY_LOG_MS);
    const outage = known ?? (ctx.mode === 'distributed' && logs === null ? { since: Date.now(), error: 'no answer in time' } : null);
    const lag = new Map((logs ?? []).map((l) => [l.name, l]));
    // Damage degrades readiness but does not fail it: the other caches (and the repaired ones) serve.
    const damaged = caches.some((c) => c.status === 'damaged' || (c.info?.damage.length ?? 0) > 0);
    const served = caches.filter((c) => c.info);
    res.json({
      status: damaged || outage ? 'degraded' : 'ready',
      mode: ctx.mode,
      ...(outage && {
        keyLog: {
          status: 'unreachable',
          since: new Date(outage.since).toISOString(),
          error: outage.error,
          message: `key log unreachable (${outage.error}): serving ${served.reduce((n, c) => n + c.info!.size, 0)} items of ${served.length} cache(s) at their last applied positions; new items and jobs wait for Redis`,
        },
      }),
      caches: caches.map((c) => ({
        name: c.name,
        status: c.status,
        size: c.info?.size ?? null,
        ...(c.error && { error: c.error }),
        log: lag.get(c.name) ?? null,
        ...(c.info && { logPosition: c.info.logPosition }),
        ...(c.info?.damage.length && { damage: c.info.damage }),
      })),
    });
  };
}

/** how long /readyz waits for the engine thread, and for the key logs' positions */
const READY_ENGINE_MS = 2000;
const READY_LOG_MS = 1000;

/** The value, or null if it takes longer than `ms` (the promise is left to settle on its own). */
async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
  try {
    return await Promise.race([promise.catch(() => null), late]);
  } finally {
    clearTimeout(timer);
  }
}
