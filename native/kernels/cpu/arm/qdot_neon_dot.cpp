// NEON integer-dot matmul with the ARMv8.2 dot-product extension (SDOT: 4 int8 products summed
// into each int32 lane in one instruction), compiled with +dotprod and chosen at run time only
// when the CPU reports it (HWCAP_ASIMDDP). Both operands are signed: 4-bit codes 0…15 are valid
// int8 as they are.
#include <arm_neon.h>

#include "kernels/cpu/arm/qdot_neon_tile.h"

namespace lowbit {

namespace {
struct SdotDot {
  static inline int32x4_t dot4(int32x4_t acc, int8x16_t w, int8x16_t xb) { return vdotq_s32(acc, w, xb); }
};
}  // namespace

void qdot_gemm_neon_dot_range(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy, size_t n0, size_t n1) {
  neon_qdot::gemm_range<SdotDot>(w, a, rows, y, ldy, n0, n1);
}

}  // namespace lowbit
