// Worker-thread entry of the layer advisor (started by run-in-thread.ts, one thread per job):
// runs one request given as workerData, posts progress messages, then its result or error.
import { parentPort, workerData } from 'node:worker_threads';
import { serialiseError } from '../errors/user-error.js';
import { inspectModel } from '../model/inspect.js';
import { adviseLayers } from './layers.js';
import { checkLayersMemory, planLayerJob, type InspectTensors } from './job.js';
import type { AdvisorReply, AdvisorRequest } from './run-in-thread.js';

const port = parentPort;
if (!port) throw new Error('advisor/thread.ts must run as a worker thread');
const post = (m: AdvisorReply) => port.postMessage(m);
// Cancelled by a message, not by terminating the thread: a thread terminated while onnxruntime or
// sharp has work in flight can abort the whole process. The advisor stops at its next batch or key.
const cancel = new AbortController();
port.on('message', (m: { type?: string }) => {
  if (m?.type === 'cancel') cancel.abort(new Error('the layers job was cancelled'));
});
const inspect: InspectTensors = async (model, spec) => (await inspectModel(model, spec)).tensors;

async function run(req: AdvisorRequest): Promise<unknown> {
  if (req.command === 'inspect') return inspect(req.model, req.spec);
  const { data } = req;
  // the same checks as at submission (a BullMQ producer may not have made them), on this process's files
  const plan = await planLayerJob(data, inspect);
  const spec = plan.spec;
  checkLayersMemory(plan, data.maxMemoryBytes);
  cancel.signal.throwIfAborted();
  const nt = plan.trainImages;
  const f = data.flip ? 2 : 1;
  // the advisor counts source items of the train set, then of the val set; progress counts images
  const images = (done: number) => (done <= nt ? done * f : nt * f + (done - nt));
  let last = -1;
  return adviseLayers(
    {
      model: data.model,
      train: data.train,
      val: data.val,
      candidates: data.candidates,
      maxDimension: data.maxDimension,
      top: data.top,
      perClass: data.perClass,
      valPerClass: data.valPerClass,
      flip: data.flip,
      thetas: data.thetas,
      lambdas: data.lambdas,
      batchSize: req.batchSize,
      spec,
      signal: cancel.signal,
    },
    (p) => {
      if (p.phase !== 'extract') return;
      const done = Math.min(images(p.done), plan.total);
      if (done === last) return;
      last = done;
      post({ type: 'progress', done, total: plan.total });
    },
  );
}

try {
  post({ type: 'result', result: await run(workerData as AdvisorRequest) });
} catch (err) {
  post({ type: 'error', error: serialiseError(err) });
} finally {
  port.unref(); // nothing is left to do: the thread ends, and its memory goes with it
}
