// Run-time quantizers (kernels/rtquant.h): the one KV-cache encoder, plain decoders and the plain
// references of the fast primitives, and the construction of the rotations.
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "kernels/rtquant.h"

namespace lowbit {

namespace {

// A group's {s, z} in fp16 and its codes, computed with the fp16-rounded s and z (so that decoding
// reproduces exactly what the encoder rounded against).
struct GroupQ {
  float s, z, inv;
  uint16_t hs, hz;
  int lo, hi, off;
};

GroupQ group_params(float mn, float mx, int bits, bool sym) {
  GroupQ g{};
  if (sym) {
    const int qmax = (1 << (bits - 1)) - 1;
    const float amax = std::fmax(std::fabs(mn), std::fabs(mx));
    g.hs = f32_to_f16(amax / (float)qmax, true, nullptr);
    g.s = f16_to_f32(g.hs);
    g.hz = f32_to_f16(-(float)(1 << (bits - 1)) * g.s, true, nullptr);
    g.z = f16_to_f32(g.hz);
    g.lo = -qmax;
    g.hi = qmax;
    g.off = 1 << (bits - 1);
  } else {
    g.hz = f32_to_f16(mn, true, nullptr);
    g.z = f16_to_f32(g.hz);
    g.hs = f32_to_f16((mx - mn) / (float)((1 << bits) - 1), true, nullptr);
    g.s = f16_to_f32(g.hs);
    g.lo = 0;
    g.hi = (1 << bits) - 1;
    g.off = 0;
  }
  g.inv = g.s > 0.0f ? 1.0f / g.s : 0.0f;
  return g;
}

inline int encode(float x, const GroupQ& g, bool sym) {
  if (g.s <= 0.0f || !(g.s < INFINITY)) return sym ? g.off : 0;
  const float r = std::nearbyint(sym ? x / g.s : (x - g.z) / g.s);
  const float c = std::fmin(std::fmax(r, (float)g.lo), (float)g.hi);  // NaN → lo (fmax returns the number)
  return (int)c + g.off;
}

inline void put_code(uint8_t* codes, size_t i, int bits, int c) {
  const size_t bit = i * (size_t)bits;
  codes[bit / 8] = (uint8_t)(codes[bit / 8] | (c << (bit % 8)));
}

}  // namespace

void kv_quantize_rows(const float* x, size_t rows, size_t n, int bits, size_t g, bool sym, uint8_t* codes, uint16_t* sz) {
  LOWBIT_CHECK((bits == 2 || bits == 4 || bits == 8) && g > 0 && n % g == 0 && (n * bits) % 8 == 0, "kv_quantize_rows: bad shape");
  const size_t rb = kv_code_bytes(n, bits), G = n / g;
  for (size_t r = 0; r < rows; r++) {
    const float* xr = x + r * n;
    uint8_t* cr = codes + r * rb;
    std::memset(cr, 0, rb);
    for (size_t j = 0; j < G; j++) {
      float mn = INFINITY, mx = -INFINITY;
      for (size_t i = j * g; i < (j + 1) * g; i++) {
        mn = std::fmin(mn, xr[i]);
        mx = std::fmax(mx, xr[i]);
      }
      const GroupQ q = group_params(mn, mx, bits, sym);
      sz[(r * G + j) * 2] = q.hs;
      sz[(r * G + j) * 2 + 1] = q.hz;
      for (size_t i = j * g; i < (j + 1) * g; i++) put_code(cr, i, bits, encode(xr[i], q, sym));
    }
  }
}

void kv_quantize_channels(const float* x, size_t T, size_t n, size_t ldx, int bits, bool sym, uint8_t* codes, uint16_t* sz) {
  LOWBIT_CHECK((bits == 2 || bits == 4 || bits == 8) && (n * bits) % 8 == 0, "kv_quantize_channels: bad shape");
  const size_t rb = kv_code_bytes(n, bits);
  std::memset(codes, 0, T * rb);
  for (size_t c = 0; c < n; c++) {
    float mn = INFINITY, mx = -INFINITY;
    for (size_t t = 0; t < T; t++) {
      mn = std::fmin(mn, x[t * ldx + c]);
      mx = std::fmax(mx, x[t * ldx + c]);
    }
    const GroupQ q = group_params(mn, mx, bits, sym);
    sz[c * 2] = q.hs;
    sz[c * 2 + 1] = q.hz;
    for (size_t t = 0; t < T; t++) put_code(codes + t * rb, c, bits, encode(x[t * ldx + c], q, sym));
  }
}

void kv_dequantize_row(const uint8_t* codes, const uint16_t* sz, size_t n, int bits, size_t g, bool per_channel, float* out) {
  for (size_t i = 0; i < n; i++) {
    const size_t j = per_channel ? i : i / g;
    out[i] = f16_to_f32(sz[j * 2]) * (float)kv_code(codes, i, bits) + f16_to_f32(sz[j * 2 + 1]);
  }
}

void kv_dot_groups_ref(const float* q, const uint8_t* codes, size_t n, int bits, size_t g, float* out) {
  for (size_t j = 0; j < n / g; j++) {
    double s = 0.0;
    for (size_t i = j * g; i < (j + 1) * g; i++) s += (double)q[i] * kv_code(codes, i, bits);
    out[j] = (float)s;
  }
}

void kv_axpy_codes_ref(const float* w, const uint8_t* codes, size_t n, int bits, float* y) {
  for (size_t i = 0; i < n; i++) y[i] += w[i] * (float)kv_code(codes, i, bits);
}

void kv_axpy_groups_ref(const float* w, const uint8_t* codes, size_t n, int bits, size_t g, float* y) {
  for (size_t i = 0; i < n; i++) y[i] += w[i / g] * (float)kv_code(codes, i, bits);
}

void act_fake_quant_ref(float* x, size_t rows, size_t n, int bits, const float* scale) {
  const float qmax = (float)((1 << (bits - 1)) - 1);
  for (size_t r = 0; r < rows; r++) {
    float* xr = x + r * n;
    float s;
    if (scale) {
      s = *scale;
    } else {
      float amax = 0.0f;
      for (size_t i = 0; i < n; i++) amax = std::fmax(amax, std::fabs(xr[i]));
      s = amax / qmax;
    }
    if (!(s > 0.0f) || !(s < INFINITY)) continue;  // an all-zero row stays; a non-finite one is left for the caller's checks
    for (size_t i = 0; i < n; i++) {
      const float c = std::fmin(std::fmax(std::nearbyint(xr[i] / s), -qmax), qmax);
      xr[i] = std::isnan(xr[i]) ? xr[i] : c * s;
    }
  }
}

// ---- rotations ----

namespace {

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

bool is_prime(size_t q) {
  if (q < 2) return false;
  for (size_t d = 2; d * d <= q; d++)
    if (q % d == 0) return false;
  return true;
}

// Legendre symbol of a mod prime q: 0, 1 or −1.
int chi(long a, long q) {
  a %= q;
  if (a < 0) a += q;
  if (a == 0) return 0;
  for (long x = 1; x < q; x++)
    if ((x * x) % q == a) return 1;
  return -1;
}

// Four ±1 sequences of length 43 whose periodic autocorrelations sum to zero at every nonzero shift,
// found by lowbit's own search (simulated annealing over the 172 signs, a few minutes): the
// circulants A, B, C, D they define satisfy AAᵀ + BBᵀ + CCᵀ + DDᵀ = 172 I, so the Goethals–Seidel
// array below is a Hadamard matrix of order 172 = 4 · 43 (the factor 11008 = 2^6 · 172 needs; no
// Paley construction gives it). The test checks H Hᵀ = 172 I.
const char* const GS43[4] = {"--+-+--+--+++-+-+---+-++-+++-+-+----++-++++", "-+--++--+-+++++----+++------++-+-+-++--+-++",
                             "+++++--+-+-------------+-++---+----++---+-+", "-+++--+--+---++---+-+-++--++---+++++--++--+"};

// Goethals–Seidel: with R the back-diagonal permutation,
//   H = [[A, BR, CR, DR], [−BR, A, DᵀR, −CᵀR], [−CR, −DᵀR, A, BᵀR], [−DR, CᵀR, −BᵀR, A]].
std::vector<int> goethals_seidel_172() {
  const size_t n = 43, m = 4 * n;
  auto x = [&](int k, size_t i) { return GS43[k][i % n] == '+' ? 1 : -1; };
  // circulant c[i][j] = x[(j − i) mod n]; (c R)[i][j] = c[i][n − 1 − j]; (cᵀ R)[i][j] = c[n − 1 − j][i]
  auto cir = [&](int k, size_t i, size_t j) { return x(k, (j + n - i) % n); };
  auto blk = [&](int bi, int bj, size_t i, size_t j) -> int {
    static const int which[4][4] = {{0, 1, 2, 3}, {1, 0, 3, 2}, {2, 3, 0, 1}, {3, 2, 1, 0}};
    static const int sign[4][4] = {{1, 1, 1, 1}, {-1, 1, 1, -1}, {-1, -1, 1, 1}, {-1, 1, -1, 1}};
    static const int trans[4][4] = {{0, 0, 0, 0}, {0, 0, 1, 1}, {0, 1, 0, 1}, {0, 1, 1, 0}};
    const int k = which[bi][bj];
    if (bi == bj) return cir(0, i, j);
    const size_t jr = n - 1 - j;  // · R
    return sign[bi][bj] * (trans[bi][bj] ? cir(k, jr, i) : cir(k, i, jr));
  };
  std::vector<int> H(m * m);
  for (size_t a = 0; a < m; a++)
    for (size_t b = 0; b < m; b++) H[a * m + b] = blk((int)(a / n), (int)(b / n), a % n, b % n);
  return H;
}

// A ±1 Hadamard matrix of order m by Paley's constructions (or Goethals–Seidel for 172), or empty.
std::vector<int> paley(size_t m) {
  std::vector<int> H;
  if (m == 172) H = goethals_seidel_172();
  else if (m >= 4 && is_prime(m - 1) && (m - 1) % 4 == 3) {  // Paley I: H = I + S, S skew with core Q
    const long q = (long)m - 1;
    H.assign(m * m, 0);
    for (size_t i = 0; i < m; i++)
      for (size_t j = 0; j < m; j++) {
        int s;
        if (i == 0 && j == 0) s = 0;
        else if (i == 0) s = 1;
        else if (j == 0) s = -1;
        else s = chi((long)j - (long)i, q);
        H[i * m + j] = s + (i == j ? 1 : 0);
      }
  } else if (m >= 4 && m % 2 == 0 && is_prime(m / 2 - 1) && (m / 2 - 1) % 4 == 1) {  // Paley II
    const long q = (long)m / 2 - 1;
    const size_t c = m / 2;
    H.assign(m * m, 0);
    for (size_t i = 0; i < c; i++)
      for (size_t j = 0; j < c; j++) {
        int s;  // C = [[0, 1ᵀ], [1, Q]], symmetric
        if (i == 0 && j == 0) s = 0;
        else if (i == 0 || j == 0) s = 1;
        else s = chi((long)j - (long)i, q);
        // 0 → [[1, −1], [−1, −1]], ±1 → ±[[1, 1], [1, −1]]
        const int blk[2][2] = {{s == 0 ? 1 : s, s == 0 ? -1 : s}, {s == 0 ? -1 : s, s == 0 ? -1 : -s}};
        for (int a = 0; a < 2; a++)
          for (int b = 0; b < 2; b++) H[(2 * i + a) * m + 2 * j + b] = blk[a][b];
      }
  }
  if (H.empty()) return H;
  for (size_t i = 0; i < m; i++)  // H Hᵀ = m I, or the construction is not used
    for (size_t j = 0; j < m; j++) {
      long d = 0;
      for (size_t k = 0; k < m; k++) d += (long)H[i * m + k] * H[j * m + k];
      if (d != (i == j ? (long)m : 0)) return {};
    }
  return H;
}

}  // namespace

Rotation make_rotation(size_t n, uint64_t seed) {
  LOWBIT_CHECK(n > 0, "make_rotation: n must be positive");
  Rotation r;
  r.n = n;
  while (n % (r.p * 2) == 0) r.p *= 2;
  r.m = n / r.p;
  // Prefer a Hadamard factor: take 4 (or 2) back from the power of two when that makes m constructible.
  if (r.m > 1 && paley(r.m).empty()) {
    for (size_t f : {2, 4, 8}) {
      if (r.p % f == 0 && !paley(r.m * f).empty()) {
        r.p /= f;
        r.m *= f;
        break;
      }
    }
  }
  if (r.m > 1) {
    std::vector<int> H = paley(r.m);
    r.small.resize(r.m * r.m);
    if (!H.empty()) {
      const double inv = 1.0 / std::sqrt((double)r.m);
      for (size_t i = 0; i < r.m * r.m; i++) r.small[i] = (float)(H[i] * inv);
    } else {
      r.hadamard_m = false;
      uint64_t st = seed ^ 0x5851f42d4c957f2dull;
      std::vector<double> A(r.m * r.m);
      for (double& a : A) {  // Box–Muller from the seeded stream
        const double u1 = ((double)(splitmix(st) >> 11) + 0.5) / 9007199254740992.0, u2 = (double)(splitmix(st) >> 11) / 9007199254740992.0;
        a = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
      }
      for (size_t i = 0; i < r.m; i++) {  // modified Gram–Schmidt on the rows, twice for orthogonality to rounding
        for (int pass = 0; pass < 2; pass++)
          for (size_t k = 0; k < i; k++) {
            double d = 0.0;
            for (size_t j = 0; j < r.m; j++) d += A[i * r.m + j] * A[k * r.m + j];
            for (size_t j = 0; j < r.m; j++) A[i * r.m + j] -= d * A[k * r.m + j];
          }
        double nn = 0.0;
        for (size_t j = 0; j < r.m; j++) nn += A[i * r.m + j] * A[i * r.m + j];
        nn = 1.0 / std::sqrt(nn);
        for (size_t j = 0; j < r.m; j++) A[i * r.m + j] *= nn;
      }
      for (size_t i = 0; i < A.size(); i++) r.small[i] = (float)A[i];
    }
  }
  r.signs.assign(r.n, 1.0f);
  if (seed != 0) {
    uint64_t st = seed;
    for (size_t i = 0; i < r.n; i++) r.signs[i] = (splitmix(st) >> 63) ? -1.0f : 1.0f;
  }
  return r;
}

std::vector<double> rotation_matrix(const Rotation& r) {
  const size_t n = r.n, p = r.p;
  std::vector<double> M(n * n);
  const double ip = 1.0 / std::sqrt((double)p);
  for (size_t a = 0; a < n; a++)
    for (size_t b = 0; b < n; b++) {
      const double hm = r.m > 1 ? (double)r.small[(a / p) * r.m + b / p] : 1.0;
      const double hp = (__builtin_popcountll((unsigned long long)((a % p) & (b % p))) & 1) ? -ip : ip;
      M[a * n + b] = hm * hp * r.signs[b];
    }
  return M;
}

void rotate_rows_ref(const Rotation& r, float* x, size_t rows) {
  const std::vector<double> M = rotation_matrix(r);
  std::vector<double> y(r.n);
  for (size_t row = 0; row < rows; row++) {
    float* xr = x + row * r.n;
    for (size_t a = 0; a < r.n; a++) {
      double s = 0.0;
      for (size_t b = 0; b < r.n; b++) s += M[a * r.n + b] * xr[b];
      y[a] = s;
    }
    for (size_t a = 0; a < r.n; a++) xr[a] = (float)y[a];
  }
}

}  // namespace lowbit
