// The QuantSpec of a JS job object ({bits, groupSize, sym, codebook, clip, clipGrid, clipMaxShrink,
// clipNorm, zeroMin, scaleF16, signedMax}: lib/ops/quantize.ts quantSpecJob), shared by quantize and
// the trainer's weight quantizer, so both read the same fields the same way.
#pragma once
#include "addon/task.h"
#include "kernels/quant.h"

namespace lowbit {

inline QuantSpec quant_spec_from_js(const Job& job) {
  QuantSpec q;
  q.bits = job.i32("bits");
  q.group_size = job.i32("groupSize");
  q.sym = job.flag("sym");
  q.codebook = job.i32("codebook");
  q.clip = job.i32("clip");
  q.clip_grid = job.i32("clipGrid");
  q.clip_max_shrink = (float)job.num("clipMaxShrink");
  q.clip_norm = (float)job.num("clipNorm");
  q.zero_min = job.i32("zeroMin");
  q.scale_f16 = job.flag("scaleF16");
  q.signed_max = job.flag("signedMax");
  return q;
}

}  // namespace lowbit
