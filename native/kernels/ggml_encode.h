// ggml's block encoders (Q8_0, Q4_0, Q4_1: blocks of 32 along the rows; Q4_K: super-blocks of 256),
// natively and on the thread pool, for GGUF export. The same f32 operations in the same order as llama.cpp's
// quantize_row_*_ref and as lowbit's TypeScript encoders (lib/formats/ggml-blocks.ts, the
// reference, checked against llama.cpp's own files), so the bytes are identical: no FMA contraction
// (the build uses -ffp-contract=off), C roundf / truncation exactly where ggml has them.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

enum GgmlEncodeType { GGML_ENCODE_Q8_0 = 0, GGML_ENCODE_Q4_0 = 1, GGML_ENCODE_Q4_1 = 2, GGML_ENCODE_Q4_K = 3 };

// Values per block (32, or 256 for Q4_K) and bytes per block (34, 18, 20, 144); 0 for an unknown type.
size_t ggml_encode_block_values(int type);
size_t ggml_encode_block_bytes(int type);
// x: n values (a multiple of the block) → out: n / block blocks. Returns false, with out unspecified, when a
// value is not finite or a block scale overflows fp16: the caller reports it (the reference
// encoder names the element).
bool ggml_encode(int type, const float* x, size_t n, uint8_t* out);

// Q4_K's per-sub-block search (make_qkx2_quants) for the 8 sub-blocks of one super-block at once,
// bit-identical to the scalar code: scales, −mins and codes L (256). AVX2 (x86-64 builds).
void q4k_search_avx2(const float* x, float* scales, float* neg_mins, uint8_t* L);

}  // namespace lowbit
