// Integer-dot matmul: the portable kernel and the driver (see kernels/qdot.h).
#include <algorithm>
#include <vector>

#include "core/cpu_features.h"
#include "core/dispatch.h"
#include "core/error.h"
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
void qdot_gemm_avx512vnni_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1) {
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
        const float m = qblock_offset(w, qblock_sidx(w, n, b));
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
    case ISA_AVX2: return qdot_gemm_avx2_range;
    case ISA_AVX512: return cpu_features().avx512vnni ? qdot_gemm_avx512vnni_range : qdot_gemm_avx2_range;
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

bool qdot_can_share_acts(const QBlockMatrix& a, const QBlockMatrix& b) {
  if (a.in != b.in || a.kb != b.kb) return false;
  if (a.perm == b.perm) return true;
  if (!a.perm || !b.perm) return false;
  return std::equal(a.perm, a.perm + a.in, b.perm);
}

void qdot_linear(const QBlockMatrix& w, const float* x, size_t rows, float* y, size_t ldy, int mode) {
  const QdotPart part{&w, y, ldy};
  qdot_linear_multi(&part, 1, x, rows, mode);
}

void qdot_linear_multi(const QdotPart* parts, size_t count, const float* x, size_t rows, int mode) {
  if (count == 0) return;
  const QBlockMatrix& w0 = *parts[0].w;
  for (size_t p = 1; p < count; p++)
    if (!qdot_can_share_acts(w0, *parts[p].w))
      throw Error("LOWBIT_INTERNAL", "qdot_linear_multi: the matrices need different activation quantizations");
  const size_t B = w0.blocks();
  thread_local std::vector<int8_t> xq;
  thread_local std::vector<float> sx, zs;
  thread_local std::vector<int32_t> sum;
  xq.resize(rows * w0.in);
  sx.resize(rows * B);
  sum.resize(rows * B);
  zs.resize(count * rows * B);
  quantize_acts(x, rows, w0.in, w0.kb, w0.perm, QActs{xq.data(), sx.data(), sum.data(), nullptr}, mode);
  // each part's offset term: sx·Σxq (asymmetric weights, times m) or −zero_fixed·sx·Σxq (fixed zero).
  // (Plain pointers: the buffers are this thread's thread_locals, and pool workers run the lambda.)
  int8_t* const xq_p = xq.data();
  float *const sx_p = sx.data(), *const zs_p = zs.data();
  int32_t* const sum_p = sum.data();
  auto acts = [=](size_t p) { return QActs{xq_p, sx_p, sum_p, zs_p + p * rows * B}; };
  if (mode == MODE_REF) {
    for (size_t p = 0; p < count; p++) qdot_gemm_ref(*parts[p].w, acts(p), rows, parts[p].y, parts[p].ldy);
    return;
  }
  const QdotRange fast = fast_range();
  if (fast)
    for (size_t p = 0; p < count; p++) {
      const QBlockMatrix& w = *parts[p].w;
      float* z = zs_p + p * rows * B;
      for (size_t i = 0; i < rows * B; i++) z[i] = w.asym() ? sx[i] * (float)sum[i] : -w.zero_fixed * sx[i] * (float)sum[i];
    }
  // Column tiles of 16 rows of W (two 8-column layout tiles): a tile's weights stay in L1/L2 while
  // every token passes over them. The parts' tiles form one index space, so q/k/v (or gate/up)
  // share one parallel region and the small k/v matrices do not run on one thread alone.
  constexpr size_t T = 16;
  std::vector<size_t> tiles(count);
  for (size_t p = 0; p < count; p++) tiles[p] = (parts[p].w->out + T - 1) / T;
  // decoding (1 row): 8 tiles (128 weight rows) per grain so two threads can even out a slow core;
  // many rows: fewer, larger chunks (each chunk re-reads the activations)
  const size_t grain = std::max<size_t>(1, (rows == 1 ? 8 : 64) / std::max<size_t>(1, rows));
  parallel_for_parts(tiles.data(), count, grain, [&](size_t p, size_t t0, size_t t1) {
    const QBlockMatrix& w = *parts[p].w;
    const size_t n0 = t0 * T, n1 = std::min(w.out, t1 * T);
    if (fast) fast(w, acts(p), rows, parts[p].y, parts[p].ldy, n0, n1);
    else qdot_gemm_generic_range(w, acts(p), rows, parts[p].y, parts[p].ldy, n0, n1);
  });
}

}  // namespace lowbit
