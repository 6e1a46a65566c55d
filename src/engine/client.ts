// The main thread's handle on the engine thread: the engine's methods, as promises.
import { Worker } from 'node:worker_threads';
import { threadEntry } from '../util/thread-entry.js';
import { threadCaller } from '../util/thread-rpc.js';
import type { Logger } from '../util/logging.js';
import type { EmbeddedEngine } from './embedded-engine.js';
import type { CacheEngine } from './engine.js';
import type { LogWriter } from './log-writer.js';
import type { EngineLogEntry, EngineOptions } from './types.js';

type AsyncMethods<T> = { [K in keyof T]: T[K] extends (...args: never[]) => Promise<unknown> ? K : never }[keyof T];
type Api<T> = Pick<T, AsyncMethods<T>>;

/** What a process that holds caches answers (embedded and api replicas): predictions, tuning, settings, deletes. */
export type ServingApi = Api<CacheEngine>;
/** What an index job needs: embedded engines and workers both index. */
export type IndexingApi = Pick<Api<EmbeddedEngine> & Api<LogWriter>, 'modelSpec' | 'indexBatch' | 'flush' | 'presentIds'>;

export type EngineClient<Role extends EngineOptions['role']> = (Role extends 'embedded'
  ? Api<EmbeddedEngine>
  : Role extends 'api'
    ? ServingApi
    : Api<LogWriter>) & {
  terminate(): Promise<void>;
};

/**
 * Start the engine thread of a role. Float32Array arguments are moved to it, not copied. What it
 * logs (its background loops' failures) goes to `log`, so that it reaches the service's logger.
 */
export function startEngine<Role extends EngineOptions['role']>(
  options: EngineOptions & { role: Role },
  log: (entry: EngineLogEntry) => void,
): EngineClient<Role> {
  const worker = new Worker(threadEntry(import.meta.url, 'engine-thread'), { workerData: { options } }); // .js, or .ts under tsx
  const thread = threadCaller(worker, 'engine', (event) => log(event as EngineLogEntry));
  return new Proxy({} as EngineClient<Role>, {
    get(target, prop: string) {
      if (Object.hasOwn(target, prop)) return target[prop as keyof typeof target]; // a method set on the client wraps the thread's (tests hold calls this way)
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
