// Runtime CPU feature detection (cpuid + xgetbv on x86-64, getauxval on arm64).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace lowbit {

struct CpuFeatures {
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false, bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx512bf16 = false, avx512fp16 = false, avxvnni = false, amx = false;
  bool neon = false, dotprod = false, asimdhp = false;
  std::string model;
  std::vector<std::pair<std::string, bool>> list() const;
};

const CpuFeatures& cpu_features();

}  // namespace lowbit
