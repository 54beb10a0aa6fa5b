#include "quant/linalg.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "kernels/gemm.h"

namespace lowbit {

bool cholesky_lower_ref(float* A, size_t n, size_t lda) {
  for (size_t j = 0; j < n; j++) {
    double s = A[j * lda + j];
    for (size_t k = 0; k < j; k++) s -= (double)A[j * lda + k] * (double)A[j * lda + k];
    if (!(s > 0) || !std::isfinite(s)) return false;
    const double d = std::sqrt(s);
    A[j * lda + j] = (float)d;
    for (size_t i = j + 1; i < n; i++) {
      double t = A[i * lda + j];
      for (size_t k = 0; k < j; k++) t -= (double)A[i * lda + k] * (double)A[j * lda + k];
      A[i * lda + j] = (float)(t / d);
    }
  }
  return true;
}

bool cholesky_lower(float* A, size_t n, size_t lda, int mode, TaskContext* ctx) {
  if (mode == MODE_REF) return cholesky_lower_ref(A, n, lda);
  constexpr size_t NB = 128;
  std::vector<float> P, Pn, Linv;
  for (size_t k0 = 0; k0 < n; k0 += NB) {
    if (ctx) ctx->check("cholesky");
    const size_t nb = std::min(NB, n - k0), k1 = k0 + nb;
    // 1. the diagonal block (already updated by earlier trailing updates)
    if (!cholesky_lower_ref(A + k0 * lda + k0, nb, lda)) return false;
    if (k1 >= n) break;
    // 2. the panel below it: L21 = A21 · L11⁻ᵀ, as one GEMM against the inverted diagonal block
    //    (y = x · wᵀ with x = A21, w = L11⁻¹): the triangular solve on the fast kernel.
    Linv.assign(nb * nb, 0.0f);
    for (size_t i = 0; i < nb; i++)
      for (size_t j = 0; j <= i; j++) Linv[i * nb + j] = A[(k0 + i) * lda + k0 + j];
    tri_inverse_lower_ref(Linv.data(), nb, nb);
    const size_t m = n - k1;
    P.resize(m * nb);
    for (size_t r = 0; r < m; r++) std::memcpy(&P[r * nb], A + (k1 + r) * lda + k0, nb * 4);
    gemm(P.data(), m, nb, Linv.data(), nb, A + k1 * lda + k0, false, MODE_FAST, lda);
    // 3. trailing update of the lower triangle: A22 −= L21 · L21ᵀ, by 256-row blocks, each
    //    only up to its own diagonal (half the FLOPs of the full product)
    Pn.resize(m * nb);
    for (size_t r = 0; r < m; r++)
      for (size_t j = 0; j < nb; j++) {
        P[r * nb + j] = A[(k1 + r) * lda + k0 + j];
        Pn[r * nb + j] = -P[r * nb + j];
      }
    constexpr size_t RB = 256;
    for (size_t r0 = 0; r0 < m; r0 += RB) {
      const size_t r1 = std::min(m, r0 + RB);
      gemm(Pn.data() + r0 * nb, r1 - r0, nb, P.data(), r1, A + (k1 + r0) * lda + k1, true, MODE_FAST, lda);
    }
  }
  return true;
}

void tri_inverse_lower_ref(float* L, size_t n, size_t ld) {
  // Column j of L⁻¹ solves L x = e_j by forward substitution (double accumulation).
  std::vector<double> x(n);
  std::vector<float> out(n * n, 0.0f);
  for (size_t j = 0; j < n; j++) {
    for (size_t i = j; i < n; i++) {
      double t = i == j ? 1.0 : 0.0;
      for (size_t k = j; k < i; k++) t -= (double)L[i * ld + k] * x[k];
      x[i] = t / L[i * ld + i];
      out[i * n + j] = (float)x[i];
    }
  }
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j <= i; j++) L[i * ld + j] = out[i * n + j];
}

// inv([[A, 0], [B, C]]) = [[A⁻¹, 0], [−C⁻¹ B A⁻¹, C⁻¹]]: recursive halves, GEMMs off the diagonal.
static void tri_inverse_rec(float* L, size_t n, size_t ld) {
  if (n <= 96) {
    tri_inverse_lower_ref(L, n, ld);
    return;
  }
  const size_t n1 = (n / 2 + 15) / 16 * 16, n2 = n - n1;
  float* A = L;
  float* B = L + n1 * ld;       // (n2 × n1) at rows n1…, cols 0…
  float* C = L + n1 * ld + n1;  // (n2 × n2)
  tri_inverse_rec(A, n1, ld);
  tri_inverse_rec(C, n2, ld);
  // T = C⁻¹ · B   (n2 × n1):  y = x · wᵀ with x = C⁻¹ (n2 × n2), w = Bᵀ (n1 × n2)
  std::vector<float> Cc(n2 * n2, 0.0f), Bt(n1 * n2), T(n2 * n1), Ai(n1 * n1, 0.0f);
  for (size_t i = 0; i < n2; i++)
    for (size_t j = 0; j <= i; j++) Cc[i * n2 + j] = C[i * ld + j];
  for (size_t i = 0; i < n2; i++)
    for (size_t j = 0; j < n1; j++) Bt[j * n2 + i] = B[i * ld + j];
  gemm(Cc.data(), n2, n2, Bt.data(), n1, T.data(), false, MODE_FAST);
  // B ← −T · A⁻¹ : y = x · wᵀ with x = T (n2 × n1), w = (A⁻¹)ᵀ (n1 × n1)
  for (size_t i = 0; i < n1; i++)
    for (size_t j = 0; j <= i; j++) Ai[j * n1 + i] = A[i * ld + j];  // Ai = (A⁻¹)ᵀ
  for (auto& v : T) v = -v;
  gemm(T.data(), n2, n1, Ai.data(), n1, B, false, MODE_FAST, ld);
}

void tri_inverse_lower(float* L, size_t n, size_t ld, int mode) {
  if (mode == MODE_REF) tri_inverse_lower_ref(L, n, ld);
  else tri_inverse_rec(L, n, ld);
}

bool gptq_inverse_factor(const float* H, size_t n, float* U, int mode, TaskContext* ctx) {
  return gptq_inverse_factor_view(H, n, nullptr, nullptr, 0.0f, U, mode, ctx);
}

bool gptq_inverse_factor_view(const float* H, size_t n, const size_t* perm, const uint8_t* dead, float damp_add, float* U, int mode,
                              TaskContext* ctx) {
  // Lt = J H' J (reversed order), factor and invert it, then U = J Lt⁻¹ J.
  std::vector<float> Lt(n * n);
  for (size_t i = 0; i < n; i++) {
    const size_t pi = perm ? perm[n - 1 - i] : n - 1 - i;
    for (size_t j = 0; j < n; j++) {
      const size_t pj = perm ? perm[n - 1 - j] : n - 1 - j;
      float v = H[pi * n + pj];
      if (i == j) {
        if (dead && dead[pi]) v = 1.0f;
        v += damp_add;
      }
      Lt[i * n + j] = v;
    }
  }
  if (!cholesky_lower(Lt.data(), n, n, mode, ctx)) return false;
  tri_inverse_lower(Lt.data(), n, n, mode);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) U[i * n + j] = j >= i ? Lt[(n - 1 - i) * n + (n - 1 - j)] : 0.0f;
  return true;
}

}  // namespace lowbit
