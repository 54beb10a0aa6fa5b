// Driver of the int4 GPTQ matmul: the AVX2 path over output ranges on the thread pool when the
// groups are runs (g_idx[k] = k / gs, gs % 8 == 0); the reference otherwise (act-order g_idx).
#include <algorithm>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "kernels/qgemm.h"

namespace lowbit {

#if !defined(LOWBIT_HAVE_X86_VARIANTS)
void qgemm_gptq4_avx2_range(const QGemmArgs& a, size_t, size_t, size_t) { qgemm_gptq4_ref(a); }
#endif

static size_t run_group_size(const QGemmArgs& a) {
  // the group size if g_idx is consecutive runs of equal length (a multiple of 8), else 0
  if (a.groups == 0 || a.in % a.groups) return 0;
  const size_t gs = a.in / a.groups;
  if (gs % 8) return 0;
  for (size_t k = 0; k < a.in; k++)
    if ((size_t)a.g_idx[k] != k / gs) return 0;
  return gs;
}

void qgemm_gptq4(const QGemmArgs& a, int mode) {
  const bool avx2 = active_isa() == ISA_AVX2 || active_isa() == ISA_AVX512;
  const size_t gs = mode == MODE_REF || !avx2 ? 0 : run_group_size(a);
  if (gs == 0) {
    qgemm_gptq4_ref(a);
    return;
  }
  const size_t blocks = (a.out + 7) / 8;
  parallel_for(blocks, 16, [&](size_t b0, size_t b1) { qgemm_gptq4_avx2_range(a, gs, b0 * 8, std::min(a.out, b1 * 8)); });
}

}  // namespace lowbit
