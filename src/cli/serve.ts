// `cachet serve`: the service in the foreground, until SIGTERM or SIGINT.
import { startService, RunningService } from '../server.js';
import type { ApiLimits } from '../http/limits.js';
import type { BatcherOptions } from '../http/batcher.js';
import { createLogger, redactUrl } from '../util/logging.js';
import { closeOnSignals } from '../util/signals.js';

export interface ServeCliOptions {
  port: number;
  host: string;
  dataDir: string;
  redisUrl?: string;
  chunkSize?: number;
  shards?: number[];
  apiKeysFile?: string;
  readRoots?: string;
  urlPrefixes?: string;
  limits?: Partial<ApiLimits>;
  batcher?: Partial<BatcherOptions>;
  drainDelayMs?: number;
  shutdownTimeoutMs?: number;
}

/** The flags of `cachet serve`, as commander parses them. */
export interface ServeFlags {
  port: number;
  host: string;
  dataDir: string;
  redisUrl?: string;
  chunkSize: number;
  shards?: number[];
  apiKeysFile?: string;
  readRoots?: string;
  urlPrefixes?: string;
  drainDelayMs: number;
  shutdownTimeoutMs: number;
  maxBodyBytes?: number;
  maxImportBytes?: number;
  minBodyRate?: number;
  bodyRateGraceMs?: number;
  maxImages?: number;
  maxPixels?: number;
  maxJobsPerCache?: number;
  maxConcurrentPredicts?: number;
  predictMaxBatch?: number;
  predictMaxWaitMs?: number;
}

/** `cachet serve`'s flags into the service's limits and batcher options, then serve. */
export async function serveFlags(opts: ServeFlags): Promise<RunningService> {
  const {
    maxBodyBytes,
    maxImages,
    maxPixels,
    maxJobsPerCache,
    maxConcurrentPredicts,
    maxImportBytes,
    minBodyRate,
    bodyRateGraceMs,
    predictMaxBatch,
    predictMaxWaitMs,
    ...rest
  } = opts;
  const limits = {
    maxBodyBytes,
    maxImagesPerRequest: maxImages,
    limitInputPixels: maxPixels,
    maxJobsPerCache,
    maxConcurrentPredicts,
    maxImportBytes,
    minBodyBytesPerSecond: minBodyRate,
    bodyRateGraceMs,
  };
  const batcher = { maxBatch: predictMaxBatch, maxWaitMs: predictMaxWaitMs };
  const given = <T extends object>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  return serve({ ...rest, limits: given(limits), batcher: given(batcher) });
}

/** Logs are JSON lines on stdout (LOG_LEVEL); API keys from CACHET_API_KEYS and/or --api-keys-file. */
export async function serve(opts: ServeCliOptions): Promise<RunningService> {
  const logger = createLogger();
  const service = await startService({ ...opts, logger, apiKeys: process.env.CACHET_API_KEYS });
  for (const c of service.caches) {
    if (c.status === 'failed') logger.error({ cache: c.name }, `cache ${c.name} could not be loaded: ${c.error}`);
  }
  const mode = opts.redisUrl ? `distributed mode, Redis ${redactUrl(opts.redisUrl)}` : 'embedded mode';
  logger.info(
    { url: service.url, mode: opts.redisUrl ? 'distributed' : 'embedded' },
    `cachet: serving ${service.caches.length} cache(s) from ${opts.dataDir} at ${service.url} (${mode})`,
  );
  stopOnSignals(service);
  return service;
}

export function stopOnSignals(service: RunningService): void {
  closeOnSignals('cachet', () => service.close(), service.logger);
}
