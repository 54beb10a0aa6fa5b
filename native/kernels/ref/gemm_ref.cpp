// Reference product y = x · wᵀ: one dot product per output, accumulated in double.
#include "kernels/gemm.h"

namespace lowbit {

void gemm_ref_ld(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, size_t ldy, bool accumulate) {
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++) {
      double s = accumulate ? (double)y[i * ldy + j] : 0.0;
      for (size_t t = 0; t < k; t++) s += (double)x[i * k + t] * (double)w[j * k + t];
      y[i * ldy + j] = (float)s;
    }
}

void gemm_ref(const float* x, size_t m, size_t k, const float* w, size_t n, float* y, bool accumulate) {
  gemm_ref_ld(x, m, k, w, n, y, n, accumulate);
}

}  // namespace lowbit
