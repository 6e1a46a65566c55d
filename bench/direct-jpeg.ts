// The direct JPEG decode against sharp on a folder of images (recursively): how many it takes, whether
// each gives sharp's bytes exactly, and the time of each decoder. Prints figures; asserts nothing.
//
//   node --import tsx bench/direct-jpeg.ts <folder> [--size 32]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { decodeJpegDirect } from '../src/preprocess/jpeg-direct.js';
import { fmt, printTable } from './common.js';

const { values: o, positionals } = parseArgs({ options: { size: { type: 'string', default: '32' } }, allowPositionals: true });
if (positionals.length !== 1) throw new Error('give a folder of images');
const size = Number(o.size);
const files = (function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : /\.jpe?g$/i.test(f) ? [p] : [];
  });
})(path.resolve(positionals[0]));

let same = 0;
let differ = 0;
let toSharp = 0;
let directMs = 0;
let sharpMs = 0;
for (const file of files) {
  const bytes = readFileSync(file);
  let t = performance.now();
  const direct = await decodeJpegDirect(bytes, size, size);
  directMs += performance.now() - t;
  t = performance.now();
  // the pipeline of src/preprocess/image.ts
  const bySharp = await sharp(bytes, { failOn: 'error', autoOrient: true })
    .resize(size, size, { fit: 'fill' })
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer();
  sharpMs += performance.now() - t;
  if (!direct) toSharp++;
  else if (Buffer.compare(direct, bySharp) === 0) same++;
  else {
    differ++;
    console.error(`differs: ${file}`);
  }
}
printTable(
  `${files.length} JPEGs under ${positionals[0]}, model size ${size} × ${size}`,
  ['decoded directly, same bytes as sharp', 'different bytes', 'left to sharp', 'direct ms / image', 'sharp ms / image'],
  [[String(same), String(differ), String(toSharp), fmt(directMs / files.length, 3), fmt(sharpMs / files.length, 3)]],
);
