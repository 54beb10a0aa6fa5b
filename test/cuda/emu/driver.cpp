// lowbit's CUDA kernels, run by the host emulation (shim/emu.h), against the CPU core through
// their host entries (kernels/cuda/cuda_api.h, quant/cuda/gptq_cuda.h): packed-int GEMV/MMA
// (4/8-bit, f32/f16 activations, act-order, odd shapes), the fp16 GEMM, the Hessian, the inverse
// factor (vs the CPU reference, and failure on an indefinite matrix), and GPTQ layers (vs
// gptq_quantize: codes, params, g_idx, error, loss, damping). Bounds as in test/cuda/*.test.ts.
// Prints one line per case; exit 1 on any failure.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include "core/half.h"
#include "core/error.h"
#include "kernels/cuda/cuda_api.h"
#include "quant/cuda/gptq_cuda.h"
#include "quant/gptq.h"
#include "quant/linalg.h"
#include "quant/hessian.h"
#include "core/dispatch.h"

using namespace lowbit;
static std::mt19937 rng(12345);
static float urand() { return std::uniform_real_distribution<float>(0, 1)(rng); }
static float nrand() { return std::normal_distribution<float>(0, 1)(rng); }
static int irand(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
static int failures = 0;

static void test_qgemm(int m, int out, int in, int gs, bool act, int bits, int xdt, int kernel) {
  const int groups = in / gs, maxq = (1 << bits) - 1, per = 32 / bits;
  std::vector<uint8_t> codes((size_t)out * in);
  for (auto& c : codes) c = (uint8_t)irand(0, maxq);
  std::vector<int32_t> gidx(in);
  for (int k = 0; k < in; k++) gidx[k] = k / gs;
  if (act) for (int k = in - 1; k > 0; k--) std::swap(gidx[k], gidx[irand(0, k)]);
  std::vector<float> scales((size_t)groups * out);
  for (auto& s : scales) s = round_to_f16(0.001f + 0.02f * urand());
  std::vector<uint8_t> zeros((size_t)groups * out);
  for (auto& z : zeros) z = (uint8_t)irand(0, maxq);
  std::vector<int32_t> qw((size_t)in / per * out, 0);
  for (int n = 0; n < out; n++)
    for (int k = 0; k < in; k++) qw[(size_t)(k / per) * out + n] |= (int32_t)((uint32_t)codes[(size_t)n * in + k] << (bits * (k % per)));
  std::vector<float> x((size_t)m * in);
  for (auto& v : x) v = nrand();
  std::vector<uint16_t> xh(x.size());
  for (size_t i = 0; i < x.size(); i++) xh[i] = f32_to_f16(x[i], true, nullptr);
  std::vector<float> y((size_t)m * out, NAN);
  QgemmHostArgs a;
  a.x = xdt ? (const void*)xh.data() : (const void*)x.data();
  a.x_dtype = xdt; a.m = m; a.in = in; a.out = out; a.bits = bits; a.groups = groups;
  a.qweight = qw.data(); a.scales = scales.data(); a.zeros = zeros.data(); a.g_idx = gidx.data(); a.y = y.data();
  CudaRunStats st = qgemm_gptq_cuda(a, kernel, 0, 1);
  double worst = 0;
  for (int t = 0; t < m; t++)
    for (int n = 0; n < out; n++) {
      double ref = 0, mag = 0;
      for (int k = 0; k < in; k++) {
        const int g = gidx[k];
        const float w = scales[(size_t)g * out + n] * ((float)codes[(size_t)n * in + k] - (float)zeros[(size_t)g * out + n]);
        const double xv = xdt ? f16_to_f32(xh[(size_t)t * in + k]) : x[(size_t)t * in + k];
        ref += xv * w;
        mag += std::fabs(xv * w);
      }
      const double err = std::fabs(y[(size_t)t * out + n] - ref) / (mag + 1e-30);
      if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : std::max(worst, err);
    }
  const bool mma = st.kernel == QGEMM_MMA;
  const double bound = mma ? std::ldexp(1.0, -9) : std::ldexp(1.0, -18);
  const bool ok = worst <= bound;
  if (!ok) failures++;
  std::printf("%s qgemm m%d out%d in%d gs%d%s b%d x%s %s splits %d gsz %d: max err/Σ|xw| = %.3g (bound %.3g)\n", ok ? "ok  " : "FAIL", m, out, in,
              gs, act ? " act" : "", bits, xdt ? "f16" : "f32", mma ? "mma " : "gemv", st.splits, st.group_size, worst, bound);
}

static void test_f16(int m, int out, int in) {
  std::vector<float> x((size_t)m * in), w((size_t)out * in), y((size_t)m * out);
  for (auto& v : x) v = nrand();
  for (auto& v : w) v = 0.05f * nrand();
  CudaRunStats st = gemm_f16_cuda(x.data(), w.data(), m, in, out, y.data(), 0, 1);
  double worst = 0;
  for (int t = 0; t < m; t++)
    for (int n = 0; n < out; n++) {
      double ref = 0, mag = 0;
      for (int k = 0; k < in; k++) {
        const double a = round_to_f16(x[(size_t)t * in + k]), b = round_to_f16(w[(size_t)n * in + k]);
        ref += a * b; mag += std::fabs(a * b);
      }
      worst = std::max(worst, std::fabs(y[(size_t)t * out + n] - ref) / (mag + 1e-30));
    }
  const bool ok = worst <= 1e-5;
  if (!ok) failures++;
  std::printf("%s gemm f16 m%d out%d in%d splits %d: rel err %.3g\n", ok ? "ok  " : "FAIL", m, out, in, st.splits, worst);
}

static void test_hessian(int n, int cols) {
  std::vector<float> x((size_t)n * cols), H((size_t)cols * cols), ref((size_t)cols * cols);
  for (auto& v : x) v = nrand();
  for (size_t i = 0; i < H.size(); i++) H[i] = ref[i] = 0;
  for (int i = 0; i < cols; i++) for (int j = 0; j <= i; j++) { H[i * cols + j] = H[j * cols + i] = ref[i * cols + j] = ref[j * cols + i] = urand(); }
  hessian_accumulate_cuda(x.data(), n, cols, H.data(), 0.5f, 0.25f);
  double worst = 0;
  for (int i = 0; i < cols; i++) for (int j = 0; j < cols; j++) {
    double s = 0, mag = 0;
    for (int t = 0; t < n; t++) { s += (double)x[t * cols + i] * x[t * cols + j]; mag += std::fabs((double)x[t * cols + i] * x[t * cols + j]); }
    const double r = 0.25 * ref[i * cols + j] + 0.5 * s;
    worst = std::max(worst, std::fabs(H[i * cols + j] - r) / (0.5 * mag + 0.25 * std::fabs(ref[i * cols + j]) + 1e-30));
    if (H[i * cols + j] != H[j * cols + i]) worst = INFINITY;
  }
  const bool ok = worst <= 4.0 * n * std::ldexp(1.0, -24) + 1e-6;
  if (!ok) failures++;
  std::printf("%s hessian n%d cols%d: rel err %.3g\n", ok ? "ok  " : "FAIL", n, cols, worst);
}

static std::vector<float> make_h(int n, int cols) {
  std::vector<float> x((size_t)n * cols), H((size_t)cols * cols, 0.f);
  for (int t = 0; t < n; t++) { float common = nrand(); for (int c = 0; c < cols; c++) x[t * cols + c] = nrand() + 0.5f * common * (c % 3 == 0) + (urand() < 0.01f ? 10.f : 0.f); }
  hessian_accumulate_ref(x.data(), n, cols, H.data(), nullptr, nullptr);
  for (auto& v : H) v *= 2.0f / n;
  return H;
}

static void test_inverse(int n) {
  std::vector<float> H = make_h(n + 20, n);
  for (int i = 0; i < n; i++) H[i * n + i] += 0.01f;
  std::vector<float> U((size_t)n * n), Uc((size_t)n * n);
  const bool ok1 = gptq_inverse_factor_cuda(H.data(), n, U.data(), nullptr);
  const bool ok2 = gptq_inverse_factor(H.data(), n, Uc.data(), MODE_REF, nullptr);
  double worst = 0, ref = 0;
  for (size_t i = 0; i < U.size(); i++) { worst = std::max(worst, (double)std::fabs(U[i] - Uc[i])); ref = std::max(ref, (double)std::fabs(Uc[i])); }
  bool lowerzero = true;
  for (int i = 0; i < n; i++) for (int j = 0; j < i; j++) if (U[i * n + j] != 0.f) lowerzero = false;
  const bool ok = ok1 && ok2 && lowerzero && worst <= 1e-3 * ref;
  if (!ok) failures++;
  std::printf("%s inverse factor n%d: max |U − U_ref| = %.3g of max |U| %.3g%s\n", ok ? "ok  " : "FAIL", n, worst, ref, lowerzero ? "" : " (lower not zero)");
  // singular: must report failure
  std::vector<float> S((size_t)n * n, 0.f);
  for (int i = 0; i < n; i++) S[i * n + i] = i == n / 2 ? -1.f : 1.f;
  const bool bad = gptq_inverse_factor_cuda(S.data(), n, U.data(), nullptr);
  if (bad) failures++;
  std::printf("%s inverse factor n%d indefinite → false\n", bad ? "FAIL" : "ok  ", n);
}

static double layer_err(const std::vector<float>& W, const std::vector<float>& Q, const std::vector<float>& H, int rows, int cols) {
  double e = 0;
  std::vector<double> d(cols);
  for (int r = 0; r < rows; r++) {
    for (int c = 0; c < cols; c++) d[c] = (double)W[r * cols + c] - Q[r * cols + c];
    for (int i = 0; i < cols; i++) { double s = 0; for (int j = 0; j < cols; j++) s += H[i * cols + j] * d[j]; e += d[i] * s; }
  }
  return e;
}

static void test_gptq(int rows, int cols, int bits, int gs, bool act, bool stat, bool sym, int block, bool dead = false, bool signed_max = false) {
  std::vector<float> H = make_h(cols * 3 + 7, cols);
  if (dead) for (int i = 0; i < cols; i++) { H[5 * cols + i] = 0; H[i * cols + 5] = 0; }
  std::vector<float> W((size_t)rows * cols);
  for (int r = 0; r < rows; r++) { float rs = 0.02f * (0.5f + urand()); for (int c = 0; c < cols; c++) W[r * cols + c] = nrand() * rs * (urand() < 0.005f ? 20.f : 1.f); }
  GptqSpec spec;
  spec.q.bits = bits; spec.q.group_size = gs; spec.q.sym = sym; spec.q.signed_max = signed_max; spec.act_order = act; spec.static_groups = stat; spec.block_size = block;
  const int g = std::min(gs, cols), G = g < cols ? (cols + g - 1) / g : 1;
  auto run = [&](bool cuda, std::vector<uint8_t>& codes, std::vector<float>& sc, std::vector<uint8_t>& ze, std::vector<int32_t>& gi, std::vector<float>& dq, GptqOutput& o) {
    codes.resize((size_t)rows * cols); sc.resize((size_t)rows * G); ze.resize((size_t)rows * G); gi.resize(cols); dq.resize((size_t)rows * cols);
    o.codes = codes.data(); o.scales = sc.data(); o.zeros = ze.data(); o.g_idx = gi.data(); o.dequant = dq.data();
    if (cuda) gptq_quantize_cuda(W.data(), H.data(), rows, cols, spec, o, nullptr, nullptr);
    else gptq_quantize(W.data(), H.data(), rows, cols, spec, o, MODE_FAST, nullptr);
  };
  std::vector<uint8_t> c1, c2, z1, z2; std::vector<float> s1, s2, d1, d2; std::vector<int32_t> g1, g2;
  GptqOutput o1, o2;
  run(false, c1, s1, z1, g1, d1, o1);
  run(true, c2, s2, z2, g2, d2, o2);
  size_t same = 0; for (size_t i = 0; i < c1.size(); i++) same += c1[i] == c2[i];
  bool gsame = g1 == g2;
  size_t psame = 0; for (size_t i = 0; i < s1.size(); i++) psame += s1[i] == s2[i] && z1[i] == z2[i];
  bool deq_ok = true;
  for (int r = 0; r < rows; r++) for (int k = 0; k < cols; k++) {
    const int gg = g2[k];
    if (d2[r * cols + k] != s2[r * G + gg] * ((float)c2[r * cols + k] - (float)z2[r * G + gg])) deq_ok = false;
  }
  const double e1 = layer_err(W, d1, H, rows, cols), e2 = layer_err(W, d2, H, rows, cols);
  const double frac = (double)same / c1.size();
  const bool ok = gsame && deq_ok && frac >= 0.99 && std::fabs(e2 - e1) <= 0.01 * e1 && std::fabs(o2.loss - o1.loss) <= 0.01 * o1.loss && o1.damp_used == o2.damp_used;
  if (!ok) failures++;
  std::printf("%s gptq %dx%d b%d g%d%s%s%s%s B%d%s: codes same %.4f, params same %.4f, g_idx %s, err cpu %.5g cuda %.5g, loss %.5g / %.5g, damp %g/%g\n",
              ok ? "ok  " : "FAIL", rows, cols, bits, gs, act ? " act" : "", stat ? " static" : "", sym ? " sym" : " asym", signed_max ? " signed-max" : "", block, dead ? " dead" : "", frac,
              (double)psame / s1.size(), gsame ? "same" : "DIFF", e1, e2, o1.loss, o2.loss, o1.damp_used, o2.damp_used);
}

int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "";
  try {
    if (only.empty() || only == "qgemm") {
      // m, out, in, gs, act, bits, xdtype, kernel
      test_qgemm(1, 8, 32, 32, false, 4, 0, 0);
      test_qgemm(1, 13, 64, 32, false, 4, 0, 0);
      test_qgemm(1, 100, 256, 128, false, 4, 0, 0);
      test_qgemm(3, 33, 96, 32, false, 4, 0, 0);
      test_qgemm(2, 24, 64, 32, true, 4, 0, 0);
      test_qgemm(5, 17, 256, 256, false, 4, 1, 0);
      test_qgemm(17, 40, 512, 128, false, 4, 0, 0);
      test_qgemm(1, 40, 512, 128, false, 4, 0, 2);
      test_qgemm(9, 40, 512, 128, true, 4, 0, 1);
      test_qgemm(1, 130, 1024, 128, false, 4, 1, 0);
      test_qgemm(4, 130, 1024, 128, true, 4, 1, 0);
      test_qgemm(1, 8, 32, 32, false, 8, 0, 0);
      test_qgemm(3, 33, 36, 12, false, 8, 0, 0);
      test_qgemm(2, 40, 100, 20, true, 8, 1, 0);
      test_qgemm(1, 40, 100, 20, true, 8, 0, 0);
      test_qgemm(6, 64, 256, 64, false, 8, 0, 0);
      test_qgemm(1, 64, 256, 64, false, 8, 1, 0);
      test_qgemm(3, 40, 72, 24, false, 4, 0, 0);
      test_f16(1, 8, 32); test_f16(3, 33, 96); test_f16(17, 130, 520);
    }
    if (only.empty() || only == "linalg") {
      test_hessian(1, 1); test_hessian(3, 17); test_hessian(65, 65); test_hessian(100, 130);
      for (int n : {1, 7, 64, 65, 97, 130, 200, 300}) test_inverse(n);
    }
    if (only.empty() || only == "gptq") {
      test_gptq(1, 64, 4, 32, false, false, true, 128);
      test_gptq(48, 256, 4, 128, false, false, true, 128);
      test_gptq(48, 256, 4, 32, true, false, true, 128);
      test_gptq(33, 200, 3, 64, true, true, false, 128);
      test_gptq(20, 160, 4, -1 + 1000, false, false, false, 128, true);
      test_gptq(48, 256, 2, 32, true, false, false, 32);
      test_gptq(17, 130, 8, 256, false, false, true, 100);
      test_gptq(40, 300, 4, 128, true, false, true, 128, true);
      test_gptq(48, 256, 4, 32, false, false, true, 128, false, true);  // llama.cpp's Q4_0 grid
      test_gptq(33, 200, 3, 64, true, false, true, 64, false, true);
    }
  } catch (const Error& e) {
    std::printf("ERROR %s\n", e.what());
    return 2;
  }
  std::printf("%d failures\n", failures);
  return failures ? 1 : 0;
}
