// 8×8 float transpose in ymm registers and the weight-panel packer built on it, shared by the AVX2
// and AVX-512 GEMM sources. Internal
// linkage (anonymous namespace): each source gets its own copy compiled with its own flags; an
// inline function with external linkage would leave the linker free to keep the AVX-512 build's
// copy for the AVX2 source too, which would fault on a CPU without AVX-512.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdlib>
#include <new>

#include "kernels/cpu/gemm_blocked.h"

namespace lowbit {
namespace {

// 8×8 transpose of rows r[0..7] (8 floats each) into columns c[0..7].
inline void transpose8_ps(__m256 r[8]) {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// A thread's packing buffer, 64-byte aligned, grown on demand. malloc rather than std::vector: a
// std::vector<float> member instantiated here is a weak symbol compiled with this source's ISA
// flags, and the linker may keep that copy for every caller in the addon (test/native/isa-objects).
struct PackBuf {
  float* p = nullptr;
  size_t n = 0;
  PackBuf() = default;
  PackBuf(const PackBuf&) = delete;
  PackBuf& operator=(const PackBuf&) = delete;
  ~PackBuf() { std::free(p); }
  float* get(size_t floats) {
    if (n < floats) {
      std::free(p);
      n = 0;
      p = static_cast<float*>(std::aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64));
      if (!p) throw std::bad_alloc();
      n = floats;
    }
    return p;
  }
};

// One NR-row panel of w (rows row0 … row0+NR−1, rows ≥ row_end are zero) over k0 … k0+kc, stored
// k-major (dst[kk·NR + j], 32-byte aligned). Full panels move 8×8 tiles through registers (the
// scalar gather it replaces cost as much as the product itself at 32-token batches).
template <size_t NR>
inline void pack_b_panel_avx(const float* w, size_t k, size_t row0, size_t row_end, size_t k0, size_t kc, float* dst) {
  static_assert(NR % 8 == 0, "panels are whole 8-row groups");
  if (row0 + NR <= row_end) {
    size_t kk = 0;
    for (; kk + 8 <= kc; kk += 8) {
      for (size_t h = 0; h < NR / 8; h++) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(w + (row0 + 8 * h + i) * k + k0 + kk);
        transpose8_ps(r);
        for (int i = 0; i < 8; i++) _mm256_store_ps(dst + (kk + i) * NR + 8 * h, r[i]);
      }
    }
    for (; kk < kc; kk++)
      for (size_t j = 0; j < NR; j++) dst[kk * NR + j] = w[(row0 + j) * k + k0 + kk];
    return;
  }
  pack_rows_kmajor<NR>(w, k, row0, row_end, k0, kc, dst);
}

}  // namespace
}  // namespace lowbit
