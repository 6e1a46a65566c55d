// Exact inner products of query keys with rows of a key store, in the project's native addon
// (native/inner-products.c, built by `npm ci`): re-ranking reads each candidate's full key once,
// converting float16 in registers, where onnxruntime needed a gather, a Cast and a MatMul.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

type InnerProducts = (
  queries: Float32Array,
  dimension: number,
  blocks: readonly (Float32Array | Uint16Array)[],
  queryOf: Int32Array,
  blockOf: Int32Array,
  rowOf: Int32Array,
  out: Float32Array,
) => void;

interface Addon {
  innerProducts: InnerProducts;
  /** the same with the portable loops, whatever the CPU (for tests) */
  innerProductsPortable: InnerProducts;
  /** the kernel the CPU got: 'avx2' (AVX2 + FMA + F16C) or 'portable' */
  kernel: string;
}

const ADDON = path.join('native', 'build', 'Release', 'cachet_native.node');
let addon: Addon | undefined;

/** The addon, from the first folder up from this file (src/math, or dist/src/math) that has package.json and it. */
function load(): Addon {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, ADDON))) return createRequire(import.meta.url)(path.join(dir, ADDON)) as Addon;
    if (path.dirname(dir) === dir) throw new Error(`${ADDON} is not built: run \`npm ci\` (or \`npm run build:native\`) in Cachet's folder`);
  }
}

/** 'avx2' or 'portable': which kernel this CPU runs. */
export function innerProductKernel(): string {
  return (addon ??= load()).kernel;
}

/**
 * out[i] = ⟨queries[queryOf[i]], blocks[blockOf[i]] row rowOf[i]⟩ for every i, each query and row
 * `dimension` values; blocks all float32 or all float16 bits (Uint16Array). Indices are checked by
 * the addon before any row is read (a RangeError names the one that is out of range).
 */
export const innerProducts: InnerProducts = (...args) => (addon ??= load()).innerProducts(...args);

/** innerProducts with the portable loops, whatever the CPU: lets the tests check both kernels. */
export const innerProductsPortable: InnerProducts = (...args) => (addon ??= load()).innerProductsPortable(...args);
