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
