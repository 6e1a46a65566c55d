// The main thread's handle on the engine thread: the Engine's methods, as promises.
import { Worker } from 'node:worker_threads';
import type { Engine } from './engine.js';
import { threadEntry } from '../util/thread-entry.js';
import { threadCaller } from '../util/thread-rpc.js';
import type { Logger } from '../util/logging.js';
import { EngineLogEntry } from './types.js';

type EngineMethod = {
  [K in keyof Engine]: Engine[K] extends (...args: never[]) => Promise<unknown> ? K : never;
}[keyof Engine];

export type EngineApi = Pick<Engine, EngineMethod>;

export interface EngineClient extends EngineApi {
  terminate(): Promise<void>;
}

/**
 * Start the engine thread. Float32Array arguments are moved to it, not copied. What it logs
 * (its background loops' failures) goes to `log`, so that it reaches the service's logger.
 */
export function startEngine(log: (entry: EngineLogEntry) => void): EngineClient {
  const worker = new Worker(threadEntry(import.meta.url, 'thread')); // thread.js, or thread.ts under tsx
  const thread = threadCaller(worker, 'engine', (event) => log(event as EngineLogEntry));
  return new Proxy({} as EngineClient, {
    get(_, prop: string) {
      if (prop === 'terminate') return () => thread.terminate();
      if (prop === 'then') return undefined; // not a thenable
      return (...args: unknown[]) => thread.call(prop, args);
    },
  });
}

/** The engine's log entries as lines of a pino logger. */
export const engineLogTo =
  (logger: Logger) =>
  ({ level, msg }: EngineLogEntry): void =>
    void logger[level]({ component: 'engine' }, `engine: ${msg}`);
