// cudaInfo(), cudaDequantInt4(job): the CUDA variant's extra exports (built only with LOWBIT_CUDA).
#include "addon/task.h"
#include "kernels/cuda/cuda_api.h"

namespace lowbit {

static Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CudaStatus s = cuda_status();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", true);
  o.Set("runtimeVersion", s.runtime_version);
  o.Set("driverVersion", s.driver_version);
  o.Set("deviceCount", s.device_count);
  Napi::Array devs = Napi::Array::New(env, s.devices.size());
  for (size_t i = 0; i < s.devices.size(); i++) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", s.devices[i].name);
    d.Set("major", s.devices[i].major);
    d.Set("minor", s.devices[i].minor);
    d.Set("totalMemory", (double)s.devices[i].total_memory);
    d.Set("multiProcessors", s.devices[i].multi_processors);
    devs.Set((uint32_t)i, d);
  }
  o.Set("devices", devs);
  o.Set("error", s.error.empty() ? env.Null() : Napi::String::New(env, s.error));
  return o;
}

static Napi::Value CudaDequantInt4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object job = info[0].As<Napi::Object>();
  const int rows = (int)num(job, "rows"), cols = (int)num(job, "cols"), groups = (int)num(job, "groups");
  View q = view_of(job.Get("qweight"), "qweight"), s = view_of(job.Get("scales"), "scales"), z = view_of(job.Get("zeros"), "zeros");
  View g = view_of(job.Get("gIdx"), "gIdx"), out = view_of(job.Get("out"), "out");
  if (cols % 8 || q.bytes < (size_t)cols / 8 * rows * 4 || s.bytes < (size_t)groups * rows * 4 || z.bytes < (size_t)groups * rows ||
      g.bytes < (size_t)cols * 4 || out.bytes < (size_t)rows * cols * 4)
    throw_js(env, "LOWBIT_INTERNAL", "cudaDequantInt4: buffer sizes disagree with rows/cols/groups");
  auto ms = std::make_shared<float>(0.0f);
  return Task::Start(
      env, "lowbit.cudaDequantInt4",
      [=](TaskContext&) {
        *ms = dequant_gptq_int4_cuda(reinterpret_cast<const int32_t*>(q.data), reinterpret_cast<const float*>(s.data), z.data,
                                     reinterpret_cast<const int32_t*>(g.data), rows, cols, groups, reinterpret_cast<float*>(out.data));
      },
      [ms](Napi::Env e) {
        Napi::Object o = Napi::Object::New(e);
        o.Set("kernelMs", *ms);
        return o;
      },
      {job.Get("qweight"), job.Get("scales"), job.Get("zeros"), job.Get("gIdx"), job.Get("out")});
}

void register_cuda(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo, "cudaInfo"));
  exports.Set("cudaDequantInt4", Napi::Function::New(env, CudaDequantInt4, "cudaDequantInt4"));
}

}  // namespace lowbit
