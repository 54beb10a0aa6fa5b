// Portable conversion kernel and the conversion driver (ISA dispatch + thread pool).
#include <algorithm>
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

static void convert_range_dispatch(const void* src, int sdt, void* dst, int ddt, size_t n, bool saturate, size_t base, ConvertResult* r) {
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
