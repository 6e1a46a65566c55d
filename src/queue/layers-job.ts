// cachet-eval / layers on an api replica: the layer advisor in a thread of its own, with the
// job's progress in BullMQ. A user error (bad model, source or layer name, too much memory)
// will not get better with a retry: it fails the job at once. Shutting down the replica
// (abortLayerJobs) stops the thread; the job fails this attempt and BullMQ retries it.
import { Job, UnrecoverableError } from 'bullmq';
import { describeZodError } from '../errors/zod.js';
import { UserError } from '../errors/user-error.js';
import { runLayersJob, type LayersJobSettings } from '../advisor/job.js';
import { ItemError, JobContext, MAX_ITEM_ERRORS } from '../jobs/types.js';
import { LayersJobSchema } from './job-schema.js';
import { LayerAdvice } from '../advisor/advice.js';

const running = new Set<AbortController>();

/** Stops every layers job this process runs (their threads end; the jobs fail this attempt). */
export function abortLayerJobs(reason = 'the api replica shut down'): void {
  for (const c of running) c.abort(new Error(`${reason}; the job will be retried`));
}

export async function processLayersJob(job: Job, settings: LayersJobSettings): Promise<LayerAdvice> {
  const r = LayersJobSchema.safeParse(job.data);
  if (!r.success) throw new UnrecoverableError(`job ${job.id} in ${job.queueName}: invalid data: ${describeZodError(r.error)}`);
  const { total: _, ...data } = r.data;
  const errors: ItemError[] = [];
  const abort = new AbortController();
  let last = { done: 0, total: 0 };
  const report = () => void job.updateProgress({ ...last, errors: errors.slice(0, MAX_ITEM_ERRORS), errorCount: errors.length }).catch(() => {});
  const ctx: JobContext = {
    jobId: String(job.id),
    progress: (done, total) => {
      last = { done, total };
      report();
    },
    itemErrors: (e) => {
      errors.push(...e);
      report();
    },
    signal: abort.signal,
  };
  running.add(abort);
  try {
    return await runLayersJob(data, ctx, settings);
  } catch (err) {
    if (err instanceof UserError) throw new UnrecoverableError(err.message);
    throw err;
  } finally {
    running.delete(abort);
  }
}
