// Worker-thread entry: serves Engine methods to the main thread; its log entries go there too.
import { parentPort } from 'node:worker_threads';
import { Engine } from './engine.js';
import { serveThread, threadEvents } from '../util/thread-rpc.js';

serveThread(parentPort, new Engine(threadEvents(parentPort)));
