// One log line per request (pino-http), each request with an id: the caller's X-Request-Id when it
// is a sane token (≤ 128 characters of [A-Za-z0-9._:-]), else a new UUID. The id goes back as the
// X-Request-Id response header, is on every log line of the request (`reqId`) and in the body of a 500.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { pinoHttp } from 'pino-http';

const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestId(req: IncomingMessage, res: ServerResponse): string {
  const given = req.headers['x-request-id'];
  const id = typeof given === 'string' && SANE_REQUEST_ID.test(given) ? given : randomUUID();
  res.setHeader('X-Request-Id', id);
  return id;
}

const QUIET_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/** Query parameters that may carry a secret (a key sent where it does not belong): never logged. */
const SECRET_PARAMS = /^(api[-_]?key|key|token|access[-_]?token|auth|authorization|password|secret)$/i;

/** The request URL as logged: secret-looking query values replaced. */
export function loggedUrl(url: string | undefined): string {
  if (!url || !url.includes('?')) return url ?? '';
  const [p, q] = url.split('?', 2);
  const params = new URLSearchParams(q);
  let changed = false;
  for (const k of [...params.keys()]) {
    if (SECRET_PARAMS.test(k)) {
      params.set(k, '***');
      changed = true;
    }
  }
  return changed ? `${p}?${params}` : url;
}

/** The request-id and access-log middleware. Probes and scrapes are logged at debug level. */
export function requestLogging(logger: Logger) {
  return pinoHttp({
    logger,
    genReqId: requestId,
    quietReqLogger: true, // handlers' lines carry reqId, not the whole request
    // the name of the API key (never the key), once authenticate() has found it
    customProps: (req) => (req.principal ? { apiKey: req.principal.name } : {}),
    customLogLevel: (req, res, err) => {
      const quiet = QUIET_PATHS.has((req.url ?? '').split('?')[0]);
      // a probe's 503 (starting, stopping) is an answer, not a fault: the state changes are logged where they happen
      if (err || (res.statusCode >= 500 && !quiet)) return 'error';
      return quiet ? 'debug' : 'info';
    },
    customSuccessMessage: (req, res, ms) => `${req.method} ${loggedUrl(req.url)} ${res.statusCode} ${ms} ms`,
    customErrorMessage: (req, res) => `${req.method} ${loggedUrl(req.url)} ${res.statusCode}`,
    serializers: {
      // never the headers: they hold API keys
      req: (req: { id: unknown; method: string; url: string; remoteAddress?: string }) => ({
        id: req.id,
        method: req.method,
        url: loggedUrl(req.url),
        remoteAddress: req.remoteAddress,
      }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
  });
}
