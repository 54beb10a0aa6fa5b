// Reference packers: one value at a time into its bit stream position (see kernels/pack.h).
#include <cstring>
#include <string>

#include "core/error.h"
#include "kernels/pack.h"

namespace lowbit {

static const int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

size_t pack_words(int layout, int bits, size_t rows, size_t cols) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8 && !(layout >= PACK_AWQ_QWEIGHT && bits == 4))
    throw Error("LOWBIT_INVALID_OPTION", "bits: expected 2, 3, 4 or 8 for the GPTQ layout, received " + std::to_string(bits));
  switch (layout) {
    case PACK_GPTQ_QWEIGHT:
    case PACK_GPTQ_QZEROS:
      if (cols % 32) throw Error("LOWBIT_SHAPE_MISMATCH", "GPTQ packing needs a multiple of 32 values per run, got " + std::to_string(cols));
      return rows * cols * (size_t)bits / 32;
    case PACK_AWQ_QWEIGHT:
      if (bits != 4) throw Error("LOWBIT_INVALID_OPTION", "bits: the AWQ GEMM layout is 4-bit only, received " + std::to_string(bits));
      if (rows % 8) throw Error("LOWBIT_SHAPE_MISMATCH", "AWQ packing needs out % 8 == 0, got " + std::to_string(rows));
      return rows * cols / 8;
    case PACK_AWQ_QZEROS:
      if (bits != 4) throw Error("LOWBIT_INVALID_OPTION", "bits: the AWQ GEMM layout is 4-bit only, received " + std::to_string(bits));
      if (cols % 8) throw Error("LOWBIT_SHAPE_MISMATCH", "AWQ packing needs out % 8 == 0, got " + std::to_string(cols));
      return rows * cols / 8;
    default: throw Error("LOWBIT_INVALID_OPTION", "layout: unknown packing layout " + std::to_string(layout));
  }
}

static uint32_t checked(uint8_t v, int offset, int bits, size_t r, size_t c) {
  int x = (int)v - offset;
  if (x < 0 || x > (1 << bits) - 1)
    throw Error("LOWBIT_INVALID_OPTION", "value " + std::to_string(v) + " at (" + std::to_string(r) + ", " + std::to_string(c) + ") is outside [" +
                                             std::to_string(offset) + ", " + std::to_string(offset + (1 << bits) - 1) + "] for " +
                                             std::to_string(bits) + "-bit packing");
  return (uint32_t)x;
}

// Set value v at stream position `bit` of the run whose word w (0 … b−1) is at words[w * stride].
static void put(uint32_t* words, size_t stride, int bits, int j, uint32_t v) {
  int bit = j * bits, w = bit / 32, sh = bit % 32;
  words[(size_t)w * stride] |= v << sh;
  if (sh + bits > 32) words[(size_t)(w + 1) * stride] |= v >> (32 - sh);
}

static uint32_t get(const uint32_t* words, size_t stride, int bits, int j) {
  int bit = j * bits, w = bit / 32, sh = bit % 32;
  uint64_t lo = words[(size_t)w * stride];
  if (sh + bits > 32) lo |= (uint64_t)words[(size_t)(w + 1) * stride] << 32;
  return (uint32_t)(lo >> sh) & ((1u << bits) - 1);
}

static uint8_t decoded(uint32_t f, int offset, int bits, size_t r, size_t c) {
  if (offset == 1 && f == (1u << bits) - 1)
    throw Error("LOWBIT_BAD_FORMAT", "all-ones v1 zero field at (" + std::to_string(r) + ", " + std::to_string(c) +
                                         "): it decodes to 0 or 2^bits depending on the reader, so it is refused");
  return (uint8_t)(f + (uint32_t)offset);
}

void pack_ref(int layout, int bits, const uint8_t* values, size_t rows, size_t cols, int offset, int32_t* packed) {
  const size_t nw = pack_words(layout, bits, rows, cols);
  uint32_t* P = reinterpret_cast<uint32_t*>(packed);
  std::memset(P, 0, nw * 4);
  for (size_t r = 0; r < rows; r++) {
    for (size_t c = 0; c < cols; c++) {
      uint32_t v = checked(values[r * cols + c], offset, bits, r, c);
      switch (layout) {
        case PACK_GPTQ_QWEIGHT:  // run = 32 input channels (c) of output column r; words go down rows
          put(P + (c / 32) * bits * rows + r, rows, bits, (int)(c % 32), v);
          break;
        case PACK_GPTQ_QZEROS:  // run = 32 output channels (c) of group r; words along the row
          put(P + r * (cols * bits / 32) + (c / 32) * bits, 1, bits, (int)(c % 32), v);
          break;
        case PACK_AWQ_QWEIGHT: {  // (out r, in c) -> word (c, r/8), nibble position of r%8
          int m = (int)(r % 8), pos = 0;
          while (kAwqOrder[pos] != m) pos++;
          P[c * (rows / 8) + r / 8] |= v << (4 * pos);
          break;
        }
        case PACK_AWQ_QZEROS: {
          int m = (int)(c % 8), pos = 0;
          while (kAwqOrder[pos] != m) pos++;
          P[r * (cols / 8) + c / 8] |= v << (4 * pos);
          break;
        }
      }
    }
  }
}

void unpack_ref(int layout, int bits, const int32_t* packed, size_t rows, size_t cols, int offset, uint8_t* values) {
  pack_words(layout, bits, rows, cols);
  const uint32_t* P = reinterpret_cast<const uint32_t*>(packed);
  for (size_t r = 0; r < rows; r++) {
    for (size_t c = 0; c < cols; c++) {
      uint32_t f = 0;
      switch (layout) {
        case PACK_GPTQ_QWEIGHT: f = get(P + (c / 32) * bits * rows + r, rows, bits, (int)(c % 32)); break;
        case PACK_GPTQ_QZEROS: f = get(P + r * (cols * bits / 32) + (c / 32) * bits, 1, bits, (int)(c % 32)); break;
        case PACK_AWQ_QWEIGHT: {
          int m = (int)(r % 8), pos = 0;
          while (kAwqOrder[pos] != m) pos++;
          f = (P[c * (rows / 8) + r / 8] >> (4 * pos)) & 15u;
          break;
        }
        case PACK_AWQ_QZEROS: {
          int m = (int)(c % 8), pos = 0;
          while (kAwqOrder[pos] != m) pos++;
          f = (P[r * (cols / 8) + c / 8] >> (4 * pos)) & 15u;
          break;
        }
      }
      values[r * cols + c] = decoded(f, offset, bits, r, c);
    }
  }
}

}  // namespace lowbit
