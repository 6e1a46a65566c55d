// Worker-thread entry: serves Engine methods to the main thread over postMessage.
import { parentPort } from 'node:worker_threads';
import { Engine } from './engine.js';
import { serialiseError } from '../errors.js';
import type { EngineRequest, EngineReply } from './client.js';

const engine = new Engine();
const port = parentPort;
if (!port) throw new Error('engine/thread.ts must run as a worker thread');

port.on('message', async ({ id, method, args }: EngineRequest) => {
  let reply: EngineReply;
  try {
    const fn = engine[method] as (...a: unknown[]) => Promise<unknown>;
    reply = { id, result: await fn.apply(engine, args) };
  } catch (err) {
    reply = { id, error: serialiseError(err) };
  }
  port.postMessage(reply);
});
