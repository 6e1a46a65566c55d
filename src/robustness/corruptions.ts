// Natural corruptions of an image at 5 severities, in the spirit of CIFAR-10-C (Hendrycks &
// Dietterich 2019): the same families and, at the 32-pixel size, the same parameters. They are
// applied to the image as the model sees it (its width × height, before normalisation), so a
// severity means the same thing whatever the size of the source file. sharp does what libvips
// does natively (blur, JPEG, resampling); noise and the colour arithmetic are a loop over bytes.
import sharp from 'sharp';
import type { Rng } from '../math/rng.js';

export const CORRUPTION_NAMES = ['gaussian_noise', 'gaussian_blur', 'contrast', 'brightness', 'jpeg_compression', 'pixelate'] as const;
export type CorruptionName = (typeof CORRUPTION_NAMES)[number];

export interface Corruption {
  /** what the parameter is, for the report */
  parameter: string;
  /** the parameter at severities 1…5, for an image `size` pixels on its shorter side */
  values(size: number): number[];
  apply(image: RawImage, value: number, rng: Rng): Promise<Buffer> | Buffer;
}

/** Interleaved 8-bit RGB, width × height. */
export interface RawImage {
  data: Buffer;
  width: number;
  height: number;
}

export const CORRUPTIONS: Record<CorruptionName, Corruption> = {
  gaussian_noise: {
    parameter: 'σ of noise added to each channel, pixels in [0, 1]',
    values: () => [0.04, 0.06, 0.08, 0.09, 0.1],
    apply: ({ data }, sigma, rng) => mapBytes(data, (v) => v + 255 * sigma * rng.gaussian()),
  },
  gaussian_blur: {
    parameter: "σ of the Gaussian blur, in pixels (CIFAR-10-C values at 32 pixels, scaled with the size; at least 0.3, libvips's least)",
    values: (size) => [0.4, 0.6, 0.7, 0.8, 1].map((s) => Math.max(MIN_BLUR_SIGMA, round3((s * size) / 32))),
    // the whole Gaussian, as CIFAR-10-C's (libvips's default mask drops weights under 0.2 of the peak: σ 0.4 would change nothing)
    apply: (image, sigma) => raw(image).blur({ sigma, precision: 'float', minAmplitude: 0.001 }).raw().toBuffer(),
  },
  contrast: {
    parameter: 'factor c: (pixel − image mean)·c + image mean',
    values: () => [0.75, 0.5, 0.4, 0.3, 0.15],
    apply: ({ data }, c) => {
      let sum = 0;
      for (const v of data) sum += v;
      const mean = sum / data.length;
      return mapBytes(data, (v) => (v - mean) * c + mean);
    },
  },
  brightness: {
    parameter: 'c added to the HSV value (brightness) of each pixel, in [0, 1]',
    values: () => [0.05, 0.1, 0.15, 0.2, 0.3],
    apply: ({ data }, c) => brighten(data, c),
  },
  jpeg_compression: {
    parameter: 'JPEG quality (libjpeg, 4:2:0 chroma)',
    values: () => [80, 65, 58, 50, 40],
    apply: async (image, quality) => {
      const jpeg = await raw(image).jpeg({ quality }).toBuffer();
      return sharp(jpeg).removeAlpha().toColourspace('srgb').raw().toBuffer();
    },
  },
  pixelate: {
    parameter: 'fraction of the size kept: shrunk (linear) then enlarged back (nearest)',
    values: () => [0.95, 0.9, 0.85, 0.75, 0.65],
    apply: async (image, fraction) => {
      const w = Math.max(1, Math.floor(image.width * fraction));
      const h = Math.max(1, Math.floor(image.height * fraction));
      const small = await raw(image).resize(w, h, { fit: 'fill', kernel: 'linear' }).raw().toBuffer();
      return sharp(small, { raw: { width: w, height: h, channels: 3 } })
        .resize(image.width, image.height, { fit: 'fill', kernel: 'nearest' })
        .raw()
        .toBuffer();
    },
  },
};

export const SEVERITIES = [1, 2, 3, 4, 5] as const;
/** libvips blurs with σ ≥ 0.3 only: images under 24 pixels get that at the mildest severities (the report says so) */
const MIN_BLUR_SIGMA = 0.3;

/** The image corrupted by `name` at `severity` (1…5), as interleaved 8-bit RGB of the same size. */
export async function corrupt(image: RawImage, name: CorruptionName, severity: number, rng: Rng): Promise<Buffer> {
  const c = CORRUPTIONS[name];
  const out = await c.apply(image, c.values(Math.min(image.width, image.height))[severity - 1], rng);
  if (out.length !== image.data.length) throw new Error(`${name} made ${out.length} bytes of a ${image.data.length}-byte image`);
  return out;
}

const raw = ({ data, width, height }: RawImage) => sharp(data, { raw: { width, height, channels: 3 } });

function mapBytes(data: Uint8Array, f: (v: number) => number): Buffer {
  const out = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) out[i] = clampByte(f(data[i]));
  return out;
}

/**
 * HSV value + c with hue and saturation kept: each channel scales by V'/V (V = the pixel's
 * largest channel); a black pixel (no hue) becomes grey V'.
 */
function brighten(data: Uint8Array, c: number): Buffer {
  const out = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i += 3) {
    const v = Math.max(data[i], data[i + 1], data[i + 2]);
    const v2 = Math.min(255, v + 255 * c);
    for (let j = 0; j < 3; j++) out[i + j] = clampByte(v === 0 ? v2 : (data[i + j] * v2) / v);
  }
  return out;
}

const clampByte = (v: number) => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));
const round3 = (x: number) => Math.round(x * 1000) / 1000;
