// Training ops (see ops.h): reference loops and the fast, threaded forms.
#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "kernels/gemm.h"
#include "kernels/softmax.h"

namespace lowbit {
namespace train {

namespace {

// Rows [0, n) in parallel (fast) or in one serial pass (reference): the per-row arithmetic is the
// same, so both give the same bits.
template <class Fn>
void rows(size_t n, size_t grain, int mode, Fn fn) {
  if (mode == MODE_REF || n <= 1) {
    fn((size_t)0, n);
    return;
  }
  parallel_for(n, grain, [&](size_t b, size_t e) { fn(b, e); });
}

// dst (cols × rows) = srcᵀ, src (rows × cols).
void transpose(const float* src, size_t r, size_t c, float* dst) {
  constexpr size_t B = 32;
  parallel_for((r + B - 1) / B, 1, [&](size_t b0, size_t b1) {
    for (size_t bi = b0; bi < b1; bi++) {
      const size_t i0 = bi * B, i1 = std::min(r, i0 + B);
      for (size_t j0 = 0; j0 < c; j0 += B) {
        const size_t j1 = std::min(c, j0 + B);
        for (size_t i = i0; i < i1; i++)
          for (size_t j = j0; j < j1; j++) dst[j * r + i] = src[i * c + j];
      }
    }
  });
}

inline float sigmoid(float a) { return 1.0f / (1.0f + expf(-a)); }

}  // namespace

void linear_fwd(const float* x, size_t n, size_t in, const float* w, const float* b, size_t out, float* y, int mode) {
  gemm(x, n, in, w, out, y, false, mode);
  if (b)
    for (size_t t = 0; t < n; t++)
      for (size_t o = 0; o < out; o++) y[t * out + o] += b[o];
}

void linear_bwd(const float* x, const float* dy, size_t n, size_t in, const float* w, size_t out, float* dx, bool accumulate_dx, float* dw, float* db,
                int mode) {
  if (db)
    for (size_t t = 0; t < n; t++)
      for (size_t o = 0; o < out; o++) db[o] += dy[t * out + o];
  if (mode == MODE_REF) {
    if (dx) {
      for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < in; i++) {
          double s = 0;
          for (size_t o = 0; o < out; o++) s += (double)dy[t * out + o] * w[o * in + i];
          dx[t * in + i] = (float)((accumulate_dx ? dx[t * in + i] : 0.0f) + s);
        }
    }
    for (size_t o = 0; o < out; o++)
      for (size_t i = 0; i < in; i++) {
        double s = 0;
        for (size_t t = 0; t < n; t++) s += (double)dy[t * out + o] * x[t * in + i];
        dw[o * in + i] += (float)s;
      }
    return;
  }
  // dx = dy · W = dy · (Wᵀ)ᵀ; dW += dyᵀ · x = dyᵀ · (xᵀ)ᵀ: the forward's GEMM on transposed operands
  std::vector<float> a, b;
  if (dx) {
    a.resize(in * out);
    transpose(w, out, in, a.data());
    gemm(dy, n, out, a.data(), in, dx, accumulate_dx, mode);
  }
  a.resize(out * n);
  b.resize(in * n);
  transpose(dy, n, out, a.data());
  transpose(x, n, in, b.data());
  gemm(a.data(), out, n, b.data(), in, dw, true, mode);
}

void rmsnorm_fwd(const float* x, const float* g, size_t n, size_t d, float eps, float* y, float* rstd, int mode) {
  rows(n, 16, mode, [&](size_t b, size_t e) {
    for (size_t t = b; t < e; t++) {
      const float* xt = x + t * d;
      float ss = 0.0f;  // as the runtime computes it (runtime/llama.cpp rmsnorm)
      for (size_t i = 0; i < d; i++) ss += xt[i] * xt[i];
      ss = ss / (float)d + eps;
      const float r = 1.0f / sqrtf(ss);
      rstd[t] = r;
      for (size_t i = 0; i < d; i++) y[t * d + i] = g[i] * (r * xt[i]);
    }
  });
}

void rmsnorm_bwd(const float* x, const float* g, const float* rstd, const float* dy, size_t n, size_t d, float* dx, bool accumulate_dx, float* dg,
                 int mode) {
  rows(n, 16, mode, [&](size_t b, size_t e) {
    for (size_t t = b; t < e; t++) {
      const float* xt = x + t * d;
      const float* dyt = dy + t * d;
      const double r = rstd[t];
      double s = 0;
      for (size_t i = 0; i < d; i++) s += (double)g[i] * dyt[i] * xt[i];
      const double c = r * r * r * s / (double)d;
      for (size_t i = 0; i < d; i++) {
        const float v = (float)(r * g[i] * dyt[i] - c * xt[i]);
        dx[t * d + i] = accumulate_dx ? dx[t * d + i] + v : v;
      }
    }
  });
  // dg: columns owned by one task each, rows in order
  auto cols = [&](size_t b, size_t e) {
    for (size_t i = b; i < e; i++) {
      double s = 0;
      for (size_t t = 0; t < n; t++) s += (double)dy[t * d + i] * x[t * d + i] * rstd[t];
      dg[i] += (float)s;
    }
  };
  if (mode == MODE_REF) cols(0, d);
  else parallel_for(d, 64, cols);
}

void rope_apply(float* x, size_t n, size_t heads, size_t hd, const int32_t* pos, const float* inv_freq, int style, bool inverse, int mode) {
  const size_t half = hd / 2, w = heads * hd;
  rows(n, 8, mode, [&](size_t b, size_t e) {
    for (size_t t = b; t < e; t++) {
      for (size_t i = 0; i < half; i++) {
        const float val = (float)pos[t] * inv_freq[i];  // as the runtime computes the angle
        const float c = cosf(val), s = inverse ? -sinf(val) : sinf(val);
        const size_t a0 = style == 0 ? 2 * i : i, a1 = style == 0 ? 2 * i + 1 : i + half;
        for (size_t h = 0; h < heads; h++) {
          float* v = x + t * w + h * hd;
          const float v0 = v[a0], v1 = v[a1];
          v[a0] = v0 * c - v1 * s;
          v[a1] = v0 * s + v1 * c;
        }
      }
    }
  });
}

void attention_fwd(const float* q, const float* k, const float* v, size_t T, size_t H, size_t KVH, size_t hd, float* out, float* probs, int mode) {
  const size_t group = H / KVH, qd = H * hd, kvd = KVH * hd;
  const float scale = 1.0f / sqrtf((float)hd);
  rows(H, 1, mode, [&](size_t h0, size_t h1) {
    for (size_t h = h0; h < h1; h++) {
      const size_t kh = h / group;
      for (size_t t = 0; t < T; t++) {
        float* p = probs + (h * T + t) * T;
        const float* qt = q + t * qd + h * hd;
        for (size_t s = 0; s <= t; s++) {
          const float* ks = k + s * kvd + kh * hd;
          float dot = 0.0f;
          for (size_t i = 0; i < hd; i++) dot += qt[i] * ks[i];
          p[s] = dot;
        }
        causal_softmax_row(p, t, T, scale);
        float* o = out + t * qd + h * hd;
        for (size_t i = 0; i < hd; i++) o[i] = 0.0f;
        for (size_t s = 0; s <= t; s++) {
          const float* vs = v + s * kvd + kh * hd;
          for (size_t i = 0; i < hd; i++) o[i] += p[s] * vs[i];
        }
      }
    }
  });
}

void attention_bwd(const float* q, const float* k, const float* v, const float* probs, const float* dout, size_t T, size_t H, size_t KVH, size_t hd,
                   float* dq, float* dk, float* dv, int mode) {
  const size_t group = H / KVH, qd = H * hd, kvd = KVH * hd;
  const float scale = 1.0f / sqrtf((float)hd);
  for (size_t t = 0; t < T; t++) {
    std::memset(dq + t * qd, 0, qd * 4);
    std::memset(dk + t * kvd, 0, kvd * 4);
    std::memset(dv + t * kvd, 0, kvd * 4);
  }
  // one task per kv head: it owns dk, dv of that head and dq of its query heads
  rows(KVH, 1, mode, [&](size_t k0, size_t k1) {
    std::vector<float> ds(T);
    for (size_t kh = k0; kh < k1; kh++) {
      for (size_t h = kh * group; h < (kh + 1) * group; h++) {
        for (size_t t = 0; t < T; t++) {
          const float* p = probs + (h * T + t) * T;
          const float* dot = dout + t * qd + h * hd;
          const float* qt = q + t * qd + h * hd;
          float dsum = 0.0f;
          for (size_t s = 0; s <= t; s++) {
            const float* vs = v + s * kvd + kh * hd;
            float dp = 0.0f;
            for (size_t i = 0; i < hd; i++) dp += dot[i] * vs[i];
            ds[s] = dp;
            dsum += dp * p[s];
            float* dvs = dv + s * kvd + kh * hd;
            for (size_t i = 0; i < hd; i++) dvs[i] += p[s] * dot[i];
          }
          float* dqt = dq + t * qd + h * hd;
          for (size_t s = 0; s <= t; s++) {
            const float g = p[s] * (ds[s] - dsum) * scale;
            const float* ks = k + s * kvd + kh * hd;
            float* dks = dk + s * kvd + kh * hd;
            for (size_t i = 0; i < hd; i++) {
              dqt[i] += g * ks[i];
              dks[i] += g * qt[i];
            }
          }
        }
      }
    }
  });
}

void swiglu_fwd(const float* a, const float* u, size_t n, float* h, int mode) {
  rows(n, 4096, mode, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; i++) h[i] = a[i] * sigmoid(a[i]) * u[i];  // as the runtime: g · σ(g) · up
  });
}

void swiglu_bwd(const float* a, const float* u, const float* dh, size_t n, float* da, float* du, int mode) {
  rows(n, 4096, mode, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; i++) {
      const float s = sigmoid(a[i]);
      du[i] = dh[i] * a[i] * s;
      da[i] = dh[i] * u[i] * s * (1.0f + a[i] * (1.0f - s));
    }
  });
}

namespace {
// log Σ exp(row), in double
double logsumexp(const float* z, size_t V) {
  float mx = -INFINITY;
  for (size_t j = 0; j < V; j++) mx = std::max(mx, z[j]);
  double s = 0;
  for (size_t j = 0; j < V; j++) s += std::exp((double)z[j] - mx);
  return mx + std::log(s);
}
}  // namespace

double cross_entropy(const float* logits, const int32_t* targets, size_t n, size_t V, float* dlogits, float scale, int mode) {
  std::vector<double> loss(n, 0.0);
  rows(n, 4, mode, [&](size_t b, size_t e) {
    for (size_t t = b; t < e; t++) {
      const float* z = logits + t * V;
      float* d = dlogits ? dlogits + t * V : nullptr;
      if (targets[t] < 0) {
        if (d) std::memset(d, 0, V * 4);
        continue;
      }
      const double lse = logsumexp(z, V);
      loss[t] = lse - z[targets[t]];
      if (d) {
        for (size_t j = 0; j < V; j++) d[j] = (float)(scale * std::exp((double)z[j] - lse));
        d[targets[t]] -= scale;
      }
    }
  });
  double s = 0;
  for (double x : loss) s += x;
  return s;
}

double kl_teacher(const float* logits, const float* teacher, size_t n, size_t V, float* dlogits, float scale, int mode) {
  std::vector<double> loss(n, 0.0);
  rows(n, 4, mode, [&](size_t b, size_t e) {
    for (size_t t = b; t < e; t++) {
      const float* z = logits + t * V;
      const float* y = teacher + t * V;
      const double ls = logsumexp(z, V), lt = logsumexp(y, V);
      double l = 0;
      for (size_t j = 0; j < V; j++) {
        const double lpt = y[j] - lt, lps = z[j] - ls, pt = std::exp(lpt);
        l += pt * (lpt - lps);
        if (dlogits) dlogits[t * V + j] = (float)(scale * (std::exp(lps) - pt));
      }
      loss[t] = l;
    }
  });
  double s = 0;
  for (double x : loss) s += x;
  return s;
}

void embedding_bwd(const int32_t* ids, const float* dx, size_t n, size_t d, float* dE) {
  for (size_t t = 0; t < n; t++) {
    float* row = dE + (size_t)ids[t] * d;
    for (size_t i = 0; i < d; i++) row[i] += dx[t * d + i];
  }
}

void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2, float eps, float wd, int64_t t, int mode) {
  const double c1 = 1.0 - std::pow((double)b1, (double)t), c2 = 1.0 - std::pow((double)b2, (double)t);
  rows(n, 16384, mode, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; i++) {
      m[i] = b1 * m[i] + (1.0f - b1) * g[i];
      v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
      const double mh = m[i] / c1, vh = v[i] / c2;
      p[i] = (float)(p[i] * (1.0 - (double)lr * wd) - lr * mh / (std::sqrt(vh) + eps));  // decoupled decay, then the Adam step
    }
  });
}

double sum_squares(const float* x, size_t n, int mode) {
  constexpr size_t C = 65536;
  const size_t chunks = (n + C - 1) / C;
  std::vector<double> part(chunks, 0.0);
  rows(chunks, 1, mode, [&](size_t b, size_t e) {
    for (size_t c = b; c < e; c++) {
      double s = 0;
      for (size_t i = c * C; i < std::min(n, (c + 1) * C); i++) s += (double)x[i] * x[i];
      part[c] = s;
    }
  });
  double s = 0;
  for (double x2 : part) s += x2;
  return s;
}

void scale_inplace(float* x, size_t n, float s) {
  parallel_for(n, 16384, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; i++) x[i] *= s;
  });
}

}  // namespace train
}  // namespace lowbit
