#include "quant/gptq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>
#include <string>
#include <vector>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/gemm.h"
#include "quant/linalg.h"

namespace lowbit {

namespace {

GroupParams params_of(const float* x, size_t n, const QuantSpec& q) {
  float lo = 0.0f, hi = 0.0f;
  for (size_t i = 0; i < n; i++) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  return q.clip == CLIP_MSE ? uniform_params_mse(x, n, lo, hi, q) : uniform_params(lo, hi, q);
}

std::string fmt(float v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", (double)v);
  return b;
}

}  // namespace

void gptq_quantize(const float* W, const float* H, size_t rows, size_t cols, const GptqSpec& spec, GptqOutput& out, int mode, TaskContext* ctx) {
  const QuantSpec& q = spec.q;
  const size_t gs = std::min((size_t)q.group_size, cols);
  const bool groups = gs < cols;
  const size_t G = groups ? (cols + gs - 1) / gs : 1;
  const float maxqf = (float)quant_maxq(q.bits);
  for (size_t i = 0; i < rows * cols; i++)
    if (!std::isfinite(W[i]))
      throw Error("LOWBIT_NUMERICAL", "non-finite weight at [" + std::to_string(i / cols) + ", " + std::to_string(i % cols) + "]");
  for (size_t i = 0; i < cols * cols; i++)
    if (!std::isfinite(H[i]))
      throw Error("LOWBIT_NUMERICAL", "non-finite Hessian entry at [" + std::to_string(i / cols) + ", " + std::to_string(i % cols) + "]");

  // H itself is never copied: the dead-input fix, the act-order permutation and the damping are
  // applied as the factorization reads it (gptq_inverse_factor_view), so GPTQ holds W's working copy,
  // the factor and the factorization's own buffers — not two more copies of the Hessian
  std::vector<float> Wk(W, W + rows * cols);
  // 1. per-row params on the original W when there are no groups
  std::vector<GroupParams> prow;
  if (!groups) {
    prow.resize(rows);
    for (size_t r = 0; r < rows; r++) prow[r] = params_of(W + r * cols, cols, q);
  }
  // 2. dead inputs
  std::vector<uint8_t> dead(cols, 0);
  std::vector<float> diag(cols);
  for (size_t j = 0; j < cols; j++) {
    diag[j] = H[j * cols + j];
    if (diag[j] == 0.0f) {
      dead[j] = 1;
      diag[j] = 1.0f;
      for (size_t r = 0; r < rows; r++) Wk[r * cols + j] = 0.0f;
    }
  }
  // 3. static groups on the original column order
  std::vector<GroupParams> pstatic;
  if (groups && spec.static_groups) {
    pstatic.resize(rows * G);
    for (size_t r = 0; r < rows; r++)
      for (size_t g = 0; g < G; g++) pstatic[r * G + g] = params_of(&Wk[r * cols + g * gs], std::min(gs, cols - g * gs), q);
  }
  // 4. act-order: stable descending sort of diag(H)
  std::vector<size_t> perm(cols);
  std::iota(perm.begin(), perm.end(), 0);
  if (spec.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](size_t a, size_t b) { return diag[a] > diag[b]; });
    std::vector<float> W2(rows * cols);
    for (size_t r = 0; r < rows; r++)
      for (size_t j = 0; j < cols; j++) W2[r * cols + j] = Wk[r * cols + perm[j]];
    Wk.swap(W2);
  }
  // 5–6. damping (raised on failure) and U = upper Cholesky factor of H⁻¹
  double mean_diag = 0;
  for (size_t j = 0; j < cols; j++) mean_diag += diag[perm[j]];
  mean_diag /= (double)cols;
  std::vector<float> U(cols * cols);
  float damp = spec.damp;
  for (;;) {
    if (ctx) ctx->check("gptq");
    if (gptq_inverse_factor_view(H, cols, perm.data(), dead.data(), (float)(damp * mean_diag), U.data(), mode, ctx)) break;
    const float next = damp + spec.damp_step;
    if (next > spec.damp_max + 1e-6f)
      throw Error("LOWBIT_NUMERICAL", "Hessian not positive definite after damping raised " + fmt(spec.damp) + " → " + fmt(damp) + " (the bound is " +
                                          fmt(spec.damp_max) + " of the mean diagonal)");
    damp = next;
  }
  out.damp_used = damp;

  // 7. column sweep
  std::vector<uint8_t> codes_p(rows * cols);
  std::vector<float> deq_p(rows * cols);
  std::vector<GroupParams> pdyn(groups && !spec.static_groups ? rows * G : 0);
  std::vector<double> row_loss(rows, 0.0);
  const size_t B = mode == MODE_REF ? cols : (size_t)std::max(1, spec.block_size);

  auto sweep_row = [&](size_t r, size_t b0, size_t b1, float* W1, float* E1, size_t ld1) {
    GroupParams P = groups ? GroupParams{1.0f, 0} : prow[r];
    if (groups && spec.static_groups) P = pstatic[r * G + perm[b0] / gs];
    else if (groups) P = pdyn[r * G + b0 / gs];
    for (size_t j = b0; j < b1; j++) {
      const size_t t = j - b0;
      if (groups) {
        if (spec.static_groups) P = pstatic[r * G + perm[j] / gs];
        else if (j % gs == 0) {
          // params from W as the reference holds it: this block's columns at block-start values
          P = params_of(&Wk[r * cols + j], std::min(gs, cols - j), q);
          pdyn[r * G + j / gs] = P;
        }
      }
      const float w = W1[r * ld1 + t];
      const uint8_t c = uniform_code(w, P, maxqf);
      const float qv = uniform_dequant(c, P);
      codes_p[r * cols + j] = c;
      deq_p[r * cols + j] = qv;
      const float d = U[j * cols + j];
      const float e = (w - qv) / d;
      row_loss[r] += (double)(w - qv) * (double)(w - qv) / ((double)d * (double)d) / 2.0;
      const float* urow = &U[j * cols];
      float* wr = W1 + r * ld1;
      for (size_t u = j + 1; u < b1; u++) wr[u - b0] -= e * urow[u];
      if (E1) E1[r * (b1 - b0) + t] = e;
    }
  };

  if (mode == MODE_REF) {
    // Plain formulation: after each column, update every later column at once (no lazy batch);
    // group params read a snapshot of the row taken at each block boundary, which is exactly the
    // W the published algorithm holds (it applies its lazy updates at block ends).
    const size_t RB = (size_t)std::max(1, spec.block_size);
    for (size_t r = 0; r < rows; r++) {
      if (ctx) ctx->check("gptq");
      std::vector<float> W1(Wk.begin() + r * cols, Wk.begin() + (r + 1) * cols), snap;
      GroupParams P = groups ? GroupParams{1.0f, 0} : prow[r];
      for (size_t j = 0; j < cols; j++) {
        if (j % RB == 0) snap = W1;
        if (groups) {
          if (spec.static_groups) P = pstatic[r * G + perm[j] / gs];
          else if (j % gs == 0) {
            P = params_of(&snap[j], std::min(gs, cols - j), q);
            pdyn[r * G + j / gs] = P;
          }
        }
        const float w = W1[j];
        const uint8_t c = uniform_code(w, P, maxqf);
        const float qv = uniform_dequant(c, P);
        codes_p[r * cols + j] = c;
        deq_p[r * cols + j] = qv;
        const double d = U[j * cols + j];
        const double e = ((double)w - qv) / d;
        row_loss[r] += ((double)w - qv) * ((double)w - qv) / (d * d) / 2.0;
        for (size_t u = j + 1; u < cols; u++) W1[u] = (float)((double)W1[u] - e * (double)U[j * cols + u]);
      }
    }
  } else {
    std::vector<float> W1, E1, UT, En;
    for (size_t b0 = 0; b0 < cols; b0 += B) {
      if (ctx) ctx->check("gptq");
      const size_t b1 = std::min(cols, b0 + B), bs = b1 - b0;
      W1.resize(rows * bs);
      E1.resize(rows * bs);
      for (size_t r = 0; r < rows; r++) std::memcpy(&W1[r * bs], &Wk[r * cols + b0], bs * 4);
      parallel_for(rows, 8, [&](size_t r0, size_t r1) {
        for (size_t r = r0; r < r1; r++) sweep_row(r, b0, b1, W1.data(), E1.data(), bs);
      });
      if (b1 < cols) {
        // lazy batch update: W[:, b1:] −= E · U[b0:b1, b1:]   (y = x · wᵀ, w = U[b0:b1, b1:]ᵀ)
        const size_t rest = cols - b1;
        UT.resize(rest * bs);
        for (size_t t = 0; t < bs; t++)
          for (size_t c = 0; c < rest; c++) UT[c * bs + t] = U[(b0 + t) * cols + b1 + c];
        En.resize(rows * bs);
        for (size_t i = 0; i < rows * bs; i++) En[i] = -E1[i];
        gemm(En.data(), rows, bs, UT.data(), rest, Wk.data() + b1, true, MODE_FAST, cols);
      }
      if (ctx) ctx->add_done((double)bs);
    }
  }
  // 8. outputs in the original column order
  for (size_t r = 0; r < rows; r++)
    for (size_t j = 0; j < cols; j++) {
      out.codes[r * cols + perm[j]] = codes_p[r * cols + j];
      if (out.dequant) out.dequant[r * cols + perm[j]] = deq_p[r * cols + j];
    }
  for (size_t r = 0; r < rows; r++)
    for (size_t g = 0; g < G; g++) {
      const GroupParams P = !groups ? prow[r] : spec.static_groups ? pstatic[r * G + g] : pdyn[r * G + g];
      out.scales[r * G + g] = P.scale;
      out.zeros[r * G + g] = (uint8_t)P.zero;
    }
  for (size_t c = 0; c < cols; c++) out.g_idx[c] = 0;
  if (groups) {
    if (spec.act_order && !spec.static_groups)
      for (size_t j = 0; j < cols; j++) out.g_idx[perm[j]] = (int32_t)(j / gs);
    else
      for (size_t c = 0; c < cols; c++) out.g_idx[c] = (int32_t)(c / gs);
  }
  out.loss = 0;
  for (double l : row_loss) out.loss += l;
}

}  // namespace lowbit
