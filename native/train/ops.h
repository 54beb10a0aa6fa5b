// Forward and backward of every op of the Llama forward, for training (llm.c's layout: each op's
// backward beside its forward, activations (tokens × features) row-major, f32).
//
// Every op has a reference mode (MODE_REF: plain serial loops, gemm_ref) and a fast mode (the
// thread pool, and the runtime's GEMM with transposed operands for the matrix products); the fast
// mode is deterministic for a given thread count (each output is owned by one task, no atomics).
// Gradients are ACCUMULATED (+=) into parameter gradients (dW, db, dg, dE); gradients of
// activations are written (=) unless the argument says otherwise. Tests: test/native/train-ops.
//
//   linear     y = x Wᵀ + b                         dx = dy W, dW += dyᵀ x, db += Σ_t dy
//   rmsnorm    y = g ⊙ x · r, r = 1/√(mean x² + ε)   dx = r (g ⊙ dy) − x r³ mean(g ⊙ dy ⊙ x), dg += Σ_t dy ⊙ x r
//   rope       rotate pairs by p · inv_freq           backward: rotate by −p · inv_freq
//   attention  per head: P = softmax_causal(q kᵀ/√hd), o = P v (query head h reads kv head h / group)
//              dv += Pᵀ do, dP = do vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dq = dS k/√hd, dk += dSᵀ q/√hd
//   swiglu     h = silu(a) ⊙ u                        da = dh ⊙ u ⊙ σ(a)(1 + a(1 − σ(a))), du = dh ⊙ silu(a)
//   losses     cross-entropy to targets; KL(p_teacher ‖ p_student) (soft cross-entropy: same gradient)
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {
namespace train {

void linear_fwd(const float* x, size_t n, size_t in, const float* w, const float* b, size_t out, float* y, int mode);
// dx: null to skip; accumulate_dx adds into it. dw, db: accumulated; db may be null.
void linear_bwd(const float* x, const float* dy, size_t n, size_t in, const float* w, size_t out, float* dx, bool accumulate_dx, float* dw, float* db,
                int mode);

// rstd (n) receives 1/√(mean x² + ε) per row.
void rmsnorm_fwd(const float* x, const float* g, size_t n, size_t d, float eps, float* y, float* rstd, int mode);
// dx written (or added when accumulate_dx); dg accumulated.
void rmsnorm_bwd(const float* x, const float* g, const float* rstd, const float* dy, size_t n, size_t d, float* dx, bool accumulate_dx, float* dg,
                 int mode);

// x (n × heads·hd) in place; token t of the batch is at position pos[t]. style: 0 adjacent pairs
// (2i, 2i+1), 1 halves (i, i + hd/2). inverse: rotate by the negative angle (the backward).
void rope_apply(float* x, size_t n, size_t heads, size_t hd, const int32_t* pos, const float* inv_freq, int style, bool inverse, int mode);

// One sequence of T tokens: q (T × H·hd), k and v (T × KVH·hd), out (T × H·hd); probs (H × T × T)
// receives the attention weights (row t holds positions 0…t; the rest 0).
void attention_fwd(const float* q, const float* k, const float* v, size_t T, size_t H, size_t KVH, size_t hd, float* out, float* probs, int mode);
// dq, dk, dv written (not accumulated).
void attention_bwd(const float* q, const float* k, const float* v, const float* probs, const float* dout, size_t T, size_t H, size_t KVH, size_t hd,
                   float* dq, float* dk, float* dv, int mode);

void swiglu_fwd(const float* a, const float* u, size_t n, float* h, int mode);
void swiglu_bwd(const float* a, const float* u, const float* dh, size_t n, float* da, float* du, int mode);

// Σ over rows with target ≥ 0 of −log softmax(logits)[target]; dlogits (n × V, may be null) =
// scale · ∂/∂logits (0 for ignored rows). Returns the sum (double).
double cross_entropy(const float* logits, const int32_t* targets, size_t n, size_t V, float* dlogits, float scale, int mode);
// Σ_rows Σ_v p_t (log p_t − log p_s), p = softmax of each row; dlogits = scale · (p_s − p_t).
double kl_teacher(const float* logits, const float* teacher, size_t n, size_t V, float* dlogits, float scale, int mode);

// dE[ids[t]] += dx[t] (rows in token order: deterministic).
void embedding_bwd(const int32_t* ids, const float* dx, size_t n, size_t d, float* dE);

// AdamW (decoupled weight decay, bias-corrected moments) on n values: step t ≥ 1.
void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2, float eps, float wd, int64_t t, int mode);
// Σ x² in double, summed in fixed chunks (the same for any thread count).
double sum_squares(const float* x, size_t n, int mode);
void scale_inplace(float* x, size_t n, float s);

}  // namespace train
}  // namespace lowbit
