// Worker-thread entry: builds the engine of the process's role and serves its methods to the main
// thread; its log entries go there too.
import { parentPort, workerData } from 'node:worker_threads';
import { serveThread, threadEvents } from '../util/thread-rpc.js';
import { EmbeddedEngine } from './embedded-engine.js';
import { LogWriter } from './log-writer.js';
import { ReplicaEngine } from './replica-engine.js';
import type { EngineOptions } from './types.js';

const options = (workerData as { options: EngineOptions }).options;
const report = threadEvents(parentPort);
const engine =
  options.role === 'worker' ? new LogWriter(options) : options.role === 'api' ? new ReplicaEngine(options, report) : new EmbeddedEngine(options, report);
serveThread(parentPort, engine);
