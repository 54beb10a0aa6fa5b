// Integer-dot (W4A8 / W8A8) matmul from JS: repacking into the kernel layout and the product.
//   qblockFromGptq(job) / qblockFromGgml(job) -> task resolving a QBlock object
//     {bits, kb, inFeatures, outFeatures, q: Uint8Array, d: Uint16Array, m: Float32Array | null,
//      ds: Int8Array | null, mh: Uint16Array | null, ms: Int8Array | null, sbk, zeroFixed, perm: Int32Array | null}
//     (ds/mh/ms, sbk: the two-level scales of Q4_K/Q6_K, d then per super-block of sbk blocks)
//   qdotLinear({w: qblock | qblock[], x, rows, y: y | y[], mode, threads}) -> task
//   quantizeActs({x, rows, inFeatures, kb, perm, mode, threads}) -> {xq, sx, sum}
// See kernels/qdot.h.
#include <cmath>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "addon/qblock_js.h"
#include "addon/task.h"
#include "core/dispatch.h"
#include "kernels/qdot.h"

namespace lowbit {

namespace {

// Codes are streamed once per token while decoding: their buffers start on a 2 MiB boundary and
// the whole 2 MiB pages inside them are marked for transparent huge pages (Linux, THP "madvise"
// mode), so the hardware prefetchers and the TLB see large pages instead of a new 4 KiB page every
// 4 KiB. Where THP is off, this is a plain aligned allocation.
template <typename T>
struct HugePageAlloc {
  using value_type = T;
  HugePageAlloc() = default;
  template <typename U>
  HugePageAlloc(const HugePageAlloc<U>&) {}
  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T), huge = (size_t)2 << 20;
    if (bytes < huge) {
      void* p = std::malloc(bytes ? bytes : 1);
      if (!p) throw std::bad_alloc();
      return static_cast<T*>(p);
    }
    void* p = std::aligned_alloc(huge, (bytes + 4095) / 4096 * 4096);
    if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, bytes / huge * huge, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const HugePageAlloc<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const HugePageAlloc<U>&) const {
    return false;
  }
};
using CodeBuffer = std::vector<uint8_t, HugePageAlloc<uint8_t>>;

struct Repacked {
  int bits = 4, kb = 32;
  size_t in = 0, out = 0;
  float zero_fixed = 0;
  std::unique_ptr<CodeBuffer> q;
  std::unique_ptr<std::vector<uint16_t>> d;
  std::unique_ptr<std::vector<float>> m;
  std::unique_ptr<std::vector<int8_t>> ds, ms;
  std::unique_ptr<std::vector<uint16_t>> mh;
  int sbk = 1;
  std::unique_ptr<std::vector<int32_t>> perm;
};

// A JS typed array over memory owned by a vector (freed when the array is collected).
template <typename T, typename Arr, typename Vec = std::vector<T>>
Napi::Value external(Napi::Env env, std::unique_ptr<Vec>& v) {
  if (!v) return env.Null();
  auto* owned = v.release();
  const size_t n = owned->size();
  Napi::ArrayBuffer ab = n == 0 ? Napi::ArrayBuffer::New(env, 0)
                                : Napi::ArrayBuffer::New(
                                      env, owned->data(), n * sizeof(T), [](Napi::Env, void*, Vec* p) { delete p; }, owned);
  if (n == 0) delete owned;
  return Arr::New(env, n, ab, 0);
}

Napi::Value to_js(Napi::Env env, Repacked& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("bits", r.bits);
  o.Set("kb", r.kb);
  o.Set("inFeatures", (double)r.in);
  o.Set("outFeatures", (double)r.out);
  o.Set("zeroFixed", r.zero_fixed);
  o.Set("q", external<uint8_t, Napi::Uint8Array, CodeBuffer>(env, r.q));
  o.Set("d", external<uint16_t, Napi::Uint16Array>(env, r.d));
  o.Set("m", external<float, Napi::Float32Array>(env, r.m));
  o.Set("ds", external<int8_t, Napi::Int8Array>(env, r.ds));
  o.Set("mh", external<uint16_t, Napi::Uint16Array>(env, r.mh));
  o.Set("ms", external<int8_t, Napi::Int8Array>(env, r.ms));
  o.Set("sbk", r.sbk);
  o.Set("perm", external<int32_t, Napi::Int32Array>(env, r.perm));
  return o;
}

Napi::Value FromGptq(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "qblockFromGptq");
  GptqSource s{};
  s.bits = j.i32("bits");
  s.in = j.count("inFeatures");
  s.out = j.count("outFeatures");
  s.groups = j.count("groups");
  const View q = j.view("qweight"), sc = j.view("scales"), z = j.view("zeros"), g = j.view("gIdx");
  if (s.bits < 2 || s.bits > 8 || s.in == 0 || s.out == 0 || (s.in * (size_t)s.bits) % 32 || q.bytes < s.in * (size_t)s.bits / 32 * s.out * 4 ||
      sc.bytes < s.groups * s.out * 4 || z.bytes < s.groups * s.out || g.bytes < s.in * 4)
    throw_js(env, "LOWBIT_INTERNAL", "qblockFromGptq: buffer sizes disagree");
  s.qweight = reinterpret_cast<const int32_t*>(q.data);
  s.scales = reinterpret_cast<const float*>(sc.data);
  s.zeros = z.data;
  s.g_idx = reinterpret_cast<const int32_t*>(g.data);
  int bits = 0;
  bool needs_perm = false;
  const char* why = nullptr;
  const int kb = qblock_plan_gptq(s, &bits, &needs_perm, &why);
  if (!kb) throw_js(env, "LOWBIT_UNSUPPORTED", std::string("the integer-dot layout can't hold this layer: ") + why);
  auto r = std::make_shared<Repacked>();
  r->bits = bits;
  r->kb = kb;
  r->in = s.in;
  r->out = s.out;
  return Task::Start(
      env, "lowbit.qblockFromGptq",
      [s, r, needs_perm](TaskContext&) {
        const int off = r->bits == 8 ? 128 : 0;
        bool uniform = true;
        for (size_t i = 1; i < s.groups * s.out; i++) uniform = uniform && s.zeros[i] == s.zeros[0];
        QBlockMatrix g;
        g.bits = r->bits;
        g.kb = r->kb;
        g.in = s.in;
        g.out = s.out;
        r->q = std::make_unique<CodeBuffer>(g.q_bytes());
        r->d = std::make_unique<std::vector<uint16_t>>(g.d_count());
        if (uniform) r->zero_fixed = (float)((int)s.zeros[0] - off);
        else r->m = std::make_unique<std::vector<float>>(g.d_count());
        if (needs_perm) r->perm = std::make_unique<std::vector<int32_t>>(s.in);
        qblock_repack_gptq(s, r->bits, r->kb, r->q->data(), r->d->data(), r->m ? r->m->data() : nullptr, r->perm ? r->perm->data() : nullptr);
      },
      [r](Napi::Env e) { return to_js(e, *r); }, {j.get("qweight"), j.get("scales"), j.get("zeros"), j.get("gIdx")}, Napi::Value(), 0.0, j.threads());
}

Napi::Value FromGgml(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "qblockFromGgml");
  const int type = j.i32("type");
  const size_t out = j.count("outFeatures"), in = j.count("inFeatures");
  const View src = j.view("data");
  const GgmlQInfo gi = qblock_ggml_info(type);
  if (!gi.block_bytes) throw_js(env, "LOWBIT_UNSUPPORTED", "qblockFromGgml: only Q4_0, Q4_1, Q8_0, Q4_K and Q6_K run packed");
  if (in == 0 || in % gi.block_values)
    throw_js(env, "LOWBIT_UNSUPPORTED",
             "the integer-dot layout needs rows of a multiple of " + std::to_string(gi.block_values) + " channels for this type, got " +
                 std::to_string(in));
  if (src.bytes < out * (in / gi.block_values) * gi.block_bytes) throw_js(env, "LOWBIT_INTERNAL", "qblockFromGgml: data too small");
  auto r = std::make_shared<Repacked>();
  r->bits = gi.bits;
  r->kb = gi.kb;
  r->in = in;
  r->out = out;
  r->zero_fixed = gi.zero_fixed;
  r->sbk = gi.sbk;
  const uint8_t* data = src.data;
  return Task::Start(
      env, "lowbit.qblockFromGgml",
      [r, type, gi, data](TaskContext&) {
        QBlockMatrix g;
        g.bits = r->bits;
        g.kb = r->kb;
        g.in = r->in;
        g.out = r->out;
        g.sbk = r->sbk;
        const bool two = gi.sbk > 1;
        r->q = std::make_unique<CodeBuffer>(g.q_bytes());
        r->d = std::make_unique<std::vector<uint16_t>>(two ? g.super_count() : g.d_count());
        if (gi.has_m) r->m = std::make_unique<std::vector<float>>(g.d_count());
        if (two) r->ds = std::make_unique<std::vector<int8_t>>(g.d_count());
        if (gi.has_ms) {
          r->mh = std::make_unique<std::vector<uint16_t>>(g.super_count());
          r->ms = std::make_unique<std::vector<int8_t>>(g.d_count());
        }
        const auto ptr = [](auto& v) { return v ? v->data() : nullptr; };
        qblock_repack_ggml(type, data, r->out, r->in, r->q->data(), r->d->data(), ptr(r->m), ptr(r->ds), ptr(r->mh), ptr(r->ms));
      },
      [r](Napi::Env e) { return to_js(e, *r); }, {j.get("data")}, Napi::Value(), 0.0, j.threads());
}

// qdotLinear({w: qblock | qblock[], x, rows, y: y | y[], mode, threads}): several matrices on one x share one
// quantization of x and one parallel region (qdot_linear_multi).
Napi::Value QdotLinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "qdotLinear");
  const Napi::Value wv = job.get("w"), yv = job.get("y");
  const bool multi = wv.IsArray();
  if (!multi && (!wv.IsObject() || wv.IsTypedArray())) job.fail("w", "a QBlock object or an array of them");
  if (multi ? !yv.IsArray() : !yv.IsTypedArray()) job.fail("y", multi ? "an array of Float32Arrays (one per matrix)" : "a Float32Array");
  const Napi::Array wa = multi ? wv.As<Napi::Array>() : Napi::Array::New(env, 1);
  const Napi::Array ya = multi ? yv.As<Napi::Array>() : Napi::Array::New(env, 1);
  if (!multi) {
    wa.Set(0u, wv);
    ya.Set(0u, yv);
  }
  const size_t count = wa.Length();
  if (count == 0 || count > 8 || ya.Length() != count) throw_js(env, "LOWBIT_INTERNAL", "qdotLinear: 1 to 8 matrices, one output each");
  auto ws = std::make_shared<std::vector<QBlockMatrix>>(count);
  std::vector<View> ys(count);
  std::vector<Napi::Value> keep;
  const View x = job.view("x");
  const size_t rows = job.count("rows");
  const int mode = job.mode();
  for (size_t i = 0; i < count; i++) {
    const std::string at = multi ? "[" + std::to_string(i) + "]" : "";
    const Napi::Value wi = wa.Get(i);
    if (!wi.IsObject() || wi.IsArray() || wi.IsTypedArray()) job.fail("w", "a QBlock object or an array of them");
    qblock_from_js(Job(wi.As<Napi::Object>(), "qdotLinear", "job.w" + at), (*ws)[i], keep);
    const Napi::Value yi = ya.Get(i);
    if (!yi.IsTypedArray()) job.fail("y", multi ? "an array of Float32Arrays (one per matrix)" : "a Float32Array");
    ys[i] = view_of(yi, "y");
    if (x.bytes < rows * (*ws)[i].in * 4 || ys[i].bytes < rows * (*ws)[i].out * 4)
      throw_js(env, "LOWBIT_INTERNAL", "qdotLinear: buffer sizes disagree");
    if (!qdot_can_share_acts((*ws)[0], (*ws)[i]))
      throw_js(env, "LOWBIT_INVALID_OPTION",
               "qdotLinear: matrix " + std::to_string(i) + " needs another quantization of x than matrix 0 (in, block size or channel order differ)");
    keep.push_back(yi);
  }
  keep.push_back(job.get("x"));
  return Task::Start(
      env, "lowbit.qdotLinear",
      [ws, x, ys, rows, mode](TaskContext&) {
        std::vector<QdotPart> parts;
        for (size_t i = 0; i < ws->size(); i++) parts.push_back(QdotPart{&(*ws)[i], reinterpret_cast<float*>(ys[i].data), (*ws)[i].out});
        qdot_linear_multi(parts.data(), parts.size(), reinterpret_cast<const float*>(x.data), rows, mode);
      },
      [](Napi::Env e) { return e.Undefined(); }, keep, Napi::Value(), 0.0, job.threads());
}

// quantizeActs({x, rows, inFeatures, kb, perm, mode, threads}) -> {xq, sx, sum} (sync)
Napi::Value QuantizeActs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "quantizeActs");
  const View x = job.view("x");
  const size_t rows = job.count("rows"), in = job.count("inFeatures");
  const int kb = job.i32("kb");
  const int mode = job.mode();
  if (const char* why = qblock_check(kb == 16 ? 8 : 4, kb, in)) throw_js(env, "LOWBIT_INVALID_OPTION", std::string("quantizeActs: ") + why);
  if (x.bytes < rows * in * 4) throw_js(env, "LOWBIT_INTERNAL", "quantizeActs: x too small");
  const int32_t* perm = nullptr;
  if (job.has("perm")) {
    const View p = job.view("perm");
    if (p.bytes < in * 4) throw_js(env, "LOWBIT_INTERNAL", "quantizeActs: perm too small");
    perm = reinterpret_cast<const int32_t*>(p.data);
    for (size_t k = 0; k < in; k++)
      if (perm[k] < 0 || (size_t)perm[k] >= in) throw_js(env, "LOWBIT_INVALID_OPTION", "quantizeActs: perm out of range");
  }
  const size_t B = in / kb;
  Napi::Int8Array xq = Napi::Int8Array::New(env, rows * in);
  Napi::Float32Array sx = Napi::Float32Array::New(env, rows * B);
  Napi::Int32Array sum = Napi::Int32Array::New(env, rows * B);
  const QActs a{xq.Data(), sx.Data(), sum.Data()};
  {
    ScopedThreads st(job.threads());
    quantize_acts(reinterpret_cast<const float*>(x.data), rows, in, kb, perm, a, mode);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("xq", xq);
  o.Set("sx", sx);
  o.Set("sum", sum);
  return o;
}

}  // namespace

void qblock_from_js(const Job& o, QBlockMatrix& w, std::vector<Napi::Value>& keep) {
  Napi::Env env = o.env();
  const std::string where = std::string(o.fn()) + ": " + o.path();
  w.bits = o.i32("bits");
  w.kb = o.i32("kb");
  w.in = o.count("inFeatures");
  w.out = o.count("outFeatures");
  w.zero_fixed = (float)o.num("zeroFixed");
  if (const char* why = qblock_check(w.bits, w.kb, w.in)) throw_js(env, "LOWBIT_INTERNAL", where + ": " + why);
  w.sbk = o.has("sbk") ? o.i32("sbk") : 1;
  if (w.sbk < 1 || (w.sbk & (w.sbk - 1)) || w.blocks() % (size_t)w.sbk)
    throw_js(env, "LOWBIT_INTERNAL", where + ": sbk must be a power of two dividing the blocks");
  const bool two = o.has("ds"), offs = o.has("ms");
  if ((w.sbk > 1) != two || offs != o.has("mh") || (offs && !two))
    throw_js(env, "LOWBIT_INTERNAL", where + ": two-level scales need sbk > 1, ds (and mh with ms)");
  const View q = o.view("q"), d = o.view("d");
  if (q.bytes < w.q_bytes() || d.bytes < (two ? w.super_count() : w.d_count()) * 2)
    throw_js(env, "LOWBIT_INTERNAL", where + ": buffer sizes disagree");
  w.q = q.data;
  w.d = reinterpret_cast<const uint16_t*>(d.data);
  w.ds = w.ms = nullptr;
  w.mh = nullptr;
  keep.push_back(o.get("q"));
  keep.push_back(o.get("d"));
  if (two) {
    const View dv = o.view("ds");
    if (dv.bytes < w.d_count()) throw_js(env, "LOWBIT_INTERNAL", where + ": ds too small");
    w.ds = reinterpret_cast<const int8_t*>(dv.data);
    keep.push_back(o.get("ds"));
  }
  if (offs) {
    const View hv = o.view("mh"), sv = o.view("ms");
    if (hv.bytes < w.super_count() * 2 || sv.bytes < w.d_count()) throw_js(env, "LOWBIT_INTERNAL", where + ": mh/ms too small");
    w.mh = reinterpret_cast<const uint16_t*>(hv.data);
    w.ms = reinterpret_cast<const int8_t*>(sv.data);
    keep.push_back(o.get("mh"));
    keep.push_back(o.get("ms"));
  }
  w.m = nullptr;
  w.perm = nullptr;
  if (o.has("m")) {
    const View mv = o.view("m");
    if (mv.bytes < w.d_count() * 4) throw_js(env, "LOWBIT_INTERNAL", where + ": m too small");
    w.m = reinterpret_cast<const float*>(mv.data);
    keep.push_back(o.get("m"));
  }
  if (o.has("perm")) {
    const View pv = o.view("perm");
    if (pv.bytes < w.in * 4) throw_js(env, "LOWBIT_INTERNAL", where + ": perm too small");
    const int32_t* pp = reinterpret_cast<const int32_t*>(pv.data);
    for (size_t k = 0; k < w.in; k++)
      if (pp[k] < 0 || (size_t)pp[k] >= w.in) throw_js(env, "LOWBIT_BAD_FORMAT", "qblock: perm out of range");
    w.perm = pp;
    keep.push_back(o.get("perm"));
  }
}

void register_qdot(Napi::Env env, Napi::Object exports) {
  exports.Set("qblockFromGptq", Napi::Function::New(env, FromGptq, "qblockFromGptq"));
  exports.Set("qblockFromGgml", Napi::Function::New(env, FromGgml, "qblockFromGgml"));
  exports.Set("qdotLinear", Napi::Function::New(env, QdotLinear, "qdotLinear"));
  exports.Set("quantizeActs", Napi::Function::New(env, QuantizeActs, "quantizeActs"));
}

}  // namespace lowbit
