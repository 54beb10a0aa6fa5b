// The GptqSpec of a JS job object ({bits, groupSize, sym, signedMax, clip, zeroMin, scaleF16, actOrder,
// staticGroups, damp, dampMax, blockSize}), shared by gptqLayer (CPU) and cudaGptqLayer.
#pragma once
#include "addon/task.h"
#include "quant/gptq.h"

namespace lowbit {

inline GptqSpec gptq_spec_from_js(const Job& job) {
  GptqSpec spec;
  spec.q.bits = job.i32("bits");
  spec.q.group_size = job.i32("groupSize");
  spec.q.sym = job.flag("sym");
  spec.q.clip = job.i32("clip");
  spec.q.zero_min = job.i32("zeroMin");
  spec.q.scale_f16 = job.flag("scaleF16");
  spec.q.signed_max = job.flag("signedMax");
  spec.act_order = job.flag("actOrder");
  spec.static_groups = job.flag("staticGroups");
  spec.damp = (float)job.num("damp");
  spec.damp_max = (float)job.num("dampMax");
  spec.block_size = job.i32("blockSize");
  return spec;
}

}  // namespace lowbit
