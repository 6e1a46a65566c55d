// Calls into a worker thread as promises: the engine thread and the inference thread are served
// this way. A thread can also send events (log entries) that are not replies.
// Typed arrays that own their whole buffer are moved between threads, not copied, both as
// arguments and as (top-level fields of) results: the sender must not use them afterwards, so a
// served method returns fresh arrays, never state it keeps.
import type { MessagePort, Worker } from 'node:worker_threads';
import { deserialiseError, serialiseError, type SerialisedError } from '../errors/user-error.js';

interface Request {
  id: number;
  method: string;
  args: unknown[];
}
type Reply = { id: number; result: unknown; error?: undefined } | { id: number; error: SerialisedError };
interface Event {
  event: unknown;
}

/** Buffers of the typed arrays among `values` (and one level into plain objects) that can be moved. */
function movable(values: unknown[]): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  const take = (v: unknown) => {
    // a view of part of a buffer is copied: moving it would detach the rest of the buffer too
    if (ArrayBuffer.isView(v) && v.buffer instanceof ArrayBuffer && v.byteOffset === 0 && v.byteLength === v.buffer.byteLength) out.add(v.buffer);
  };
  for (const v of values) {
    take(v);
    if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) Object.values(v).forEach(take);
  }
  return [...out];
}

export interface ThreadCaller {
  call(method: string, args: unknown[]): Promise<unknown>;
  terminate(): Promise<void>;
}

/** The caller's side: one promise per call, all rejected if the thread dies; events go to `onEvent`. */
export function threadCaller(worker: Worker, what: string, onEvent: (event: unknown) => void = () => {}): ThreadCaller {
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let dead: Error | null = null;
  worker.on('message', (message: Reply | Event) => {
    if ('event' in message) return onEvent(message.event);
    const reply = message;
    const call = pending.get(reply.id);
    if (!call) return;
    pending.delete(reply.id);
    if (reply.error) call.reject(deserialiseError(reply.error));
    else call.resolve(reply.result);
  });
  const fail = (err: Error) => {
    dead ??= err;
    for (const call of pending.values()) call.reject(err);
    pending.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`the ${what} thread exited (code ${code})`)));
  return {
    call(method, args) {
      if (dead) return Promise.reject(dead);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ id, method, args } satisfies Request, movable(args));
      });
    },
    async terminate() {
      await worker.terminate();
    },
  };
}

/** The thread's side: serves `target`'s async methods to the thread that started it. */
export function serveThread(port: MessagePort | null, target: object): void {
  if (!port) throw new Error('serveThread must run in a worker thread');
  port.on('message', async ({ id, method, args }: Request) => {
    let reply: Reply;
    let moved: ArrayBuffer[] = [];
    try {
      const fn = (target as Record<string, unknown>)[method];
      if (typeof fn !== 'function') throw new Error(`no method ${method} in this thread`);
      const result = await (fn as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      reply = { id, result };
      moved = movable([result]);
    } catch (err) {
      reply = { id, error: serialiseError(err) };
    }
    port.postMessage(reply, moved);
  });
}

/** The thread's side: sends an event (not a reply) to the thread that started it. */
export function threadEvents(port: MessagePort | null): (event: unknown) => void {
  if (!port) throw new Error('threadEvents must run in a worker thread');
  return (event) => port.postMessage({ event } satisfies Event);
}
