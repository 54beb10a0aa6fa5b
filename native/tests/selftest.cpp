// Native kernel self-test without Node: every fast kernel of every ISA variant compiled in (and
// runnable on this CPU) against its plain reference, on fresh random inputs (seed from argv or
// the clock, printed) and a shape table with odd sizes, 1-row cases and non-multiples of every
// vector width. It exists for targets where the addon cannot be loaded by the test suite — above
// all AArch64, built with a cross compiler and run under qemu-aarch64 (scripts/check-arm64.sh) —
// and runs natively too. Exit status 0 = all passed; failures are printed with their inputs.
//
// Bounds (the same as the addon's tests): GEMM |y − ref| ≤ k · 2⁻²² · Σ_k |x w| + 1e-30; dot_f32
// (decode attention's q·k) (n + 1) · 2⁻²³ · Σ |a b| against a double sum;
// integer-dot GEMM (B + 4) · 2⁻²³ · Σ_b |sx| (|d · dot| + |m · Σxq|) — the integer sums are exact;
// activation quantization and f16/bf16 conversion bit-exact.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/dispatch.h"
#include "core/half.h"
#include "kernels/convert.h"
#include "kernels/gemm.h"
#include "kernels/qdot.h"
#include "kernels/quant.h"

using namespace lowbit;

namespace {

int failures = 0, checks = 0;
std::mt19937_64 rng;

float uni(float a, float b) { return std::uniform_real_distribution<float>(a, b)(rng); }
int irand(int a, int b) { return std::uniform_int_distribution<int>(a, b)(rng); }

void fail(const std::string& what) {
  failures++;
  std::printf("FAIL %s\n", what.c_str());
}

void check_gemm(const char* isa) {
  // Not clang-formatted: a table laid out in rows and columns
  // clang-format off
  struct S { size_t m, k, n; };
  const S shapes[] = {{1, 1, 1}, {1, 7, 5}, {1, 64, 33}, {2, 3, 4}, {5, 17, 9}, {7, 31, 13}, {8, 8, 8}, {9, 256, 17},
                      {13, 300, 40}, {33, 257, 70}, {64, 512, 96}, {100, 129, 257}, {1, 1000, 3},
                      // past the AVX-512 tile's blocks: 12-row tiles, 32-wide panels, KC 128, NC 512
                      {65, 200, 600}, {97, 129, 65}, {3, 1025, 40}, {25, 64, 31}};
  // clang-format on
  for (const S& s : shapes) {
    for (int acc = 0; acc < 2; acc++) {
      std::vector<float> x(s.m * s.k), w(s.n * s.k), y(s.m * s.n), r(s.m * s.n);
      for (auto& v : x) v = uni(-1, 1);
      for (auto& v : w) v = uni(-1, 1);
      for (size_t i = 0; i < y.size(); i++) y[i] = r[i] = acc ? uni(-1, 1) : 0.0f;
      gemm(x.data(), s.m, s.k, w.data(), s.n, y.data(), acc, MODE_FAST);
      gemm_ref(x.data(), s.m, s.k, w.data(), s.n, r.data(), acc);
      checks++;
      for (size_t i = 0; i < s.m; i++)
        for (size_t j = 0; j < s.n; j++) {
          double mag = acc ? std::fabs(r[i * s.n + j]) : 0.0;
          for (size_t t = 0; t < s.k; t++) mag += std::fabs((double)x[i * s.k + t] * w[j * s.k + t]);
          const double bound = (double)(s.k + 1) * std::ldexp(1.0, -22) * mag + 1e-30;
          if (std::fabs((double)y[i * s.n + j] - r[i * s.n + j]) > bound) {
            char b[200];
            std::snprintf(b, sizeof b, "[%s] gemm %zux%zux%zu acc=%d y[%zu,%zu] %.9g vs ref %.9g (bound %.3g)", isa, s.m, s.k, s.n, acc, i, j,
                          y[i * s.n + j], r[i * s.n + j], bound);
            fail(b);
            i = s.m;
            break;
          }
        }
    }
  }
}

// gemm_bf16 (the AVX-512 BF16 kernel where the CPU has it, else rounding + the f32 kernels) against
// its reference: the bf16-rounded inputs' products summed in double.
void check_gemm_bf16(const char* isa) {
  struct S {
    size_t m, k, n;
  };
  const S shapes[] = {{1, 1, 1}, {1, 7, 5}, {2, 64, 33}, {11, 31, 31}, {12, 32, 32}, {13, 300, 40}, {25, 129, 65}, {64, 512, 97}, {3, 1025, 17}};
  for (const S& s : shapes) {
    std::vector<float> x(s.m * s.k), w(s.n * s.k), y(s.m * s.n), r(s.m * s.n), xr(s.m * s.k), wr(s.n * s.k);
    for (auto& v : x) v = uni(-1, 1);
    for (auto& v : w) v = uni(-1, 1);
    gemm_bf16(x.data(), s.m, s.k, w.data(), s.n, y.data(), MODE_FAST);
    gemm_bf16(x.data(), s.m, s.k, w.data(), s.n, r.data(), MODE_REF);
    std::vector<uint16_t> b(std::max(x.size(), w.size()));
    ConvertResult cr;
    convert_ref(x.data(), DTYPE_F32, b.data(), DTYPE_BF16, x.size(), false, &cr);
    convert_ref(b.data(), DTYPE_BF16, xr.data(), DTYPE_F32, x.size(), false, &cr);
    convert_ref(w.data(), DTYPE_F32, b.data(), DTYPE_BF16, w.size(), false, &cr);
    convert_ref(b.data(), DTYPE_BF16, wr.data(), DTYPE_F32, w.size(), false, &cr);
    checks++;
    for (size_t i = 0; i < s.m; i++)
      for (size_t j = 0; j < s.n; j++) {
        double mag = 0.0;
        for (size_t t = 0; t < s.k; t++) mag += std::fabs((double)xr[i * s.k + t] * wr[j * s.k + t]);
        const double bound = (double)(s.k + 1) * std::ldexp(1.0, -22) * mag + 1e-30;
        if (std::fabs((double)y[i * s.n + j] - r[i * s.n + j]) > bound) {
          char msg[200];
          std::snprintf(msg, sizeof msg, "[%s] gemm_bf16 %zux%zux%zu y[%zu,%zu] %.9g vs ref %.9g (bound %.3g)", isa, s.m, s.k, s.n, i, j,
                        y[i * s.n + j], r[i * s.n + j], bound);
          fail(msg);
          i = s.m;
          break;
        }
      }
  }
}

void check_dot(const char* isa) {
  for (size_t n : {1, 3, 7, 8, 9, 31, 32, 33, 64, 100, 257, 1000}) {
    std::vector<float> a(n), b(n);
    double ref = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
      a[i] = uni(-1, 1);
      b[i] = uni(-1, 1);
      ref += (double)a[i] * b[i];
      mag += std::fabs((double)a[i] * b[i]);
    }
    const float got = dot_f32(a.data(), b.data(), n);
    checks++;
    if (std::fabs(got - ref) > (double)(n + 1) * std::ldexp(1.0, -23) * mag + 1e-30) {
      char m[120];
      std::snprintf(m, sizeof m, "[%s] dot_f32 n %zu: %.9g vs %.9g", isa, n, got, ref);
      fail(m);
    }
  }
}

void check_quantize_acts(const char* isa) {
  for (int kb : {16, 32, 64, 128, 256}) {
    for (size_t rows : {1, 3, 6}) {
      const size_t in = (size_t)kb * (size_t)irand(1, 3);
      std::vector<float> x(rows * in);
      for (auto& v : x) v = irand(0, 20) == 0 ? 0.0f : uni(-3, 3);
      if (rows > 1) std::fill(x.begin() + in, x.begin() + in + kb, 0.0f);  // an all-zero block
      std::vector<int32_t> perm(in);
      for (size_t k = 0; k < in; k++) perm[k] = (int32_t)k;
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int use_perm = 0; use_perm < 2; use_perm++) {
        const size_t B = in / kb;
        std::vector<int8_t> q1(rows * in), q2(rows * in);
        std::vector<float> s1(rows * B), s2(rows * B);
        std::vector<int32_t> u1(rows * B), u2(rows * B);
        const QActs a{q1.data(), s1.data(), u1.data(), nullptr}, b{q2.data(), s2.data(), u2.data(), nullptr};
        const int32_t* p = use_perm ? perm.data() : nullptr;
        quantize_acts(x.data(), rows, in, kb, p, a, MODE_FAST);
        quantize_acts_ref(x.data(), rows, in, kb, p, b);
        checks++;
        if (q1 != q2 || std::memcmp(s1.data(), s2.data(), s1.size() * 4) || u1 != u2) {
          char m[160];
          std::snprintf(m, sizeof m, "[%s] quantize_acts rows %zu in %zu kb %d perm %d: not bit-exact", isa, rows, in, kb, use_perm);
          fail(m);
        }
      }
    }
  }
}

void check_qdot(const char* isa) {
  // Not clang-formatted: a table laid out in rows and columns
  // clang-format off
  struct S { int bits, kb; size_t out, in, rows; bool asym, two; };
  const S shapes[] = {{4, 32, 1, 32, 1, false, false},   {4, 32, 13, 64, 1, true, false},   {4, 64, 8, 128, 5, false, false},
                      {4, 128, 37, 256, 7, true, false},  {4, 256, 24, 512, 4, false, false}, {8, 32, 1, 32, 1, false, false},
                      {8, 32, 19, 96, 3, false, false},   {8, 64, 40, 192, 9, true, false},   {8, 128, 7, 128, 2, false, false},
                      {8, 256, 16, 256, 6, true, false},  {4, 32, 100, 160, 13, false, false},
                      // two-level scales (GGUF Q4_K: 4-bit kb 32 asym; Q6_K: 8-bit kb 16)
                      {4, 32, 21, 256, 5, true, true},    {4, 32, 13, 512, 4, true, true},    {8, 16, 11, 256, 3, false, true},   {8, 16, 1, 512, 1, false, true},
                      // 2- and 3-bit codes (units of 16 channels)
                      {2, 32, 13, 64, 1, false, false},   {2, 128, 37, 256, 5, true, false},  {2, 256, 8, 512, 4, false, false},
                      {3, 32, 13, 64, 1, false, false},   {3, 128, 37, 256, 5, true, false},  {3, 64, 8, 512, 4, false, false}};
  // clang-format on
  for (const S& s : shapes) {
    QBlockMatrix w;
    w.bits = s.bits;
    w.kb = s.kb;
    w.out = s.out;
    w.in = s.in;
    std::vector<uint8_t> q(w.q_bytes());
    for (auto& v : q) v = (uint8_t)irand(0, 255);
    std::vector<uint16_t> d(w.d_count());
    for (auto& v : d) v = f32_to_f16(uni(0.001f, 0.05f), true, nullptr);
    std::vector<float> m(w.d_count());
    for (auto& v : m) v = uni(-0.2f, 0.2f);
    // two-level scales (the k-quants): fp16 per super-block × int8 per block (Q4_K: 8 blocks of 32,
    // scales and mins 0…63; Q6_K: 16 blocks of 16, signed scales)
    w.sbk = s.two ? (s.kb == 16 ? 16 : 8) : 1;
    std::vector<uint16_t> dh(w.super_count()), mh(w.super_count());
    std::vector<int8_t> ds(w.d_count()), ms(w.d_count());
    for (auto& v : dh) v = f32_to_f16(uni(0.0005f, 0.004f), true, nullptr);
    for (auto& v : mh) v = f32_to_f16(uni(0.0005f, 0.004f), true, nullptr);
    for (auto& v : ds) v = (int8_t)(s.kb == 16 ? irand(-128, 127) : irand(0, 63));
    for (auto& v : ms) v = (int8_t)irand(0, 63);
    w.q = q.data();
    w.d = s.two ? dh.data() : d.data();
    w.ds = s.two ? ds.data() : nullptr;
    w.m = s.asym && !s.two ? m.data() : nullptr;
    w.mh = s.asym && s.two ? mh.data() : nullptr;
    w.ms = s.asym && s.two ? ms.data() : nullptr;
    w.zero_fixed = s.bits == 4 ? 8.0f : s.bits == 3 ? 4.0f : s.bits == 2 ? 2.0f : 0.0f;
    std::vector<float> x(s.rows * s.in), y(s.rows * s.out), r(s.rows * s.out);
    for (auto& v : x) v = uni(-2, 2);
    qdot_linear(w, x.data(), s.rows, y.data(), s.out, MODE_FAST);
    // the reference on the same (bit-exact) quantized activations, plus the magnitude for the bound
    const size_t B = w.blocks();
    std::vector<int8_t> xq(s.rows * s.in);
    std::vector<float> sx(s.rows * B);
    std::vector<int32_t> sum(s.rows * B);
    const QActs a{xq.data(), sx.data(), sum.data(), nullptr};
    quantize_acts_ref(x.data(), s.rows, s.in, s.kb, nullptr, a);
    qdot_gemm_ref(w, a, s.rows, r.data(), s.out);
    checks++;
    for (size_t t = 0; t < s.rows; t++)
      for (size_t n = 0; n < s.out; n++) {
        double mag = 0;
        for (size_t b = 0; b < B; b++) {
          long dot = 0;
          for (size_t k = b * s.kb; k < (b + 1) * s.kb; k++) dot += (long)qblock_code(w, n, k) * xq[t * s.in + k];
          const double dd = qblock_scale(w, qblock_sidx(w, n, b));
          const double mm = qblock_offset(w, qblock_sidx(w, n, b));
          mag += std::fabs(sx[t * B + b]) * (std::fabs(dd * (double)dot) + std::fabs(mm * (double)sum[t * B + b]));
        }
        const double bound = (double)(B + 4) * std::ldexp(1.0, -23) * mag + 1e-30;
        if (std::fabs((double)y[t * s.out + n] - r[t * s.out + n]) > bound) {
          char b[200];
          std::snprintf(b, sizeof b, "[%s] qdot %d-bit kb %d %zux%zu rows %zu%s%s: y[%zu,%zu] %.9g vs ref %.9g (bound %.3g)", isa, s.bits, s.kb,
                        s.out, s.in, s.rows, s.asym ? " asym" : "", s.two ? " two-level scales" : "", t, n, y[t * s.out + n], r[t * s.out + n],
                        bound);
          fail(b);
          t = s.rows;
          break;
        }
      }
  }
}

void check_convert(const char* isa) {
  const size_t n = 1037;  // not a multiple of any vector width
  std::vector<uint32_t> f(n);
  for (auto& v : f) v = (uint32_t)rng();
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65519.0f, 65520.0f, 1e-8f, 6e-5f, -3e38f};
  for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) std::memcpy(&f[i], &specials[i], 4);
  std::vector<uint16_t> h(n);
  for (auto& v : h) v = (uint16_t)rng();
  for (int ddt : {DTYPE_F16, DTYPE_BF16}) {
    for (int sat = 0; sat < 2; sat++) {
      std::vector<uint16_t> a(n), b(n);
      ConvertResult ra, rb;
      convert(f.data(), DTYPE_F32, a.data(), ddt, n, sat, MODE_FAST, &ra, nullptr);
      convert_ref(f.data(), DTYPE_F32, b.data(), ddt, n, sat, &rb);
      checks++;
      if (a != b || ra.overflow != rb.overflow || ra.first_overflow != rb.first_overflow)
        fail(std::string("[") + isa + "] convert f32 -> " + (ddt == DTYPE_F16 ? "f16" : "bf16"));
    }
    std::vector<uint32_t> a(n), b(n);
    convert(h.data(), ddt, a.data(), DTYPE_F32, n, false, MODE_FAST, nullptr, nullptr);
    convert_ref(h.data(), ddt, b.data(), DTYPE_F32, n, false, nullptr);
    checks++;
    // NaN payloads: compare as bits (both paths keep them)
    if (a != b) fail(std::string("[") + isa + "] convert " + (ddt == DTYPE_F16 ? "f16" : "bf16") + " -> f32");
  }
  // first_nonfinite: finite data with one NaN/Inf planted at each position class (first, inside a
  // vector, at a block boundary, in the tail), at byte offsets 0 and 1 (unaligned loads)
  for (int dt : {DTYPE_F32, DTYPE_F16, DTYPE_BF16}) {
    const size_t es = dtype_size(dt);
    for (size_t at : {(size_t)0, (size_t)5, (size_t)63, (size_t)64, (size_t)700, n - 1, SIZE_MAX}) {
      for (size_t off : {(size_t)0, (size_t)1}) {
        std::vector<uint8_t> buf(n * es + 1);
        uint8_t* p = buf.data() + off;
        for (size_t i = 0; i < n; i++) {
          // random finite values: clear the top exponent bit
          uint32_t u = (uint32_t)rng() & (dt == DTYPE_F32 ? 0xbfffffffu : dt == DTYPE_F16 ? 0xbfffu : 0xbfffu);
          std::memcpy(p + i * es, &u, es);
        }
        if (at != SIZE_MAX) {
          const uint32_t bad = dt == DTYPE_F32 ? 0xff800000u : dt == DTYPE_F16 ? 0x7e01u : 0xff81u;  // -inf, NaNs
          std::memcpy(p + at * es, &bad, es);
        }
        checks++;
        const size_t got = first_nonfinite(p, dt, n, MODE_FAST), want = first_nonfinite_ref(p, dt, n);
        if (got != want || want != at) fail(std::string("[") + isa + "] first_nonfinite dtype " + std::to_string(dt) + " at " + std::to_string(at));
      }
    }
  }
}

// Uniform and NF4 quantization of whole tensors (MinMax clipping): codes, scales, zeros and
// dequantized values bit-exact with the reference, the error statistics within 1e-5 relative.
void check_quant(const char* isa) {
  // Not clang-formatted: a table laid out in rows and columns
  // clang-format off
  struct S { size_t rows, cols; int bits, group; bool sym; int codebook; };
  const S specs[] = {{3, 128, 4, 32, true, CODEBOOK_UNIFORM}, {5, 200, 4, 40, false, CODEBOOK_UNIFORM}, {2, 257, 3, 257, false, CODEBOOK_UNIFORM},
                     {4, 96, 8, 32, true, CODEBOOK_UNIFORM},  {1, 33, 2, 11, false, CODEBOOK_UNIFORM},  {7, 64, 5, 16, true, CODEBOOK_UNIFORM},
                     {3, 130, 4, 65, true, CODEBOOK_NF4},     {1, 1, 4, 1, false, CODEBOOK_UNIFORM}};
  // clang-format on
  for (const S& s : specs) {
    QuantSpec q;
    q.bits = s.bits;
    q.group_size = s.group;
    q.sym = s.sym;
    q.codebook = s.codebook;
    const size_t G = (s.cols + s.group - 1) / s.group, n = s.rows * s.cols;
    std::vector<float> x(n);
    for (auto& v : x) v = irand(0, 30) == 0 ? 0.0f : uni(-2, 2) * (irand(0, 9) == 0 ? 8.0f : 1.0f);
    std::vector<uint8_t> c1(n), c2(n), z1(s.rows * G), z2(s.rows * G);
    std::vector<float> s1(s.rows * G), s2(s.rows * G), d1(n), d2(n);
    QuantStats t1, t2;
    quantize_tensor(x.data(), DTYPE_F32, s.rows, s.cols, q, c1.data(), s1.data(), z1.data(), d1.data(), MODE_FAST, &t1, nullptr);
    quantize_tensor(x.data(), DTYPE_F32, s.rows, s.cols, q, c2.data(), s2.data(), z2.data(), d2.data(), MODE_REF, &t2, nullptr);
    checks++;
    const bool same = c1 == c2 && z1 == z2 && !std::memcmp(s1.data(), s2.data(), s1.size() * 4) &&
                      !std::memcmp(d1.data(), d2.data(), d1.size() * 4) && std::fabs(t1.sum_sq_err - t2.sum_sq_err) <= 1e-5 * t2.sum_sq_err + 1e-30 &&
                      t1.max_abs_err == t2.max_abs_err;
    if (!same) {
      char m[160];
      std::snprintf(m, sizeof m, "[%s] quantize %zux%zu %d-bit group %d %s%s: differs from the reference", isa, s.rows, s.cols, s.bits, s.group,
                    s.sym ? "sym" : "asym", s.codebook == CODEBOOK_NF4 ? " nf4" : "");
      fail(m);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned long long seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10)
                                           : (unsigned long long)std::chrono::steady_clock::now().time_since_epoch().count();
  rng.seed(seed);
  const CpuFeatures& f = cpu_features();
  std::printf("lowbit selftest: seed %llu, cpu \"%s\", features:", seed, f.model.c_str());
  for (auto& [name, on] : f.list())
    if (on) std::printf(" %s", name.c_str());
  std::printf("\n");
  const Isa best = active_isa();
  // every variant this CPU can run (AVX-512 is opt-in by default, so not always `best`)
  for (Isa isa : {ISA_GENERIC, ISA_AVX2, ISA_AVX512, ISA_NEON}) {
    if (!set_isa(isa)) continue;
    const char* name = isa_name(isa);
    const char* variant = isa == ISA_NEON                   ? (f.dotprod ? "neon+dotprod" : "neon")
                        : isa == ISA_AVX512 && f.avx512vnni ? (f.avx512bf16 ? "avx512+vnni+bf16" : "avx512+vnni")
                                                            : name;
    const int before = failures, c0 = checks;
    check_gemm(variant);
    check_gemm_bf16(variant);
    check_dot(variant);
    check_quantize_acts(variant);
    check_qdot(variant);
    check_convert(variant);
    check_quant(variant);
    std::printf("%-14s %d checks, %d failed\n", variant, checks - c0, failures - before);
  }
  set_isa(best);
  std::printf("%s\n", failures ? "SELFTEST FAILED" : "selftest passed");
  return failures ? 1 : 0;
}
