// Fast packers: each run of 32 values is assembled in a 64-bit accumulator and stored as b
// whole words (no read-modify-write of shared words), so runs pack independently and in
// parallel. 4- and 8-bit runs use word-at-a-time shortcuts. Bit-identical to pack_ref (tested).
#include <algorithm>
#include <atomic>
#include <cstring>

#include "core/thread_pool.h"
#include "kernels/pack.h"
#include "kernels/pack_run.h"

namespace lowbit {

static const int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

static inline void unpack_run(const uint32_t* in, int bits, uint8_t* v) {
  uint64_t acc = 0;
  int nb = 0, w = 0;
  const uint32_t mask = (1u << bits) - 1;
  for (int j = 0; j < 32; j++) {
    if (nb < bits) {
      acc |= (uint64_t)in[w++] << nb;
      nb += 32;
    }
    v[j] = (uint8_t)(acc & mask);
    acc >>= bits;
    nb -= bits;
  }
}

// Copy 32 values minus offset into `tmp`; false when any is out of range (the caller then lets the
// reference produce the exact error message).
static inline bool prepare_run(const uint8_t* src, int offset, int bits, uint8_t* tmp) {
  const int maxq = (1 << bits) - 1;
  uint8_t mn = 255, mx = 0;
  for (int j = 0; j < 32; j++) {
    mn = std::min(mn, src[j]);
    mx = std::max(mx, src[j]);
    tmp[j] = (uint8_t)(src[j] - offset);
  }
  return mn >= offset && (int)mx - offset <= maxq;
}

void pack_fast(int layout, int bits, const uint8_t* values, size_t rows, size_t cols, int offset, int32_t* packed, TaskContext* ctx) {
  pack_words(layout, bits, rows, cols);
  uint32_t* P = reinterpret_cast<uint32_t*>(packed);
  std::atomic<bool> bad{false};
  if (layout == PACK_GPTQ_QWEIGHT) {
    const size_t nblk = cols / 32;
    parallel_for(nblk, 1, [&](size_t b0, size_t b1) {
      if (ctx) ctx->check("pack");
      uint8_t tmp[32];
      uint32_t w[8];
      for (size_t blk = b0; blk < b1; blk++) {
        for (size_t r = 0; r < rows; r++) {
          if (!prepare_run(values + r * cols + blk * 32, offset, bits, tmp)) {
            bad = true;
            return;
          }
          pack_run(tmp, bits, w);
          for (int t = 0; t < bits; t++) P[(blk * bits + t) * rows + r] = w[t];
        }
      }
    });
  } else if (layout == PACK_GPTQ_QZEROS) {
    const size_t runs = cols / 32;
    parallel_for(rows, 1, [&](size_t r0, size_t r1) {
      uint8_t tmp[32];
      for (size_t r = r0; r < r1; r++)
        for (size_t k = 0; k < runs; k++) {
          if (!prepare_run(values + r * cols + k * 32, offset, bits, tmp)) {
            bad = true;
            return;
          }
          pack_run(tmp, bits, P + r * (cols * bits / 32) + k * bits);
        }
    });
  } else if (layout == PACK_AWQ_QWEIGHT) {
    const size_t ow = rows / 8;
    parallel_for(ow, 1, [&](size_t w0, size_t w1) {
      for (size_t w = w0; w < w1; w++) {
        const uint8_t* src[8];
        for (int i = 0; i < 8; i++) src[i] = values + (w * 8 + (size_t)kAwqOrder[i]) * cols;
        for (size_t c = 0; c < cols; c++) {
          uint32_t word = 0;
          for (int i = 0; i < 8; i++) {
            int v = (int)src[i][c] - offset;
            if (v < 0 || v > 15) {
              bad = true;
              return;
            }
            word |= (uint32_t)v << (4 * i);
          }
          P[c * ow + w] = word;
        }
      }
    });
  } else {
    // AWQ qzeros: tiny (groups × out/8 words); the reference is fast enough.
    pack_ref(layout, bits, values, rows, cols, offset, packed);
    return;
  }
  if (bad) pack_ref(layout, bits, values, rows, cols, offset, packed);  // throws the precise error
}

void unpack_fast(int layout, int bits, const int32_t* packed, size_t rows, size_t cols, int offset, uint8_t* values, TaskContext* ctx) {
  pack_words(layout, bits, rows, cols);
  const uint32_t* P = reinterpret_cast<const uint32_t*>(packed);
  std::atomic<bool> bad{false};
  const uint8_t allones = (uint8_t)((1u << bits) - 1);
  if (layout == PACK_GPTQ_QWEIGHT) {
    parallel_for(cols / 32, 1, [&](size_t b0, size_t b1) {
      if (ctx) ctx->check("unpack");
      uint32_t w[8];
      uint8_t v[32];
      for (size_t blk = b0; blk < b1; blk++)
        for (size_t r = 0; r < rows; r++) {
          for (int t = 0; t < bits; t++) w[t] = P[(blk * bits + t) * rows + r];
          unpack_run(w, bits, v);
          uint8_t* dst = values + r * cols + blk * 32;
          for (int j = 0; j < 32; j++) {
            if (offset == 1 && v[j] == allones) bad = true;
            dst[j] = (uint8_t)(v[j] + offset);
          }
        }
    });
  } else if (layout == PACK_GPTQ_QZEROS) {
    parallel_for(rows, 1, [&](size_t r0, size_t r1) {
      uint8_t v[32];
      for (size_t r = r0; r < r1; r++)
        for (size_t k = 0; k < cols / 32; k++) {
          unpack_run(P + r * (cols * bits / 32) + k * bits, bits, v);
          for (int j = 0; j < 32; j++) {
            if (offset == 1 && v[j] == allones) bad = true;
            values[r * cols + k * 32 + j] = (uint8_t)(v[j] + offset);
          }
        }
    });
  } else {
    unpack_ref(layout, bits, packed, rows, cols, offset, values);
    return;
  }
  if (bad) unpack_ref(layout, bits, packed, rows, cols, offset, values);  // throws the precise error
}

}  // namespace lowbit
