// Re-ranking's arithmetic: exact inner products of full query keys with gathered rows of the full
// key store, float32 or float16 (IEEE half) rows, in one pass over each row.
//
// Why native: onnxruntime needs the rows gathered into one buffer, then a Cast of float16 to a
// float32 copy, then the MatMul: three passes over ~1.2 MB per query (50 rows × 12,288 dims) that
// come from RAM. Here each row is read once, converted in registers (F16C) and multiplied as it is
// read: 0.28 → 0.14 ms per query on the paper's cache (README, "Re-ranking in one pass").
//
// The x86-64 kernels are compiled for AVX2 + FMA + F16C by function attribute and chosen at load
// time from what the CPU reports, so one binary runs on any x86-64 CPU (a portable loop
// otherwise). Every index is checked against the buffers before any row is read: this code never
// trusts its caller.
#include <math.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff, bits;
  float f;
  if (exponent == 0) {  // zero or subnormal: mantissa × 2^-24, exactly representable as float32
    f = ldexpf((float)mantissa, -24);
    return sign ? -f : f;
  }
  bits = exponent == 31 ? sign | 0x7f800000 | (mantissa << 13) : sign | ((exponent + 112) << 23) | (mantissa << 13);
  memcpy(&f, &bits, sizeof f);
  return f;
}

static float dot_f16_portable(const float *q, const uint16_t *k, size_t d) {
  float acc = 0;
  for (size_t j = 0; j < d; j++) acc += q[j] * half_to_float(k[j]);
  return acc;
}

static float dot_f32_portable(const float *q, const float *k, size_t d) {
  float acc = 0;
  for (size_t j = 0; j < d; j++) acc += q[j] * k[j];
  return acc;
}

#if defined(__x86_64__)
#define X86_KERNEL __attribute__((target("avx2,fma,f16c")))

X86_KERNEL static float sum8(__m256 a, __m256 b, __m256 c, __m256 d) {
  __m256 s = _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

// four independent accumulators: the FMA latency is hidden, and the memory stream sets the pace
#define HALF8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
X86_KERNEL static float dot_f16_avx2(const float *q, const uint16_t *k, size_t d) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t j = 0;
  for (; j + 32 <= d; j += 32) {
    a0 = _mm256_fmadd_ps(HALF8(k + j), _mm256_loadu_ps(q + j), a0);
    a1 = _mm256_fmadd_ps(HALF8(k + j + 8), _mm256_loadu_ps(q + j + 8), a1);
    a2 = _mm256_fmadd_ps(HALF8(k + j + 16), _mm256_loadu_ps(q + j + 16), a2);
    a3 = _mm256_fmadd_ps(HALF8(k + j + 24), _mm256_loadu_ps(q + j + 24), a3);
  }
  float acc = sum8(a0, a1, a2, a3);
  for (; j < d; j++) acc += q[j] * half_to_float(k[j]);
  return acc;
}

X86_KERNEL static float dot_f32_avx2(const float *q, const float *k, size_t d) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t j = 0;
  for (; j + 32 <= d; j += 32) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(k + j), _mm256_loadu_ps(q + j), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(k + j + 8), _mm256_loadu_ps(q + j + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(k + j + 16), _mm256_loadu_ps(q + j + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(k + j + 24), _mm256_loadu_ps(q + j + 24), a3);
  }
  float acc = sum8(a0, a1, a2, a3);
  for (; j < d; j++) acc += q[j] * k[j];
  return acc;
}
#endif

typedef float (*dot_f16_fn)(const float *, const uint16_t *, size_t);
typedef float (*dot_f32_fn)(const float *, const float *, size_t);
static dot_f16_fn dot_f16 = dot_f16_portable;
static dot_f32_fn dot_f32 = dot_f32_portable;
static const char *kernel_name = "portable";
static pthread_once_t kernels_chosen = PTHREAD_ONCE_INIT;  // each worker thread loads the addon

static void choose_kernels(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    dot_f16 = dot_f16_avx2;
    dot_f32 = dot_f32_avx2;
    kernel_name = "avx2";
  }
#endif
}

#define MAX_BLOCKS 65536

struct block {
  const void *data;
  size_t rows;
};

static napi_value fail(napi_env env, const char *message) {
  napi_throw_range_error(env, NULL, message);
  return NULL;
}

static int typed_array(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *length) {
  bool is;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  if (napi_get_typedarray_info(env, v, &type, length, data, NULL, NULL) != napi_ok) return 0;
  return type == want;
}

// Reads the blocks' buffers and row counts; all float16 bits (*half = 1) or all float32 (0).
static const char *check_blocks(napi_env env, napi_value array, uint32_t n_blocks, uint32_t d, struct block *blocks, int *half) {
  *half = 1;
  for (uint32_t b = 0; b < n_blocks; b++) {
    napi_value v;
    void *data;
    size_t length;
    if (napi_get_element(env, array, b, &v) != napi_ok) return "blocks: cannot read an element";
    int is_half = typed_array(env, v, napi_uint16_array, &data, &length);
    if (!is_half && !typed_array(env, v, napi_float32_array, &data, &length)) return "blocks must be Float32Arrays or Uint16Arrays";
    if (b > 0 && *half != is_half) return "blocks must all be float32 or all float16";
    *half = is_half;
    blocks[b].data = data;
    blocks[b].rows = length / d;
  }
  return NULL;
}

// innerProducts(queries: Float32Array, dimension, blocks: (Float32Array | Uint16Array)[],
//               queryOf: Int32Array, blockOf: Int32Array, rowOf: Int32Array, out: Float32Array)
// out[i] = Σ_j queries[queryOf[i]·d + j] · blocks[blockOf[i]][rowOf[i]·d + j], for i < queryOf.length.
// Every block is float16 bits (Uint16Array) or every block is float32. `blocks` is read once, element
// by element, before any index is checked: give a plain array (a getter or Proxy that ran JS there
// could detach a buffer already read; FullKeyStore passes a fresh array of its blocks).
static napi_value inner_products_with(napi_env env, napi_callback_info info, int portable) {
  size_t argc = 7;
  napi_value a[7];
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc != 7) return fail(env, "innerProducts takes 7 arguments");
  float *queries, *out;
  int32_t *query_of, *block_of, *row_of;
  size_t queries_len, n, n_blocks_of, n_rows_of, out_len;
  uint32_t d, n_blocks;
  int half;
  if (!typed_array(env, a[0], napi_float32_array, (void **)&queries, &queries_len)) return fail(env, "queries must be a Float32Array");
  double dimension;  // a double, checked whole: napi's uint32 reading would wrap 2^32 + 4 to 4
  if (napi_get_value_double(env, a[1], &dimension) != napi_ok || !(dimension >= 1 && dimension <= 2147483647.0) || dimension != floor(dimension))
    return fail(env, "dimension must be a whole number from 1 to 2^31 - 1");
  d = (uint32_t)dimension;
  bool is_array;
  if (napi_is_array(env, a[2], &is_array) != napi_ok || !is_array || napi_get_array_length(env, a[2], &n_blocks) != napi_ok || n_blocks > MAX_BLOCKS)
    return fail(env, "blocks must be an array of at most 65,536 typed arrays");
  if (!typed_array(env, a[3], napi_int32_array, (void **)&query_of, &n) || !typed_array(env, a[4], napi_int32_array, (void **)&block_of, &n_blocks_of) ||
      !typed_array(env, a[5], napi_int32_array, (void **)&row_of, &n_rows_of) || n_blocks_of != n || n_rows_of != n)
    return fail(env, "queryOf, blockOf and rowOf must be Int32Arrays of one length");
  if (!typed_array(env, a[6], napi_float32_array, (void **)&out, &out_len) || out_len < n) return fail(env, "out must be a Float32Array of one value per row");

  struct block *blocks = malloc((n_blocks ? n_blocks : 1) * sizeof *blocks);
  if (!blocks) return fail(env, "innerProducts: out of memory");
  const char *error = check_blocks(env, a[2], n_blocks, d, blocks, &half);
  size_t n_queries = queries_len / d;
  for (size_t i = 0; i < n && !error; i++) {
    if (query_of[i] < 0 || (size_t)query_of[i] >= n_queries) error = "queryOf: a query index is out of range";
    else if (block_of[i] < 0 || (uint32_t)block_of[i] >= n_blocks) error = "blockOf: a block index is out of range";
    else if (row_of[i] < 0 || (size_t)row_of[i] >= blocks[block_of[i]].rows) error = "rowOf: a row index is out of range";
  }
  if (error) {
    free(blocks);
    return fail(env, error);
  }

  pthread_once(&kernels_chosen, choose_kernels);
  dot_f16_fn f16 = portable ? dot_f16_portable : dot_f16;
  dot_f32_fn f32 = portable ? dot_f32_portable : dot_f32;
  const size_t row_bytes = (size_t)d * (half ? 2 : 4);
  for (size_t i = 0; i < n; i++) {
    const float *q = queries + (size_t)query_of[i] * d;
    const char *row = (const char *)blocks[block_of[i]].data + (size_t)row_of[i] * row_bytes;
    if (i + 1 < n) {  // the next row is elsewhere in RAM: start on its first lines now
      const char *next = (const char *)blocks[block_of[i + 1]].data + (size_t)row_of[i + 1] * row_bytes;
      for (int line = 0; line < 16; line++) __builtin_prefetch(next + 64 * line);
    }
    out[i] = half ? f16(q, (const uint16_t *)row, d) : f32(q, (const float *)row, d);
  }
  free(blocks);
  return NULL;
}

static napi_value inner_products(napi_env env, napi_callback_info info) { return inner_products_with(env, info, 0); }

// the same with the portable loops, whatever the CPU: for the tests, which run where AVX2 is
static napi_value inner_products_portable(napi_env env, napi_callback_info info) { return inner_products_with(env, info, 1); }

NAPI_MODULE_INIT() {
  pthread_once(&kernels_chosen, choose_kernels);
  napi_value fn, portable, kernel;
  if (napi_create_function(env, "innerProducts", NAPI_AUTO_LENGTH, inner_products, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "innerProducts", fn) != napi_ok ||
      napi_create_function(env, "innerProductsPortable", NAPI_AUTO_LENGTH, inner_products_portable, NULL, &portable) != napi_ok ||
      napi_set_named_property(env, exports, "innerProductsPortable", portable) != napi_ok ||
      napi_create_string_utf8(env, kernel_name, NAPI_AUTO_LENGTH, &kernel) != napi_ok || napi_set_named_property(env, exports, "kernel", kernel) != napi_ok)
    return NULL;
  return exports;
}
