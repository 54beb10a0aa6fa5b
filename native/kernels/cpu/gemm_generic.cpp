// Portable GEMM (blocked dot products, 4 outputs at a time for reuse of x) and the driver that
// splits output columns across the thread pool and picks the ISA variant.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "core/cpu_features.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/convert.h"
#include "kernels/gemm.h"

namespace lowbit {

void gemm_generic_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool accumulate, size_t n0, size_t n1) {
  (void)n;
  for (size_t i = 0; i < m; i++) {
    const float* xi = x + i * k;
    size_t j = n0;
    for (; j + 4 <= n1; j += 4) {
      const float *w0 = w + j * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (size_t t = 0; t < k; t++) {
        s0 += xi[t] * w0[t];
        s1 += xi[t] * w1[t];
        s2 += xi[t] * w2[t];
        s3 += xi[t] * w3[t];
      }
      float* yi = y + i * ldy + j;
      if (accumulate) {
        yi[0] += s0;
        yi[1] += s1;
        yi[2] += s2;
        yi[3] += s3;
      } else {
        yi[0] = s0;
        yi[1] = s1;
        yi[2] = s2;
        yi[3] = s3;
      }
    }
    for (; j < n1; j++) {
      float s = 0;
      for (size_t t = 0; t < k; t++) s += xi[t] * w[j * k + t];
      y[i * ldy + j] = accumulate ? y[i * ldy + j] + s : s;
    }
  }
}

void gemm_generic(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, bool accumulate) {
  gemm_generic_range(x, m, k, w, n, y, n, accumulate, 0, n);
}

#if !defined(LOWBIT_HAVE_X86_VARIANTS)
void gemm_avx2_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool acc, size_t n0, size_t n1,
                     const float*) {
  gemm_generic_range(x, m, k, w, n, y, ldy, acc, n0, n1);
}
size_t gemm_avx2_packed_a_floats(size_t, size_t) { return 0; }
size_t gemm_avx2_a_tiles(size_t) { return 0; }
void gemm_avx2_pack_a(const float*, size_t, size_t, float*, size_t, size_t) {}
void gemm_avx2(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, bool acc) { gemm_generic(x, m, k, w, n, y, acc); }
void gemm_small_pack_x_avx2(const float*, size_t, size_t, float*) { throw Error("LOWBIT_INTERNAL", "gemm: no AVX2 variant in this build"); }
void gemm_small_avx2_range(const float*, size_t, size_t, const float*, float*, size_t, bool, size_t, size_t) {
  throw Error("LOWBIT_INTERNAL", "gemm: no AVX2 variant in this build");
}
void gemm_avx512_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool acc, size_t n0, size_t n1,
                       const float*) {
  gemm_generic_range(x, m, k, w, n, y, ldy, acc, n0, n1);
}
size_t gemm_avx512_packed_a_floats(size_t, size_t) { return 0; }
size_t gemm_avx512_a_tiles(size_t) { return 0; }
void gemm_avx512_pack_a(const float*, size_t, size_t, float*, size_t, size_t) {}
#endif

float dot_f32_generic(const float* a, const float* b, size_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // 8 independent chains
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
  float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < n; i++) t += a[i] * b[i];
  return t;
}

#if !defined(LOWBIT_HAVE_X86_VARIANTS)
float dot_f32_avx2(const float* a, const float* b, size_t n) { return dot_f32_generic(a, b, n); }
#endif
#if !defined(LOWBIT_HAVE_NEON_VARIANTS)
float dot_f32_neon(const float* a, const float* b, size_t n) { return dot_f32_generic(a, b, n); }
#endif

float dot_f32(const float* a, const float* b, size_t n) {
  switch (active_isa()) {
    case ISA_AVX2:
    case ISA_AVX512: return dot_f32_avx2(a, b, n);
    case ISA_NEON: return dot_f32_neon(a, b, n);
    default: return dot_f32_generic(a, b, n);
  }
}

#if !defined(LOWBIT_HAVE_NEON_VARIANTS)
void gemm_neon_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool acc, size_t n0, size_t n1) {
  gemm_generic_range(x, m, k, w, n, y, ldy, acc, n0, n1);
}
#endif

// The range kernel of the active ISA.
static void gemm_range(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool acc, size_t n0, size_t n1) {
  switch (active_isa()) {
    case ISA_AVX2: gemm_avx2_range(x, m, k, w, n, y, ldy, acc, n0, n1); break;
    case ISA_AVX512: gemm_avx512_range(x, m, k, w, n, y, ldy, acc, n0, n1); break;
    case ISA_NEON: gemm_neon_range(x, m, k, w, n, y, ldy, acc, n0, n1); break;
    default: gemm_generic_range(x, m, k, w, n, y, ldy, acc, n0, n1);
  }
}

void gemm_serial(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, bool accumulate) {
  gemm_range(x, m, k, w, n, y, n, accumulate, 0, n);
}

// The swapped small-batch path applies (AVX2 CPUs, GEMM_SMALL_M_MIN ≤ m ≤ GEMM_SMALL_M_MAX).
static bool use_small(size_t m, size_t k) {
  const Isa isa = active_isa();
  return (isa == ISA_AVX2 || isa == ISA_AVX512) && m >= GEMM_SMALL_M_MIN && m <= GEMM_SMALL_M_MAX && k > 0;
}

// One process-wide buffer for x packed once per call (the swapped small-batch path and the
// pre-packed blocked path), held for the whole call. Not thread_local: N-API tasks land on any of
// libuv's worker threads, and each first use on a new thread paid for fresh pages (a 4 MiB buffer:
// ~1000 page faults, milliseconds); the pool runs one parallel region at a time anyway.
struct PackBuffer {
  std::mutex mu;
  std::vector<float> v;
  float* get(size_t floats) {  // 64-byte aligned; call with mu held
    if (v.size() < floats + 16) v.resize(floats + 16);
    return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t(63));
  }
};
static PackBuffer& pack_buffer() {
  static PackBuffer* b = new PackBuffer();  // never destroyed: no exit-order issues
  return *b;
}

// x packed for the swapped path into the buffer (the caller holds its mutex).
static const float* pack_small(const float* x, size_t m, size_t k) {
  float* p = pack_buffer().get(gemm_small_packed_floats(m, k));
  gemm_small_pack_x_avx2(x, m, k, p);
  return p;
}

// The blocked path of an x86 variant, with x packed once per call (null: none for this ISA).
struct BlockedOps {
  void (*range)(const float*, size_t, size_t, const float*, size_t, float*, size_t, bool, size_t, size_t, const float*);
  size_t (*packed_a_floats)(size_t, size_t);
  size_t (*a_tiles)(size_t);
  void (*pack_a)(const float*, size_t, size_t, float*, size_t, size_t);
};
static const BlockedOps* blocked_ops(Isa isa) {
  static const BlockedOps avx2{gemm_avx2_range, gemm_avx2_packed_a_floats, gemm_avx2_a_tiles, gemm_avx2_pack_a};
  static const BlockedOps avx512{gemm_avx512_range, gemm_avx512_packed_a_floats, gemm_avx512_a_tiles, gemm_avx512_pack_a};
  return isa == ISA_AVX2 ? &avx2 : isa == ISA_AVX512 ? &avx512 : nullptr;
}

// Column units of the swapped path: 48, a multiple of its 6-row tile and of 16.
constexpr size_t SMALL_UNIT = 48;

// The product for parts sharing x (fast mode), on the pool: the swapped small-batch path; the
// blocked AVX2 path with x packed once per call; or chunks of the active ISA's range kernel.
static void gemm_parts(const GemmPart* parts, size_t count, const float* x, size_t m, size_t k, bool accumulate) {
  std::vector<size_t> units(count);
  if (use_small(m, k)) {
    std::lock_guard<std::mutex> hold(pack_buffer().mu);
    const float* xp = pack_small(x, m, k);  // once for all parts
    for (size_t p = 0; p < count; p++) units[p] = (parts[p].n + SMALL_UNIT - 1) / SMALL_UNIT;
    const size_t grain = std::max<size_t>(1, ((size_t)1 << 20) / (2 * m * k * SMALL_UNIT));
    parallel_for_parts(units.data(), count, grain, [&](size_t p, size_t u0, size_t u1) {
      const GemmPart& P = parts[p];
      gemm_small_avx2_range(xp, m, k, P.w, P.y, P.ldy, accumulate, u0 * SMALL_UNIT, std::min(P.n, u1 * SMALL_UNIT));
    });
    return;
  }
  // Units of one weight panel (16 columns for AVX2, 32 for the AVX-512 blocked path, so chunks
  // never split a panel), enough per chunk to amortize what a chunk packs; a GEMV (m == 1) packs
  // nothing, so finer chunks let two threads even out.
  const Isa isa = active_isa();
  const size_t U = isa == ISA_AVX512 && m > 1 ? 32 : 16;
  size_t total = 0;
  for (size_t p = 0; p < count; p++) total += units[p] = (parts[p].n + U - 1) / U;
  const size_t target = m == 1 ? (size_t)1 << 19 : (size_t)1 << 21;
  const size_t grain = std::max<size_t>(1, target / std::max<size_t>(2 * m * k * U, 1));
  const BlockedOps* ops = blocked_ops(isa);
  // AVX2/AVX-512 with several chunks: pack x once for the call (both threads packing tiles), not
  // once per chunk — at 512 rows a chunk is 256 columns, and every chunk repacked all of x. Up to 64 MiB.
  if (ops && m >= 2 && k > 0 && total > grain && m * k <= ((size_t)1 << 24)) {
    std::lock_guard<std::mutex> hold(pack_buffer().mu);
    float* apre = pack_buffer().get(ops->packed_a_floats(m, k));
    parallel_for(ops->a_tiles(m), std::max<size_t>(1, 4096 / k), [&](size_t t0, size_t t1) { ops->pack_a(x, m, k, apre, t0, t1); });
    parallel_for_parts(units.data(), count, grain, [&](size_t p, size_t u0, size_t u1) {
      const GemmPart& P = parts[p];
      ops->range(x, m, k, P.w, P.n, P.y, P.ldy, accumulate, u0 * U, std::min(P.n, u1 * U), apre);
    });
    return;
  }
  parallel_for_parts(units.data(), count, grain, [&](size_t p, size_t u0, size_t u1) {
    const GemmPart& P = parts[p];
    gemm_range(x, m, k, P.w, P.n, P.y, P.ldy, accumulate, u0 * U, std::min(P.n, u1 * U));
  });
}

// Columns of a 16-bit weight converted at a time: about 256 KiB of f32 (an L2-resident tile), in
// whole multiples of `unit` (the f32 path's panel or chunk unit, so tile edges fall where the f32
// path's chunk edges may, and every column is computed by the same code).
static size_t w16_tile(size_t k, size_t unit) {
  const size_t fit = ((size_t)1 << 16) / std::max<size_t>(k, 1);
  return std::max(unit, fit / unit * unit);
}

void gemm_w16(const float* x, size_t m, size_t k, const uint16_t* w, int wdt, size_t n, float* y, int mode, size_t ldy) {
  if (ldy == 0) ldy = n;
  LOWBIT_CHECK(wdt == DTYPE_F16 || wdt == DTYPE_BF16, "gemm_w16: weights must be f16 or bf16");
  if (m == 0 || n == 0) return;
  if (mode == MODE_REF) {
    const size_t T = 64;
    std::vector<float> tile(T * k);
    for (size_t c = 0; c < n; c += T) {
      const size_t e = std::min(n, c + T);
      ConvertResult r;
      convert_ref(w + c * k, wdt, tile.data(), DTYPE_F32, (e - c) * k, false, &r);
      gemm_ref_ld(x, m, k, tile.data(), e - c, y + c, ldy, false);
    }
    return;
  }
  const Isa isa = active_isa();
  // Convert the tiles of columns [c0, c1) one after another and run `mul(tile, cols, y + c)` on each.
  auto tiles = [&](size_t c0, size_t c1, size_t T, std::vector<float>& tile, const std::function<void(const float*, size_t, float*)>& mul) {
    for (size_t c = c0; c < c1; c += T) {
      const size_t e = std::min(c1, c + T);
      convert_range(w + c * k, wdt, tile.data(), DTYPE_F32, (e - c) * k);
      mul(tile.data(), e - c, y + c);
    }
  };
  if (use_small(m, k)) {
    std::lock_guard<std::mutex> hold(pack_buffer().mu);
    const float* xp = pack_small(x, m, k);
    const size_t units = (n + SMALL_UNIT - 1) / SMALL_UNIT, T = w16_tile(k, SMALL_UNIT);
    const size_t grain = std::max<size_t>(1, ((size_t)1 << 20) / (2 * m * k * SMALL_UNIT));
    parallel_for(units, grain, [&](size_t u0, size_t u1) {
      std::vector<float> tile(T * k);
      tiles(u0 * SMALL_UNIT, std::min(n, u1 * SMALL_UNIT), T, tile,
            [&](const float* t, size_t cols, float* yc) { gemm_small_avx2_range(xp, m, k, t, yc, ldy, false, 0, cols); });
    });
    return;
  }
  const size_t U = isa == ISA_AVX512 && m > 1 ? 32 : 16, T = w16_tile(k, U);
  const size_t units = (n + U - 1) / U;
  const size_t target = m == 1 ? (size_t)1 << 19 : (size_t)1 << 21;
  const size_t grain = std::max<size_t>(1, target / std::max<size_t>(2 * m * k * U, 1));
  if (m == 1 && (isa == ISA_AVX2 || isa == ISA_AVX512)) {
    // decoding: the weights converted in registers, each byte read once
    parallel_for(units, grain, [&](size_t u0, size_t u1) { gemv_w16_avx2(x, k, w, wdt, y, u0 * U, std::min(n, u1 * U)); });
    return;
  }
  const BlockedOps* ops = blocked_ops(isa);
  if (ops && m >= 2 && k > 0 && m * k <= ((size_t)1 << 24)) {
    std::lock_guard<std::mutex> hold(pack_buffer().mu);
    float* apre = pack_buffer().get(ops->packed_a_floats(m, k));
    parallel_for(ops->a_tiles(m), std::max<size_t>(1, 4096 / k), [&](size_t t0, size_t t1) { ops->pack_a(x, m, k, apre, t0, t1); });
    parallel_for(units, grain, [&](size_t u0, size_t u1) {
      std::vector<float> tile(T * k);
      tiles(u0 * U, std::min(n, u1 * U), T, tile,
            [&](const float* t, size_t cols, float* yc) { ops->range(x, m, k, t, cols, yc, ldy, false, 0, cols, apre); });
    });
    return;
  }
  parallel_for(units, grain, [&](size_t u0, size_t u1) {
    std::vector<float> tile(T * k);
    tiles(u0 * U, std::min(n, u1 * U), T, tile,
          [&](const float* t, size_t cols, float* yc) { gemm_range(x, m, k, t, cols, yc, ldy, false, 0, cols); });
  });
}

#if !defined(LOWBIT_HAVE_X86_VARIANTS)
void gemv_w16_avx2(const float*, size_t, const uint16_t*, int, float*, size_t, size_t) {
  throw Error("LOWBIT_INTERNAL", "gemv_w16: the AVX2 kernel is not built for this CPU");
}
void gemm_bf16_panel_avx512bf16(const uint16_t*, size_t, size_t, const uint16_t*, size_t, float*, size_t) {
  throw Error("LOWBIT_INTERNAL", "gemm_bf16: the AVX-512 BF16 kernel is not built for this CPU");
}
#endif

// Round n f32 values to bf16 bits (round to nearest even), on the pool.
static void to_bf16(const float* src, uint16_t* dst, size_t n) {
  parallel_for(n, (size_t)1 << 16, [&](size_t b, size_t e) { convert_range(src + b, DTYPE_F32, dst + b, DTYPE_BF16, e - b); });
}

void gemm_bf16(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, int mode, size_t ldy) {
  if (ldy == 0) ldy = n;
  if (m == 0 || n == 0) return;
  if (mode == MODE_REF) {
    // the rounded inputs, their products summed in double
    std::vector<uint16_t> bits(std::max(m, (size_t)64) * k);
    std::vector<float> xr(m * k), wr(64 * k);
    ConvertResult r;
    convert_ref(x, DTYPE_F32, bits.data(), DTYPE_BF16, m * k, false, &r);
    convert_ref(bits.data(), DTYPE_BF16, xr.data(), DTYPE_F32, m * k, false, &r);
    for (size_t c = 0; c < n; c += 64) {
      const size_t e = std::min(n, c + 64);
      convert_ref(w + c * k, DTYPE_F32, bits.data(), DTYPE_BF16, (e - c) * k, false, &r);
      convert_ref(bits.data(), DTYPE_BF16, wr.data(), DTYPE_F32, (e - c) * k, false, &r);
      gemm_ref_ld(xr.data(), m, k, wr.data(), e - c, y + c, ldy, false);
    }
    return;
  }
  const Isa isa = active_isa();
#if defined(LOWBIT_HAVE_X86_VARIANTS)
  const bool kernel = cpu_features().avx512bf16 && (isa == ISA_AVX2 || isa == ISA_AVX512);
#else
  const bool kernel = false;
#endif
  if (!kernel) {
    // x̃ as f32, w̃ as bf16 bits: the f32 kernels on exactly converted tiles
    std::vector<uint16_t> xb(m * k), wb(n * k);
    std::vector<float> xr(m * k);
    to_bf16(x, xb.data(), m * k);
    parallel_for(m * k, (size_t)1 << 16, [&](size_t b, size_t e) { convert_range(xb.data() + b, DTYPE_BF16, xr.data() + b, DTYPE_F32, e - b); });
    to_bf16(w, wb.data(), n * k);
    gemm_w16(xr.data(), m, k, wb.data(), DTYPE_BF16, n, y, MODE_FAST, ldy);
    return;
  }
  const size_t kp = (k + 1) & ~(size_t)1;
  std::vector<uint16_t> xb(m * kp, 0);
  parallel_for(m, std::max<size_t>(1, 4096 / std::max<size_t>(k, 1)), [&](size_t b, size_t e) {
    for (size_t i = b; i < e; i++) convert_range(x + i * k, DTYPE_F32, xb.data() + i * kp, DTYPE_BF16, k);
  });
  const size_t panels = (n + 31) / 32;
  const size_t grain = std::max<size_t>(1, ((size_t)1 << 21) / std::max<size_t>(m * 32 * kp, 1));
  parallel_for(panels, grain, [&](size_t p0, size_t p1) {
    std::vector<uint16_t> panel(kp * 32), row(kp, 0);
    for (size_t p = p0; p < p1; p++) {
      const size_t c0 = p * 32, cols = std::min<size_t>(32, n - c0);
      // channel pairs interleaved: word (p, c) of the panel = (w[c][2p], w[c][2p+1])
      for (size_t c = 0; c < 32; c++) {
        if (c < cols) convert_range(w + (c0 + c) * k, DTYPE_F32, row.data(), DTYPE_BF16, k);
        else std::fill(row.begin(), row.end(), (uint16_t)0);
        uint16_t* dst = panel.data() + (c < 16 ? 0 : 32) + (c % 16) * 2;
        for (size_t q = 0; q < kp / 2; q++) {
          dst[q * 64] = row[2 * q];
          dst[q * 64 + 1] = row[2 * q + 1];
        }
      }
      gemm_bf16_panel_avx512bf16(xb.data(), m, kp, panel.data(), cols, y + c0, ldy);
    }
  });
}

void gemm(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, bool accumulate, int mode, size_t ldy) {
  if (ldy == 0) ldy = n;
  if (mode == MODE_REF) {
    gemm_ref_ld(x, m, k, w, n, y, ldy, accumulate);
    return;
  }
  const GemmPart part{w, n, y, ldy};
  gemm_parts(&part, 1, x, m, k, accumulate);
}

void gemm_multi(const GemmPart* parts, size_t count, const float* x, size_t m, size_t k, int mode) {
  if (mode == MODE_REF) {
    for (size_t p = 0; p < count; p++) gemm_ref_ld(x, m, k, parts[p].w, parts[p].n, parts[p].y, parts[p].ldy, false);
    return;
  }
  gemm_parts(parts, count, x, m, k, false);
}

}  // namespace lowbit
