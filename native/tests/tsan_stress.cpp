// Concurrency stress for ThreadSanitizer (scripts/test-tsan.sh builds it with -fsanitize=thread):
// several caller threads — as libuv's workers are when JS starts several native jobs at once — run
// the kernels that share lowbit's one thread pool, each caller with its own per-call thread count
// (ScopedThreads), and every result must be byte-identical to the same job run alone, before the
// threads start. Jobs: RTN quantization (f16 source, groups), GPTQ (act-order, blocked sweep on
// the GEMM), f32 GEMM at odd sizes, the NaN/Inf scan, f32 -> f16 conversion, and a Llama forward
// (f32 cache, and a quantized cache with 4-bit activations), and a training step (forward, loss and
// backward with per-block recomputation, train/model.h) on its own copy of the weights
// pass on a separate model instance per caller (shared read-only weights, own KV cache).
// Exit status 0 = every result identical (TSan itself aborts the run on a data race:
// TSAN_OPTIONS=halt_on_error=1).
//   usage: tsan_stress [callers (default 4)] [rounds (default 3)]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/dispatch.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/convert.h"
#include "kernels/gemm.h"
#include "kernels/quant.h"
#include "quant/gptq.h"
#include "runtime/llama.h"
#include "train/model.h"

using namespace lowbit;

namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

template <class T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

void append(std::vector<uint8_t>& out, const std::vector<uint8_t>& b) { out.insert(out.end(), b.begin(), b.end()); }

// The inputs every job reads (shared, read-only while callers run).
struct Inputs {
  size_t qr = 37, qc = 300;  // RTN: odd rows, a partial last group
  std::vector<uint16_t> w16;
  size_t gr = 48, gc = 96;  // GPTQ
  std::vector<float> gw, gh;
  size_t m = 5, k = 67, n = 33;  // GEMM
  std::vector<float> gx, gwm;
  std::vector<float> scan;  // NaN scan: one NaN at a known index
  LlamaConfig cfg;
  std::vector<std::vector<float>> tensors;  // owns the Llama weights
  LlamaWeights lw;
};

Inputs make_inputs() {
  Inputs in;
  const auto w = randn(in.qr * in.qc, 1);
  in.w16.resize(w.size());
  for (size_t i = 0; i < w.size(); i++) {
    bool of = false;
    in.w16[i] = f32_to_f16(w[i], true, &of);
  }
  in.gw = randn(in.gr * in.gc, 2);
  // H = 2 X Xᵀ / n from random activations: symmetric positive definite
  const size_t ns = 200;
  const auto x = randn(in.gc * ns, 3);
  in.gh.assign(in.gc * in.gc, 0.0f);
  for (size_t i = 0; i < in.gc; i++)
    for (size_t j = 0; j < in.gc; j++) {
      double s = 0;
      for (size_t t = 0; t < ns; t++) s += (double)x[i * ns + t] * x[j * ns + t];
      in.gh[i * in.gc + j] = (float)(2.0 * s / ns);
    }
  in.gx = randn(in.m * in.k, 4);
  in.gwm = randn(in.n * in.k, 5);
  in.scan = randn((1 << 21) + 13, 6);
  in.scan[1234567] = NAN;

  LlamaConfig& c = in.cfg;
  c.dim = 64, c.hidden_dim = 160, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.vocab = 97, c.seq_len = 32, c.head_dim = 16;
  const size_t kv = (size_t)c.n_kv_heads * c.head_dim;
  auto add = [&](size_t n, float scale, uint32_t seed) {
    in.tensors.push_back(randn(n, seed, scale));
    return in.tensors.back().data();
  };
  in.tensors.reserve(64);
  in.lw.embed = add((size_t)c.vocab * c.dim, 1.0f, 10);
  for (int l = 0; l < c.n_layers; l++) {
    LayerWeights L;
    L.attn_norm = add(c.dim, 0.1f, 20 + l);
    L.ffn_norm = add(c.dim, 0.1f, 30 + l);
    const size_t shapes[LIN_COUNT][2] = {{(size_t)c.dim, (size_t)c.dim},
                                         {kv, (size_t)c.dim},
                                         {kv, (size_t)c.dim},
                                         {(size_t)c.dim, (size_t)c.dim},
                                         {(size_t)c.hidden_dim, (size_t)c.dim},
                                         {(size_t)c.hidden_dim, (size_t)c.dim},
                                         {(size_t)c.dim, (size_t)c.hidden_dim}};
    for (int k = 0; k < LIN_COUNT; k++) L.w[k] = add(shapes[k][0] * shapes[k][1], 0.1f, 100 + 10 * l + k);
    in.lw.layers.push_back(L);
  }
  in.lw.final_norm = add(c.dim, 0.1f, 40);
  in.lw.classifier = in.lw.embed;
  return in;
}

// One job list, run by one caller; returns every output's bytes, concatenated.
std::vector<uint8_t> run_jobs(const Inputs& in, int threads) {
  ScopedThreads st(threads);
  std::vector<uint8_t> out;
  {
    QuantSpec q;
    q.bits = 4, q.group_size = 32, q.sym = false;
    const size_t G = (in.qc + 31) / 32;
    std::vector<uint8_t> codes(in.qr * in.qc), zeros(in.qr * G);
    std::vector<float> scales(in.qr * G), deq(in.qr * in.qc);
    QuantStats s;
    quantize_tensor(in.w16.data(), DTYPE_F16, in.qr, in.qc, q, codes.data(), scales.data(), zeros.data(), deq.data(), MODE_FAST, &s, nullptr);
    append(out, codes), append(out, bytes_of(scales)), append(out, zeros), append(out, bytes_of(deq));
  }
  {
    GptqSpec spec;
    spec.q.bits = 4, spec.q.group_size = 32, spec.q.sym = false;
    spec.act_order = true, spec.block_size = 32;
    const size_t G = in.gc / 32;
    std::vector<uint8_t> codes(in.gr * in.gc), zeros(in.gr * G);
    std::vector<float> scales(in.gr * G), deq(in.gr * in.gc);
    std::vector<int32_t> gidx(in.gc);
    GptqOutput o;
    o.codes = codes.data(), o.scales = scales.data(), o.zeros = zeros.data(), o.g_idx = gidx.data(), o.dequant = deq.data();
    gptq_quantize(in.gw.data(), in.gh.data(), in.gr, in.gc, spec, o, MODE_FAST, nullptr);
    append(out, codes), append(out, bytes_of(scales)), append(out, zeros), append(out, bytes_of(gidx)), append(out, bytes_of(deq));
  }
  {
    std::vector<float> y(in.m * in.n);
    gemm(in.gx.data(), in.m, in.k, in.gwm.data(), in.n, y.data(), false, MODE_FAST);
    append(out, bytes_of(y));
  }
  {
    const size_t r = first_nonfinite(in.scan.data(), DTYPE_F32, in.scan.size(), MODE_FAST);
    append(out, bytes_of(std::vector<size_t>{r}));
    std::vector<uint16_t> h(in.scan.size());
    ConvertResult cr;
    convert(in.scan.data(), DTYPE_F32, h.data(), DTYPE_F16, in.scan.size(), true, MODE_FAST, &cr, nullptr);
    append(out, bytes_of(h));
  }
  {
    Llama model(in.cfg, in.lw);
    const int32_t tokens[7] = {1, 5, 17, 96, 3, 42, 8};
    std::vector<float> logits(7 * (size_t)in.cfg.vocab);
    model.forward(tokens, 7, 0, logits.data(), 7, MODE_FAST, nullptr);  // prefill
    std::vector<float> next((size_t)in.cfg.vocab);
    const int32_t t = 11;
    model.forward(&t, 1, 7, next.data(), 1, MODE_FAST, nullptr);  // one decode step
    append(out, bytes_of(logits)), append(out, bytes_of(next));
  }
  {
    // the quantized KV cache (per-channel K, a window, the Q/K rotation) and 4-bit activations:
    // a 20-token prefill takes the GEMM path, then two decode steps the code path
    LlamaConfig c = in.cfg;
    c.kv.bits = 4, c.kv.k_channel = true, c.kv.block = 8, c.kv.window = 3, c.kv.rotate = true;
    c.act_bits.assign((size_t)c.n_layers * ACT_INPUTS, 4);
    c.act_scale.assign(c.act_bits.size(), 0.0f);
    Llama model(c, in.lw);
    int32_t tokens[20];
    for (int i = 0; i < 20; i++) tokens[i] = (i * 37 + 5) % c.vocab;
    std::vector<float> logits(20 * (size_t)c.vocab), next(2 * (size_t)c.vocab);
    model.forward(tokens, 20, 0, logits.data(), 20, MODE_FAST, nullptr);
    for (int i = 0; i < 2; i++) {
      const int32_t t = 3 + i;
      model.forward(&t, 1, 20 + (size_t)i, next.data() + (size_t)i * c.vocab, 1, MODE_FAST, nullptr);
    }
    append(out, bytes_of(logits)), append(out, bytes_of(next));
  }
  {
    // a training step: the caller's own copy of the weights and gradients (biases none, tied head)
    const LlamaConfig& c = in.cfg;
    train::TrainShape s;
    s.dim = c.dim, s.hidden_dim = c.hidden_dim, s.n_layers = c.n_layers, s.n_heads = c.n_heads, s.n_kv_heads = c.n_kv_heads;
    s.head_dim = c.head_dim, s.vocab = c.vocab;
    for (int i = 0; i < c.head_dim / 2; i++) s.inv_freq.push_back(1.0f / powf(10000.0f, (float)(2 * i) / (float)c.head_dim));
    std::vector<std::vector<float>> own;
    own.reserve(64);
    auto copy = [&](const float* src, size_t n) {
      own.emplace_back(src, src + n);
      return own.back().data();
    };
    auto zeros = [&](size_t n) {
      own.emplace_back(n, 0.0f);
      return own.back().data();
    };
    const size_t d = c.dim, kv = (size_t)c.n_kv_heads * c.head_dim, V = c.vocab, hid = c.hidden_dim;
    const size_t sizes[train::TL_COUNT] = {d * d, kv * d, kv * d, d * d, hid * d, hid * d, d * hid};
    train::TrainParams p, g;
    p.embed = copy(in.lw.embed, V * d), g.embed = zeros(V * d);
    std::vector<float> fn(d, 1.0f);
    p.final_norm = copy(fn.data(), d), g.final_norm = zeros(d);
    for (int l = 0; l < c.n_layers; l++) {
      train::TrainLayer P, G;
      P.attn_norm = copy(in.lw.layers[l].attn_norm, d), G.attn_norm = zeros(d);
      P.ffn_norm = copy(in.lw.layers[l].ffn_norm, d), G.ffn_norm = zeros(d);
      for (int k = 0; k < train::TL_COUNT; k++) P.w[k] = copy(in.lw.layers[l].w[k], sizes[k]), G.w[k] = zeros(sizes[k]);
      p.layers.push_back(P), g.layers.push_back(G);
    }
    train::TrainModel tm(s, p, g);
    const size_t B = 2, T = 9;
    std::vector<int32_t> tokens(B * T), targets(B * T);
    for (size_t i = 0; i < B * T; i++) tokens[i] = (int32_t)((i * 31 + 7) % V), targets[i] = (int32_t)((i * 17 + 3) % V);
    train::TrainBatch b;
    b.tokens = tokens.data(), b.batch = B, b.seq_len = T, b.targets = targets.data(), b.scale = 1.0f / (B * T);
    const double loss = tm.run(b, MODE_FAST, nullptr);
    append(out, bytes_of(std::vector<double>{loss}));
    for (size_t i = 1; i < own.size(); i += 2) append(out, bytes_of(own[i]));  // the gradients (every second buffer)
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int callers = argc > 1 ? std::atoi(argv[1]) : 4;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  const Inputs in = make_inputs();
  // Reference: each thread count's result, run alone. Results must not depend on the thread
  // count at all (fixed reduction orders), so the references must agree with each other too.
  std::vector<std::vector<uint8_t>> ref(4);
  for (int t = 1; t <= 3; t++) ref[t] = run_jobs(in, t);
  int failures = 0;
  for (int t = 2; t <= 3; t++)
    if (ref[t] != ref[1]) {
      std::printf("FAIL: the result with %d threads differs from the result with 1 thread\n", t);
      failures++;
    }
  for (int r = 0; r < rounds; r++) {
    std::vector<std::vector<uint8_t>> got((size_t)callers);
    std::vector<std::thread> ts;
    for (int c = 0; c < callers; c++) ts.emplace_back([&, c] { got[(size_t)c] = run_jobs(in, 1 + c % 3); });
    for (auto& th : ts) th.join();
    for (int c = 0; c < callers; c++)
      if (got[(size_t)c] != ref[(size_t)(1 + c % 3)]) {
        std::printf("FAIL: round %d, caller %d (threads %d): result differs from the serial run\n", r, c, 1 + c % 3);
        failures++;
      }
  }
  std::printf("tsan_stress: %d callers x %d rounds, %zu result bytes per job list, %s\n", callers, rounds, ref[1].size(),
              failures ? "FAILED" : "all identical to the serial runs");
  return failures ? 1 : 0;
}
