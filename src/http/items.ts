// Routes on a cache's items and on the cache as a whole: delete items by id, delete
// the cache, and an item's image as a thumbnail (the web page shows neighbours with it).
// Deletions go through the key log, so every replica follows.
import type express from 'express';
import type { ReadRoots } from '../sources/read-roots.js';
import sharp from 'sharp';
import { z } from 'zod';
import type { ServingApi } from '../engine/client.js';
import { imageBytes } from '../sources/fetch.js';
import { FLIP_SUFFIX, sniffFormat } from '../preprocess/image.js';
import type { JobQueue } from '../jobs/types.js';
import { UserError } from '../errors/user-error.js';
import { param, parse, wrap } from './handlers.js';

export const DeleteItemsSchema = z.object({ ids: z.array(z.string().min(1).max(512)).min(1).max(10_000).describe('ids of the items to delete') }).strict();

/** longest side of a thumbnail, in pixels; smaller images are sent as they are */
export const THUMBNAIL_SIZE = 128;

export interface ItemRoutesContext {
  engine: ServingApi;
  queue: JobQueue;
  limitInputPixels: number;
  /** an item's recorded source is read only inside these (it may predate them) */
  readRoots: ReadRoots;
}

/** Registered on the app itself (not a sub-router), so the app's route list shows them. */
export function addItemRoutes(router: express.Express, { engine, queue, limitInputPixels, readRoots }: ItemRoutesContext): void {
  router.delete(
    '/v1/caches/:name',
    wrap(async (req, res) => {
      const name = param(req, 'name');
      // a job still running would write into a cache that is gone (or into a new one of the same name)
      const busy = await queue.unfinished(name);
      if (busy.length > 0) {
        throw new UserError(
          'cache_busy',
          `cache "${name}" has ${busy.length} unfinished job(s) (${busy.map((j) => `${j.type} ${j.id}`).join(', ')}): wait for them to finish, then delete it`,
        );
      }
      res.json(await engine.deleteCache(name));
    }),
  );

  router.post(
    '/v1/caches/:name/delete-items',
    wrap(async (req, res) => {
      res.json(await engine.deleteItems(param(req, 'name'), parse(DeleteItemsSchema, req.body).ids));
    }),
  );

  router.delete(
    '/v1/caches/:name/items/:id',
    wrap(async (req, res) => {
      const name = param(req, 'name');
      const id = param(req, 'id');
      const r = await engine.deleteItems(name, [id]);
      if (r.deleted === 0) throw new UserError('unknown_item', `cache "${name}" holds no item with id ${JSON.stringify(id)}`);
      res.json({ deleted: r.deleted, cacheSize: r.cacheSize });
    }),
  );

  router.get(
    '/v1/caches/:name/items/:id/image',
    wrap(async (req, res) => {
      const id = param(req, 'id');
      const source = await engine.itemSource(param(req, 'name'), id);
      await readRoots.check(source, 'the image of this item,');
      let image: ReturnType<typeof sharp>;
      try {
        const bytes = await imageBytes(source, readRoots);
        // only what the service takes elsewhere: no SVG, TIFF or other formats libvips would render
        if (!sniffFormat(bytes))
          throw new UserError('image_unavailable', `the image of item ${JSON.stringify(id)} at ${source} is no longer a JPEG, PNG or WebP`);
        image = sharp(bytes, { limitInputPixels, failOn: 'error' });
        if (id.endsWith(FLIP_SUFFIX)) image = image.flop(); // the item is the mirror image of its source
        const png = await image.resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'inside', withoutEnlargement: true }).png().toBuffer();
        res.type('image/png').set('Cache-Control', 'private, max-age=3600').send(png);
      } catch (err) {
        if (err instanceof UserError && err.status !== 404) throw err;
        throw new UserError('image_unavailable', `the image of item ${JSON.stringify(id)} cannot be read from ${source}: ${(err as Error).message}`);
      }
    }),
  );
}
