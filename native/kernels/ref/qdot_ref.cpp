// References of the integer-dot matmul (see kernels/qdot.h), the geometry checks and the repacking
// of GPTQ and ggml sources into the kernel layout.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/half.h"
#include "kernels/pack.h"
#include "kernels/qdot.h"

namespace lowbit {

const char* qblock_check(int bits, int kb, size_t in) {
  if (bits != 4 && bits != 8) return "bits must be 4 or 8";
  if (kb != 32 && kb != 64 && kb != 128 && kb != 256) return "block must be 32, 64, 128 or 256 channels";
  if (in == 0 || in % (size_t)kb) return "input channels must be a positive multiple of the block";
  return nullptr;
}

int qblock_code(const QBlockMatrix& w, size_t n, size_t k) {
  const size_t T = n / 8, j = n % 8;
  if (w.bits == 8) return (int8_t)w.q[(T * (w.in / 4) + k / 4) * 32 + j * 4 + k % 4];
  const uint8_t byte = w.q[(T * (w.in / 8) + k / 8) * 32 + j * 4 + k % 4];
  return (k % 8) < 4 ? (byte & 15) : (byte >> 4);
}

static void put_code(const QBlockMatrix& w, uint8_t* q, size_t n, size_t k, int code) {
  const size_t T = n / 8, j = n % 8;
  if (w.bits == 8) {
    q[(T * (w.in / 4) + k / 4) * 32 + j * 4 + k % 4] = (uint8_t)(int8_t)code;
    return;
  }
  uint8_t& byte = q[(T * (w.in / 8) + k / 8) * 32 + j * 4 + k % 4];
  byte = (k % 8) < 4 ? (uint8_t)((byte & 0xF0) | code) : (uint8_t)((byte & 0x0F) | (code << 4));
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
        const double d = f16_to_f32(w.d[qblock_sidx(w, n, b)]);
        const double m = w.m ? (double)w.m[qblock_sidx(w, n, b)] : -(double)w.zero_fixed * d;
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
  *out_bits = s.bits == 8 ? 8 : 4;
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
  for (size_t n = 0; n < out; n++) {
    const uint8_t* cr = codes.data() + n * in;
    for (size_t k = 0; k < in; k++) put_code(w, q, n, k, (int)cr[order[k]] - off);
    for (size_t b = 0; b < B; b++) {
      const size_t g = (size_t)s.g_idx[order[b * kb]];  // one group per block (kb divides gs)
      const size_t si = qblock_sidx(w, n, b);
      d[si] = f32_to_f16(s.scales[g * out + n], true, nullptr);
      if (m) m[si] = -f16_to_f32(d[si]) * (float)((int)s.zeros[g * out + n] - off);
    }
  }
}

void qblock_repack_ggml(int type, const uint8_t* src, size_t out, size_t in, uint8_t* q, uint16_t* d, float* m) {
  const size_t B = in / 32;
  const size_t bsz = type == GGML_Q4_0 ? 18 : type == GGML_Q4_1 ? 20 : 34;
  if (type != GGML_Q4_0 && type != GGML_Q4_1 && type != GGML_Q8_0) throw std::runtime_error("LOWBIT_INTERNAL: qblock_repack_ggml: type");
  QBlockMatrix w;
  w.bits = type == GGML_Q8_0 ? 8 : 4;
  w.kb = 32;
  w.in = in;
  w.out = out;
  for (size_t n = 0; n < out; n++) {
    for (size_t b = 0; b < B; b++) {
      const uint8_t* blk = src + (n * B + b) * bsz;
      const size_t si = qblock_sidx(w, n, b);
      std::memcpy(&d[si], blk, 2);
      if (type == GGML_Q8_0) {
        for (size_t i = 0; i < 32; i++) put_code(w, q, n, b * 32 + i, (int8_t)blk[2 + i]);
        continue;
      }
      const uint8_t* qs = blk + (type == GGML_Q4_1 ? 4 : 2);
      // ggml nibble order: byte j holds weight j (low) and weight j + 16 (high)
      for (size_t j = 0; j < 16; j++) {
        put_code(w, q, n, b * 32 + j, qs[j] & 15);
        put_code(w, q, n, b * 32 + 16 + j, qs[j] >> 4);
      }
      if (type == GGML_Q4_1) {
        uint16_t mh;
        std::memcpy(&mh, blk + 2, 2);
        m[si] = f16_to_f32(mh);
      }
    }
  }
}

}  // namespace lowbit
