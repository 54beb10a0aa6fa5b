// Round-to-nearest quantization fused with GPTQ packing: rows are quantized 16 at a time into a
// small L2-resident scratch of codes and packed straight into qweight, so the full (rows × cols)
// code matrix never exists. For a 4096 × 11008 layer that saves a 45 MB write, a 45 MB read and
// the page faults of a fresh 45 MB buffer. Bit-identical to quantize_tensor + pack (tested).
//   qweight: (cols·bits/32, rows) int32 (GPTQ layout, see kernels/pack.h)
//   scales: (rows, G) f32; zeros: (rows, G) uint8 (true zeros)
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/quant.h"

namespace lowbit {

void quantize_pack_gptq(const void* src, int src_dtype, size_t rows, size_t cols, const QuantSpec& q, int32_t* qweight, float* scales, uint8_t* zeros,
                        int mode, QuantStats* st, TaskContext* ctx);

// Ask the kernel to back [p, p + bytes) with transparent huge pages before it is first written
// (fewer page faults on large fresh outputs; a no-op where THP is unavailable).
void advise_huge_pages(void* p, size_t bytes);

}  // namespace lowbit
