// The GptqSpec of a JS job object ({bits, groupSize, sym, signedMax, clip, zeroMin, scaleF16, actOrder,
// staticGroups, damp, dampMax, blockSize}), shared by gptqLayer (CPU) and cudaGptqLayer.
#pragma once
#include "addon/task.h"
#include "quant/gptq.h"

namespace lowbit {

inline GptqSpec gptq_spec_from_js(const Napi::Object& job) {
  GptqSpec spec;
  spec.q.bits = (int)num(job, "bits");
  spec.q.group_size = (int)num(job, "groupSize");
  spec.q.sym = flag(job, "sym");
  spec.q.clip = (int)num(job, "clip");
  spec.q.zero_min = (int)num(job, "zeroMin");
  spec.q.scale_f16 = flag(job, "scaleF16");
  spec.q.signed_max = flag(job, "signedMax");
  spec.act_order = flag(job, "actOrder");
  spec.static_groups = flag(job, "staticGroups");
  spec.damp = (float)num(job, "damp");
  spec.damp_max = (float)num(job, "dampMax");
  spec.block_size = (int)num(job, "blockSize");
  return spec;
}

}  // namespace lowbit
