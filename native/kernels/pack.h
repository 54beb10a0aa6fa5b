// Packing of b-bit codes into int32 words, for the checkpoint layouts of docs/FORMATS.md.
//
// Every run of 32 values forms one little-endian bit stream of 32·b bits = b consecutive words:
// value j occupies stream bits [j·b, j·b + b). For b = 2, 4, 8 no value straddles a word; for
// b = 3 values 10 and 21 do (this is exactly the GPTQ 3-bit table).
//
//   PACK_GPTQ_QWEIGHT: values (rows = out, cols = in) codes  -> packed (in·b/32, out): runs of 32
//                      consecutive input channels of one output column go down the word rows.
//   PACK_GPTQ_QZEROS:  values (rows = G, cols = out) zeros   -> packed (G, out·b/32): runs along
//                      the output channels of one group.
//   PACK_AWQ_QWEIGHT:  values (rows = out, cols = in) codes  -> packed (in, out/8), 4-bit only;
//                      nibble i of word c holds output channel 8c + ORDER[i], ORDER = 0,2,4,6,1,3,5,7.
//   PACK_AWQ_QZEROS:   values (rows = G, cols = out) zeros   -> packed (G, out/8), same interleave.
//
// `offset` is subtracted from every value before packing and added back when unpacking (1 for the
// zeros of GPTQ v1 checkpoints, which store zero − 1). Values must lie in [offset, offset + 2^b − 1];
// anything else is an error (never OR-ed in to corrupt a neighbour). When unpacking with offset 1,
// an all-ones field cannot be decoded (readers disagree on it) and is an error.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

struct TaskContext;

enum PackLayout { PACK_GPTQ_QWEIGHT = 0, PACK_GPTQ_QZEROS = 1, PACK_AWQ_QWEIGHT = 2, PACK_AWQ_QZEROS = 3 };

// Number of int32 words of the packed tensor for a (rows, cols) values array; throws on a shape
// the layout cannot hold.
size_t pack_words(int layout, int bits, size_t rows, size_t cols);

void pack_ref(int layout, int bits, const uint8_t* values, size_t rows, size_t cols, int offset, int32_t* packed);
void unpack_ref(int layout, int bits, const int32_t* packed, size_t rows, size_t cols, int offset, uint8_t* values);

// Fast (threaded, specialised per bit width); bit-identical to the reference.
void pack_fast(int layout, int bits, const uint8_t* values, size_t rows, size_t cols, int offset, int32_t* packed, TaskContext* ctx);
void unpack_fast(int layout, int bits, const int32_t* packed, size_t rows, size_t cols, int offset, uint8_t* values, TaskContext* ctx);

}  // namespace lowbit
