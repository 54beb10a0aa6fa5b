// Run-time quantizers from JS (kernels/rtquant.h), for tests, the bench and the offline rotations:
//   kvQuantize({x, rows, n, bits, group, sym, channel}) -> {codes: Uint8Array, sz: Uint16Array}
//     (channel: x is (rows = T tokens, n channels), one {s, z} per channel)
//   kvDequantize({codes, sz, rows, n, bits, group, channel}) -> Float32Array (rows × n)
//   kvDotGroups({q, codes, n, bits, group, mode}) -> Float32Array (n / group)
//   kvAxpyGroups({w, codes, n, bits, group, y, mode})  (y += w[i / group] · code[i], in place)
//   actFakeQuant({x, rows, n, bits, scale?, mode})     (in place)
//   rotate({x, rows, n, seed, mode, threads}) -> task  (x ← Q x per row, in place)
//   rotationInfo({n, seed}) -> {n, p, m, hadamard, matrix: Float64Array (n × n)}
//   createKvCache({layers, seqLen, nHeads, nKvHeads, headDim, kv: {bits, group, sym, kChannel, block, window}})
//     -> {bytesPerToken, fixedBytes, attend({layer, q, k, v, n, pos0, out, mode})}   (runtime/kv_cache.h, for tests)
#include <cstring>
#include <memory>

#include "addon/task.h"
#include "core/thread_pool.h"
#include "kernels/rtquant.h"
#include "runtime/kv_cache.h"

namespace lowbit {

namespace {

struct KvShape {
  size_t rows, n, g;
  int bits;
  bool sym, channel;
};

KvShape kv_shape(const Job& j) {
  KvShape s{};
  s.rows = j.count("rows");
  s.n = j.count("n");
  s.bits = j.i32("bits");
  s.g = j.count("group");
  s.sym = j.flag("sym");
  s.channel = j.flag("channel");
  if (s.bits != 2 && s.bits != 4 && s.bits != 8) j.fail("bits", "2, 4 or 8");
  if (s.n == 0 || s.n * s.bits % 8) j.fail("n", "a positive count whose codes fill whole bytes");
  if (!s.channel && (s.g == 0 || s.n % s.g || s.g * s.bits % 8)) j.fail("group", "a group size dividing n, whole bytes of codes");
  return s;
}

Napi::Value KvQuantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "kvQuantize");
  const KvShape s = kv_shape(j);
  const View x = j.view("x");
  if (x.bytes < s.rows * s.n * 4) j.fail("x", "a Float32Array of rows × n");
  Napi::Uint8Array codes = Napi::Uint8Array::New(env, s.rows * kv_code_bytes(s.n, s.bits));
  const size_t nsz = s.channel ? s.n * 2 : s.rows * (s.n / s.g) * 2;
  Napi::Uint16Array sz = Napi::Uint16Array::New(env, nsz);
  const float* xp = reinterpret_cast<const float*>(x.data);
  if (s.channel) kv_quantize_channels(xp, s.rows, s.n, s.n, s.bits, s.sym, codes.Data(), sz.Data());
  else kv_quantize_rows(xp, s.rows, s.n, s.bits, s.g, s.sym, codes.Data(), sz.Data());
  Napi::Object o = Napi::Object::New(env);
  o.Set("codes", codes);
  o.Set("sz", sz);
  return o;
}

Napi::Value KvDequantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "kvDequantize");
  const KvShape s = kv_shape(j);
  const View c = j.view("codes"), z = j.view("sz");
  const size_t rb = kv_code_bytes(s.n, s.bits), nsz = s.channel ? s.n * 2 : s.rows * (s.n / s.g) * 2;
  if (c.bytes < s.rows * rb || z.bytes < nsz * 2) j.fail("codes", "codes and sz of the given shape");
  Napi::Float32Array out = Napi::Float32Array::New(env, s.rows * s.n);
  const uint16_t* zp = reinterpret_cast<const uint16_t*>(z.data);
  for (size_t r = 0; r < s.rows; r++)
    kv_dequantize_row(c.data + r * rb, s.channel ? zp : zp + r * (s.n / s.g) * 2, s.n, s.bits, s.g, s.channel, out.Data() + r * s.n);
  return out;
}

Napi::Value KvDotGroups(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "kvDotGroups");
  const KvShape s = kv_shape(j);
  const View q = j.view("q"), c = j.view("codes");
  if (q.bytes < s.n * 4 || c.bytes < kv_code_bytes(s.n, s.bits)) j.fail("q", "q (n floats) and one row of codes");
  Napi::Float32Array out = Napi::Float32Array::New(env, s.n / s.g);
  kv_dot_groups(reinterpret_cast<const float*>(q.data), c.data, s.n, s.bits, s.g, out.Data(), j.mode());
  return out;
}

Napi::Value KvAxpyGroups(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "kvAxpyGroups");
  const KvShape s = kv_shape(j);
  const View w = j.view("w"), c = j.view("codes"), y = j.view("y");
  if (w.bytes < s.n / s.g * 4 || c.bytes < kv_code_bytes(s.n, s.bits) || y.bytes < s.n * 4)
    j.fail("w", "w (n / group floats), one row of codes, y (n floats)");
  kv_axpy_groups(reinterpret_cast<const float*>(w.data), c.data, s.n, s.bits, s.g, reinterpret_cast<float*>(y.data), j.mode());
  return env.Undefined();
}

Napi::Value ActFakeQuant(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "actFakeQuant");
  const size_t rows = j.count("rows"), n = j.count("n");
  const int bits = j.i32("bits");
  if (bits < 2 || bits > 8) j.fail("bits", "2…8");
  const View x = j.view("x");
  if (x.bytes < rows * n * 4) j.fail("x", "a Float32Array of rows × n");
  float scale = 0.0f;
  if (j.has("scale")) scale = (float)j.num("scale");
  act_fake_quant(reinterpret_cast<float*>(x.data), rows, n, bits, j.has("scale") ? &scale : nullptr, j.mode());
  return env.Undefined();
}

Napi::Value Rotate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "rotate");
  const size_t rows = j.count("rows"), n = j.count("n");
  const uint64_t seed = (uint64_t)j.count("seed");
  const View x = j.view("x");
  if (n == 0 || x.bytes < rows * n * 4) j.fail("x", "a Float32Array of rows × n");
  const int mode = j.mode();
  return Task::Start(
      env, "lowbit.rotate",
      [x, rows, n, seed, mode](TaskContext&) {
        const Rotation r = make_rotation(n, seed);
        float* xp = reinterpret_cast<float*>(x.data);
        parallel_for(rows, 1, [&](size_t b, size_t e) { rotate_rows(r, xp + b * n, e - b, mode); });
      },
      [](Napi::Env e) { return e.Undefined(); }, {j.get("x")}, Napi::Value(), 0.0, j.threads());
}

Napi::Value RotationInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "rotationInfo");
  const size_t n = j.count("n");
  if (n == 0 || n > 65536 || (j.flag("matrix") && n > 8192)) j.fail("n", "1…65536 (8192 with the matrix)");
  const Rotation r = make_rotation(n, (uint64_t)j.count("seed"));
  Napi::Object o = Napi::Object::New(env);
  o.Set("n", (double)r.n);
  o.Set("p", (double)r.p);
  o.Set("m", (double)r.m);
  o.Set("hadamard", r.hadamard_m);
  if (j.flag("matrix")) {
    const std::vector<double> M = rotation_matrix(r);
    Napi::Float64Array a = Napi::Float64Array::New(env, M.size());
    std::memcpy(a.Data(), M.data(), M.size() * 8);
    o.Set("matrix", a);
  }
  return o;
}

Napi::Value CreateKvCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Job j(info, "createKvCache");
  const Job kj = j.object("kv");
  KvQuantConfig kv;
  kv.bits = kj.i32("bits");
  kv.group = kj.i32("group");
  kv.sym = kj.flag("sym");
  kv.k_channel = kj.flag("kChannel");
  if (kj.has("block")) kv.block = kj.i32("block");
  kv.window = kj.i32("window");
  const int layers = j.i32("layers"), heads = j.i32("nHeads"), kvh = j.i32("nKvHeads"), hd = j.i32("headDim"), seq = j.i32("seqLen");
  std::shared_ptr<KvCache> cache;
  try {
    cache = std::make_shared<KvCache>(layers, seq, heads, kvh, hd, kv);
  } catch (const Error& e) {
    throw Napi::Error::New(env, e.what());
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("bytesPerToken", cache->bytes_per_token());
  o.Set("fixedBytes", (double)cache->fixed_bytes());
  const size_t qd = (size_t)heads * hd, kvd = (size_t)kvh * hd;
  o.Set("attend", Napi::Function::New(env, [cache, qd, kvd](const Napi::CallbackInfo& ci) -> Napi::Value {
          const Job a(ci, "attend");
          const size_t n = a.count("n"), pos0 = a.count("pos0");
          const View q = a.view("q"), k = a.view("k"), v = a.view("v"), out = a.view("out");
          if (q.bytes < n * qd * 4 || out.bytes < n * qd * 4 || k.bytes < n * kvd * 4 || v.bytes < n * kvd * 4)
            a.fail("q", "q/out (n × heads · headDim) and k/v (n × kvHeads · headDim) Float32Arrays");
          try {
            cache->attend(a.i32("layer"), reinterpret_cast<const float*>(q.data), reinterpret_cast<const float*>(k.data),
                          reinterpret_cast<const float*>(v.data), n, pos0, reinterpret_cast<float*>(out.data), a.mode());
          } catch (const Error& e) {
            throw Napi::Error::New(ci.Env(), e.what());
          }
          return ci.Env().Undefined();
        }));
  return o;
}

}  // namespace

void register_rtquant(Napi::Env env, Napi::Object exports) {
  exports.Set("kvQuantize", Napi::Function::New(env, KvQuantize));
  exports.Set("kvDequantize", Napi::Function::New(env, KvDequantize));
  exports.Set("kvDotGroups", Napi::Function::New(env, KvDotGroups));
  exports.Set("kvAxpyGroups", Napi::Function::New(env, KvAxpyGroups));
  exports.Set("actFakeQuant", Napi::Function::New(env, ActFakeQuant));
  exports.Set("rotate", Napi::Function::New(env, Rotate));
  exports.Set("rotationInfo", Napi::Function::New(env, RotationInfo));
  exports.Set("createKvCache", Napi::Function::New(env, CreateKvCache));
}

}  // namespace lowbit
