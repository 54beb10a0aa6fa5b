// Dense SPD linear algebra for GPTQ, our own (no LAPACK). Matrices are row-major f32 with a
// leading dimension; only the lower triangle is read or written unless stated.
//   cholesky_lower:      A = L Lᵀ, L overwrites the lower triangle; false when A is not positive
//                        definite (a pivot ≤ 0 or not finite).
//   tri_inverse_lower:   L ← L⁻¹ (lower triangular), in place.
//   gptq_inverse_factor: U upper triangular with Uᵀ U = H⁻¹ (GPTQ's "upper Cholesky factor of the
//                        inverse"). With J the order-reversing permutation: J H J = L̃ L̃ᵀ gives
//                        H = R Rᵀ with R = J L̃ J upper, so H⁻¹ = R⁻ᵀ R⁻¹ and U = R⁻¹ = J L̃⁻¹ J —
//                        one Cholesky and one triangular inverse instead of the reference's three
//                        factorizations (Cholesky, cholesky_inverse, Cholesky again).
// Fast paths are blocked (128-wide panels) with the trailing updates as GEMMs on the thread pool;
// the references are plain loops accumulating in double.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

struct TaskContext;

bool cholesky_lower_ref(float* A, size_t n, size_t lda);
bool cholesky_lower(float* A, size_t n, size_t lda, int mode, TaskContext* ctx);
void tri_inverse_lower_ref(float* L, size_t n, size_t ld);
void tri_inverse_lower(float* L, size_t n, size_t ld, int mode);
// H (n × n, full symmetric, not modified) → U (n × n, upper triangle written, lower zeroed).
// Returns false when H is not positive definite.
bool gptq_inverse_factor(const float* H, size_t n, float* U, int mode, TaskContext* ctx);
// The same on a view of H without materializing it: H'[i][j] = H[perm[i]][perm[j]], a dead input
// (dead[perm[i]] != 0) has H'[i][i] = 1, and every diagonal entry gets + damp_add. GPTQ factors its
// permuted, damped Hessian this way with no copy of it beside the factor (perm/dead may be null:
// identity, none). Bit-identical to materializing H' and calling gptq_inverse_factor.
bool gptq_inverse_factor_view(const float* H, size_t n, const size_t* perm, const uint8_t* dead, float damp_add, float* U, int mode,
                              TaskContext* ctx);

}  // namespace lowbit
