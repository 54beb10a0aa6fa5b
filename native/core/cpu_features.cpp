// Runtime CPU feature detection. x86-64: cpuid leaves 1 and 7 (sub-leaves 0 and 1), and xgetbv
// to check that the OS saves the AVX / AVX-512 register state (a CPU flag alone is not enough).
#include "core/cpu_features.h"

#include <cstring>
#include <fstream>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace lowbit {

namespace {

std::string read_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0 || line.rfind("Model", 0) == 0) {
      auto p = line.find(':');
      if (p != std::string::npos) {
        std::string s = line.substr(p + 1);
        while (!s.empty() && s.front() == ' ') s.erase(s.begin());
        return s;
      }
    }
  }
  return "";
}

CpuFeatures detect() {
  CpuFeatures c;
#if defined(__x86_64__) || defined(_M_X64)
  unsigned a, b, cx, d;
  if (__get_cpuid(1, &a, &b, &cx, &d)) {
    c.sse42 = cx & (1u << 20);
    c.fma = cx & (1u << 12);
    c.f16c = cx & (1u << 29);
    bool osxsave = cx & (1u << 27);
    bool avx_hw = cx & (1u << 28);
    unsigned long long xcr0 = 0;
    if (osxsave) {
      unsigned lo, hi;
      __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    bool os_avx = (xcr0 & 0x6) == 0x6;
    bool os_avx512 = (xcr0 & 0xe6) == 0xe6;
    c.avx = avx_hw && os_avx;
    if (!c.avx) c.fma = c.f16c = false;
    if (__get_cpuid_count(7, 0, &a, &b, &cx, &d)) {
      c.avx2 = c.avx && (b & (1u << 5));
      c.bmi2 = b & (1u << 8);
      c.avx512f = os_avx512 && (b & (1u << 16));
      c.avx512dq = c.avx512f && (b & (1u << 17));
      c.avx512bw = c.avx512f && (b & (1u << 30));
      c.avx512vl = c.avx512f && (b & (1u << 31));
      c.avx512vnni = c.avx512f && (cx & (1u << 11));
      c.avx512fp16 = c.avx512f && (d & (1u << 23));
      c.amx = d & (1u << 24);
      unsigned a1, b1, c1, d1;
      if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) {
        c.avxvnni = c.avx && (a1 & (1u << 4));
        c.avx512bf16 = c.avx512f && (a1 & (1u << 5));
      }
    }
  }
  unsigned maxext = __get_cpuid_max(0x80000000u, nullptr);
  if (maxext >= 0x80000004u) {
    char brand[49] = {0};
    unsigned* p = reinterpret_cast<unsigned*>(brand);
    for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002u + i, p + 4 * i, p + 4 * i + 1, p + 4 * i + 2, p + 4 * i + 3);
    c.model = brand;
    while (!c.model.empty() && c.model.back() == ' ') c.model.pop_back();
    while (!c.model.empty() && c.model.front() == ' ') c.model.erase(c.model.begin());
  }
#elif defined(__aarch64__)
  c.neon = true;  // Advanced SIMD is mandatory on AArch64
#if defined(__linux__)
  unsigned long hw = getauxval(AT_HWCAP);
#ifdef HWCAP_ASIMDDP
  c.dotprod = hw & HWCAP_ASIMDDP;
#endif
#ifdef HWCAP_ASIMDHP
  c.asimdhp = hw & HWCAP_ASIMDHP;
#endif
#endif
#endif
  if (c.model.empty()) c.model = read_model_name();
#if defined(LOWBIT_EMULATE_AVX512)
  // Test builds only (scripts/check-avx512.sh): the AVX-512 sources are compiled against portable
  // emulations of their intrinsics (native/tests/avx512_emu.h), so the dispatcher may pick them here.
  c.avx512f = c.avx512bw = c.avx512vl = c.avx512dq = c.avx512vnni = c.avx512bf16 = c.avx2 && c.fma && c.f16c;
  c.model += " (AVX-512 emulated)";
#endif
  return c;
}

}  // namespace

std::vector<std::pair<std::string, bool>> CpuFeatures::list() const {
  return {{"sse4_2", sse42},
          {"avx", avx},
          {"avx2", avx2},
          {"fma", fma},
          {"f16c", f16c},
          {"bmi2", bmi2},
          {"avx512f", avx512f},
          {"avx512bw", avx512bw},
          {"avx512vl", avx512vl},
          {"avx512dq", avx512dq},
          {"avx512_vnni", avx512vnni},
          {"avx512_bf16", avx512bf16},
          {"avx512_fp16", avx512fp16},
          {"avx_vnni", avxvnni},
          {"amx", amx},
          {"neon", neon},
          {"dotprod", dotprod},
          {"asimdhp", asimdhp}};
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

}  // namespace lowbit
