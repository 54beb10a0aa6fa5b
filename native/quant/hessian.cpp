#include "quant/hessian.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "kernels/gemm.h"

namespace lowbit {

void hessian_accumulate_ref(const float* x, size_t n, size_t cols, float* H, float* sum_abs, float* max_abs) {
  for (size_t i = 0; i < cols; i++) {
    for (size_t j = i; j < cols; j++) {
      double s = 0;
      for (size_t t = 0; t < n; t++) s += (double)x[t * cols + i] * (double)x[t * cols + j];
      H[i * cols + j] += (float)s;
      if (j != i) H[j * cols + i] = H[i * cols + j];
    }
    if (sum_abs) {
      double a = 0;
      float m = max_abs ? max_abs[i] : 0.0f;
      for (size_t t = 0; t < n; t++) {
        a += std::fabs((double)x[t * cols + i]);
        m = std::max(m, std::fabs(x[t * cols + i]));
      }
      sum_abs[i] += (float)a;
      if (max_abs) max_abs[i] = m;
    }
  }
}

void hessian_accumulate(const float* x, size_t n, size_t cols, float* H, float* sum_abs, float* max_abs, int mode, TaskContext* ctx) {
  if (mode == MODE_REF) {
    hessian_accumulate_ref(x, n, cols, H, sum_abs, max_abs);
    return;
  }
  // Xᵀ (cols × n), so that H rows are GEMM rows: H[i0:i1, i0:] += Xᵀ[i0:i1] · (Xᵀ[i0:])ᵀ.
  std::vector<float> xt(cols * n);
  parallel_for(cols, 64, [&](size_t c0, size_t c1) {
    for (size_t t = 0; t < n; t++)
      for (size_t c = c0; c < c1; c++) xt[c * n + t] = x[t * cols + c];
  });
  constexpr size_t B = 64;
  std::vector<float> tmp(B * cols);
  for (size_t i0 = 0; i0 < cols; i0 += B) {
    if (ctx) ctx->check("hessian");
    const size_t m = std::min(B, cols - i0), w = cols - i0;
    gemm(xt.data() + i0 * n, m, n, xt.data() + i0 * n, w, tmp.data(), false, MODE_FAST);
    for (size_t a = 0; a < m; a++) {
      float* hr = H + (i0 + a) * cols + i0;
      const float* tr = tmp.data() + a * w;
      for (size_t b = a; b < w; b++) hr[b] += tr[b];
    }
  }
  // mirror the upper triangle
  parallel_for(cols, 16, [&](size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; i++)
      for (size_t j = 0; j < i; j++) H[i * cols + j] = H[j * cols + i];
  });
  if (sum_abs) {
    for (size_t t = 0; t < n; t++) {
      const float* xr = x + t * cols;
      for (size_t c = 0; c < cols; c++) {
        const float a = std::fabs(xr[c]);
        sum_abs[c] += a;
        if (max_abs && a > max_abs[c]) max_abs[c] = a;
      }
    }
  }
}

}  // namespace lowbit
