// Reference quantizer: scalar loops that read like the formulas in kernels/quant.h.
// Also home of the pieces every variant shares (clip search, codebooks) so their results agree.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/quant.h"

namespace lowbit {

// NF4 (QLoRA, Dettmers et al. 2023): quantiles of N(0,1) normalised to [-1, 1], with an exact 0.
// Not clang-formatted: four constants a line (clang-format 14 gives each its own line).
// clang-format off
static const float kNf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
                               -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
                               0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f,
                               0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
                               0.7229568362236023f, 1.0f};
// clang-format on

// log2 grid with b bits: 0 and ±2^-k for k = 0 … 2^(b−1) − 2 (2^b − 1 levels; one code unused).
static std::vector<float> make_log2(int bits) {
  std::vector<float> v;
  int m = (1 << (bits - 1)) - 1;
  for (int k = 0; k < m; k++) v.push_back(-std::ldexp(1.0f, -k));  // -1, -1/2, … (ascending)
  v.push_back(0.0f);
  for (int k = m - 1; k >= 0; k--) v.push_back(std::ldexp(1.0f, -k));  // …, 1/2, 1
  return v;
}

const float* codebook_levels(int codebook, int bits, int* n) {
  static const std::vector<float> log2_tables[9] = {{},           {},           make_log2(2), make_log2(3), make_log2(4),
                                                    make_log2(5), make_log2(6), make_log2(7), make_log2(8)};
  if (codebook == CODEBOOK_NF4) {
    *n = 16;
    return kNf4;
  }
  const std::vector<float>& t = log2_tables[bits];
  *n = (int)t.size();
  return t.data();
}

uint8_t codebook_code(float x, float scale, const float* levels, int n) {
  float v = x / scale;
  int best = 0;
  float bd = std::fabs(v - levels[0]);
  for (int k = 1; k < n; k++) {
    float d = std::fabs(v - levels[k]);
    if (d < bd) {
      bd = d;
      best = k;
    }  // ties keep the lower level
  }
  return (uint8_t)best;
}

static inline double err_pow(double e, float norm) {
  e = std::fabs(e);
  return norm == 2.0f ? e * e : std::pow(e, (double)norm);
}

GroupParams uniform_params_mse(const float* x, size_t n, float xmin, float xmax, const QuantSpec& q) {
  const float maxqf = (float)quant_maxq(q.bits);
  GroupParams best = uniform_params(xmin, xmax, q);
  double best_err = INFINITY;
  const int steps = (int)(q.clip_max_shrink * (float)q.clip_grid);
  for (int i = 0; i < steps; i++) {
    float p = 1.0f - (float)i / (float)q.clip_grid;
    GroupParams c = uniform_params(p * xmin, p * xmax, q);
    double err = 0;
    for (size_t j = 0; j < n; j++) err += err_pow((double)uniform_dequant(uniform_code(x[j], c, maxqf), c) - (double)x[j], q.clip_norm);
    if (err < best_err) {
      best_err = err;
      best = c;
    }
  }
  return best;
}

float codebook_scale_mse(const float* x, size_t n, float absmax, const QuantSpec& q) {
  int nl;
  const float* lv = codebook_levels(q.codebook, q.bits, &nl);
  float best = absmax;
  double best_err = INFINITY;
  const int steps = (int)(q.clip_max_shrink * (float)q.clip_grid);
  for (int i = 0; i < steps; i++) {
    float p = 1.0f - (float)i / (float)q.clip_grid;
    float s = p * absmax;
    if (q.scale_f16) s = round_to_f16(s);
    if (!(s > 0.0f)) continue;
    double err = 0;
    for (size_t j = 0; j < n; j++) err += err_pow((double)(s * lv[codebook_code(x[j], s, lv, nl)]) - (double)x[j], q.clip_norm);
    if (err < best_err) {
      best_err = err;
      best = s;
    }
  }
  return best;
}

void quant_row_ref(const float* x, size_t cols, const QuantSpec& q, uint8_t* codes, float* scales, uint8_t* zeros, float* deq, QuantStats* st) {
  const size_t gs = (size_t)q.group_size;
  const float maxqf = (float)quant_maxq(q.bits);
  for (size_t g0 = 0, gi = 0; g0 < cols; g0 += gs, gi++) {
    const size_t n = std::min(gs, cols - g0);
    const float* xg = x + g0;
    float lo = 0.0f, hi = 0.0f;  // the range always contains 0
    for (size_t j = 0; j < n; j++) {
      if (!std::isfinite(xg[j])) {
        st->non_finite++;
        st->first_non_finite = std::min(st->first_non_finite, g0 + j);
        continue;
      }
      lo = std::min(lo, xg[j]);
      hi = std::max(hi, xg[j]);
    }
    if (q.codebook == CODEBOOK_UNIFORM) {
      GroupParams p = q.clip == CLIP_MSE ? uniform_params_mse(xg, n, lo, hi, q) : uniform_params(lo, hi, q);
      scales[gi] = p.scale;
      zeros[gi] = (uint8_t)p.zero;
      for (size_t j = 0; j < n; j++) {
        uint8_t c = uniform_code(xg[j], p, maxqf);
        codes[g0 + j] = c;
        float d = uniform_dequant(c, p);
        if (deq) deq[g0 + j] = d;
        double e = (double)d - (double)xg[j];
        st->sum_sq_err += e * e;
        st->sum_sq_ref += (double)xg[j] * (double)xg[j];
        st->max_abs_err = std::max(st->max_abs_err, std::fabs(e));
      }
    } else {
      int nl;
      const float* lv = codebook_levels(q.codebook, q.bits, &nl);
      float absmax = std::max(-lo, hi);
      float s;
      if (q.clip == CLIP_MSE && absmax > 0.0f) s = codebook_scale_mse(xg, n, absmax, q);
      else {
        s = absmax > 0.0f ? absmax : 1.0f;
        if (q.scale_f16) s = round_to_f16(s);
        if (!(s > 0.0f)) s = 5.9604644775390625e-8f;
      }
      scales[gi] = s;
      zeros[gi] = 0;
      for (size_t j = 0; j < n; j++) {
        uint8_t c = codebook_code(xg[j], s, lv, nl);
        codes[g0 + j] = c;
        float d = s * lv[c];
        if (deq) deq[g0 + j] = d;
        double e = (double)d - (double)xg[j];
        st->sum_sq_err += e * e;
        st->sum_sq_ref += (double)xg[j] * (double)xg[j];
        st->max_abs_err = std::max(st->max_abs_err, std::fabs(e));
      }
    }
  }
}

}  // namespace lowbit
