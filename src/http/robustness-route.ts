// POST /v1/caches/:name/robustness-jobs: the model alone, the cache model and the cache alone
// under natural corruptions and black-box attacks (src/robustness/). Checked at submission:
// the cache exists and holds items, the source lists labelled images, and not too many of them.
import type express from 'express';
import type { ServingApi } from '../engine/client.js';
import { UserError } from '../errors/user-error.js';
import type { JobQueue } from '../jobs/types.js';
import { ROBUSTNESS_BYTES_PER_VALUE, robustnessUnits, type RobustnessJobData } from '../robustness/job.js';
import { RobustnessSettingsSchema } from '../robustness/settings.js';
import type { ReadRoots } from '../sources/read-roots.js';
import { capPerClass, resolveSource, SourceSchema } from '../sources/sources.js';
import { z } from 'zod';
import { param, parse, wrap } from './handlers.js';

/** A robustness job holds its images in memory and attacks each one many times: a sample is what it is for. */
export const MAX_ROBUSTNESS_IMAGES = 10_000;
/** …and at most this much of them: 224 × 224 images take ~1.4 MB each (bytes per value: ROBUSTNESS_BYTES_PER_VALUE) */
export const MAX_ROBUSTNESS_BYTES = 2 * 1024 ** 3;

export const RobustnessJobSchema = RobustnessSettingsSchema.extend({
  source: SourceSchema.describe(
    `labelled images, at most ${MAX_ROBUSTNESS_IMAGES.toLocaleString('en')} and 2 GiB of pixels (500 measure a 15 % error to ±3 points, 95 %)`,
  ),
  perClass: z
    .number()
    .int()
    .min(1)
    .optional()
    .describe("use the source's first images of each class, this many at most (e.g. 50 of CIFAR-10's val-5k: 500 images)"),
}).strict();

export interface RobustnessRoutesContext {
  engine: ServingApi;
  queue: JobQueue;
  readRoots?: ReadRoots;
}

/** Registered on the app itself (not a sub-router), so the app's route list shows it. */
export function addRobustnessRoutes(app: express.Express, ctx: RobustnessRoutesContext): void {
  app.post(
    '/v1/caches/:name/robustness-jobs',
    wrap(async (req, res) => {
      const name = param(req, 'name');
      const body = parse(RobustnessJobSchema, req.body);
      const info = await ctx.engine.getCache(name);
      if (info.size === 0) throw new UserError('empty_cache', `cache "${name}" holds no items yet: index some before measuring its robustness`);
      const all = await resolveSource(body.source, { classes: info.classes, requireLabels: true, readRoots: ctx.readRoots });
      const items = capPerClass(all, body.perClass);
      const spec = await ctx.engine.modelSpec(name);
      const perImage = spec.width * spec.height * 3 * ROBUSTNESS_BYTES_PER_VALUE;
      const most = Math.min(MAX_ROBUSTNESS_IMAGES, Math.floor(MAX_ROBUSTNESS_BYTES / perImage));
      if (items.length > most)
        throw new UserError(
          'bad_source',
          `the source lists ${items.length} images; a robustness job takes at most ${most}` +
            (most < MAX_ROBUSTNESS_IMAGES ? ` of ${spec.width}×${spec.height} (it holds ~${(perImage / 1e6).toFixed(1)} MB per image, at most 2 GiB)` : '') +
            ': pass a sample (500 images measure a 15 % error to ±3 points, 95 %)',
        );
      const { source: _source, perClass: _perClass, ...settings } = body;
      const data: RobustnessJobData = { cache: name, items, ...settings };
      const job = await ctx.queue.submit('robustness', name, data, robustnessUnits(data));
      res.status(202).location(`/v1/jobs/${job.id}`).json(job);
    }),
  );
}
