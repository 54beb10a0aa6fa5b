// Quantization driver: rows are independent, so the fast path splits rows across the thread pool;
// each thread converts its rows from f16/bf16 into a private f32 buffer and runs the row kernel of
// the active ISA. The reference path is one thread, reference conversion, reference row kernel.
#include <algorithm>
#include <mutex>
#include <vector>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "kernels/convert.h"
#include "kernels/quant.h"

namespace lowbit {

#if !defined(LOWBIT_HAVE_X86_VARIANTS)
GroupParams uniform_params_mse_avx2(const float* x, size_t n, float xmin, float xmax, const QuantSpec& q) {
  return uniform_params_mse(x, n, xmin, xmax, q);
}
void quant_row_avx2(const float* x, size_t cols, const QuantSpec& q, uint8_t* c, float* s, uint8_t* z, float* d, QuantStats* st) {
  quant_row_ref(x, cols, q, c, s, z, d, st);
}
void quant_row_avx512(const float* x, size_t cols, const QuantSpec& q, uint8_t* c, float* s, uint8_t* z, float* d, QuantStats* st) {
  quant_row_ref(x, cols, q, c, s, z, d, st);
}
#endif

void quant_row_any(QuantRowFn row_kernel, const uint8_t* src, int sdt, size_t cols, const QuantSpec& q, uint8_t* codes, float* scales, uint8_t* zeros,
                   float* deq, QuantStats* st, float* buf) {
  if (sdt == DTYPE_F32) {
    row_kernel(reinterpret_cast<const float*>(src), cols, q, codes, scales, zeros, deq, st);
    return;
  }
  // Whole-row conversion: converting group by group into an L1 scratch was measured no faster
  // (the per-group call overhead cancels the saved L2 traffic).
  convert_range(src, sdt, buf, DTYPE_F32, cols);
  row_kernel(buf, cols, q, codes, scales, zeros, deq, st);
}

void quantize_tensor(const void* src, int src_dtype, size_t rows, size_t cols, const QuantSpec& q, uint8_t* codes, float* scales, uint8_t* zeros,
                     float* deq, int mode, QuantStats* st, TaskContext* ctx) {
  const size_t G = (cols + (size_t)q.group_size - 1) / (size_t)q.group_size;
  const size_t ss = dtype_size(src_dtype);
  const uint8_t* s = static_cast<const uint8_t*>(src);
  if (mode == MODE_REF) {
    std::vector<float> buf(cols);
    for (size_t r = 0; r < rows; r++) {
      if (ctx) ctx->check("quantize");
      ConvertResult cr;
      convert_ref(s + r * cols * ss, src_dtype, buf.data(), DTYPE_F32, cols, true, &cr);
      QuantStats rs;
      quant_row_ref(buf.data(), cols, q, codes + r * cols, scales + r * G, zeros + r * G, deq ? deq + r * cols : nullptr, &rs);
      st->merge(rs, r * cols);
      if (ctx) ctx->add_done(1.0);
    }
    return;
  }
  QuantRowFn row_kernel = quant_row_ref;  // generic: the scalar kernel, run on all threads
  switch (active_isa()) {
    case ISA_AVX512: row_kernel = quant_row_avx512; break;
    case ISA_AVX2: row_kernel = quant_row_avx2; break;
    default: break;
  }
  std::mutex mu;
  // ~64 Ki elements per task: enough work per chunk, and many chunks for balance.
  const size_t grain = std::max<size_t>(1, (1u << 16) / std::max<size_t>(cols, 1));
  parallel_for(rows, grain, [&](size_t b, size_t e) {
    if (ctx) ctx->check("quantize");
    std::vector<float> buf(src_dtype == DTYPE_F32 ? 0 : cols);
    QuantStats local;
    for (size_t r = b; r < e; r++) {
      QuantStats rs;
      quant_row_any(row_kernel, s + r * cols * ss, src_dtype, cols, q, codes + r * cols, scales + r * G, zeros + r * G,
                    deq ? deq + r * cols : nullptr, &rs, buf.data());
      local.merge(rs, r * cols);
    }
    {
      std::lock_guard<std::mutex> lk(mu);
      st->merge(local, 0);
    }
    if (ctx) ctx->add_done((double)(e - b));
  });
}

}  // namespace lowbit
