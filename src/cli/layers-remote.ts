// `cachet layers --remote`: the layer advisor as a job of a running service (POST /v1/layer-jobs),
// followed with the progress bar of the other job commands; the result is the same LayerAdvice.
import type { Source } from '../sources/sources.js';
import type { JobView } from '../jobs/types.js';
import type { LayerJobRequest } from '../http/layers-route.js';
import { CachetClient } from './client.js';
import { followJob } from './progress.js';
import { LayerAdvice } from '../advisor/advice.js';

/** The body of POST /v1/layer-jobs (paths absolute: the service reads them). */
export type RemoteLayersRequest = Omit<LayerJobRequest, 'train' | 'val' | 'flip'> & { train: Source; val: Source; flip?: boolean };

export async function adviseRemotely(url: string, apiKey: string | undefined, body: RemoteLayersRequest): Promise<LayerAdvice> {
  const api = new CachetClient(url, apiKey);
  const job = await api.request<JobView>('POST', '/v1/layer-jobs', body);
  console.error(`layers job ${job.id} on ${url}`);
  const done = await followJob(api, job, 'extracting layers');
  return done.result as LayerAdvice;
}
