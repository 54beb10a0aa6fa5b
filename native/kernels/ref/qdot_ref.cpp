// References of the integer-dot matmul (see kernels/qdot.h), the geometry checks and the repacking
// of GPTQ and ggml sources into the kernel layout.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/pack.h"
#include "kernels/qdot.h"

namespace lowbit {

const char* qblock_check(int bits, int kb, size_t in) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) return "bits must be 2, 3, 4 or 8";
  if (kb == 16 && bits != 8) return "blocks of 16 channels need 8-bit codes";
  if (kb != 16 && kb != 32 && kb != 64 && kb != 128 && kb != 256) return "block must be 16 (8-bit), 32, 64, 128 or 256 channels";
  if (in == 0 || in % (size_t)kb) return "input channels must be a positive multiple of the block";
  return nullptr;
}

float qblock_scale(const QBlockMatrix& w, size_t si) { return w.ds ? f16_to_f32(w.d[qblock_supidx(w, si)]) * (float)w.ds[si] : f16_to_f32(w.d[si]); }
float qblock_offset(const QBlockMatrix& w, size_t si) {
  if (w.ms) return -(f16_to_f32(w.mh[qblock_supidx(w, si)]) * (float)w.ms[si]);
  return w.m ? w.m[si] : -w.zero_fixed * qblock_scale(w, si);
}

// 2- and 3-bit units (16 channels × 8 columns): byte p = 4j + i of the first 32 holds the low two
// bits of channels i, 4 + i, 8 + i, 12 + i of column j (sub s at bits 2s); 3-bit units add 16
// bytes whose nibble p / 16 of byte 32 + p % 16 holds the same channels' bit 2 (bit s).
static uint8_t crumb_byte(const int8_t* cu, size_t i) {
  return (uint8_t)((cu[i] & 3) | (cu[4 + i] & 3) << 2 | (cu[8 + i] & 3) << 4 | (cu[12 + i] & 3) << 6);
}

int qblock_code(const QBlockMatrix& w, size_t n, size_t k) {
  const size_t T = n / 8, j = n % 8;
  if (w.bits == 8) return (int8_t)w.q[(T * (w.in / 4) + k / 4) * 32 + j * 4 + k % 4];
  if (w.bits == 2 || w.bits == 3) {
    const uint8_t* unit = w.q + (T * (w.in / 16) + k / 16) * (w.bits == 2 ? 32 : 48);
    const size_t p = j * 4 + k % 4, s = (k % 16) / 4;
    const int lo = (unit[p] >> (2 * s)) & 3;
    return w.bits == 2 ? lo : lo | ((unit[32 + p % 16] >> (4 * (p / 16) + s)) & 1) << 2;
  }
  const uint8_t byte = w.q[(T * (w.in / 8) + k / 8) * 32 + j * 4 + k % 4];
  return (k % 8) < 4 ? (byte & 15) : (byte >> 4);
}

// Row n's codes (layout channel order, `in` of them; 2/3/4-bit: 0…2^b−1, 8-bit: int8) written into
// the layout whole. No byte is shared with another row, except 3-bit high-bit bytes, shared by rows
// n and n ± 4 of one tile (read-modify-write of one nibble): split work across threads by tiles.
static void put_row(const QBlockMatrix& w, uint8_t* q, size_t n, const int8_t* c) {
  const size_t T = n / 8, j = n % 8;
  if (w.bits == 8) {
    uint8_t* dst = q + T * (w.in / 4) * 32 + j * 4;
    for (size_t u = 0; u < w.in / 4; u++) std::memcpy(dst + u * 32, c + 4 * u, 4);
    return;
  }
  if (w.bits == 3) {
    uint8_t* dst = q + T * (w.in / 16) * 48;
    for (size_t u = 0; u < w.in / 16; u++) {
      const int8_t* cu = c + 16 * u;
      uint8_t* du = dst + u * 48;
      for (size_t i = 0; i < 4; i++) {
        du[j * 4 + i] = crumb_byte(cu, i);
        const size_t p = j * 4 + i, shift = 4 * (p / 16);
        const unsigned nib = (unsigned)(((cu[i] >> 2) & 1) | ((cu[4 + i] >> 2) & 1) << 1 | ((cu[8 + i] >> 2) & 1) << 2 |
                                        ((cu[12 + i] >> 2) & 1) << 3);
        du[32 + p % 16] = (uint8_t)((du[32 + p % 16] & ~(15u << shift)) | nib << shift);
      }
    }
    return;
  }
  if (w.bits == 2) {
    uint8_t* dst = q + T * (w.in / 16) * 32 + j * 4;
    for (size_t u = 0; u < w.in / 16; u++) {
      const int8_t* cu = c + 16 * u;
      for (size_t i = 0; i < 4; i++) dst[u * 32 + i] = crumb_byte(cu, i);
    }
    return;
  }
  uint8_t* dst = q + T * (w.in / 8) * 32 + j * 4;
  for (size_t u = 0; u < w.in / 8; u++) {
    const int8_t* cu = c + 8 * u;
    for (size_t i = 0; i < 4; i++) dst[u * 32 + i] = (uint8_t)((cu[i] & 15) | (cu[4 + i] << 4));
  }
}

void quantize_acts_ref(const float* x, size_t rows, size_t in, int kb, const int32_t* perm, const QActs& a) {
  const size_t B = in / (size_t)kb;
  std::vector<float> g(in);
  for (size_t t = 0; t < rows; t++) {
    const float* xr = x + t * in;
    for (size_t k = 0; k < in; k++) g[k] = perm ? xr[perm[k]] : xr[k];
    for (size_t b = 0; b < B; b++) {
      float amax = 0.0f;
      for (size_t k = b * kb; k < (b + 1) * kb; k++) amax = std::max(amax, std::fabs(g[k]));
      const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
      int32_t s = 0;
      for (size_t k = b * kb; k < (b + 1) * kb; k++) {
        const float v = g[k] * id;
        const int q = (int)std::nearbyint(std::min(127.0f, std::max(-127.0f, v)));
        a.xq[t * in + k] = (int8_t)q;
        s += q;
      }
      a.sx[t * B + b] = amax / 127.0f;
      a.sum[t * B + b] = s;
    }
  }
}

void qdot_gemm_ref(const QBlockMatrix& w, const QActs& a, size_t rows, float* y, size_t ldy) {
  const size_t B = w.blocks(), kb = (size_t)w.kb;
  for (size_t t = 0; t < rows; t++)
    for (size_t n = 0; n < w.out; n++) {
      double s = 0;
      for (size_t b = 0; b < B; b++) {
        int64_t dot = 0;
        for (size_t k = b * kb; k < (b + 1) * kb; k++) dot += (int64_t)qblock_code(w, n, k) * a.xq[t * w.in + k];
        const double d = qblock_scale(w, qblock_sidx(w, n, b));
        const double m = w.asym() ? (double)qblock_offset(w, qblock_sidx(w, n, b)) : -(double)w.zero_fixed * d;
        s += (double)a.sx[t * B + b] * (d * (double)dot + m * (double)a.sum[t * B + b]);
      }
      y[t * ldy + n] = (float)s;
    }
}

// ---- repacking ---------------------------------------------------------------------------

int qblock_plan_gptq(const GptqSource& s, int* out_bits, bool* needs_perm, const char** why) {
  *why = nullptr;
  if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 8) return *why = "bits must be 2, 3, 4 or 8", 0;
  if (s.in % 32) return *why = "input channels must be a multiple of 32", 0;
  if (s.groups == 0 || s.in % s.groups) return *why = "groups must divide the input channels", 0;
  const size_t gs = s.in / s.groups;
  // every group must hold exactly gs channels; consecutive runs need no permutation
  std::vector<size_t> count(s.groups, 0);
  bool runs = true;
  for (size_t k = 0; k < s.in; k++) {
    const int32_t g = s.g_idx[k];
    if (g < 0 || (size_t)g >= s.groups) return *why = "g_idx out of range", 0;
    count[(size_t)g]++;
    if ((size_t)g != k / gs) runs = false;
  }
  for (size_t g = 0; g < s.groups; g++)
    if (count[g] != gs) return *why = "groups of unequal size", 0;
  int kb;
  if (s.groups == 1 || gs % 256 == 0) kb = s.in % 256 == 0 ? 256 : s.in % 128 == 0 ? 128 : s.in % 64 == 0 ? 64 : 32;
  else if (gs % 128 == 0) kb = 128;
  else if (gs % 64 == 0) kb = 64;
  else if (gs % 32 == 0) kb = 32;
  else return *why = "group size must be a multiple of 32", 0;
  *out_bits = s.bits;
  *needs_perm = !runs;
  return kb;
}

void qblock_repack_gptq(const GptqSource& s, int bits, int kb, uint8_t* q, uint16_t* d, float* m, int32_t* perm) {
  const size_t in = s.in, out = s.out, B = in / (size_t)kb;
  std::vector<uint8_t> codes(out * in);  // (out, in), channel order of the checkpoint
  unpack_fast(PACK_GPTQ_QWEIGHT, s.bits, s.qweight, out, in, 0, codes.data(), nullptr);
  std::vector<int32_t> order(in);
  for (size_t k = 0; k < in; k++) order[k] = (int32_t)k;
  if (perm) {  // processing order: channels sorted by group (stable), so groups are consecutive
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return s.g_idx[a] < s.g_idx[b]; });
    std::copy(order.begin(), order.end(), perm);
  }
  const int off = bits == 8 ? 128 : 0;  // 8-bit codes are stored signed
  QBlockMatrix w;
  w.bits = bits;
  w.kb = kb;
  w.in = in;
  w.out = out;
  // tiles of 8 rows in parallel (3-bit rows of one tile share the bytes of the high-bit plane)
  parallel_for((out + 7) / 8, 1, [&](size_t t0, size_t t1) {
    std::vector<int8_t> row(in);
    for (size_t n = t0 * 8; n < std::min(out, t1 * 8); n++) {
      const uint8_t* cr = codes.data() + n * in;
      for (size_t k = 0; k < in; k++) row[k] = (int8_t)((int)cr[order[k]] - off);
      put_row(w, q, n, row.data());
      for (size_t b = 0; b < B; b++) {
        const size_t g = (size_t)s.g_idx[order[b * kb]];  // one group per block (kb divides gs)
        const size_t si = qblock_sidx(w, n, b);
        d[si] = f32_to_f16(s.scales[g * out + n], true, nullptr);
        if (m) m[si] = -f16_to_f32(d[si]) * (float)((int)s.zeros[g * out + n] - off);
      }
    }
  });
}

GgmlQInfo qblock_ggml_info(int type) {
  switch (type) {
    case GGML_Q4_0: return {18, 32, 4, 32, false, 1, false, 8.0f};
    case GGML_Q4_1: return {20, 32, 4, 32, true, 1, false, 0.0f};
    case GGML_Q8_0: return {34, 32, 8, 32, false, 1, false, 0.0f};
    case GGML_Q4_K: return {144, 256, 4, 32, false, 8, true, 0.0f};
    case GGML_Q6_K: return {210, 256, 8, 16, false, 16, false, 0.0f};
    default: return {0, 0, 0, 0, false, 1, false, 0.0f};
  }
}

// Q4_K sub-block j's 6-bit scale and min from the 12 packed bytes (ggml's get_scale_min_k4).
static void q4k_scale_min(const uint8_t* s, int j, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

void qblock_repack_ggml(int type, const uint8_t* src, size_t out, size_t in, uint8_t* q, uint16_t* d, float* m, int8_t* ds, uint16_t* mh,
                        int8_t* ms) {
  const GgmlQInfo gi = qblock_ggml_info(type);
  if (!gi.block_bytes) throw std::runtime_error("LOWBIT_INTERNAL: qblock_repack_ggml: type");
  const size_t B = in / gi.block_values, bsz = gi.block_bytes;
  QBlockMatrix w;
  w.bits = gi.bits;
  w.kb = gi.kb;
  w.in = in;
  w.out = out;
  w.sbk = gi.sbk;
  // rows in parallel (each writes only its own bytes of the layout)
  parallel_for(out, 8, [&](size_t n_begin, size_t n_end) {
    std::vector<int8_t> row(gi.sbk > 1 ? in : 0);  // k-quants: codes decoded into a row, then written whole
    int8_t* const r = row.data();
    for (size_t n = n_begin; n < n_end; n++) {
      for (size_t b = 0; b < B; b++) {
        const uint8_t* blk = src + (n * B + b) * bsz;
        if (type == GGML_Q4_K) {
          // {f16 d, f16 dmin, 12 B scales, 128 B qs}: value = f32(d·sc_j)·q − f32(dmin·m_j); chunk c of
          // 32 bytes holds sub-block 2c in its low nibbles and 2c + 1 in its high nibbles
          const size_t sup = qblock_supidx(w, qblock_sidx(w, n, b * 8));
          std::memcpy(&d[sup], blk, 2);
          std::memcpy(&mh[sup], blk + 2, 2);
          const uint8_t* qs = blk + 16;
          for (int j = 0; j < 8; j++) {
            int sc, mn;
            q4k_scale_min(blk + 4, j, &sc, &mn);  // 0…63
            const size_t sb = b * 8 + (size_t)j, si = qblock_sidx(w, n, sb);
            ds[si] = (int8_t)sc;
            ms[si] = (int8_t)mn;
            const uint8_t* c = qs + 32 * (j / 2);
            for (size_t l = 0; l < 32; l++) r[sb * 32 + l] = (int8_t)(j % 2 ? c[l] >> 4 : c[l] & 15);
          }
          continue;
        }
        if (type == GGML_Q6_K) {
          // {128 B ql, 64 B qh, 16 × i8 scales, f16 d}: value v = f32(d·scales[v / 16])·(q(v) − 32)
          std::memcpy(&d[qblock_supidx(w, qblock_sidx(w, n, b * 16))], blk + 208, 2);
          for (int s = 0; s < 16; s++) ds[qblock_sidx(w, n, b * 16 + (size_t)s)] = (int8_t)blk[192 + s];
          for (int h = 0; h < 2; h++) {
            const uint8_t *ql = blk + 64 * h, *qh = blk + 128 + 32 * h;
            const size_t y = b * 256 + 128 * (size_t)h;
            for (size_t l = 0; l < 32; l++) {
              const int hb = qh[l];
              r[y + l] = (int8_t)(((ql[l] & 15) | ((hb & 3) << 4)) - 32);
              r[y + l + 32] = (int8_t)(((ql[l + 32] & 15) | (((hb >> 2) & 3) << 4)) - 32);
              r[y + l + 64] = (int8_t)(((ql[l] >> 4) | (((hb >> 4) & 3) << 4)) - 32);
              r[y + l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((hb >> 6) & 3) << 4)) - 32);
            }
          }
          continue;
        }
        const size_t si = qblock_sidx(w, n, b);
        std::memcpy(&d[si], blk, 2);
        // Q8_0 / Q4_0 / Q4_1: the block's layout bytes are written directly (no row buffer)
        const size_t T = n / 8, col = n % 8;
        if (type == GGML_Q8_0) {  // 8 units of 4 channels: the codes as they are
          uint8_t* dst = q + (T * (in / 4) + 8 * b) * 32 + col * 4;
          for (size_t u = 0; u < 8; u++) std::memcpy(dst + u * 32, blk + 2 + 4 * u, 4);
          continue;
        }
        // ggml nibble order: byte i holds weight i (low) and weight i + 16 (high). Layout unit u
        // (channels 8u … 8u+7) wants byte i = c[8u+i] | c[8u+4+i] << 4, so with the 16 bytes as four
        // little-endian words w0…w3 (bytes 0–3, 4–7, 8–11, 12–15), nibble-wise:
        const uint8_t* qs = blk + (type == GGML_Q4_1 ? 4 : 2);
        uint32_t w0, w1, w2, w3;
        std::memcpy(&w0, qs, 4);
        std::memcpy(&w1, qs + 4, 4);
        std::memcpy(&w2, qs + 8, 4);
        std::memcpy(&w3, qs + 12, 4);
        const uint32_t L = 0x0F0F0F0Fu, H = 0xF0F0F0F0u;
        const uint32_t units[4] = {(w0 & L) | ((w1 & L) << 4), (w2 & L) | ((w3 & L) << 4),   // channels 0–15: low nibbles
                                   ((w0 >> 4) & L) | (w1 & H), ((w2 >> 4) & L) | (w3 & H)};  // 16–31: high nibbles
        uint8_t* dst = q + (T * (in / 8) + 4 * b) * 32 + col * 4;
        for (size_t u = 0; u < 4; u++) std::memcpy(dst + u * 32, &units[u], 4);
        if (type == GGML_Q4_1) {
          uint16_t mh;
          std::memcpy(&mh, blk + 2, 2);
          m[si] = f16_to_f32(mh);
        }
      }
      if (type == GGML_Q4_K || type == GGML_Q6_K) put_row(w, q, n, r);
    }
  });
}

}  // namespace lowbit
