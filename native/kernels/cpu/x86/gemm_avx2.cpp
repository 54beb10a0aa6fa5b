// AVX2/FMA GEMM y = x · wᵀ (see kernels/gemm.h for shapes).
//
// Blocking (chosen for Zen 2/3/4-class cores: 32 KiB L1d, 512 KiB–1 MiB L2):
//   NR = 16 weight rows per panel (two ymm), MR = 6 activation rows per tile: the 6×16 tile uses 12
//   accumulators + 2 B loads + 1 broadcast = 15 of 16 ymm registers;
//   KC = 256: a packed A tile (6×256×4 = 6 KiB) and B panel (16×256×4 = 16 KiB) fit L1 together;
//   NC = 256 weight rows per packed B block (256 KiB, L2-resident), MC = 96 activation rows.
// Edges (m % 6, n % 16) are zero-padded in the packed copies and written through a small tile.
// m == 1 takes a GEMV path that streams w once, 4 rows at a time.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "kernels/convert.h"
#include "kernels/cpu/gemm_blocked.h"
#include "kernels/cpu/x86/gemm_pack_avx.h"
#include "kernels/gemm.h"

namespace lowbit {

namespace {

constexpr size_t MR = 6, NR = 16, KC = 256, MC = 96, NC = 256;

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// Weight loaders of the GEMV: 8 values at p as f32 (exact for f16 and bf16), and one value.
struct LoadF32 {
  using T = float;
  static __m256 v8(const float* p) { return _mm256_loadu_ps(p); }
  static float one(const float* p) { return *p; }
};
struct LoadF16 {
  using T = uint16_t;
  static __m256 v8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static float one(const uint16_t* p) { return f16_to_f32(*p); }
};
struct LoadBF16 {
  using T = uint16_t;
  static __m256 v8(const uint16_t* p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
  }
  static float one(const uint16_t* p) { return bf16_to_f32(*p); }
};

// The weights' type only changes how they are loaded: the arithmetic (and so every bit of y) is
// the f32 GEMV's.
template <class L>
void gemv_t(const float* x, size_t k, const typename L::T* w, float* y, bool accumulate, size_t n0, size_t n1) {
  size_t j = n0;
  for (; j + 4 <= n1; j += 4) {
    const typename L::T *w0 = w + j * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t t = 0;
    for (; t + 8 <= k; t += 8) {
      __m256 xv = _mm256_loadu_ps(x + t);
      a0 = _mm256_fmadd_ps(L::v8(w0 + t), xv, a0);
      a1 = _mm256_fmadd_ps(L::v8(w1 + t), xv, a1);
      a2 = _mm256_fmadd_ps(L::v8(w2 + t), xv, a2);
      a3 = _mm256_fmadd_ps(L::v8(w3 + t), xv, a3);
    }
    float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
    for (; t < k; t++) {
      s0 += x[t] * L::one(w0 + t);
      s1 += x[t] * L::one(w1 + t);
      s2 += x[t] * L::one(w2 + t);
      s3 += x[t] * L::one(w3 + t);
    }
    if (accumulate) {
      y[j] += s0;
      y[j + 1] += s1;
      y[j + 2] += s2;
      y[j + 3] += s3;
    } else {
      y[j] = s0;
      y[j + 1] = s1;
      y[j + 2] = s2;
      y[j + 3] = s3;
    }
  }
  for (; j < n1; j++) {
    const typename L::T* wj = w + j * k;
    __m256 a = _mm256_setzero_ps();
    size_t t = 0;
    for (; t + 8 <= k; t += 8) a = _mm256_fmadd_ps(L::v8(wj + t), _mm256_loadu_ps(x + t), a);
    float s = hsum(a);
    for (; t < k; t++) s += x[t] * L::one(wj + t);
    y[j] = accumulate ? y[j] + s : s;
  }
}

void gemv(const float* x, size_t k, const float* w, float* y, bool accumulate, size_t n0, size_t n1) {
  gemv_t<LoadF32>(x, k, w, y, accumulate, n0, n1);
}

// C (mr × nr valid of a 6 × 16 tile, leading dimension ldc) (+)= A_pack · B_pack over kc.
inline void kernel_6x16(size_t kc, const float* A, const float* B, float* C, size_t ldc, size_t mr, size_t nr, bool overwrite) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  // C's rows are fetched while the k loop runs: at 1024² and up, y is beyond L2 and the
  // accumulate at the end otherwise waits on up to 12 L3/DRAM lines per tile (2048³ back to back:
  // 0.83–0.87× → 0.89–0.97× OpenBLAS).
  for (size_t i = 0; i < mr; i++) {
    _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(C + i * ldc + NR - 1), _MM_HINT_T0);
  }
  for (size_t p = 0; p < kc; p++) {
    const __m256 b0 = _mm256_load_ps(B + p * NR), b1 = _mm256_load_ps(B + p * NR + 8);
    const float* a = A + p * MR;
    // Not clang-formatted: one row of the 6×16 register tile per line
    // clang-format off
    __m256 av = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    // clang-format on
  }
  const __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (mr == MR && nr == NR) {
    for (size_t i = 0; i < MR; i++) {
      float* ci = C + i * ldc;
      if (overwrite) {
        _mm256_storeu_ps(ci, acc[i][0]);
        _mm256_storeu_ps(ci + 8, acc[i][1]);
      } else {
        _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), acc[i][0]));
        _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(ci + 8), acc[i][1]));
      }
    }
    return;
  }
  alignas(32) float tile[MR][NR];
  for (size_t i = 0; i < MR; i++) {
    _mm256_store_ps(tile[i], acc[i][0]);
    _mm256_store_ps(tile[i] + 8, acc[i][1]);
  }
  store_edge_tile<MR, NR>(tile, C, ldc, mr, nr, overwrite);
}


}  // namespace

float dot_f32_avx2(const float* a, const float* b, size_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

// ---- small batches (GEMM_SMALL_M_MIN ≤ m ≤ GEMM_SMALL_M_MAX): the roles swapped ----------------------------
// The blocked path packs NR-row panels of w for every k block and reuses each packed value only
// ⌈m/6⌉ times: at 32 tokens, packing w costs about as much as multiplying. Here w is never
// packed: yᵀ = w · xᵀ, x (small) is packed once per call, 16 tokens wide and k-major, and the
// micro-kernel broadcasts w's elements straight from its rows (6 rows of w × 16 tokens,
// 12 accumulators). A tile's 6·KCS floats of w stay in L1 while every token block passes over
// them; the packed x block (m × KCS) stays in L2. Results are transposed in registers and stored
// with a mask, ≤ 6 floats at a time, into each token's row of y.

namespace {

inline __m256i lane_mask(size_t r) {  // the first r of 8 lanes
  alignas(32) static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8 - r));
}

// acc[2r + h] holds tokens 8h … 8h+7 of weight row r (r < 6). Writes y[t, 0 … rows−1] for the mt
// valid tokens t of the block (rows of y at y + t·ldy): an 8×8 register transpose per token half,
// then one masked store of `rows` floats per token.
inline void store_transposed(const __m256 (&acc)[12], float* y, size_t ldy, size_t mt, size_t rows, bool overwrite) {
  const __m256i mask = lane_mask(rows);
  for (size_t h = 0; h < 2 && 8 * h < mt; h++) {
    __m256 v[8];
    for (int i = 0; i < 8; i++) v[i] = i < 6 ? acc[2 * i + h] : _mm256_setzero_ps();
    transpose8_ps(v);  // v[t] = token 8h + t, weight rows 0 … 7
    for (size_t t = 0; t < 8 && 8 * h + t < mt; t++) {
      float* dst = y + (8 * h + t) * ldy;
      __m256 val = v[t];
      if (!overwrite) val = _mm256_add_ps(val, _mm256_maskload_ps(dst, mask));
      _mm256_maskstore_ps(dst, mask, val);
    }
  }
}

// 6 weight rows (w + r·k, already offset to the k block) × 16 tokens of a packed x panel
// (xp[kk·16 + token]) over kc, 12 named accumulators (an array would be kept in memory by gcc).
// Rows beyond `rows` repeat the last valid row (computed, not stored).
inline void kernel_swapped_6x16(size_t kc, const float* w, size_t k, size_t rows, const float* xp, float* y, size_t ldy, size_t mt, bool overwrite) {
  const float* wr[6];
  for (size_t r = 0; r < 6; r++) wr[r] = w + std::min(r, rows - 1) * k;
  const float *w0 = wr[0], *w1 = wr[1], *w2 = wr[2], *w3 = wr[3], *w4 = wr[4], *w5 = wr[5];
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
  for (size_t p = 0; p < kc; p++) {
    const __m256 x0 = _mm256_load_ps(xp + p * 16), x1 = _mm256_load_ps(xp + p * 16 + 8);
    // Not clang-formatted: one row of w (two 8-token halves) per line
    // clang-format off
    __m256 v = _mm256_broadcast_ss(w0 + p);
    a0 = _mm256_fmadd_ps(v, x0, a0); a1 = _mm256_fmadd_ps(v, x1, a1);
    v = _mm256_broadcast_ss(w1 + p);
    a2 = _mm256_fmadd_ps(v, x0, a2); a3 = _mm256_fmadd_ps(v, x1, a3);
    v = _mm256_broadcast_ss(w2 + p);
    a4 = _mm256_fmadd_ps(v, x0, a4); a5 = _mm256_fmadd_ps(v, x1, a5);
    v = _mm256_broadcast_ss(w3 + p);
    a6 = _mm256_fmadd_ps(v, x0, a6); a7 = _mm256_fmadd_ps(v, x1, a7);
    v = _mm256_broadcast_ss(w4 + p);
    a8 = _mm256_fmadd_ps(v, x0, a8); a9 = _mm256_fmadd_ps(v, x1, a9);
    v = _mm256_broadcast_ss(w5 + p);
    a10 = _mm256_fmadd_ps(v, x0, a10); a11 = _mm256_fmadd_ps(v, x1, a11);
    // clang-format on
  }
  const __m256 out[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
  store_transposed(out, y, ldy, mt, rows, overwrite);
}

constexpr size_t KCS = 1024;  // k block of the swapped path: 6 rows of w (24 KiB) in L1, x block in L2

}  // namespace

// x (m × k) → blocks of KCS channels in the layout of packed_a_offset, with tiles of 16 tokens: token
// block tb of the block at channel c0 (kc channels), at c0·mpad + tb·16·kc, holds x[tb·16 + t, c0 + kk]
// at kk·16 + t (zero for t ≥ m).
void gemm_small_pack_x_avx2(const float* x, size_t m, size_t k, float* dst) {
  const size_t mpad = padded_rows<16>(m), tbs = mpad / 16;
  for (size_t c0 = 0; c0 < k; c0 += KCS) {
    const size_t kc = std::min(KCS, k - c0);
    for (size_t tb = 0; tb < tbs; tb++) {
      float* d = dst + packed_a_offset(mpad, c0, kc, tb * 16);
      for (size_t h = 0; h < 2; h++) {
        const size_t t0 = tb * 16 + h * 8;
        const size_t valid = t0 < m ? std::min<size_t>(8, m - t0) : 0;
        size_t kk = 0;
        if (valid == 8)
          for (; kk + 8 <= kc; kk += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(x + (t0 + i) * k + c0 + kk);
            transpose8_ps(r);
            for (int i = 0; i < 8; i++) _mm256_store_ps(d + (kk + i) * 16 + 8 * h, r[i]);
          }
        for (; kk < kc; kk++)
          for (size_t i = 0; i < 8; i++) d[kk * 16 + 8 * h + i] = i < valid ? x[(t0 + i) * k + c0 + kk] : 0.0f;
      }
    }
  }
}

void gemm_small_avx2_range(const float* xp, size_t m, size_t k, const float* w, float* y, size_t ldy, bool accumulate, size_t n0, size_t n1) {
  const size_t mpad = padded_rows<16>(m), tbs = mpad / 16;
  for (size_t c0 = 0; c0 < k; c0 += KCS) {
    const size_t kc = std::min(KCS, k - c0);
    const bool overwrite = c0 == 0 && !accumulate;
    for (size_t j = n0; j < n1;) {
      const size_t rows = std::min<size_t>(6, n1 - j);
      for (size_t tb = 0; tb < tbs; tb++)
        kernel_swapped_6x16(kc, w + j * k + c0, k, rows, xp + packed_a_offset(mpad, c0, kc, tb * 16), y + tb * 16 * ldy + j, ldy,
                            std::min<size_t>(16, m - tb * 16), overwrite);
      j += rows;
    }
  }
}

void gemv_w16_avx2(const float* x, size_t k, const uint16_t* w, int wdt, float* y, size_t n0, size_t n1) {
  if (wdt == DTYPE_F16) gemv_t<LoadF16>(x, k, w, y, false, n0, n1);
  else gemv_t<LoadBF16>(x, k, w, y, false, n0, n1);
}

size_t gemm_avx2_packed_a_floats(size_t m, size_t k) { return packed_a_floats<MR>(m, k); }
size_t gemm_avx2_a_tiles(size_t m) { return padded_rows<MR>(m) / MR; }
void gemm_avx2_pack_a(const float* x, size_t m, size_t k, float* apre, size_t t0, size_t t1) { pack_a_all<MR, KC>(x, m, k, apre, t0, t1); }

void gemm_avx2_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool accumulate, size_t n0, size_t n1,
                     const float* apre) {
  (void)n;
  if (n1 <= n0) return;
  if (m == 1) {
    gemv(x, k, w, y, accumulate, n0, n1);
    return;
  }
  if (k == 0) {
    if (!accumulate)
      for (size_t i = 0; i < m; i++) std::fill(y + i * ldy + n0, y + i * ldy + n1, 0.0f);
    return;
  }
  thread_local PackBuf pa, pb;
  gemm_blocked<MR, NR, KC, MC, NC>(
      x, m, k, w, y, ldy, accumulate, n0, n1, pa.get(MC * KC), pb.get(NC * KC),
      // lambdas (one type each): direct, inlinable calls
      [](size_t kc, const float* A, const float* B, float* C, size_t ldc, size_t mr, size_t nr, bool ow) {
        kernel_6x16(kc, A, B, C, ldc, mr, nr, ow);
      },
      [](const float* w_, size_t k_, size_t r0, size_t re, size_t k0, size_t kc, float* dst) { pack_b_panel_avx<NR>(w_, k_, r0, re, k0, kc, dst); },
      apre);
}

void gemm_avx2(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, bool accumulate) {
  gemm_avx2_range(x, m, k, w, n, y, n, accumulate, 0, n);
}

}  // namespace lowbit
