// Where the images of an index or eval job come from: an image folder (one
// subfolder per class), a CSV or JSONL manifest (paths relative to it, or http(s)
// URLs), or inline base64 items.
// An item's id is the one its source gives (a manifest's id column, an inline item's id) or,
// by default, its content id: the sha256 of the image bytes, so that two different images never
// share an id by accident (two folders both holding cat/0001.jpg) and a true duplicate is one.
// `idFrom: "path"` makes a folder's or manifest's ids their paths instead (cat/0001.jpg).
// Paths are read by the service, so they are resolved here, at submission,
// and anything wrong with the source as a whole is a 400 before the job starts.
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import { parse as parseCsv } from 'csv-parse/sync';
import { z } from 'zod';
import { UserError } from '../errors/user-error.js';
import { readGuarded } from '../util/guarded-read.js';
import { ReadRoots } from './read-roots.js';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp'];

export const InlineItemSchema = z
  .object({
    image: z.string().min(1).describe('the image file (JPEG, PNG or WebP), base64'),
    label: z.union([z.string().min(1), z.number().int()]).optional(),
    id: z.string().min(1).max(512).optional(),
  })
  .strict();

const IdFromSchema = z
  .enum(['content', 'path'])
  .optional()
  .describe('ids of items the source gives none: "content" (default), the sha256 of the image bytes; "path", the path in the folder or manifest');

export const SourceSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('folder'), path: z.string().min(1), idFrom: IdFromSchema }).strict(),
  z.object({ type: z.literal('manifest'), path: z.string().min(1), idFrom: IdFromSchema }).strict(),
  z.object({ type: z.literal('inline'), items: z.array(InlineItemSchema).min(1).max(10_000) }).strict(),
]);
export type Source = z.infer<typeof SourceSchema>;

/** One image of a job. `label` is a class index, or null where the source gives none. */
export interface SourceItem {
  /** null: the content id, known once the image is read (see contentId) */
  id: string | null;
  label: number | null;
  /** a file path, or the image bytes of an inline item */
  image: string | Buffer;
}

export interface ResolveOptions {
  classes: string[];
  /** index jobs need a label on every item; eval jobs need one to score */
  requireLabels: boolean;
  /** the folders files may be read from (403 path_not_allowed outside them); default: anywhere */
  readRoots?: ReadRoots;
}

/** A manifest of millions of lines is ~100 MB; beyond this, split it. */
const MAX_MANIFEST_BYTES = 512 * 2 ** 20;

/** The id of an image no source names: a digest of its bytes (128 bits of sha256). */
export function contentId(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex').slice(0, 32)}`;
}

/** What names an item in messages: its id, else its file or URL. */
export function itemName(item: SourceItem): string {
  return item.id ?? (typeof item.image === 'string' ? item.image : 'an inline image');
}

export async function resolveSource(source: Source, opts: ResolveOptions): Promise<SourceItem[]> {
  const labelOf = labelResolver(opts.classes);
  const roots = opts.readRoots ?? ReadRoots.anywhere();
  switch (source.type) {
    case 'folder':
      // its images are inside it: listing skips symbolic links (Dirent.isFile/isDirectory are false for them)
      await roots.check(source.path, 'image folder');
      return folderItems(source.path, labelOf, source.idFrom === 'path');
    case 'manifest': {
      await roots.check(source.path, 'manifest');
      const items = await manifestItems(source.path, labelOf, opts.requireLabels, roots, source.idFrom === 'path');
      await roots.checkAll(
        items.map((i) => i.image as string),
        `image listed in ${source.path}:`,
      );
      return items;
    }
    case 'inline':
      return source.items.map((item, i) => {
        const bytes = Buffer.from(item.image, 'base64');
        if (bytes.length === 0) throw new UserError('bad_image', `items[${i}].image is not base64 image data`);
        if (opts.requireLabels && item.label === undefined) throw new UserError('missing_label', `items[${i}] has no label`);
        const label = item.label === undefined ? null : labelOf(item.label, `items[${i}].label`);
        return { id: item.id ?? contentId(bytes), label, image: bytes };
      });
  }
}

/** A label is a class name or a class index; anything else is a 400 naming the classes. */
/** The first `perClass` items of each label, in source order (all of them when perClass is undefined). */
export function capPerClass(items: SourceItem[], perClass: number | undefined): SourceItem[] {
  if (perClass === undefined) return items;
  const count = new Map<number, number>();
  return items.filter((it) => {
    const c = count.get(it.label!) ?? 0;
    count.set(it.label!, c + 1);
    return c < perClass;
  });
}

export function labelResolver(classes: string[]): (label: string | number, where: string) => number {
  const byName = new Map(classes.map((c, i) => [c, i]));
  return (label, where) => {
    if (typeof label === 'number' || /^\d+$/.test(label)) {
      const i = Number(label);
      if (Number.isInteger(i) && i >= 0 && i < classes.length) return i;
    } else if (byName.has(label)) {
      return byName.get(label)!;
    }
    throw new UserError(
      'label_out_of_range',
      `${where}: label ${JSON.stringify(label)} is not one of the model's classes; use a class name (${preview(classes)}) or an index 0–${classes.length - 1}`,
    );
  };
}

async function folderItems(root: string, labelOf: (l: string, where: string) => number, pathIds: boolean): Promise<SourceItem[]> {
  const entries = await readDir(root);
  const classDirs = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  if (classDirs.length === 0) throw new UserError('bad_source', `${root} has no subfolders: put the images of each class in a subfolder named after the class`);
  const items: SourceItem[] = [];
  for (const dir of classDirs) {
    const label = labelOf(dir, `folder ${path.join(root, dir)}`);
    const files = (await readDir(path.join(root, dir)))
      .filter((e) => e.isFile() && IMAGE_EXTENSIONS.includes(path.extname(e.name).toLowerCase()))
      .map((e) => e.name)
      .sort();
    for (const file of files) items.push({ id: pathIds ? `${dir}/${file}` : null, label, image: path.join(root, dir, file) });
  }
  if (items.length === 0) throw new UserError('bad_source', `${root} has no ${IMAGE_EXTENSIONS.join('/')} files in its class subfolders`);
  return items;
}

interface ManifestRow {
  path?: unknown;
  label?: unknown;
  id?: unknown;
}

async function manifestItems(
  file: string,
  labelOf: (l: string | number, where: string) => number,
  requireLabels: boolean,
  roots: ReadRoots,
  pathIds: boolean,
): Promise<SourceItem[]> {
  const text = (await readGuarded(file, { what: 'manifest', maxBytes: MAX_MANIFEST_BYTES, allow: roots.allowFor(file, 'manifest') })).toString('utf8');
  const ext = path.extname(file).toLowerCase();
  let rows: { row: ManifestRow; line: number }[];
  if (ext === '.jsonl' || ext === '.ndjson') {
    rows = [];
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      try {
        rows.push({ row: JSON.parse(line) as ManifestRow, line: i + 1 });
      } catch {
        throw new UserError('bad_source', `${file} line ${i + 1} is not JSON: each line must be {"path": …, "label": …, "id"?: …}`);
      }
    });
  } else if (ext === '.csv') {
    const records = parseCsv(text, { skip_empty_lines: true, trim: true, relax_column_count: true }) as string[][];
    const hasHeader = records.length > 0 && records[0][0]?.toLowerCase() === 'path';
    const columns = hasHeader ? records[0].map((c) => c.toLowerCase()) : ['path', 'label', 'id'];
    rows = records.slice(hasHeader ? 1 : 0).map((r, i) => ({
      row: Object.fromEntries(columns.map((c, j) => [c, r[j]])) as ManifestRow,
      line: i + (hasHeader ? 2 : 1),
    }));
  } else {
    throw new UserError('bad_source', `manifest ${file}: use a .csv (path,label[,id]) or .jsonl file`);
  }
  if (rows.length === 0) throw new UserError('bad_source', `manifest ${file} lists no images`);
  const base = path.dirname(file);
  return rows.map(({ row, line }) => {
    const where = `${file} line ${line}`;
    if (typeof row.path !== 'string' || row.path === '') throw new UserError('bad_source', `${where}: missing path`);
    const hasLabel = row.label !== undefined && row.label !== '';
    if (requireLabels && !hasLabel) throw new UserError('missing_label', `${where}: missing label`);
    const label = hasLabel ? labelOf(row.label as string | number, where) : null;
    const id = typeof row.id === 'string' && row.id !== '' ? row.id : pathIds ? row.path : null;
    const image = /^https?:\/\//i.test(row.path) ? row.path : path.resolve(base, row.path);
    return { id, label, image };
  });
}

async function readDir(dir: string) {
  return fs.readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    throw new UserError('bad_source', `cannot read folder ${dir}: ${err.code === 'ENOENT' ? 'no such folder' : err.message}`);
  });
}

function preview(names: string[]): string {
  return names.length <= 12 ? names.join(', ') : `${names.slice(0, 12).join(', ')}, …`;
}
