#include "core/dispatch.h"
#include "kernels/bench.h"

namespace lowbit {

double peak_fma_generic(uint64_t iters) {
  // Scalar fallback; the compiler may vectorise the independent chains.
  float a[12];
  for (int i = 0; i < 12; i++) a[i] = 1.0f + (float)i * 1e-3f;
  const float m = 0.9999999f, c = 1e-7f;
  for (uint64_t t = 0; t < iters; t++)
    for (int i = 0; i < 12; i++) a[i] = a[i] * m + c;
  volatile float sink = 0;
  for (int i = 0; i < 12; i++) sink = sink + a[i];
  return 2.0 * 12.0 * (double)iters;
}

#if !defined(LOWBIT_HAVE_X86_VARIANTS)
double peak_fma_avx2(uint64_t iters) { return peak_fma_generic(iters); }
double peak_fma_avx512(uint64_t iters) { return peak_fma_generic(iters); }
#endif

double peak_fma(uint64_t iters) {
  switch (active_isa()) {
    case ISA_AVX512: return peak_fma_avx512(iters);
    case ISA_AVX2: return peak_fma_avx2(iters);
    default: return peak_fma_generic(iters);
  }
}

}  // namespace lowbit
