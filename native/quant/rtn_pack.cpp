#include "quant/rtn_pack.h"

#include <sys/mman.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/convert.h"
#include "kernels/pack.h"
#include "kernels/pack_run.h"

namespace lowbit {

void advise_huge_pages(void* p, size_t bytes) {
#if defined(MADV_HUGEPAGE)
  const uintptr_t huge = 2u << 20;
  uintptr_t b = (reinterpret_cast<uintptr_t>(p) + huge - 1) & ~(huge - 1);
  uintptr_t e = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(huge - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

void quantize_pack_gptq(const void* src, int sdt, size_t rows, size_t cols, const QuantSpec& q, int32_t* qweight, float* scales, uint8_t* zeros,
                        int mode, QuantStats* st, TaskContext* ctx) {
  const int bits = q.bits;
  LOWBIT_CHECK(cols % 32 == 0 && (bits == 2 || bits == 3 || bits == 4 || bits == 8), "quantize_pack_gptq: layout");
  if (mode == MODE_REF) {
    std::vector<uint8_t> codes(rows * cols);
    quantize_tensor(src, sdt, rows, cols, q, codes.data(), scales, zeros, nullptr, MODE_REF, st, ctx);
    pack_ref(PACK_GPTQ_QWEIGHT, bits, codes.data(), rows, cols, 0, qweight);
    return;
  }
  const size_t G = (cols + (size_t)q.group_size - 1) / (size_t)q.group_size;
  const size_t ss = dtype_size(sdt);
  const uint8_t* s = static_cast<const uint8_t*>(src);
  QuantRowFn row_kernel = quant_row_ref;
  switch (active_isa()) {
    case ISA_AVX512: row_kernel = quant_row_avx512; break;
    case ISA_AVX2: row_kernel = quant_row_avx2; break;
    default: break;
  }
  advise_huge_pages(qweight, cols * bits / 32 * rows * 4);
  constexpr size_t RB = 32;  // rows per block: 16 int32 = one 64-byte line of each qweight word row
  const size_t blocks = (rows + RB - 1) / RB;
  std::mutex mu;
  parallel_for(blocks, 1, [&](size_t b0, size_t b1) {
    if (ctx) ctx->check("quantize");
    std::vector<uint8_t> codes(RB * cols);
    std::vector<float> buf(sdt == DTYPE_F32 ? 0 : cols);
    QuantStats local;
    uint32_t words[8];
    uint32_t* Q = reinterpret_cast<uint32_t*>(qweight);
    for (size_t b = b0; b < b1; b++) {
      const size_t r0 = b * RB, nr = std::min(RB, rows - r0);
      for (size_t i = 0; i < nr; i++) {
        const size_t r = r0 + i;
        QuantStats rs;
        quant_row_any(row_kernel, s + r * cols * ss, sdt, cols, q, codes.data() + i * cols, scales + r * G, zeros + r * G, nullptr, &rs, buf.data());
        local.merge(rs, r * cols);
      }
      // codes are already in [0, 2^bits): pack each 32-run of each row into its column of qweight
      for (size_t blk = 0; blk < cols / 32; blk++) {
        uint32_t* dst = Q + blk * bits * rows + r0;
        for (size_t i = 0; i < nr; i++) {
          pack_run(codes.data() + i * cols + blk * 32, bits, words);
          for (int t = 0; t < bits; t++) dst[t * rows + i] = words[t];
        }
      }
      if (ctx) ctx->add_done((double)nr);
    }
    std::lock_guard<std::mutex> lk(mu);
    st->merge(local, 0);
  });
}

}  // namespace lowbit
