// Test-only: lets lowbit's AVX-512 kernel sources be compiled for, and run on, an x86-64 CPU
// without AVX-512 (scripts/check-avx512.sh force-includes it; production builds never see it).
// The kernels' own text is unchanged: their _mm512_* / masked _mm256_* intrinsics become macros
// that call portable implementations, so the self-test checks the kernels' logic (indexing, tails,
// masks, decoding, accumulation) against the references. It says nothing about speed, and the
// instruction encodings are the compiler's (the real build compiles the same sources with -mavx512*).
//
// Most intrinsics come from SIMDe (Debian: libsimde-dev), whose emulations its project tests
// against real AVX-512 hardware. The ones SIMDe 0.7.4 (Debian 12) lacks are written below from
// Intel's definitions; the float conversions among them run on the native F16C/AVX instructions
// half by half, so their rounding is the hardware's. Horizontal float reductions add
// in GCC's order (halves, then quarters …), so results are bit-identical to a native build's.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

namespace lowbit_emu {

// GCC's __m512 family are plain vector types (SIMDe maps its types onto them here), so lanes are
// reachable by subscript; 256-bit halves go through memory.
using v16sf = float __attribute__((vector_size(64)));
using v16si = int32_t __attribute__((vector_size(64)));
using v32hi = int16_t __attribute__((vector_size(64)));

static inline __m256 lo256(__m512 v) {
  __m256 r;
  std::memcpy(&r, &v, 32);
  return r;
}
static inline __m256 hi256(__m512 v) {
  __m256 r;
  std::memcpy(&r, reinterpret_cast<const char*>(&v) + 32, 32);
  return r;
}
static inline __m512 join256(__m256 lo, __m256 hi) {
  __m512 r;
  std::memcpy(&r, &lo, 32);
  std::memcpy(reinterpret_cast<char*>(&r) + 32, &hi, 32);
  return r;
}

static inline __m512 maskz_loadu_ps(uint16_t k, const void* p) {
  v16sf r = {};
  const float* f = static_cast<const float*>(p);
  for (int i = 0; i < 16; i++)
    if (k >> i & 1) r[i] = f[i];  // masked-off lanes are not read (no fault past the end)
  return (__m512)r;
}
static inline void mask_storeu_ps(void* p, uint16_t k, __m512 v) {
  float* f = static_cast<float*>(p);
  const v16sf x = (v16sf)v;
  for (int i = 0; i < 16; i++)
    if (k >> i & 1) f[i] = x[i];
}
static inline __m256i maskz_loadu_epi16(uint16_t k, const void* p) {
  alignas(32) int16_t r[16] = {};
  const int16_t* s = static_cast<const int16_t*>(p);
  for (int i = 0; i < 16; i++)
    if (k >> i & 1) r[i] = s[i];
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(r));
}
static inline void mask_storeu_epi16(void* p, uint16_t k, __m256i v) {
  alignas(32) int16_t x[16];
  _mm256_store_si256(reinterpret_cast<__m256i*>(x), v);
  int16_t* d = static_cast<int16_t*>(p);
  for (int i = 0; i < 16; i++)
    if (k >> i & 1) d[i] = x[i];
}
static inline void mask_cvtepi32_storeu_epi8(void* p, uint16_t k, __m512i v) {  // truncation
  const v16si x = (v16si)v;
  int8_t* d = static_cast<int8_t*>(p);
  for (int i = 0; i < 16; i++)
    if (k >> i & 1) d[i] = (int8_t)x[i];
}
static inline __m256i cvtepi32_epi16(__m512i v) {  // truncation
  const v16si x = (v16si)v;
  alignas(32) int16_t r[16];
  for (int i = 0; i < 16; i++) r[i] = (int16_t)x[i];
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(r));
}
static inline __m512i cvtepi8_epi32(__m128i v) {
  alignas(16) int8_t x[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(x), v);
  v16si r;
  for (int i = 0; i < 16; i++) r[i] = x[i];
  return (__m512i)r;
}
static inline __m512i cvtepu16_epi32(__m256i v) {
  alignas(32) uint16_t x[16];
  _mm256_store_si256(reinterpret_cast<__m256i*>(x), v);
  v16si r;
  for (int i = 0; i < 16; i++) r[i] = x[i];
  return (__m512i)r;
}
static inline __m512 cvtph_ps(__m256i h) {  // the F16C instruction, half by half
  return join256(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
}
#define LOWBIT_EMU_CVTPS_PH(v, imm) \
  _mm256_inserti128_si256(_mm256_castsi128_si256(_mm256_cvtps_ph(::lowbit_emu::lo256(v), (imm))), _mm256_cvtps_ph(::lowbit_emu::hi256(v), (imm)), 1)
static inline __m512 cvtepi32_ps(__m512i v) {  // the AVX instruction, half by half (rounds to nearest even)
  __m256i lo, hi;
  std::memcpy(&lo, &v, 32);
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + 32, 32);
  return join256(_mm256_cvtepi32_ps(lo), _mm256_cvtepi32_ps(hi));
}
static inline __m512i cvttps_epi32(__m512 v) {  // the AVX instruction (out of range, NaN: 0x80000000)
  const __m256i lo = _mm256_cvttps_epi32(lo256(v)), hi = _mm256_cvttps_epi32(hi256(v));
  __m512i r;
  std::memcpy(&r, &lo, 32);
  std::memcpy(reinterpret_cast<char*>(&r) + 32, &hi, 32);
  return r;
}
static inline uint16_t cmp_epu32_mask(__m512i a, __m512i b, int pred) {
  const v16si x = (v16si)a, y = (v16si)b;
  uint16_t r = 0;
  for (int i = 0; i < 16; i++) {
    const uint32_t u = (uint32_t)x[i], v = (uint32_t)y[i];
    bool c = false;
    switch (pred & 7) {
      case 0: c = u == v; break;  // EQ
      case 1: c = u < v; break;   // LT
      case 2: c = u <= v; break;  // LE
      case 3: c = false; break;   // FALSE
      case 4: c = u != v; break;  // NE
      case 5: c = u >= v; break;  // NLT
      case 6: c = u > v; break;   // NLE
      default: c = true; break;   // TRUE
    }
    if (c) r = (uint16_t)(r | 1u << i);
  }
  return r;
}
// GCC's reduction order: (hi 8 op lo 8), then (hi 4 op lo 4), then lanes {2,3} op {0,1}, then 0 op 1.
template <class Op>
static inline float reduce_ps(__m512 v, Op op) {
  const v16sf x = (v16sf)v;
  float a[8], b[4], c[2];
  for (int i = 0; i < 8; i++) a[i] = op(x[8 + i], x[i]);
  for (int i = 0; i < 4; i++) b[i] = op(a[4 + i], a[i]);
  for (int i = 0; i < 2; i++) c[i] = op(b[i], b[2 + i]);
  return op(c[0], c[1]);
}
static inline float reduce_add_ps(__m512 v) {
  return reduce_ps(v, [](float p, float q) { return p + q; });
}
// maxps/minps semantics (the second operand when either is NaN or both are zero): as GCC's intrinsic
static inline float reduce_max_ps(__m512 v) {
  return reduce_ps(v, [](float p, float q) { return p > q ? p : q; });
}
static inline float reduce_min_ps(__m512 v) {
  return reduce_ps(v, [](float p, float q) { return p < q ? p : q; });
}
static inline int reduce_add_epi32(__m512i v) {
  const v16si x = (v16si)v;
  uint32_t s = 0;
  for (int i = 0; i < 16; i++) s += (uint32_t)x[i];
  return (int)s;
}

static inline uint32_t cmpeq_epi16_mask(__m512i a, __m512i b) {  // AVX512BW vpcmpeqw
  const v32hi x = (v32hi)a, y = (v32hi)b;
  uint32_t m = 0;
  for (int i = 0; i < 32; i++)
    if (x[i] == y[i]) m |= 1u << i;
  return m;
}

}  // namespace lowbit_emu

// Not clang-formatted: one intrinsic per line, as a table; clang-format 14 also misreads `(k) & x`
// in a macro body as a cast and writes `(k)&x`.
// clang-format off
#define _mm512_maskz_loadu_ps(k, p) ::lowbit_emu::maskz_loadu_ps((k), (p))
#define _mm512_mask_storeu_ps(p, k, v) ::lowbit_emu::mask_storeu_ps((p), (k), (v))
#define _mm256_maskz_loadu_epi16(k, p) ::lowbit_emu::maskz_loadu_epi16((k), (p))
#define _mm256_mask_storeu_epi16(p, k, v) ::lowbit_emu::mask_storeu_epi16((p), (k), (v))
#define _mm512_mask_cvtepi32_storeu_epi8(p, k, v) ::lowbit_emu::mask_cvtepi32_storeu_epi8((p), (k), (v))
#define _mm512_cvtepi32_epi16(v) ::lowbit_emu::cvtepi32_epi16(v)
#define _mm512_cvtepi8_epi32(v) ::lowbit_emu::cvtepi8_epi32(v)
#define _mm512_cvtepu16_epi32(v) ::lowbit_emu::cvtepu16_epi32(v)
#define _mm512_cvtph_ps(h) ::lowbit_emu::cvtph_ps(h)
#define _mm512_cvtps_ph(v, imm) LOWBIT_EMU_CVTPS_PH(v, imm)
#define _mm512_cvtepi32_ps(v) ::lowbit_emu::cvtepi32_ps(v)
#define _mm512_cvttps_epi32(v) ::lowbit_emu::cvttps_epi32(v)
#define _mm512_mask_cmp_ps_mask(k, a, b, imm) ((uint16_t)((k) & _mm512_cmp_ps_mask(a, b, imm)))
#define _mm512_cmp_epu32_mask(a, b, imm) ::lowbit_emu::cmp_epu32_mask((a), (b), (imm))
#define _mm512_reduce_add_ps(v) ::lowbit_emu::reduce_add_ps(v)
#define _mm512_reduce_max_ps(v) ::lowbit_emu::reduce_max_ps(v)
#define _mm512_reduce_min_ps(v) ::lowbit_emu::reduce_min_ps(v)
#define _mm512_reduce_add_epi32(v) ::lowbit_emu::reduce_add_epi32(v)
#define _mm512_cmpeq_epi16_mask(a, b) ::lowbit_emu::cmpeq_epi16_mask((a), (b))
// clang-format on
