// Inline bit-stream packing of one run of 32 values (see kernels/pack.h), shared by the packers
// and the fused quantize+pack kernel so the hot loop has no call per run.
#pragma once
#include <cstdint>
#include <cstring>

namespace lowbit {

// Pack 32 values (already validated and offset-corrected in `v`) into `bits` words.
inline void pack_run(const uint8_t* v, int bits, uint32_t* out) {
  if (bits == 8) {
    std::memcpy(out, v, 32);  // value j = byte j of the little-endian words
    return;
  }
  if (bits == 4) {
    for (int w = 0; w < 4; w++) {
      uint64_t x;
      std::memcpy(&x, v + 8 * w, 8);  // 8 bytes, each < 16: squeeze the nibbles together
      x = (x | (x >> 4)) & 0x00ff00ff00ff00ffull;
      x = (x | (x >> 8)) & 0x0000ffff0000ffffull;
      x = (x | (x >> 16)) & 0x00000000ffffffffull;
      out[w] = (uint32_t)x;
    }
    return;
  }
  uint64_t acc = 0;
  int nb = 0, w = 0;
  for (int j = 0; j < 32; j++) {
    acc |= (uint64_t)v[j] << nb;
    nb += bits;
    if (nb >= 32) {
      out[w++] = (uint32_t)acc;
      acc >>= 32;
      nb -= 32;
    }
  }
}


}  // namespace lowbit
