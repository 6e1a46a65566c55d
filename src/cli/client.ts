// A small client for the HTTP API, used by the CLI (as redis-cli talks to redis).
import type { JobView } from '../jobs/types.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class CachetClient {
  /** `apiKey` goes as `Authorization: Bearer <key>` (CACHET_API_KEY or --api-key in the CLI) */
  constructor(
    readonly baseUrl: string,
    private readonly apiKey?: string,
  ) {}

  /** The headers that authenticate a request, for callers that fetch themselves. */
  authHeaders(): Record<string, string> {
    return this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {};
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response | null = null;
    // A GET is safe to repeat: retry it when a kept-alive connection was closed under it.
    for (let attempt = 1; !res; attempt++) {
      try {
        res = await fetch(new URL(path, this.baseUrl), {
          method,
          headers: { ...this.authHeaders(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (err) {
        if (method === 'GET' && attempt < 3) {
          await new Promise((r) => setTimeout(r, 200 * attempt));
          continue;
        }
        throw new ApiError(
          0,
          'unreachable',
          `cannot reach the Cachet service at ${this.baseUrl} (${(err as Error).cause ?? (err as Error).message}): start it with \`cachet serve\` or pass --url`,
        );
      }
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON: reported below */
    }
    if (!res.ok) {
      const e = (json as { error?: { code?: string; message?: string } } | null)?.error;
      const hint =
        res.status === 401
          ? this.apiKey
            ? ' (the key given with CACHET_API_KEY or --api-key was refused)'
            : ' (give one with CACHET_API_KEY or --api-key)'
          : '';
      throw new ApiError(res.status, e?.code ?? 'http_error', (e?.message ?? `HTTP ${res.status}: ${text.slice(0, 200)}`) + hint);
    }
    return json as T;
  }

  /** Poll a job until it ends, calling onProgress on each poll. */
  async waitForJob(id: string, onProgress: (job: JobView) => void, intervalMs = 500): Promise<JobView> {
    for (;;) {
      const job = await this.request<JobView>('GET', `/v1/jobs/${id}`);
      onProgress(job);
      if (job.state === 'completed' || job.state === 'failed') return job;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}
