import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { UserError } from '../src/errors/user-error.js';
import type { ModelSpec } from '../src/model/spec.js';
import { DEFAULT_LIMIT_INPUT_PIXELS, flipTensor, imageToPixels, imageToTensor, pixelsToBatch, pixelsToTensor, stackBatch } from '../src/preprocess/image.js';
import { decodeJpegDirect, jpegHeader } from '../src/preprocess/jpeg-direct.js';

const CAT = new URL('../samples/cifar10/cache/cat/0000.jpg', import.meta.url).pathname;
const opts = { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS };
const SAMPLE_ROOT = new URL('../samples/cifar10', import.meta.url).pathname;

/** Identity spec: NHWC RGB, values are the raw pixels. */
const raw = (width: number, height: number, over: Partial<ModelSpec> = {}): ModelSpec => ({
  input: 'x',
  layout: 'NHWC',
  height,
  width,
  channelOrder: 'RGB',
  scale: 1,
  mean: [0, 0, 0],
  std: [1, 1, 1],
  output: 'y',
  outputKind: 'probabilities',
  classes: ['a', 'b'],
  ...over,
});

/** W×H RGB pixels where every pixel differs: r = x·8, g = y·8, b = (x + y)·4. */
function pattern(width: number, height: number): Buffer {
  const px = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) px.set([(x * 8) % 256, (y * 8) % 256, ((x + y) * 4) % 256], (y * width + x) * 3);
  return px;
}
const encode = (px: Buffer, width: number, height: number, channels: 1 | 3 | 4 = 3) => sharp(px, { raw: { width, height, channels } });

async function rejectsWith(p: Promise<unknown>, status: number, code: string, pattern?: RegExp): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof UserError, `expected UserError, got ${String(err)}`);
    assert.equal(err.status, status);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    return;
  }
  assert.fail(`expected ${code}`);
}

describe('imageToTensor', () => {
  const W = 16;
  const H = 8;
  const px = pattern(W, H);

  test('PNG and lossless WebP decode to the exact pixels; JPEG to close ones', async () => {
    const png = await encode(px, W, H).png().toBuffer();
    const webp = await encode(px, W, H).webp({ lossless: true }).toBuffer();
    const jpeg = await encode(px, W, H).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer();
    assert.deepEqual(await imageToTensor(png, raw(W, H), opts), Float32Array.from(px));
    assert.deepEqual(await imageToTensor(webp, raw(W, H), opts), Float32Array.from(px));
    const j = await imageToTensor(jpeg, raw(W, H), opts);
    assert.ok(
      j.every((v, i) => Math.abs(v - px[i]) <= 8),
      'JPEG within 8 levels',
    );
  });

  test('CIFAR 32×32 JPEGs pass through untouched (no resize), value = pixel / 255', async () => {
    const { data, info } = await sharp(CAT).raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.width, 32);
    const spec = raw(32, 32, { scale: 1 / 255 });
    const t = await imageToTensor(CAT, spec, opts);
    assert.deepEqual(
      t,
      Float32Array.from(data, (v) => v / 255),
    );
    assert.deepEqual(await imageToTensor(readFileSync(CAT), spec, opts), t, 'buffer and path agree');
  });

  test('flip reverses each row', async () => {
    const png = await encode(px, W, H).png().toBuffer();
    const t = await imageToTensor(png, raw(W, H), { ...opts, flip: true });
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < 3; c++) assert.equal(t[(y * W + x) * 3 + c], px[(y * W + (W - 1 - x)) * 3 + c]);
  });

  test('NCHW vs NHWC layout, BGR order, mean and std', async () => {
    const png = await encode(px, W, H).png().toBuffer();
    const hwc = await imageToTensor(png, raw(W, H), opts);
    const mean = [0.1, 0.2, 0.3];
    const std = [0.5, 0.25, 2];
    const chw = await imageToTensor(png, raw(W, H, { layout: 'NCHW' }), opts);
    const bgr = await imageToTensor(png, raw(W, H, { channelOrder: 'BGR' }), opts);
    const norm = await imageToTensor(png, raw(W, H, { layout: 'NCHW', channelOrder: 'BGR', scale: 1 / 255, mean, std }), opts);
    const hw = W * H;
    for (let p = 0; p < hw; p++)
      for (let c = 0; c < 3; c++) {
        assert.equal(chw[c * hw + p], hwc[p * 3 + c]);
        assert.equal(bgr[p * 3 + c], hwc[p * 3 + (2 - c)]);
        const expected = (hwc[p * 3 + (2 - c)] / 255 - mean[c]) / std[c];
        assert.ok(Math.abs(norm[c * hw + p] - expected) < 1e-6);
      }
  });

  test('resizes 64×48 to the model size', async () => {
    const solid = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 100, b: 50 } } })
      .png()
      .toBuffer();
    const t = await imageToTensor(solid, raw(32, 32), opts);
    assert.equal(t.length, 32 * 32 * 3);
    for (let p = 0; p < 32 * 32; p++) assert.deepEqual([t[p * 3], t[p * 3 + 1], t[p * 3 + 2]], [200, 100, 50]);
  });

  test('greyscale becomes three equal channels; alpha is dropped', async () => {
    const grey = await encode(Buffer.alloc(W * H, 77), W, H, 1)
      .toColourspace('b-w')
      .png()
      .toBuffer();
    assert.equal((await sharp(grey).metadata()).channels, 1);
    assert.ok((await imageToTensor(grey, raw(W, H), opts)).every((v) => v === 77));
    const rgba = await encode(Buffer.from(Array.from({ length: W * H }, () => [10, 20, 30, 128]).flat()), W, H, 4)
      .png()
      .toBuffer();
    const t = await imageToTensor(rgba, raw(W, H), opts);
    assert.deepEqual([...t.subarray(0, 3)], [10, 20, 30]);
  });

  test('garbage, truncated JPEG/PNG, GIF and missing files → bad_image', async () => {
    await rejectsWith(imageToTensor(Buffer.from('definitely not an image'), raw(W, H), opts), 400, 'bad_image', /JPEG, PNG or WebP/);
    const cat = readFileSync(CAT);
    await rejectsWith(imageToTensor(cat.subarray(0, cat.length >> 1), raw(32, 32), opts), 400, 'bad_image');
    const big = await encode(pattern(256, 256), 256, 256).jpeg().toBuffer();
    await rejectsWith(imageToTensor(big.subarray(0, big.length >> 1), raw(32, 32), opts), 400, 'bad_image', /truncated|premature/);
    const png = await encode(pattern(256, 256), 256, 256).png().toBuffer();
    await rejectsWith(imageToTensor(png.subarray(0, png.length >> 1), raw(32, 32), opts), 400, 'bad_image');
    const gif = await encode(px, W, H).gif().toBuffer();
    await rejectsWith(imageToTensor(gif, raw(W, H), opts), 400, 'bad_image', /gif.*JPEG, PNG or WebP/);
    const tiff = await encode(px, W, H).tiff().toBuffer();
    await rejectsWith(imageToTensor(tiff, raw(W, H), opts), 400, 'bad_image', /tiff/);
    await rejectsWith(imageToTensor('/nonexistent/cat.jpg', raw(W, H), opts), 400, 'bad_image', /\/nonexistent\/cat\.jpg/);
    await rejectsWith(imageToTensor('/dev/zero', raw(W, H), opts), 400, 'bad_image', /not found: \/dev\/zero/); // a device never ends
    await rejectsWith(imageToTensor(path.dirname(CAT), raw(W, H), opts), 400, 'bad_image', /not found/); // a folder
  });

  test('an image declaring more pixels than the limit → 413 image_too_large', async () => {
    const huge = await sharp({ create: { width: 5000, height: 5000, channels: 3, background: '#ffffff' } })
      .png()
      .toBuffer();
    assert.ok(huge.length < 200_000, `small on disk (${huge.length} bytes)`);
    await rejectsWith(imageToTensor(huge, raw(32, 32), { limitInputPixels: 1_000_000 }), 413, 'image_too_large', /5000×5000.*1000000/);
  });
});

test('stackBatch concatenates images', () => {
  const a = Float32Array.of(1, 2, 3);
  const b = Float32Array.of(4, 5, 6);
  assert.deepEqual(stackBatch([a, b]), Float32Array.of(1, 2, 3, 4, 5, 6));
  assert.deepEqual(stackBatch([]), new Float32Array(0));
  assert.throws(() => stackBatch([a, Float32Array.of(1)]));
});

test('pixelsToBatch writes what pixelsToTensor gives each image, one after another; a wrong size is refused', () => {
  const spec = raw(2, 1, { layout: 'NCHW', channelOrder: 'BGR', scale: 1 / 255, mean: [0.5, 0.4, 0.3], std: [0.2, 0.3, 0.4] });
  const images = [[0, 10, 20, 30, 40, 50], Uint8Array.of(255, 128, 1, 2, 3, 4)];
  assert.deepEqual(pixelsToBatch(images, spec), stackBatch(images.map((p) => pixelsToTensor(p, spec))));
  assert.throws(() => pixelsToBatch([[1, 2, 3]], spec), /has 6 values, got 3/);
});

describe('flipTensor', () => {
  for (const layout of ['NHWC', 'NCHW'] as const) {
    test(`mirrors a decoded ${layout} tensor exactly as decoding the mirrored image does`, async () => {
      const spec = raw(32, 32, { layout, mean: [0.1, 0.2, 0.3], std: [0.5, 0.6, 0.7] });
      const plain = await imageToTensor(CAT, spec, opts);
      const flopped = await imageToTensor(CAT, spec, { ...opts, flip: true });
      assert.deepEqual(flipTensor(plain, spec), flopped);
      assert.deepEqual(flipTensor(flipTensor(plain, spec), spec), plain);
      assert.notDeepEqual(flopped, plain);
    });
  }
});

describe('direct JPEG decode (libjpeg-turbo as WebAssembly) for JPEGs at the model size', () => {
  const spec = raw(32, 32);
  const viaSharp = (bytes: Buffer) =>
    sharp(bytes, { failOn: 'error', autoOrient: true }).resize(32, 32, { fit: 'fill' }).removeAlpha().toColourspace('srgb').raw().toBuffer();
  const sample = (part: string) =>
    readdirSync(path.join(SAMPLE_ROOT, part)).flatMap((c) => readdirSync(path.join(SAMPLE_ROOT, part, c)).map((f) => path.join(SAMPLE_ROOT, part, c, f)));

  test("gives sharp's bytes for every sample image, and imageToPixels takes it", async () => {
    const files = [...sample('cache'), ...sample('heldout')];
    assert.ok(files.length >= 200, `${files.length} sample images`);
    for (const file of files) {
      const bytes = readFileSync(file);
      const direct = await decodeJpegDirect(bytes, 32, 32);
      assert.ok(direct, `${file}: a plain 32×32 JPEG`);
      assert.deepEqual(direct, await viaSharp(bytes), file);
      assert.deepEqual(await imageToPixels(bytes, spec, { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS }), direct);
    }
  });

  test('leaves to sharp what sharp treats differently: EXIF orientation, ICC profile, another size, grey, truncated or corrupt data', async () => {
    const cat = readFileSync(path.join(SAMPLE_ROOT, 'heldout', 'cat', '4500.jpg'));
    const raw = await sharp(cat).raw().toBuffer();
    const jpeg = (s: ReturnType<typeof sharp>) => s.jpeg({ quality: 90 }).toBuffer();
    const fromRaw = () => sharp(raw, { raw: { width: 32, height: 32, channels: 3 } });
    assert.ok(await decodeJpegDirect(await jpeg(fromRaw()), 32, 32), 'a plain re-encode is taken');
    const cases: [string, Buffer][] = [
      ['EXIF orientation', await jpeg(fromRaw().withMetadata({ orientation: 6 }))],
      ['ICC profile', await jpeg(fromRaw().withIccProfile('p3'))],
      ['another size', await jpeg(fromRaw().resize(40, 32))],
      ['grey (one component)', await jpeg(fromRaw().toColourspace('b-w'))],
      ['truncated', cat.subarray(0, cat.length - 200)],
    ];
    const sos = cat.indexOf(Buffer.from([0xff, 0xda]));
    cases.push(['corrupt scan data', Buffer.concat([cat.subarray(0, sos + 14), Buffer.alloc(200, 0x5a), Buffer.from([0xff, 0xd9])])]);
    assert.equal(jpegHeader(cases[3][1])?.components, 1);
    for (const [what, bytes] of cases) assert.equal(await decodeJpegDirect(bytes, 32, 32), null, what);
    // and sharp still answers for them as before: the rotated one decodes, the truncated one is refused
    assert.equal((await imageToPixels(cases[0][1], spec, { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS })).length, 32 * 32 * 3);
    await assert.rejects(imageToPixels(cases[4][1], spec, { limitInputPixels: DEFAULT_LIMIT_INPUT_PIXELS }), /cannot be decoded/);
  });

  test('reads the header it needs and nothing past it', () => {
    assert.equal(jpegHeader(Buffer.from([0xff, 0xd8, 0xff])), null);
    assert.equal(jpegHeader(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0xff, 0xff])), null, 'a segment longer than the file');
    const h = jpegHeader(readFileSync(path.join(SAMPLE_ROOT, 'heldout', 'cat', '4500.jpg')));
    assert.deepEqual(h && [h.width, h.height, h.components, h.plain], [32, 32, 3, true]);
  });
});
