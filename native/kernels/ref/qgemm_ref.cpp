// Reference y = x · Wᵀ from GPTQ 4-bit words: decode each weight by the formula, sum in double.
#include "kernels/qgemm.h"

namespace lowbit {

void qgemm_gptq4_ref(const QGemmArgs& a) {
  for (size_t t = 0; t < a.m; t++)
    for (size_t n = 0; n < a.out; n++) {
      double s = 0;
      for (size_t k = 0; k < a.in; k++) {
        const uint32_t word = (uint32_t)a.qweight[(k / 8) * a.out + n];
        const int q = (int)((word >> (4 * (k % 8))) & 15u);
        const size_t g = (size_t)a.g_idx[k];
        const float w = a.scales[g * a.out + n] * ((float)q - (float)a.zeros[g * a.out + n]);
        s += (double)a.x[t * a.in + k] * (double)w;
      }
      a.y[t * a.out + n] = (float)s;
    }
}

}  // namespace lowbit
