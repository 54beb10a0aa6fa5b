// The causal softmax of one query's attention scores, shared by the runtime's attention (f32 and
// quantized caches) and the training engine's, so all three normalize with the same arithmetic.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>

namespace lowbit {

// One query's causal softmax over its scores st[0 … P): positions 0 … last scaled, exponentiated
// against their maximum and normalized; positions after `last` set to 0.
inline void causal_softmax_row(float* st, size_t last, size_t P, float scale) {
  float mx = -INFINITY;
  for (size_t p = 0; p <= last; p++) {
    st[p] *= scale;
    mx = std::max(mx, st[p]);
  }
  float sum = 0.0f;
  for (size_t p = 0; p <= last; p++) {
    st[p] = expf(st[p] - mx);
    sum += st[p];
  }
  const float inv = 1.0f / sum;
  for (size_t p = 0; p <= last; p++) st[p] *= inv;
  for (size_t p = last + 1; p < P; p++) st[p] = 0.0f;
}

}  // namespace lowbit
