// `cachet serve`: the service in the foreground, until SIGTERM or SIGINT.
import { startService, RunningService } from '../api/service.js';
import { closeOnSignals } from './signals.js';

export async function serve(opts: { port: number; host: string; dataDir: string; redisUrl?: string; chunkSize?: number }): Promise<RunningService> {
  const service = await startService(opts);
  for (const c of service.caches) {
    if (c.status === 'failed') console.error(`cache ${c.name} could not be loaded: ${c.error}`);
  }
  const mode = opts.redisUrl ? `distributed mode, Redis ${redactUrl(opts.redisUrl)}` : 'embedded mode';
  console.log(`cachet: serving ${service.caches.length} cache(s) from ${opts.dataDir} at ${service.url} (${mode})`);
  stopOnSignals(service);
  return service;
}

export function stopOnSignals(service: RunningService): void {
  closeOnSignals('cachet', () => service.close());
}

/** A URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}
