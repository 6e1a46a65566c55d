// Follow a job to its end with a progress bar (with an ETA) on stderr.
import cliProgress from 'cli-progress';
import { ApiError, CachetClient } from './client.js';
import type { JobView } from '../jobs/types.js';

export async function followJob(api: CachetClient, job: JobView, what: string, intervalMs = 500): Promise<JobView> {
  const bar = new cliProgress.SingleBar(
    { format: `${what} |{bar}| {value}/{total} images | {percentage}% | ETA {eta_formatted} | {errors} errors`, etaBuffer: 20 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(job.progress.total, 0, { errors: 0 });
  const done = await api.waitForJob(job.id, (j) => bar.update(j.progress.done, { errors: j.errorCount }), intervalMs);
  bar.stop();
  if (done.state === 'failed') throw new ApiError(500, 'job_failed', `job ${done.id} (${what}) failed: ${done.failedReason}`);
  if (done.errorCount > 0) {
    console.error(`${done.errorCount} images failed, for example:`);
    for (const e of done.errors.slice(0, 5)) console.error(`  ${e.id}: ${e.error}`);
  }
  return done;
}
