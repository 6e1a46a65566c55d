// POST /v1/layer-jobs: the layer advisor (which inner layers make the best cache key) as a job,
// and its reports for GET /v1/jobs/:id/report. A layers job belongs to no cache: it reads a
// model and two image sources. Everything that can be checked before it runs is checked at
// submission (400): the model file, the sources, the candidate layer names and the memory the
// advisor would need. The model's tensors are listed in a thread of its own (one probe run of
// onnxruntime), once per model file.
import { promises as fs } from 'node:fs';
import type { ReadRoots } from '../sources/read-roots.js';
import path from 'node:path';
import type express from 'express';
import { z } from 'zod';
import { axis, axisValues } from './schemas.js';
import { parse, wrap } from './handlers.js';
import { LambdaSchema, ThetaSchema } from '../cache/definition.js';
import { SourceSchema } from '../sources/sources.js';
import type { JobQueue } from '../jobs/types.js';
import type { InspectedTensor } from '../model/inspect.js';
import type { ModelSpec } from '../model/spec.js';
import { checkLayersMemory, planLayerJob, type InspectTensors, type LayerJobData } from '../advisor/job.js';
import { inspectInThread } from '../advisor/run-in-thread.js';
import { JOBS_RETRY_AFTER_S, retryAfter } from './limits.js';
import { UserError } from '../errors/user-error.js';

/** The `cache` of a layers job in the queues: none (no cache name is empty). */
export const LAYERS_JOB_CACHE = '';

/** The body of POST /v1/layer-jobs. */
export const LayerJobSchema = z
  .object({
    model: z.string().min(1).describe('the .onnx model, a path the service reads (relative paths: from its working directory); its spec file beside it'),
    train: SourceSchema.describe('the cache images (labelled)'),
    val: SourceSchema.describe('labelled validation images'),
    candidates: z
      .array(z.string().min(1))
      .min(1)
      .max(1000)
      .optional()
      .describe('candidate layers (tensor names); default: the outputs of Relu, Add, Flatten, pooling, MatMul and Gemm nodes'),
    maxDimension: z.number().int().min(1).optional().describe('layers with larger keys are reported, not scored (default 20,000)'),
    top: z.number().int().min(1).max(6).optional().describe('concatenations of up to this many layers are tried, by greedy forward selection (default 3)'),
    cacheSize: z
      .number()
      .int()
      .min(1)
      .max(1e9)
      .optional()
      .describe('the items the cache will hold: when more than the train sample, the best keys are extrapolated to it and the recommendation is for that size'),
    perClass: z.number().int().min(1).optional().describe('use at most this many train images per class'),
    valPerClass: z.number().int().min(1).optional().describe('use at most this many val images per class'),
    flip: z.boolean().default(false).describe('also put each train image mirrored left-right in the cache, as the paper does'),
    theta: axis(ThetaSchema).optional().describe('θ grid (default 10, 20, …, 90)'),
    lambda: axis(LambdaSchema).optional().describe('λ grid (default 0.1, 0.2, …, 0.9)'),
    maxMemoryBytes: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe('memory budget of the job: over it, the job is refused (400 too_much_memory); default 8 GiB, at most CACHET_LAYERS_MAX_MEMORY'),
  })
  .strict();
export type LayerJobRequest = z.infer<typeof LayerJobSchema>;

/** The job data of a request (paths made absolute: the job may run elsewhere, or later). */
export function layerJobData(body: LayerJobRequest): LayerJobData {
  const abs = <S extends LayerJobRequest['train']>(s: S): S => (s.type === 'inline' ? s : { ...s, path: path.resolve(s.path) });
  return {
    model: path.resolve(body.model),
    train: abs(body.train),
    val: abs(body.val),
    candidates: body.candidates,
    maxDimension: body.maxDimension,
    top: body.top,
    cacheSize: body.cacheSize,
    perClass: body.perClass,
    valPerClass: body.valPerClass,
    flip: body.flip,
    thetas: axisValues(body.theta),
    lambdas: axisValues(body.lambda),
    maxMemoryBytes: body.maxMemoryBytes,
  };
}

export interface LayerJobRoutesContext {
  queue: JobQueue;
  /** at most this many layers jobs wait or run at once (the service's maxJobsPerCache) */
  maxJobs: number;
  /** lists a model's tensors (default: in a thread, remembered per model file) */
  inspect?: InspectTensors;
  /** the folders the model and the images may be read from; default: anywhere */
  readRoots?: ReadRoots;
}

/** Registered on the app itself (not a sub-router), so the app's route list shows it. */
export function addLayerJobRoutes(app: express.Express, ctx: LayerJobRoutesContext): void {
  const inspect = ctx.inspect ?? rememberedInspection(inspectInThread);
  app.post(
    '/v1/layer-jobs',
    wrap(async (req, res) => {
      const data = layerJobData(parse(LayerJobSchema, req.body));
      const plan = await planLayerJob(data, inspect, ctx.readRoots);
      checkLayersMemory(plan, data.maxMemoryBytes);
      // the queue limits jobs per cache; layers jobs share one pseudo-cache: say so in their terms
      const unfinished = await ctx.queue.unfinished(LAYERS_JOB_CACHE);
      if (unfinished.length >= ctx.maxJobs)
        throw new UserError(
          'too_many_jobs',
          `at most ${ctx.maxJobs} layers jobs wait or run at once, and ${unfinished.length} do (${unfinished
            .slice(0, 10)
            .map((j) => `${j.id} ${j.state}`)
            .join(', ')}): wait for one to finish (GET /v1/jobs/:id) and submit again`,
          retryAfter(JOBS_RETRY_AFTER_S),
        );
      const job = await ctx.queue.submit('layers', LAYERS_JOB_CACHE, data, plan.total);
      res.status(202).location(`/v1/jobs/${job.id}`).json(job);
    }),
  );
}

/** An inspection per model file (path, size, mtime) and spec: submissions after the first skip the thread. */
export function rememberedInspection(inspect: (model: string, spec: ModelSpec) => Promise<InspectedTensor[]>, max = 16): InspectTensors {
  const known = new Map<string, Promise<InspectedTensor[]>>();
  return async (model, spec) => {
    const stat = await fs.stat(model);
    const key = JSON.stringify([model, stat.size, stat.mtimeMs, spec]);
    let tensors = known.get(key);
    if (!tensors) {
      tensors = inspect(model, spec);
      known.set(key, tensors);
      tensors.catch(() => known.delete(key)); // a failure is not remembered
      while (known.size > max) known.delete(known.keys().next().value!);
    } else {
      known.delete(key); // most recently used last
      known.set(key, tensors);
    }
    return tensors;
  };
}
