// Integer-dot matmul: the portable kernel and the driver (see kernels/qdot.h).
#include <algorithm>
#include <vector>

#include "core/cpu_features.h"
#include "core/dispatch.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/qdot.h"

namespace lowbit {

#if !defined(LOWBIT_HAVE_X86_VARIANTS)
void quantize_acts_avx2(const float* x, size_t rows, size_t in, int kb, const int32_t* perm, const QActs& a) {
  quantize_acts_ref(x, rows, in, kb, perm, a);
}
void qdot_gemm_avx2_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1) {
  qdot_gemm_generic_range(w, a, rows, y, ldy, n0, n1);
}
#endif

#if !defined(LOWBIT_HAVE_NEON_VARIANTS)
void quantize_acts_neon(const float* x, size_t rows, size_t in, int kb, const int32_t* perm, const QActs& a) {
  quantize_acts_ref(x, rows, in, kb, perm, a);
}
void qdot_gemm_neon_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1) {
  qdot_gemm_generic_range(w, a, rows, y, ldy, n0, n1);
}
void qdot_gemm_neon_dot_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1) {
  qdot_gemm_generic_range(w, a, rows, y, ldy, n0, n1);
}
#endif

void qdot_gemm_generic_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1) {
  const size_t B = w.blocks(), kb = (size_t)w.kb, in = w.in;
  std::vector<int> row(in);
  for (size_t n = n0; n < n1; n++) {
    // decode the row's codes once, then dot against every token
    for (size_t k = 0; k < in; k++) row[k] = qblock_code(w, n, k);
    for (size_t t = 0; t < rows; t++) {
      const int8_t* xq = a.xq + t * in;
      float s = 0.0f;
      for (size_t b = 0; b < B; b++) {
        int32_t dot = 0;
        for (size_t k = b * kb; k < (b + 1) * kb; k++) dot += row[k] * xq[k];
        const float d = qblock_scale(w, qblock_sidx(w, n, b));
        const float m = w.m ? w.m[qblock_sidx(w, n, b)] : -w.zero_fixed * d;
        s += a.sx[t * B + b] * (d * (float)dot + m * (float)a.sum[t * B + b]);
      }
      y[t * ldy + n] = s;
    }
  }
}

// The fast kernel of the active ISA (null: the portable one, which needs no zs).
using QdotRange = void (*)(const QBlockMatrix&, const QActs&, size_t, float*, size_t, size_t, size_t);
static QdotRange fast_range() {
  switch (active_isa()) {
    case ISA_AVX2:
    case ISA_AVX512: return qdot_gemm_avx2_range;
    case ISA_NEON: return cpu_features().dotprod ? qdot_gemm_neon_dot_range : qdot_gemm_neon_range;
    default: return nullptr;
  }
}

void quantize_acts(const float* x, size_t rows, size_t in, int kb, const int32_t* perm, const QActs& a, int mode) {
  const Isa isa = mode == MODE_REF ? ISA_GENERIC : active_isa();
  if (isa == ISA_AVX2 || isa == ISA_AVX512) quantize_acts_avx2(x, rows, in, kb, perm, a);
  else if (isa == ISA_NEON) quantize_acts_neon(x, rows, in, kb, perm, a);
  else quantize_acts_ref(x, rows, in, kb, perm, a);
}

void qdot_linear(const QBlockMatrix& w, const float* x, size_t rows, float* y, size_t ldy, int mode) {
  const size_t B = w.blocks();
  thread_local std::vector<int8_t> xq;
  thread_local std::vector<float> sx, zs;
  thread_local std::vector<int32_t> sum;
  xq.resize(rows * w.in);
  sx.resize(rows * B);
  sum.resize(rows * B);
  zs.resize(rows * B);
  const QActs a{xq.data(), sx.data(), sum.data(), zs.data()};
  quantize_acts(x, rows, w.in, w.kb, w.perm, a, mode);
  if (mode == MODE_REF) {
    qdot_gemm_ref(w, a, rows, y, ldy);
    return;
  }
  const QdotRange fast = fast_range();
  if (fast)
    for (size_t i = 0; i < rows * B; i++) zs[i] = w.m ? sx[i] * (float)sum[i] : -w.zero_fixed * sx[i] * (float)sum[i];
  // column tiles of 16 rows of W (two 8-column layout tiles): a tile's weights stay in L1/L2 while
  // every token passes over them
  constexpr size_t T = 16;
  const size_t tiles = (w.out + T - 1) / T;
  const size_t grain = std::max<size_t>(1, 64 / std::max<size_t>(1, rows));
  parallel_for(tiles, grain, [&](size_t t0, size_t t1) {
    const size_t n0 = t0 * T, n1 = std::min(w.out, t1 * T);
    if (fast) fast(w, a, rows, y, ldy, n0, n1);
    else qdot_gemm_generic_range(w, a, rows, y, ldy, n0, n1);
  });
}

}  // namespace lowbit
