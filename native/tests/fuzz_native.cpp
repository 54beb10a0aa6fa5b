// libFuzzer target over the native code that reads bytes from untrusted files (scripts/fuzz-native.sh
// builds it with clang -fsanitize=fuzzer,address,undefined and runs it). The TypeScript readers
// parse the headers; these native functions then read tensor contents straight from the file:
//   0  qblock_plan_gptq + qblock_repack_gptq: a GPTQ checkpoint's qweight, scales, zeros and g_idx
//      (g_idx out of range, unequal groups, any bit width) — what loadModel runs on a GPTQ model;
//   1  qblock_repack_ggml: Q4_0 / Q4_1 / Q8_0 / Q4_K / Q6_K block bytes of a GGUF file;
//   2  first_nonfinite: any bytes as f32 / f16 / bf16, every variant == the reference;
//   3  convert: any f16 / bf16 / f32 bytes to the other types, fast == reference (bits).
// The size checks the addon makes before calling them (addon_qdot.cpp) are made here the same way,
// so the target sees exactly the inputs the addon lets through. A finding is a sanitizer report,
// a crash, or a fast/reference mismatch (abort()).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/dispatch.h"
#include "kernels/convert.h"
#include "kernels/qdot.h"

using namespace lowbit;

namespace {

// Consumes the fuzzer's bytes front to back; reads past the end give zeros.
struct Bytes {
  const uint8_t* p;
  size_t n;
  uint8_t u8() {
    if (!n) return 0;
    n--;
    return *p++;
  }
  void fill(void* dst, size_t len) {
    const size_t k = len < n ? len : n;
    if (k) std::memcpy(dst, p, k);
    if (len > k) std::memset(static_cast<uint8_t*>(dst) + k, 0, len - k);
    p += k;
    n -= k;
  }
};

void must(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_native: %s\n", what);
    std::abort();
  }
}

void gptq_repack(Bytes& b) {
  static const int kBits[4] = {2, 3, 4, 8};
  GptqSource s{};
  s.bits = kBits[b.u8() % 4];
  s.in = 32 * (size_t)(1 + b.u8() % 8);
  s.out = 1 + b.u8() % 13;
  s.groups = 1 + b.u8() % 9;
  std::vector<int32_t> qweight(s.in * (size_t)s.bits / 32 * s.out), gidx(s.in);
  std::vector<float> scales(s.groups * s.out);
  std::vector<uint8_t> zeros(s.groups * s.out);
  b.fill(qweight.data(), qweight.size() * 4);
  b.fill(scales.data(), scales.size() * 4);
  b.fill(zeros.data(), zeros.size());
  const uint8_t how = b.u8() % 3;  // consecutive groups, a permutation of them (act-order), raw bytes
  for (size_t k = 0; k < s.in; k++) gidx[k] = (int32_t)(k * s.groups / s.in);
  if (how == 1)
    for (size_t k = s.in - 1; k > 0; k--) std::swap(gidx[k], gidx[b.u8() % (k + 1)]);
  if (how == 2) b.fill(gidx.data(), gidx.size() * 4);
  s.qweight = qweight.data(), s.scales = scales.data(), s.zeros = zeros.data(), s.g_idx = gidx.data();
  int bits = 0;
  bool needs_perm = false;
  const char* why = nullptr;
  const int kb = qblock_plan_gptq(s, &bits, &needs_perm, &why);
  if (!kb) {
    must(why != nullptr, "qblock_plan_gptq refused without a reason");
    return;
  }
  QBlockMatrix g;
  g.bits = bits, g.kb = kb, g.in = s.in, g.out = s.out;
  std::vector<uint8_t> q(g.q_bytes());
  std::vector<uint16_t> d(g.d_count());
  std::vector<float> m(g.d_count());
  std::vector<int32_t> perm(needs_perm ? s.in : 0);
  qblock_repack_gptq(s, bits, kb, q.data(), d.data(), m.data(), needs_perm ? perm.data() : nullptr);
}

void ggml_repack(Bytes& b) {
  static const int kTypes[5] = {GGML_Q4_0, GGML_Q4_1, GGML_Q8_0, GGML_Q4_K, GGML_Q6_K};
  const int type = kTypes[b.u8() % 5];
  const GgmlQInfo gi = qblock_ggml_info(type);
  const size_t out = 1 + b.u8() % 11, in = gi.block_values * (size_t)(1 + b.u8() % 3);
  std::vector<uint8_t> src(out * (in / gi.block_values) * gi.block_bytes);
  b.fill(src.data(), src.size());
  QBlockMatrix g;
  g.bits = gi.bits, g.kb = gi.kb, g.in = in, g.out = out, g.sbk = gi.sbk;
  const bool two = gi.sbk > 1;
  std::vector<uint8_t> q(g.q_bytes());
  std::vector<uint16_t> d(two ? g.super_count() : g.d_count()), mh(gi.has_ms ? g.super_count() : 0);
  std::vector<float> m(gi.has_m ? g.d_count() : 0);
  std::vector<int8_t> ds(two ? g.d_count() : 0), ms(gi.has_ms ? g.d_count() : 0);
  qblock_repack_ggml(type, src.data(), out, in, q.data(), d.data(), gi.has_m ? m.data() : nullptr, two ? ds.data() : nullptr,
                     gi.has_ms ? mh.data() : nullptr, gi.has_ms ? ms.data() : nullptr);
}

void scan(Bytes& b) {
  const int dt = b.u8() % 3;
  const size_t off = b.u8() % 4, n = b.n / dtype_size(dt);
  std::vector<uint8_t> buf(off + n * dtype_size(dt));
  b.fill(buf.data() + off, n * dtype_size(dt));
  must(first_nonfinite(buf.data() + off, dt, n, MODE_FAST) == first_nonfinite_ref(buf.data() + off, dt, n), "first_nonfinite != reference");
}

void conv(Bytes& b) {
  const int sdt = b.u8() % 3, ddt = b.u8() % 3;
  const bool saturate = b.u8() & 1;
  const size_t n = b.n / dtype_size(sdt);
  std::vector<uint8_t> src(n * dtype_size(sdt)), a(n * dtype_size(ddt)), r(n * dtype_size(ddt));
  b.fill(src.data(), src.size());
  ConvertResult ra, rr;
  convert(src.data(), sdt, a.data(), ddt, n, saturate, MODE_FAST, &ra, nullptr);
  convert_ref(src.data(), sdt, r.data(), ddt, n, saturate, &rr);
  must(a == r && ra.overflow == rr.overflow && ra.first_overflow == rr.first_overflow, "convert != reference");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes b{data, size};
  switch (b.u8() % 4) {
    case 0: gptq_repack(b); break;
    case 1: ggml_repack(b); break;
    case 2: scan(b); break;
    default: conv(b); break;
  }
  return 0;
}
