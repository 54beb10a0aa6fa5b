// quantize(job), pack(job), unpack(job): see kernels/quant.h and kernels/pack.h.
#include "addon/quant_spec_js.h"
#include "addon/task.h"
#include "core/dispatch.h"
#include "kernels/convert.h"
#include "kernels/pack.h"
#include "kernels/quant.h"
#include "quant/rtn_pack.h"

namespace lowbit {

static Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job job(info, "quantize");
  const size_t rows = job.count("rows"), cols = job.count("cols");
  const int sdt = job.i32("srcDtype");
  const QuantSpec q = quant_spec_from_js(job);
  const int mode = job.mode();
  // Internal invariants (the TS layer validated user options already).
  if (q.bits < 2 || q.bits > 8 || q.group_size < 1 || sdt < 0 || sdt > 2 || q.clip_grid < 1)
    throw_js(env, "LOWBIT_INTERNAL", "quantize: invalid normalized job");
  const size_t G = (cols + (size_t)q.group_size - 1) / (size_t)q.group_size;
  const View src = job.view("src"), codes = job.view_or_null("codes"), scales = job.view("scales"), zeros = job.view("zeros");
  const View qw = job.view_or_null("qweight"), deq = job.view_or_null("dequant");
  if (qw.data && (cols % 32 || qw.bytes < cols * q.bits / 32 * rows * 4 || (q.bits != 2 && q.bits != 3 && q.bits != 4 && q.bits != 8)))
    throw_js(env, "LOWBIT_INTERNAL", "quantize: qweight output needs cols % 32 == 0 and bits 2/3/4/8");
  if (src.bytes != rows * cols * dtype_size(sdt) || (!qw.data && codes.bytes < rows * cols) || scales.bytes < rows * G * 4 ||
      zeros.bytes < rows * G || (deq.data && deq.bytes < rows * cols * 4))
    throw_js(env, "LOWBIT_INTERNAL", "quantize: buffer sizes disagree with rows/cols/groupSize");
  if (sdt == DTYPE_F32 && (reinterpret_cast<uintptr_t>(src.data) & 3))
    throw_js(env, "LOWBIT_INTERNAL", "quantize: f32 source must be 4-byte aligned");
  auto st = std::make_shared<QuantStats>();
  return Task::Start(
      env, "lowbit.quantize",
      [=](TaskContext& ctx) {
        if (qw.data)  // fused: codes go straight into the GPTQ qweight layout
          quantize_pack_gptq(src.data, sdt, rows, cols, q, reinterpret_cast<int32_t*>(qw.data), reinterpret_cast<float*>(scales.data), zeros.data,
                             mode, st.get(), &ctx);
        else
          quantize_tensor(src.data, sdt, rows, cols, q, codes.data, reinterpret_cast<float*>(scales.data), zeros.data,
                          reinterpret_cast<float*>(deq.data), mode, st.get(), &ctx);
      },
      [st](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("sumSqErr", st->sum_sq_err);
        o.Set("sumSqRef", st->sum_sq_ref);
        o.Set("maxAbsErr", st->max_abs_err);
        o.Set("nonFinite", (double)st->non_finite);
        o.Set("firstNonFinite", st->non_finite ? (double)st->first_non_finite : -1.0);
        return o;
      },
      {job.get("src"), job.get("codes"), job.get("scales"), job.get("zeros"), job.get("dequant"), job.get("qweight")}, job.get("onProgress"),
      (double)rows, job.threads());
}

static Napi::Value PackOrUnpack(const Napi::CallbackInfo& info, bool pack) {
  Napi::Env env = info.Env();
  const Job job(info, pack ? "pack" : "unpack");
  const int layout = job.i32("layout"), bits = job.i32("bits"), offset = job.i32("offset");
  const int mode = job.mode();
  const size_t rows = job.count("rows"), cols = job.count("cols");
  const View values = job.view("values"), packed = job.view("packed");
  size_t words;
  try {
    words = pack_words(layout, bits, rows, cols);
  } catch (const Error& e) {
    throw Napi::Error::New(env, e.what());
  }
  if (values.bytes < rows * cols || packed.bytes < words * 4 || (reinterpret_cast<uintptr_t>(packed.data) & 3))
    throw_js(env, "LOWBIT_INTERNAL", "pack: buffer sizes disagree with the layout");
  return Task::Start(
      env, pack ? "lowbit.pack" : "lowbit.unpack",
      [=](TaskContext& ctx) {
        int32_t* p = reinterpret_cast<int32_t*>(packed.data);
        if (pack) {
          if (mode == MODE_REF) pack_ref(layout, bits, values.data, rows, cols, offset, p);
          else pack_fast(layout, bits, values.data, rows, cols, offset, p, &ctx);
        } else {
          if (mode == MODE_REF) unpack_ref(layout, bits, p, rows, cols, offset, values.data);
          else unpack_fast(layout, bits, p, rows, cols, offset, values.data, &ctx);
        }
      },
      [](Napi::Env env) { return env.Undefined(); }, {job.get("values"), job.get("packed")}, Napi::Value(), 0.0, job.threads());
}

static Napi::Value Pack(const Napi::CallbackInfo& info) { return PackOrUnpack(info, true); }
static Napi::Value Unpack(const Napi::CallbackInfo& info) { return PackOrUnpack(info, false); }

void register_quant(Napi::Env env, Napi::Object exports) {
  exports.Set("quantize", Napi::Function::New(env, Quantize, "quantize"));
  exports.Set("pack", Napi::Function::New(env, Pack, "pack"));
  exports.Set("unpack", Napi::Function::New(env, Unpack, "unpack"));
}

}  // namespace lowbit
