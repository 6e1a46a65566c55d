// Whether Redis answers, as one process sees it, logged once per change of state: an outage of
// two minutes is two lines ("unreachable", "reachable again after 2 min"), not one per retry of
// each of the process's connections (ioredis and BullMQ retry every few hundred milliseconds).
import type { Redis } from 'ioredis';

export type OutageLog = (level: 'warn' | 'info', msg: string) => void;

export class RedisOutage {
  private down: { since: number; error: string } | null = null;

  constructor(
    private readonly log: OutageLog,
    /** what this process does while Redis is away, for the log line */
    private readonly meanwhile: string,
    /**
     * A command that answers once Redis is back (a PING on a connection that queues commands while
     * it reconnects): the end of an outage does not depend on which connection saw its start.
     */
    private readonly probe?: () => Promise<unknown>,
  ) {}

  /** null while Redis answers; else since when it has not, and why */
  get state(): { since: number; error: string } | null {
    return this.down;
  }

  /** An error of a connection or of a loop that talks to Redis: the first one of an outage is logged. */
  failed(err: unknown): void {
    if (this.down) return;
    const error = err instanceof Error ? err.message : String(err);
    this.down = { since: Date.now(), error };
    this.log('warn', `redis unreachable (${error}); retrying; ${this.meanwhile}`);
    // rejected only when the connection is closed for good (the process stops): then no more probing
    this.probe?.().then(
      () => this.answered(),
      () => {},
    );
  }

  /** A command went through: the end of an outage, if there was one, is logged. */
  answered(): void {
    if (!this.down) return;
    const seconds = (Date.now() - this.down.since) / 1000;
    this.down = null;
    this.log('info', `redis reachable again after ${seconds.toFixed(1)} s`);
  }

  /**
   * Follow a connection or a BullMQ object: its connection errors make the outage, its becoming
   * ready ends it; any other error goes to `other`, as it comes.
   */
  watch(emitter: { on(event: 'error', listener: (err: Error) => void): unknown }, other: (err: Error) => void): void {
    emitter.on('error', this.onError(other));
    (emitter as Pick<Redis, 'on'>).on('ready', () => this.answered());
  }

  /** An error listener: connection errors make the outage, any other goes to `other`. */
  onError(other: (err: Error) => void): (err: Error) => void {
    return (err) => (isConnectionError(err) ? this.failed(err) : other(err));
  }
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'EAI_AGAIN']);

/** An error of reaching Redis (as opposed to an error of a command or of a job). */
function isConnectionError(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return (code !== undefined && CONNECTION_CODES.has(code)) || /Connection is closed|connect ETIMEDOUT|Stream isn't writeable/i.test(err.message);
}
