// The HTTP API (express). JSON in and out; see README.md for every route.
import { rm } from 'node:fs/promises';
import { packArchive, unpackArchive } from '../cache/archive.js';
import express, { NextFunction, Request, Response } from 'express';
import multer from 'multer';
import { z } from 'zod';
import { ServingApi } from '../engine/client.js';
import { JobQueue } from '../jobs/types.js';
import { ReadRoots } from '../sources/read-roots.js';
import { resolveSource } from '../sources/sources.js';
import {
  axisValues,
  ReportQuerySchema,
  ImportQuerySchema,
  ExportQuerySchema,
  EvalJobSchema,
  IndexJobSchema,
  PredictJsonSchema,
  PredictOptionsSchema,
  TuneJobSchema,
  UpdateCacheSchema,
} from './schemas.js';
import { openApiDocument } from './openapi.js';
import { readiness } from './readiness.js';
import { FLIP_SUFFIX, imageToPixels } from '../preprocess/image.js';
import { topIndices } from '../math/cache-model.js';
import { UserError } from '../errors/user-error.js';
import { PAPER_LAMBDAS, PAPER_THETAS } from '../jobs/tune-job.js';
import { errorHandler, notFoundRoute } from './error-handler.js';
import { param, parse, requireObject, wrap } from './handlers.js';
import type { PredictBatcher } from './batcher.js';
import type { Operations } from './operations.js';
import { retryAfter, type ApiLimits } from './limits.js';

import { webRoutes } from './web.js';
import { addItemRoutes } from './items.js';
import { addLayerJobRoutes } from './layers-route.js';
import { addRobustnessRoutes } from './robustness-route.js';
import { addAnswersRoute } from './answers-route.js';
import { reportMarkdown, reportSvg, svgToPng } from '../reports/job-report.js';
import { Classification } from '../engine/types.js';

/** Retry-After of a request that arrives while the caches open */
const STARTING_RETRY_AFTER_S = 2;

export interface ApiContext {
  engine: ServingApi;
  /** the folders models and images may be read from on a caller's behalf */
  readRoots: ReadRoots;
  /** merges concurrent predict requests into one engine.classify call (see batcher.ts) */
  batcher: PredictBatcher;
  queue: JobQueue;
  limits: ApiLimits;
  mode: 'embedded' | 'distributed';
  isReady: () => boolean;
  /** the engine is still opening the caches (not the same as !isReady: a stopping service still answers) */
  isStarting?: () => boolean;
  /** distributed mode: since when, and why, this process has not reached Redis (null: it has) */
  redisOutage?: () => { since: number; error: string } | null;
  log: (err: unknown, req?: Request) => void;
  /** request ids and logs, metrics, API keys, predict limit: installed before every route (operations.ts) */
  ops?: Operations;
}

export function createApp(ctx: ApiContext): express.Express {
  const { engine, queue, limits, readRoots } = ctx;
  const app = express();
  app.disable('x-powered-by');
  ctx.ops?.install(app);
  app.use(express.json({ limit: limits.maxBodyBytes, verify: checkJsonDepth }));
  const upload = multer({ storage: multer.memoryStorage(), limits: { fileSize: limits.maxBodyBytes, files: limits.maxImagesPerRequest, fields: 20 } });

  app.get('/healthz', (_req, res) => void res.json({ status: 'ok' }));
  app.get('/openapi.json', (_req, res) => void res.json(openApiDocument()));
  app.get('/readyz', readiness(ctx));
  // While the caches open, the engine knows only some of them: "no cache named …" or a new cache over
  // one still loading would be wrong answers. Everything under /v1 waits for the opening instead.
  app.use('/v1', (_req, _res, next) =>
    next(
      ctx.isStarting?.()
        ? new UserError(
            'starting',
            'the service is starting and opens its caches (GET /readyz says how far): retry shortly',
            retryAfter(STARTING_RETRY_AFTER_S),
          )
        : undefined,
    ),
  );

  app.post(
    '/v1/caches',
    wrap(async (req, res) => {
      const body = requireObject(req.body);
      if (typeof body.model === 'string') await readRoots.check(body.model, 'model');
      res.status(201).json(await engine.createCache(body));
    }),
  );
  app.get(
    '/v1/caches',
    wrap(async (_req, res) => {
      res.json({ caches: await engine.listCaches() });
    }),
  );
  app.get(
    '/v1/caches/:name',
    wrap(async (req, res) => {
      res.json(await engine.getCache(param(req, 'name')));
    }),
  );
  app.patch(
    '/v1/caches/:name',
    wrap(async (req, res) => {
      res.json(await engine.updateCache(param(req, 'name'), parse(UpdateCacheSchema, req.body)));
    }),
  );

  app.get(
    '/v1/caches/:name/snapshot',
    wrap(async (req, res) => {
      const name = param(req, 'name');
      const { stored } = parse(ExportQuerySchema, req.query);
      const exported = await engine.prepareExport(name, { stored: stored === 'true' });
      const cleanUp = () => void rm(exported.dir, { recursive: true, force: true });
      res.once('close', cleanUp);
      res.setHeader('content-type', 'application/x-tar');
      res.setHeader('content-disposition', `attachment; filename="${name}.cachet.tar"`);
      // a failure mid-stream cannot change the status any more: cut the connection, so the
      // client sees a truncated archive (which its checksums refuse), never a short "success"
      packArchive(exported.definition, exported.files)
        .once('error', (err) => {
          ctx.log(err, req);
          res.destroy(err);
        })
        .pipe(res);
    }),
  );
  app.post(
    '/v1/caches/import',
    wrap(async (req, res) => {
      const type = req.headers['content-type'] ?? '';
      if (!/^application\/(x-tar|octet-stream)\b/.test(type)) {
        throw new UserError('invalid_request', `send the archive as the body, with content-type application/x-tar (got ${JSON.stringify(type)})`);
      }
      const { name, model } = parse(ImportQuerySchema, req.query);
      if (model) await readRoots.check(model, 'model');
      const staging = await engine.importStaging();
      try {
        await unpackArchive(req, staging, limits.maxImportBytes);
      } catch (err) {
        await rm(staging, { recursive: true, force: true });
        // read (and drop) the rest of the upload, so that the client gets the error, not a reset
        if (!req.readableEnded && !req.destroyed) await new Promise((resolve) => req.once('end', resolve).once('close', resolve));
        throw err;
      }
      res.status(201).json(await engine.importCache(staging, { name, model }));
    }),
  );

  app.post(
    '/v1/caches/:name/verify',
    wrap(async (req, res) => {
      res.json(await engine.verifyCache(param(req, 'name')));
    }),
  );
  app.delete(
    '/v1/caches/:name/damage',
    wrap(async (req, res) => {
      res.json(await engine.clearDamage(param(req, 'name')));
    }),
  );

  app.post(
    '/v1/caches/:name/index-jobs',
    wrap(async (req, res) => {
      const name = param(req, 'name');
      const body = parse(IndexJobSchema, req.body);
      const info = await engine.getCache(name);
      const items = await resolveSource(body.source, { classes: info.classes, requireLabels: true, readRoots });
      const reserved = items.find((i) => i.id?.endsWith(FLIP_SUFFIX));
      if (reserved) {
        throw new UserError(
          'bad_source',
          `item id ${JSON.stringify(reserved.id)} ends with "${FLIP_SUFFIX}", which names the mirror image of an item: rename it`,
        );
      }
      const job = await queue.submit('index', name, { cache: name, items, flip: body.flip }, items.length);
      res.status(202).location(`/v1/jobs/${job.id}`).json(job);
    }),
  );
  app.post(
    '/v1/caches/:name/eval-jobs',
    wrap(async (req, res) => {
      const name = param(req, 'name');
      const body = parse(EvalJobSchema, req.body);
      const info = await engine.getCache(name);
      if (body.compareWith) await engine.getCache(body.compareWith);
      if (body.cacheSizes?.length && info.shards) {
        // the learning curve keeps the cache's first items by position: a sharded cache has no one order of items
        throw new UserError(
          'per_shard',
          `cacheSizes: cache "${name}" has ${info.shards.length} shards, and no one order of its items to take the first of; evaluate a shard ("${name}#s") for a learning curve`,
        );
      }
      const items = await resolveSource(body.source, { classes: info.classes, requireLabels: true, readRoots });
      const job = await queue.submit(
        'eval',
        name,
        { cache: name, items, theta: body.theta, lambda: body.lambda, compareWith: body.compareWith, cacheSizes: body.cacheSizes },
        items.length,
      );
      res.status(202).location(`/v1/jobs/${job.id}`).json(job);
    }),
  );
  app.post(
    '/v1/caches/:name/tune-jobs',
    wrap(async (req, res) => {
      const name = param(req, 'name');
      const body = parse(TuneJobSchema, req.body);
      const info = await engine.getCache(name);
      if (info.size === 0) throw new UserError('empty_cache', `cache "${name}" holds no items yet: index some before tuning θ and λ`);
      const items = await resolveSource(body.source, { classes: info.classes, requireLabels: true, readRoots });
      const data = {
        cache: name,
        items,
        flip: body.flip,
        thetas: axisValues(body.theta) ?? PAPER_THETAS,
        lambdas: axisValues(body.lambda) ?? PAPER_LAMBDAS,
        ...(body.k && { ks: body.k }),
        dryRun: body.dryRun,
      };
      const job = await queue.submit('tune', name, data, items.length);
      res.status(202).location(`/v1/jobs/${job.id}`).json(job);
    }),
  );
  app.get(
    '/v1/jobs/:id/report',
    wrap(async (req, res) => {
      const job = await queue.get(param(req, 'id'));
      if (!job) throw new UserError('unknown_job', `no job with id ${param(req, 'id')}`);
      if (job.state !== 'completed') throw new UserError('job_not_finished', `job ${job.id} is ${job.state}: its report comes when it completes`);
      const { format } = parse(ReportQuerySchema, req.query);
      if (format === 'json') return void res.json(job.result);
      if (format === 'md') {
        const md = reportMarkdown(job); // before the content type: an error goes out as JSON
        return void res.type('text/markdown').send(md);
      }
      const svg = reportSvg(job);
      if (format === 'svg') return void res.type('image/svg+xml').send(svg);
      const png = await svgToPng(svg);
      res.type('image/png').send(png);
    }),
  );
  app.get(
    '/v1/jobs/:id',
    wrap(async (req, res) => {
      const job = await queue.get(param(req, 'id'));
      if (!job)
        throw new UserError(
          'unknown_job',
          `no job with id ${param(req, 'id')}${ctx.mode === 'embedded' ? ' (embedded mode forgets jobs when the service restarts)' : ''}`,
        );
      res.json(job);
    }),
  );

  addItemRoutes(app, { engine, queue, limitInputPixels: limits.limitInputPixels, readRoots });
  addLayerJobRoutes(app, { queue, maxJobs: limits.maxJobsPerCache, readRoots });
  addRobustnessRoutes(app, { engine, queue, readRoots });
  addAnswersRoute(app, engine);

  app.post(
    '/v1/caches/:name/predict',
    multipartIfAny(upload),
    ctx.ops ? ctx.ops.predictSlot() : (_req: Request, _res: Response, next: NextFunction) => next(),
    wrap(async (req, res) => {
      const name = param(req, 'name');
      const { images, options } = predictInput(req, limits);
      const spec = await engine.modelSpec(name);
      const pixels = await Promise.all(
        images.map((bytes, i) =>
          imageToPixels(bytes, spec, { limitInputPixels: limits.limitInputPixels }).catch((err: unknown) => {
            if (err instanceof UserError) throw err.at(`image ${i}: `);
            throw err;
          }),
        ),
      );
      const { topK: _, ...classifyOptions } = options;
      const r = await ctx.batcher.classify(name, pixels, spec, classifyOptions);
      res.json({
        cache: r.cache,
        theta: r.theta,
        lambda: r.lambda,
        cacheSize: r.cacheSize,
        ...(r.missingShards && { missingShards: r.missingShards }),
        predictions: r.results.map((c) => describe(c, spec.classes, options.topK)),
      });
    }),
  );

  app.use(webRoutes());
  app.use(notFoundRoute);
  app.use(errorHandler(ctx.log));
  return app;
}

function describe(c: Classification, classes: string[], topK: number) {
  return {
    top: topIndices(c.p, topK).map((label) => ({
      class: classes[label],
      label,
      p: c.p[label],
      pModel: c.pModel[label],
      pCache: c.pCache ? c.pCache[label] : null,
    })),
    neighbours: c.neighbours.map((n) => ({ id: n.id, class: classes[n.label], label: n.label, similarity: n.similarity })),
  };
}

function predictInput(req: Request, limits: ApiLimits) {
  let images: Buffer[];
  let options: z.infer<typeof PredictOptionsSchema>;
  if (req.is('multipart/form-data')) {
    const files = (req.files as Express.Multer.File[] | undefined) ?? [];
    images = files.map((f) => f.buffer);
    options = parse(PredictOptionsSchema, { ...req.query, ...(req.body ?? {}) });
  } else {
    const body = parse(PredictJsonSchema, { ...req.query, ...requireObject(req.body) });
    const { image, images: many, ...rest } = body;
    if ((image === undefined) === (many === undefined))
      throw new UserError('missing_images', 'send "image" (one base64 image) or "images" (an array of them), not both');
    images = (many ?? [image!]).map((b64, i) => decodeBase64(b64, i));
    options = rest;
  }
  if (images.length === 0) throw new UserError('missing_images', 'no image: upload files as multipart/form-data, or send JSON {"image": "<base64>"}');
  if (images.length > limits.maxImagesPerRequest) {
    throw new UserError('too_many_images', `${images.length} images in one request; the limit is ${limits.maxImagesPerRequest}: split the request`);
  }
  return { images, options };
}

function decodeBase64(b64: string, i: number): Buffer {
  const clean = b64.replace(/^data:[^,]*,/, '');
  if (!/^[A-Za-z0-9+/=_\-\s]+$/.test(clean)) throw new UserError('bad_image', `image ${i} is not base64: send the image file's bytes base64-encoded`);
  const bytes = Buffer.from(clean, 'base64');
  if (bytes.length === 0) throw new UserError('bad_image', `image ${i} decodes to no bytes: send the image file's bytes base64-encoded`);
  return bytes;
}

function multipartIfAny(upload: multer.Multer) {
  const any = upload.any();
  // busboy's own errors (no boundary, a broken part) are the client's: 400 bad_multipart
  const clientError = (err: unknown) =>
    err && !(err instanceof multer.MulterError) && !(err instanceof UserError)
      ? new UserError('bad_multipart', `multipart upload: ${(err as Error).message}; send multipart/form-data with a boundary and whole parts`)
      : err;
  return (req: Request, res: Response, next: NextFunction) =>
    req.is('multipart/form-data') ? any(req, res, (err?: unknown) => next(clientError(err))) : next();
}

/** Deeper than any request of this API: refused before JSON.parse and the validators recurse into it. */
const MAX_JSON_DEPTH = 64;

function checkJsonDepth(_req: unknown, _res: unknown, buf: Buffer): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) throw new UserError('invalid_json', `the JSON body nests deeper than ${MAX_JSON_DEPTH} levels`);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
}
