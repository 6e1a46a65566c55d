// Image bytes → the float32 tensor a model spec asks for (sharp / libvips).
import { stat } from 'node:fs/promises';
import sharp, { type Metadata, type OutputInfo } from 'sharp';
import { badRequest, UserError } from '../errors.js';
import type { ModelSpec } from '../model/spec.js';

export interface DecodeOptions {
  /** mirror horizontally (the paper's caches hold every training image and its flip) */
  flip?: boolean;
  /** largest width × height accepted, checked from the header before any pixel is decoded */
  limitInputPixels: number;
}

/**
 * 16.8 Mpx. sharp's own default (268 Mpx) lets a 600 KB PNG decode to ~700 MB; classifiers take
 * a few hundred pixels a side, so nothing legitimate needs more than a camera photo (12 Mpx
 * phones fit), and at this limit one decode stays under ~70 MB even as RGBA.
 */
export const DEFAULT_LIMIT_INPUT_PIXELS = 4096 * 4096;

export const ACCEPTED_FORMATS = ['jpeg', 'png', 'webp'] as const;
const ACCEPTED = new Set<string>(ACCEPTED_FORMATS);
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

export async function imageToTensor(input: Buffer | string, spec: ModelSpec, opts: DecodeOptions): Promise<Float32Array> {
  const what = describe(input);
  if (typeof input === 'string') {
    const st = await stat(input).catch(() => undefined);
    if (!st?.isFile()) throw badRequest('bad_image', `image file not found: ${input}`);
  }

  // Header only (no pixels decoded): format and size, for clear errors before any large allocation.
  let meta: Metadata;
  try {
    meta = await sharp(input, { limitInputPixels: false, failOn: FAIL_ON }).metadata();
  } catch (err) {
    throw badRequest('bad_image', `${what} is not a readable image (${(err as Error).message}); send ${accepted}`);
  }
  if (!meta.format || !ACCEPTED.has(meta.format))
    throw badRequest('bad_image', `${what} is ${meta.format ?? 'an unknown format'}; accepted formats are ${accepted}`);
  const width = meta.autoOrient?.width ?? meta.width ?? 0;
  const height = meta.autoOrient?.height ?? meta.height ?? 0;
  if (width * height > opts.limitInputPixels)
    throw new UserError(
      413,
      'image_too_large',
      `${what} is ${width}×${height} = ${width * height} pixels; the limit is ${opts.limitInputPixels} pixels. Downscale it before sending`,
    );

  let pipeline = sharp(input, { limitInputPixels: opts.limitInputPixels, failOn: FAIL_ON, autoOrient: true });
  // Resize only when needed, so images already at the model's size (e.g. CIFAR's 32×32) pass through bit for bit.
  if (width !== spec.width || height !== spec.height) pipeline = pipeline.resize(spec.width, spec.height, { fit: 'fill' });
  if (opts.flip) pipeline = pipeline.flop();
  // Alpha is dropped (as PIL's convert('RGB') does); greyscale/CMYK/16-bit become 8-bit sRGB.
  pipeline = pipeline.removeAlpha().toColourspace('srgb');

  let pixels: { data: Buffer; info: OutputInfo };
  try {
    pixels = await pipeline.raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    const message = (err as Error).message;
    if (/pixel limit/i.test(message))
      throw new UserError(413, 'image_too_large', `${what} exceeds the limit of ${opts.limitInputPixels} pixels`);
    throw badRequest('bad_image', `${what} (${meta.format}) cannot be decoded: ${message}; it may be truncated or corrupt`);
  }
  const { data, info } = pixels;
  if (info.width !== spec.width || info.height !== spec.height || info.channels !== 3)
    throw new Error(`decoded ${info.width}×${info.height}×${info.channels}, expected ${spec.width}×${spec.height}×3`);
  return pixelsToTensor(data, spec);
}

/** Interleaved 8-bit RGB (HWC) → float32 per spec: layout, channel order, (pixel·scale − mean[c]) / std[c]. */
export function pixelsToTensor(rgb: Uint8Array, spec: ModelSpec): Float32Array {
  const hw = spec.width * spec.height;
  const out = new Float32Array(hw * 3);
  // source channel feeding output channel c
  const src = spec.channelOrder === 'RGB' ? [0, 1, 2] : [2, 1, 0];
  const mul = [0, 1, 2].map((c) => spec.scale / spec.std[c]);
  const add = [0, 1, 2].map((c) => -spec.mean[c] / spec.std[c]);
  const chw = spec.layout === 'NCHW';
  for (let p = 0; p < hw; p++) {
    for (let c = 0; c < 3; c++) {
      const v = rgb[p * 3 + src[c]] * mul[c] + add[c];
      out[chw ? c * hw + p : p * 3 + c] = v;
    }
  }
  return out;
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
