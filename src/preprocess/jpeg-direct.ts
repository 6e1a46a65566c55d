// A direct decode for the commonest case: a plain JPEG already at the model's size (CIFAR's 32×32).
// sharp costs ~1 ms of CPU per such image (libvips sets up a pipeline and its threads for 3 KB of
// pixels), the largest cost per image of an eval or index job; libjpeg-turbo's own decoder, as
// MozJPEG compiled to WebAssembly (@jsquash/jpeg, by Squoosh's authors), decodes it in ~0.08 ms
// and gives the same bytes: same library, same IDCT and upsampling (checked on every CIFAR-10
// image, and by the tests). Anything sharp would treat differently goes to sharp: another size
// (resize), an EXIF orientation, an ICC profile, an Adobe colour transform, not 3 components, not
// Huffman-coded, no end marker (a truncated file, which sharp refuses), or any warning of libjpeg's
// while decoding (corrupt data: sharp decides whether to refuse it).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import mozjpegDecoder from '@jsquash/jpeg/codec/dec/mozjpeg_dec.js';
import { initEmscriptenModule } from '@jsquash/jpeg/utils.js';

type Decoder = { decode(data: BufferSource, preserveOrientation: boolean): { data: Uint8ClampedArray; width: number; height: number } | null };

let decoder: Promise<Decoder> | null = null;
/** libjpeg's messages (warnings about corrupt data) during the decode in progress: then sharp decides, as for every image */
let warnings = 0;

function load(): Promise<Decoder> {
  decoder ??= (async () => {
    const require = createRequire(import.meta.url);
    const dir = path.dirname(require.resolve('@jsquash/jpeg/decode.js'));
    const wasm = await WebAssembly.compile(readFileSync(path.join(dir, 'codec', 'dec', 'mozjpeg_dec.wasm')));
    return (await initEmscriptenModule(mozjpegDecoder, wasm, { print: () => warnings++, printErr: () => warnings++ })) as Decoder;
  })();
  return decoder;
}

/** What the JPEG's markers say, up to its first scan; null when they do not parse. */
export function jpegHeader(b: Uint8Array): { width: number; height: number; components: number; sof: number; plain: boolean } | null {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return null;
  const ascii = (at: number, s: string) => [...s].every((c, k) => b[at + k] === c.charCodeAt(0));
  let plain = true;
  let sof = -1;
  let width = 0;
  let height = 0;
  let components = 0;
  for (let i = 2; ;) {
    if (i + 4 > b.length || b[i] !== 0xff) return null;
    const marker = b[i + 1];
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    if (marker === 0xda) break; // start of scan: the header is complete
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      i += 2;
      continue;
    }
    const length = (b[i + 2] << 8) | b[i + 3];
    const seg = i + 4;
    if (length < 2 || seg + length - 2 > b.length) return null;
    if (marker === 0xe1 && ascii(seg, 'Exif\0')) plain = false; // may rotate
    if (marker === 0xe2 && ascii(seg, 'ICC_PROFILE\0')) plain = false; // sharp converts to sRGB through it
    if (marker === 0xee) plain = false; // Adobe: colour transform flags
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (length < 8) return null;
      sof = marker;
      height = (b[seg + 1] << 8) | b[seg + 2];
      width = (b[seg + 3] << 8) | b[seg + 4];
      components = b[seg + 5];
    }
    i = seg + length - 2;
  }
  return sof < 0 ? null : { width, height, components, sof, plain };
}

/**
 * The image as interleaved 8-bit RGB when it is a plain JPEG of exactly `width` × `height`
 * (what sharp would give, byte for byte); null when sharp must decode it.
 */
export async function decodeJpegDirect(bytes: Buffer, width: number, height: number): Promise<Buffer | null> {
  const h = jpegHeader(bytes);
  const huffman = h !== null && (h.sof === 0xc0 || h.sof === 0xc1 || h.sof === 0xc2);
  const ended = bytes[bytes.length - 2] === 0xff && bytes[bytes.length - 1] === 0xd9;
  if (!h || !h.plain || !huffman || !ended || h.components !== 3 || h.width !== width || h.height !== height) return null;
  const jpeg = await load();
  let image: ReturnType<Decoder['decode']>;
  try {
    warnings = 0; // synchronous from here to the check: no other decode can run in between
    image = jpeg.decode(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer, false);
  } catch {
    decoder = null; // an abort may leave the WebAssembly instance unusable: the next decode starts a fresh one
    return null; // sharp decodes it, or says what is wrong with it
  }
  if (!image || warnings > 0 || image.width !== width || image.height !== height) return null;
  const rgb = Buffer.alloc(width * height * 3);
  for (let p = 0, q = 0; q < rgb.length; p += 4, q += 3) {
    rgb[q] = image.data[p];
    rgb[q + 1] = image.data[p + 1];
    rgb[q + 2] = image.data[p + 2];
  }
  return rgb;
}
