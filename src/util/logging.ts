// Structured JSON logs (pino), one logger per process; http/request-log.ts adds a line per request.
import { pino, type Logger, type LevelWithSilent, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

/** A JSON logger on stdout; the level is LOG_LEVEL's (default info). */
export function createLogger(opts: { level?: string; destination?: DestinationStream } = {}): Logger {
  const level = opts.level ?? process.env.LOG_LEVEL ?? 'info';
  const options = { level, base: { service: 'cachet' }, timestamp: pino.stdTimeFunctions.isoTime };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

/** A logger that writes nothing (tests). */
export const silentLogger = (): Logger => pino({ level: 'silent' });

/** A logger that keeps every line, parsed (tests). */
export function capturingLogger(lines: Record<string, unknown>[], level: LevelWithSilent = 'debug'): Logger {
  return pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
}

/** A URL without its password, for logs. */
export function redactUrl(url: string): string {
  // by hand, not new URL(): a redis-cluster:// URL lists several host:port, which URL refuses
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/]*)@(.*)$/is.exec(url); // greedy: up to the authority's last @
  if (!m) return /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : '(unparsable URL)';
  const colon = m[2].indexOf(':');
  return colon < 0 ? url : `${m[1]}${m[2].slice(0, colon)}:***@${m[3]}`;
}
