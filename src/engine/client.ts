// The main thread's handle on the engine thread: the Engine's methods, as promises.
import { Worker } from 'node:worker_threads';
import type { Engine } from './engine.js';
import { deserialiseError, SerialisedError } from '../errors.js';
import { threadEntry } from '../util/thread-entry.js';

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
  const worker = new Worker(threadEntry(import.meta.url, 'thread')); // thread.js, or thread.ts under tsx
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
