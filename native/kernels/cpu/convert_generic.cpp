// Portable conversion kernel and the conversion driver (ISA dispatch + thread pool).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

#include "core/dispatch.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/convert.h"

namespace lowbit {

void convert_range_generic(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, size_t base, ConvertResult* r) {
  // Same scalar arithmetic as the reference, in a tight loop per (src, dst) pair.
  const uint8_t* s = static_cast<const uint8_t*>(src);
  uint8_t* d = static_cast<uint8_t*>(dst);
  if (sdt == ddt) {
    std::memcpy(d, s, n * dtype_size(sdt));
    return;
  }
  for (size_t i = 0; i < n; i++) {
    float f;
    if (sdt == DTYPE_F32) std::memcpy(&f, s + 4 * i, 4);
    else {
      uint16_t h;
      std::memcpy(&h, s + 2 * i, 2);
      f = sdt == DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    if (ddt == DTYPE_F32) std::memcpy(d + 4 * i, &f, 4);
    else {
      bool of = false;
      uint16_t h = ddt == DTYPE_F16 ? f32_to_f16(f, saturate, &of) : f32_to_bf16(f);
      if (of && r->overflow++ == 0) r->first_overflow = base + i;
      std::memcpy(d + 2 * i, &h, 2);
    }
  }
}

#if !defined(LOWBIT_HAVE_X86_VARIANTS)
void convert_range_avx2(const void* s, int a, void* d, int b, size_t n, bool sat, size_t base, ConvertResult* r) {
  convert_range_generic(s, a, d, b, n, sat, base, r);
}
void convert_range_avx512(const void* s, int a, void* d, int b, size_t n, bool sat, size_t base, ConvertResult* r) {
  convert_range_generic(s, a, d, b, n, sat, base, r);
}
#endif
#if !defined(LOWBIT_HAVE_NEON_VARIANTS)
void convert_range_neon(const void* s, int a, void* d, int b, size_t n, bool sat, size_t base, ConvertResult* r) {
  convert_range_generic(s, a, d, b, n, sat, base, r);
}
#endif

size_t first_nonfinite_range_generic(const void* src, int dt, size_t n) {
  // 64-element blocks whose flags are OR-ed without a branch (the compiler vectorizes this), then
  // the exact index inside the first flagged block.
  const uint8_t* s = static_cast<const uint8_t*>(src);
  const size_t es = dtype_size(dt);
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    unsigned any = 0;
    if (dt == DTYPE_F32) {
      for (size_t j = 0; j < 64; j++) {
        uint32_t u;
        std::memcpy(&u, s + 4 * (i + j), 4);
        any |= (u & 0x7f800000u) == 0x7f800000u;
      }
    } else {
      const uint16_t e = dt == DTYPE_F16 ? 0x7c00 : 0x7f80;
      for (size_t j = 0; j < 64; j++) {
        uint16_t h;
        std::memcpy(&h, s + 2 * (i + j), 2);
        any |= (uint16_t)(h & e) == e;
      }
    }
    if (any) return i + first_nonfinite_ref(s + i * es, dt, 64);
  }
  const size_t r = first_nonfinite_ref(s + i * es, dt, n - i);
  return r == SIZE_MAX ? r : i + r;
}

#if !defined(LOWBIT_HAVE_X86_VARIANTS)
size_t first_nonfinite_range_avx2(const void* s, int dt, size_t n) { return first_nonfinite_range_generic(s, dt, n); }
size_t first_nonfinite_range_avx512(const void* s, int dt, size_t n) { return first_nonfinite_range_generic(s, dt, n); }
#endif
#if !defined(LOWBIT_HAVE_NEON_VARIANTS)
size_t first_nonfinite_range_neon(const void* s, int dt, size_t n) { return first_nonfinite_range_generic(s, dt, n); }
#endif

static size_t first_nonfinite_dispatch(const void* src, int dt, size_t n) {
  switch (active_isa()) {
    case ISA_AVX512: return first_nonfinite_range_avx512(src, dt, n);
    case ISA_AVX2: return first_nonfinite_range_avx2(src, dt, n);
    case ISA_NEON: return first_nonfinite_range_neon(src, dt, n);
    default: return first_nonfinite_range_generic(src, dt, n);
  }
}

size_t first_nonfinite(const void* src, int dt, size_t n, int mode) {
  if (mode == MODE_REF) return first_nonfinite_ref(src, dt, n);
  // 1 Mi elements per chunk: the scan is memory-bound, so chunks only need to keep every core's
  // loads streaming; a chunk past the best index found so far is skipped.
  std::atomic<size_t> best{SIZE_MAX};
  const size_t es = dtype_size(dt);
  parallel_for(n, 1 << 20, [&](size_t b, size_t e) {
    if (b >= best.load(std::memory_order_relaxed)) return;
    const size_t r = first_nonfinite_dispatch(static_cast<const uint8_t*>(src) + b * es, dt, e - b);
    if (r == SIZE_MAX) return;
    size_t cur = best.load(std::memory_order_relaxed);
    while (b + r < cur && !best.compare_exchange_weak(cur, b + r, std::memory_order_relaxed)) {
    }
  });
  return best.load();
}

static void convert_range_dispatch(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, size_t base, ConvertResult* r) {
  if (sdt == ddt) {
    // the identity, bit for bit (NaN payloads included) in every variant: the vector paths would
    // round-trip through f32 and quiet signaling NaNs (found by scripts/fuzz-native.sh)
    if (n) std::memcpy(dst, src, n * dtype_size(sdt));
    return;
  }
  switch (active_isa()) {
    case ISA_AVX512: convert_range_avx512(src, sdt, dst, ddt, n, saturate, base, r); break;
    case ISA_AVX2: convert_range_avx2(src, sdt, dst, ddt, n, saturate, base, r); break;
    case ISA_NEON: convert_range_neon(src, sdt, dst, ddt, n, saturate, base, r); break;
    default: convert_range_generic(src, sdt, dst, ddt, n, saturate, base, r); break;
  }
}

void convert_range(const void* src, int sdt, void* dst, int ddt, size_t n) {
  ConvertResult r;
  convert_range_dispatch(src, sdt, dst, ddt, n, true, 0, &r);
}

void convert(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, int mode, ConvertResult* r, TaskContext* ctx) {
  if (mode == MODE_REF) {
    convert_ref(src, sdt, dst, ddt, n, saturate, r);
    return;
  }
  const size_t ss = dtype_size(sdt), ds = dtype_size(ddt);
  std::mutex mu;
  // 64 Ki elements per chunk: large enough to amortize scheduling, small enough to balance.
  parallel_for(n, 1 << 16, [&](size_t b, size_t e) {
    if (ctx) ctx->check("convert");
    ConvertResult local;
    convert_range_dispatch(static_cast<const uint8_t*>(src) + b * ss, sdt, static_cast<uint8_t*>(dst) + b * ds, ddt, e - b, saturate, b, &local);
    if (local.overflow) {
      std::lock_guard<std::mutex> lk(mu);
      r->overflow += local.overflow;
      r->first_overflow = std::min(r->first_overflow, local.first_overflow);
    }
    if (ctx) ctx->add_done((double)(e - b));
  });
}

}  // namespace lowbit
