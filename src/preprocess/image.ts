// Image bytes → the float32 tensor a model spec asks for (sharp / libvips).
import { open, stat, type FileHandle } from 'node:fs/promises';
import sharp, { type OutputInfo } from 'sharp';
import { UserError } from '../errors/user-error.js';
import type { ModelSpec } from '../model/spec.js';
import { decodeJpegDirect } from './jpeg-direct.js';

export interface DecodeOptions {
  /** mirror horizontally (the paper's caches hold every training image and its flip) */
  flip?: boolean;
  /** largest width × height accepted, checked (by libvips) from the header before any pixel is decoded */
  limitInputPixels: number;
}

/**
 * 16.8 Mpx. sharp's own default (268 Mpx) lets a 600 KB PNG decode to ~700 MB; classifiers take
 * a few hundred pixels a side, so nothing legitimate needs more than a camera photo (12 Mpx
 * phones fit), and at this limit one decode stays under ~70 MB even as RGBA.
 */
export const DEFAULT_LIMIT_INPUT_PIXELS = 4096 * 4096;

export const ACCEPTED_FORMATS = ['jpeg', 'png', 'webp'] as const;
export type AcceptedFormat = (typeof ACCEPTED_FORMATS)[number];
const accepted = 'JPEG, PNG or WebP';

/**
 * failOn 'error': rejects truncated and corrupt images (a half JPEG would otherwise decode with
 * its lower half grey, silently), while tolerating the harmless libjpeg warnings many camera
 * files trigger (sharp's default, 'warning', rejects those too).
 */
const FAIL_ON = 'error' as const;

function describe(input: Buffer | string): string {
  return typeof input === 'string' ? input : `${input.length}-byte upload`;
}

/**
 * The accepted format named by the file's first bytes, or null. Checked before decoding so that
 * formats libvips also reads (GIF, TIFF, SVG, …) are refused without parsing them.
 */
export function sniffFormat(bytes: Uint8Array): AcceptedFormat | null {
  const at = (offset: number, ...b: number[]) => b.every((v, i) => bytes[offset + i] === v);
  if (at(0, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png';
  if (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) return 'webp'; // RIFF….WEBP
  return null;
}

/**
 * One sharp pass: the pixel limit is checked by libvips from the header before any pixel is
 * decoded, and resizing to the model's size is a no-op when the image already has it (CIFAR's
 * 32×32 pass through bit for bit). The header is read separately only to explain a refusal.
 */
export async function imageToTensor(input: Buffer | string, spec: ModelSpec, opts: DecodeOptions): Promise<Float32Array> {
  return pixelsToTensor(await imageToPixels(input, spec, opts), spec);
}

/** The image as the model sees it before normalisation: interleaved 8-bit sRGB (HWC) at the model's width × height. */
export async function imageToPixels(input: Buffer | string, spec: ModelSpec, opts: DecodeOptions): Promise<Buffer> {
  const what = describe(input);
  if (typeof input !== 'string' && input.length === 0) throw new UserError('bad_image', `${what} is empty (0 bytes); send ${accepted}`);
  const format = sniffFormat(typeof input === 'string' ? await readHead(input) : input);
  if (!format) throw await notAccepted(input, what);
  if (format === 'jpeg' && typeof input !== 'string' && !opts.flip) {
    const direct = await decodeJpegDirect(input, spec.width, spec.height);
    if (direct) return direct;
  }

  // a path goes to libvips as a path: it reads what it needs, not necessarily the whole file
  const pipeline = sharp(input, { limitInputPixels: opts.limitInputPixels, failOn: FAIL_ON, autoOrient: true })
    .resize(spec.width, spec.height, { fit: 'fill' })
    .flop(opts.flip ?? false)
    // Alpha is dropped (as PIL's convert('RGB') does); greyscale/CMYK/16-bit become 8-bit sRGB.
    .removeAlpha()
    .toColourspace('srgb');
  let pixels: { data: Buffer; info: OutputInfo };
  try {
    pixels = await pipeline.raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    const message = (err as Error).message;
    if (/pixel limit/i.test(message)) throw await tooLarge(input, what, opts.limitInputPixels);
    throw new UserError('bad_image', `${what} (${format}) cannot be decoded: ${message}; it may be truncated or corrupt`);
  }
  const { data, info } = pixels;
  if (info.width !== spec.width || info.height !== spec.height || info.channels !== 3)
    throw new Error(`decoded ${info.width}×${info.height}×${info.channels}, expected ${spec.width}×${spec.height}×3`);
  return data;
}

/** The first bytes of an image file, enough to name its format. */
async function readHead(file: string): Promise<Buffer> {
  // a regular file only: opening a FIFO would block, and a device (/dev/zero) never ends
  const st = await stat(file).catch(() => undefined);
  if (!st?.isFile()) throw new UserError('bad_image', `image file not found: ${file}`);
  let handle: FileHandle | undefined;
  try {
    handle = await open(file, 'r');
    const head = Buffer.alloc(HEAD_BYTES);
    const { bytesRead } = await handle.read(head, 0, HEAD_BYTES, 0);
    return head.subarray(0, bytesRead);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(
      'bad_image',
      code === 'ENOENT' || code === 'EISDIR' ? `image file not found: ${file}` : `cannot read image file ${file}: ${(err as Error).message}`,
    );
  } finally {
    await handle?.close();
  }
}
const HEAD_BYTES = 12;

/** The 400 for bytes that are not JPEG, PNG or WebP, naming their format when libvips knows it. */
async function notAccepted(input: Buffer | string, what: string): Promise<UserError> {
  const format = await Promise.resolve()
    .then(() => sharp(input, { limitInputPixels: false }).metadata()) // sharp() itself may throw
    .then((m) => m.format)
    .catch(() => undefined);
  return format
    ? new UserError('bad_image', `${what} is ${format}; accepted formats are ${accepted}`)
    : new UserError('bad_image', `${what} is not a readable image; send ${accepted}`);
}

async function tooLarge(input: Buffer | string, what: string, limit: number): Promise<UserError> {
  const meta = await sharp(input, { limitInputPixels: false })
    .metadata()
    .catch(() => null);
  const width = meta?.autoOrient?.width ?? meta?.width;
  const height = meta?.autoOrient?.height ?? meta?.height;
  const size = width && height ? ` is ${width}×${height} = ${width * height} pixels;` : ' exceeds the pixel limit:';
  return new UserError('image_too_large', `${what}${size} the limit is ${limit} pixels. Downscale it before sending`);
}

/**
 * Interleaved RGB (HWC) in 0…255 → float32 per spec: layout, channel order, (pixel·scale − mean[c]) / std[c].
 * Float pixels (an attack's perturbed images) need not be whole numbers.
 */
export function pixelsToTensor(rgb: ArrayLike<number>, spec: ModelSpec): Float32Array {
  const out = new Float32Array(spec.width * spec.height * 3);
  writeTensor(rgb, spec, out, 0);
  return out;
}

/** The model input of n images of pixels (pixelsToTensor's), written straight into one batch buffer. */
export function pixelsToBatch(images: ArrayLike<number>[], spec: ModelSpec): Float32Array {
  const size = spec.width * spec.height * 3;
  const batch = new Float32Array(images.length * size);
  images.forEach((rgb, i) => writeTensor(rgb, spec, batch, i * size));
  return batch;
}

/** pixelsToTensor's values written into `out` from `offset`. */
export function writeTensor(rgb: ArrayLike<number>, spec: ModelSpec, out: Float32Array, offset: number): void {
  const hw = spec.width * spec.height;
  if (rgb.length !== hw * 3) throw new RangeError(`an image of ${spec.width}×${spec.height} RGB has ${hw * 3} values, got ${rgb.length}`);
  // source channel feeding output channel c
  const src = spec.channelOrder === 'RGB' ? [0, 1, 2] : [2, 1, 0];
  const mul = [0, 1, 2].map((c) => spec.scale / spec.std[c]);
  const add = [0, 1, 2].map((c) => -spec.mean[c] / spec.std[c]);
  const chw = spec.layout === 'NCHW';
  for (let p = 0; p < hw; p++) {
    for (let c = 0; c < 3; c++) {
      const v = rgb[p * 3 + src[c]] * mul[c] + add[c];
      out[offset + (chw ? c * hw + p : p * 3 + c)] = v;
    }
  }
}

/** The id suffix of an item's mirror image, when a job indexes flips too. */
export const FLIP_SUFFIX = '#flip';

/** The mirror image (left-right) of one image tensor laid out per spec: no second decode. */
export function flipTensor(image: Float32Array, spec: ModelSpec): Float32Array {
  const { height: h, width: w } = spec;
  const out = new Float32Array(image.length);
  if (spec.layout === 'NHWC') {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const from = (y * w + x) * 3;
        const to = (y * w + (w - 1 - x)) * 3;
        out[to] = image[from];
        out[to + 1] = image[from + 1];
        out[to + 2] = image[from + 2];
      }
    }
  } else {
    for (let row = 0; row < 3 * h; row++) {
      const o = row * w;
      for (let x = 0; x < w; x++) out[o + w - 1 - x] = image[o + x];
    }
  }
  return out;
}

/** Concatenates equally sized images into one batch buffer. */
export function stackBatch(images: Float32Array[]): Float32Array {
  if (images.length === 0) return new Float32Array(0);
  const size = images[0].length;
  const batch = new Float32Array(images.length * size);
  images.forEach((img, i) => {
    if (img.length !== size) throw new Error(`image ${i} has ${img.length} values, image 0 has ${size}`);
    batch.set(img, i * size);
  });
  return batch;
}
