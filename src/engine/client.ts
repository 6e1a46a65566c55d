// The main thread's handle on the engine thread: the Engine's methods, as promises.
import { Worker } from 'node:worker_threads';
import type { Engine } from './engine.js';
import { deserialiseError, SerialisedError } from '../errors.js';

type EngineMethod = {
  [K in keyof Engine]: Engine[K] extends (...args: never[]) => Promise<unknown> ? K : never;
}[keyof Engine];

export interface EngineRequest {
  id: number;
  method: EngineMethod;
  args: unknown[];
}
export type EngineReply = { id: number; result: unknown; error?: undefined } | { id: number; error: SerialisedError };

export type EngineApi = Pick<Engine, EngineMethod>;

export interface EngineClient extends EngineApi {
  terminate(): Promise<void>;
}

/** Start the engine thread. Float32Array arguments are transferred, not copied. */
export function startEngine(): EngineClient {
  const worker = new Worker(threadEntry());
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let dead: Error | null = null;
  worker.on('message', (reply: EngineReply) => {
    const call = pending.get(reply.id);
    if (!call) return;
    pending.delete(reply.id);
    if (reply.error) call.reject(deserialiseError(reply.error));
    else call.resolve(reply.result);
  });
  const fail = (err: Error) => {
    dead = err;
    for (const call of pending.values()) call.reject(err);
    pending.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`the engine thread exited (code ${code})`)));

  const call = (method: EngineMethod, args: unknown[]): Promise<unknown> => {
    if (dead) return Promise.reject(dead);
    const id = nextId++;
    const transfer = args.filter((a): a is Float32Array => a instanceof Float32Array).map((a) => a.buffer as ArrayBuffer);
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, method, args } satisfies EngineRequest, transfer);
    });
  };

  return new Proxy({} as EngineClient, {
    get(_, prop: string) {
      if (prop === 'terminate') return async () => void (await worker.terminate());
      if (prop === 'then') return undefined; // not a thenable
      return (...args: unknown[]) => call(prop as EngineMethod, args);
    },
  });
}

/**
 * The compiled thread.js, or, when running from TypeScript source (tests, tsx),
 * a bootstrap that registers tsx in the new thread first: on Node 20 a worker
 * does not inherit the parent's `--import tsx` loader hooks.
 */
function threadEntry(): URL {
  if (!import.meta.url.endsWith('.ts')) return new URL('./thread.js', import.meta.url);
  const tsx = import.meta.resolve('tsx/esm/api');
  const thread = new URL('./thread.ts', import.meta.url).href;
  const code = `import { register } from ${JSON.stringify(tsx)}; register(); await import(${JSON.stringify(thread)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}
