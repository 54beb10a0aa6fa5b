// The quantized KV cache (see runtime/kv_cache.h).
#include "runtime/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/gemm.h"
#include "kernels/rtquant.h"

namespace lowbit {

KvCache::KvCache(int layers, int seq_len, int n_heads, int n_kv_heads, int head_dim, const KvQuantConfig& kv)
    : kv_(kv), layers_(layers), seq_len_(seq_len), n_heads_(n_heads), n_kv_heads_(n_kv_heads), head_dim_(head_dim) {
  auto bad = [](const std::string& m) { throw Error("LOWBIT_INVALID_OPTION", "kv: " + m); };
  if (layers <= 0 || seq_len <= 0 || n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads || head_dim <= 0) bad("bad cache shape");
  if (kv.bits != 2 && kv.bits != 4 && kv.bits != 8) bad("bits must be 2, 4 or 8, received " + std::to_string(kv.bits));
  group_ = kv.group == 0 ? (size_t)head_dim : (size_t)kv.group;
  if (kv.group < 0 || (size_t)head_dim % group_ != 0)
    bad("group " + std::to_string(kv.group) + " does not divide the head size " + std::to_string(head_dim));
  if (group_ * kv.bits % 8 != 0) bad("group " + std::to_string(group_) + " × " + std::to_string(kv.bits) + " bits is not a whole number of bytes");
  if (kv.window < 0 || kv.window > seq_len) bad("window must be 0…" + std::to_string(seq_len) + ", received " + std::to_string(kv.window));
  if (kv.k_channel && (kv.block < 1 || kv.block > 4096)) bad("block must be 1…4096, received " + std::to_string(kv.block));
  const size_t kv_dim = (size_t)n_kv_heads * head_dim, L = (size_t)layers, S = (size_t)seq_len, rb = kv_code_bytes(kv_dim, kv.bits);
  kq_.assign(L * S * rb, 0);
  vq_.assign(L * S * rb, 0);
  vsz_.assign(L * S * (kv_dim / group_) * 2, 0);
  if (kv.k_channel) ksz_.assign(L * ((S + kv.block - 1) / kv.block) * kv_dim * 2, 0);
  else ksz_.assign(vsz_.size(), 0);
  ring_ = std::max((size_t)kv.window, kv.k_channel ? (size_t)kv.block : 0);
  kring_.assign(L * ring_ * kv_dim, 0.0f);
  vring_.assign(kring_.size(), 0.0f);
  kv_end_.assign(L, 0);
}

double KvCache::bytes_per_token() const {
  const double kvd = (double)n_kv_heads_ * head_dim_, L = layers_;
  const double codes = kvd * kv_.bits / 8.0, groups = kvd / (double)group_ * 4.0;
  const double kscales = kv_.k_channel ? kvd * 4.0 / kv_.block : groups;
  return L * (2.0 * codes + groups + kscales);
}

size_t KvCache::fixed_bytes() const { return (kring_.size() + vring_.size()) * 4; }

// Attention over the quantized cache. Each query at position `last` reads position p
//   K in f32 when p > last − window, or (per-channel K) when p's block is not complete at `last`;
//   V in f32 when p > last − window; everything else from the codes.
// The f32 values come from this call's k/v (p ≥ pos0) or the ring (earlier positions), so the result
// does not depend on how a sequence is cut into calls. The codes of this call's tokens (and of the
// per-channel blocks they complete) are written first; the ring is updated last.
void KvCache::attend(int layer, const float* q, const float* k, const float* v, size_t n, size_t pos0, float* out, int mode) {
  const KvQuantConfig& kv = kv_;
  const int hd = head_dim_, H = n_heads_, KVH = n_kv_heads_, group = H / KVH;
  if (layer < 0 || layer >= layers_ || pos0 > (size_t)seq_len_ || n > (size_t)seq_len_ - pos0 || n == 0)
    throw Error("LOWBIT_INVALID_OPTION", "kv: layer or positions outside the cache");
  const size_t kvd = (size_t)KVH * hd, qd = (size_t)H * hd, S = (size_t)seq_len_, g = group_, G = kvd / g;
  const size_t rb = kv_code_bytes(kvd, kv.bits), hb = kv_code_bytes((size_t)hd, kv.bits), T = (size_t)kv.block, W = (size_t)kv.window;
  if (ring_ > 0 && pos0 != 0 && pos0 != kv_end_[layer])
    throw Error("LOWBIT_INVALID_OPTION",
                "kv: a quantized cache with a full-precision window or per-channel keys is written in order: positions from " + std::to_string(pos0) +
                    " after " + std::to_string(kv_end_[layer]) + " were written (start again at 0)");
  // f32 rows of the positions before pos0 this call may read (the ring)
  const size_t P0 = std::min(pos0, ring_);
  std::vector<float> kpre(P0 * kvd), vpre(P0 * kvd);
  float* kring = kring_.data() + (size_t)layer * ring_ * kvd;
  float* vring = vring_.data() + (size_t)layer * ring_ * kvd;
  for (size_t p = pos0 - P0; p < pos0; p++) {
    std::memcpy(&kpre[(p - (pos0 - P0)) * kvd], kring + (p % ring_) * kvd, kvd * 4);
    std::memcpy(&vpre[(p - (pos0 - P0)) * kvd], vring + (p % ring_) * kvd, kvd * 4);
  }
  auto kf = [&](size_t p) { return p >= pos0 ? k + (p - pos0) * kvd : &kpre[(p - (pos0 - P0)) * kvd]; };
  auto vf = [&](size_t p) { return p >= pos0 ? v + (p - pos0) * kvd : &vpre[(p - (pos0 - P0)) * kvd]; };
  uint8_t* kq = kq_.data() + (size_t)layer * S * rb;
  uint8_t* vq = vq_.data() + (size_t)layer * S * rb;
  uint16_t* vsz = vsz_.data() + (size_t)layer * S * G * 2;
  uint16_t* ksz = kv.k_channel ? ksz_.data() + (size_t)layer * ((S + T - 1) / T) * kvd * 2 : ksz_.data() + (size_t)layer * S * G * 2;
  kv_quantize_rows(v, n, kvd, kv.bits, g, kv.sym, vq + pos0 * rb, vsz + pos0 * G * 2);
  if (!kv.k_channel) {
    kv_quantize_rows(k, n, kvd, kv.bits, g, kv.sym, kq + pos0 * rb, ksz + pos0 * G * 2);
  } else {
    std::vector<float> blk(T * kvd);
    for (size_t p = pos0; p < pos0 + n; p++) {
      if (p % T != T - 1) continue;
      const size_t b0 = p + 1 - T;
      for (size_t i = 0; i < T; i++) std::memcpy(&blk[i * kvd], kf(b0 + i), kvd * 4);
      kv_quantize_channels(blk.data(), T, kvd, kvd, kv.bits, kv.sym, kq + b0 * rb, ksz + (b0 / T) * kvd * 2);
    }
  }
  const size_t P = pos0 + n;
  // first position each query reads in f32, for K and for V
  auto k_f32_from = [&](size_t last) {
    size_t f = last + 1;
    if (W > 0) f = last + 1 >= W ? last + 1 - W : 0;
    if (kv.k_channel && last % T != T - 1) f = std::min(f, last - last % T);
    return f;
  };
  auto v_f32_from = [&](size_t last) { return W > 0 ? (last + 1 >= W ? last + 1 - W : 0) : last + 1; };
  // K's {s, z} for a position and the start of its head's slice
  auto ksz_of = [&](size_t p, size_t kvh) -> const uint16_t* {
    return kv.k_channel ? ksz + (p / T) * kvd * 2 + kvh * hd * 2 : ksz + p * G * 2 + kvh * (hd / g) * 2;
  };
  const float scale = 1.0f / sqrtf((float)hd);
  const size_t gh = (size_t)hd / g;  // groups per head
  if (mode == MODE_REF || n < 16) {
    parallel_for(n * (size_t)H, 4, [&](size_t b, size_t e) {
      std::vector<float> att(P), row(hd), qs(hd), part(gh), zsum(gh), wv(gh), qsum(gh);
      for (size_t idx = b; idx < e; idx++) {
        const size_t t = idx / H, h = idx % H, last = pos0 + t, kvh = h / group;
        const float* qh = q + t * qd + h * hd;
        const size_t fk = k_f32_from(last), fv = v_f32_from(last);
        for (size_t j = 0; j < gh; j++) {
          qsum[j] = 0.0f;
          for (size_t i = j * g; i < (j + 1) * g; i++) qsum[j] += qh[i];
        }
        float mx = -INFINITY;
        size_t cur_block = (size_t)-1;
        float cz = 0.0f;
        for (size_t p = 0; p <= last; p++) {
          float s;
          const uint8_t* codes = kq + p * rb + kvh * hb;
          if (p >= fk) {
            const float* kp = kf(p) + kvh * hd;
            if (mode == MODE_REF) {
              s = 0.0f;
              for (int i = 0; i < hd; i++) s += qh[i] * kp[i];
            } else {
              s = dot_f32(qh, kp, (size_t)hd);
            }
          } else if (mode == MODE_REF) {
            kv_dequantize_row(codes, ksz_of(p, kvh), (size_t)hd, kv.bits, g, kv.k_channel, row.data());
            s = 0.0f;
            for (int i = 0; i < hd; i++) s += qh[i] * row[i];
          } else if (kv.k_channel) {
            if (p / T != cur_block) {  // q scaled by the block's channel scales, and Σ q·z
              cur_block = p / T;
              const uint16_t* sz = ksz_of(p, kvh);
              cz = 0.0f;
              for (int i = 0; i < hd; i++) {
                qs[i] = qh[i] * f16_to_f32(sz[2 * i]);
                cz += qh[i] * f16_to_f32(sz[2 * i + 1]);
              }
            }
            kv_dot_groups(qs.data(), codes, (size_t)hd, kv.bits, (size_t)hd, part.data(), mode);
            s = part[0] + cz;
          } else {
            kv_dot_groups(qh, codes, (size_t)hd, kv.bits, g, part.data(), mode);
            const uint16_t* sz = ksz_of(p, kvh);
            s = 0.0f;
            for (size_t j = 0; j < gh; j++) s += f16_to_f32(sz[2 * j]) * part[j] + f16_to_f32(sz[2 * j + 1]) * qsum[j];
          }
          s *= scale;
          att[p] = s;
          mx = std::max(mx, s);
        }
        float sum = 0.0f;
        for (size_t p = 0; p <= last; p++) {
          att[p] = expf(att[p] - mx);
          sum += att[p];
        }
        const float inv = 1.0f / sum;
        float* oh = out + t * qd + h * hd;
        std::fill(oh, oh + hd, 0.0f);
        std::fill(zsum.begin(), zsum.end(), 0.0f);
        for (size_t p = 0; p <= last; p++) {
          const float a = att[p] * inv;
          const uint8_t* codes = vq + p * rb + kvh * hb;
          const uint16_t* sz = vsz + p * G * 2 + kvh * gh * 2;
          if (p >= fv) {
            const float* vp = vf(p) + kvh * hd;
            for (int i = 0; i < hd; i++) oh[i] += a * vp[i];
          } else if (mode == MODE_REF) {
            kv_dequantize_row(codes, sz, (size_t)hd, kv.bits, g, false, row.data());
            for (int i = 0; i < hd; i++) oh[i] += a * row[i];
          } else {
            for (size_t j = 0; j < gh; j++) {
              wv[j] = a * f16_to_f32(sz[2 * j]);
              zsum[j] += a * f16_to_f32(sz[2 * j + 1]);
            }
            kv_axpy_groups(wv.data(), codes, (size_t)hd, kv.bits, g, oh, mode);
          }
        }
        for (int i = 0; i < hd; i++) oh[i] += zsum[i / g];
      }
    });
  } else {
    // Many queries: per kv head, decode K̂ and V̂ for positions 0 … P − 1 once, S = Q K̂ᵀ and O = S V̂
    // on the GEMM kernel, then put back the f32 terms each query reads (its window, its block).
    const size_t kcomplete = kv.k_channel ? (P / T) * T : P;  // positions with K codes
    parallel_for((size_t)H, 1, [&](size_t h0, size_t h1) {
      std::vector<float> Qh(n * hd), Kh(P * hd), VhT(hd * P), S(n * P), Oh(n * hd), row(hd);
      int loaded = -1;
      for (size_t h = h0; h < h1; h++) {
        const size_t kvh = h / group;
        for (size_t t = 0; t < n; t++) std::memcpy(&Qh[t * hd], q + t * qd + h * hd, hd * 4);
        if ((int)kvh != loaded) {
          for (size_t p = 0; p < P; p++) {
            if (p < kcomplete) kv_dequantize_row(kq + p * rb + kvh * hb, ksz_of(p, kvh), (size_t)hd, kv.bits, g, kv.k_channel, &Kh[p * hd]);
            else std::memcpy(&Kh[p * hd], kf(p) + kvh * hd, hd * 4);
            kv_dequantize_row(vq + p * rb + kvh * hb, vsz + p * G * 2 + kvh * gh * 2, (size_t)hd, kv.bits, g, false, row.data());
            for (int i = 0; i < hd; i++) VhT[(size_t)i * P + p] = row[i];
          }
          loaded = (int)kvh;
        }
        gemm_serial(Qh.data(), n, hd, Kh.data(), P, S.data(), false);
        for (size_t t = 0; t < n; t++) {
          float* st = &S[t * P];
          const size_t last = pos0 + t, fk = k_f32_from(last);  // (positions from kcomplete on are f32 in Kh already)
          for (size_t p = fk; p <= last; p++) st[p] = dot_f32(&Qh[t * hd], kf(p) + kvh * hd, (size_t)hd);
          causal_softmax_row(st, last, P, scale);
        }
        gemm_serial(S.data(), n, P, VhT.data(), (size_t)hd, Oh.data(), false);
        for (size_t t = 0; t < n; t++) {
          const size_t last = pos0 + t;
          float* ot = &Oh[t * hd];
          for (size_t p = v_f32_from(last); p <= last; p++) {  // a · (v − v̂) for the f32 positions
            const float a = S[t * P + p];
            const float* vp = vf(p) + kvh * hd;
            for (int i = 0; i < hd; i++) ot[i] += a * (vp[i] - VhT[(size_t)i * P + p]);
          }
          std::memcpy(out + t * qd + h * hd, ot, hd * 4);
        }
      }
    });
  }
  for (size_t p = (P >= ring_ ? std::max(pos0, P - ring_) : pos0); ring_ > 0 && p < P; p++) {
    std::memcpy(kring + (p % ring_) * kvd, kf(p), kvd * 4);
    std::memcpy(vring + (p % ring_) * kvd, vf(p), kvd * 4);
  }
  kv_end_[layer] = pos0 + n;
}

}  // namespace lowbit
