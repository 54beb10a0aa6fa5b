// Picks the kernel family once: the best ISA variant compiled in and supported by this CPU,
// lowered by LOWBIT_ISA if set. AVX-512 needs F+BW+VL+DQ (the variant uses all four).
#include "core/dispatch.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/cpu_features.h"

namespace lowbit {

static Isa detect_isa() {
  const CpuFeatures& f = cpu_features();
  Isa best = ISA_GENERIC;
#if defined(LOWBIT_HAVE_X86_VARIANTS)
  if (f.avx2 && f.fma && f.f16c) best = ISA_AVX2;
  if (best == ISA_AVX2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) best = ISA_AVX512;
#elif defined(LOWBIT_HAVE_NEON_VARIANTS)
  if (f.neon) best = ISA_NEON;
#endif
  (void)f;
  const char* env = std::getenv("LOWBIT_ISA");
  if (env && *env) {
    Isa want = best;
    if (!std::strcmp(env, "generic")) want = ISA_GENERIC;
    else if (!std::strcmp(env, "avx2")) want = ISA_AVX2;
    else if (!std::strcmp(env, "avx512")) want = ISA_AVX512;
    else if (!std::strcmp(env, "neon")) want = ISA_NEON;
    // Only ever lower the choice: never select a variant the CPU cannot run.
    bool ok = want == ISA_GENERIC || (want == ISA_AVX2 && (best == ISA_AVX2 || best == ISA_AVX512)) ||
              want == best;
    if (ok) best = want;
  }
  return best;
}

static Isa best_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

static std::atomic<int> g_isa{-1};

Isa active_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  return v < 0 ? best_isa() : (Isa)v;
}

bool set_isa(Isa want) {
  Isa best = best_isa();
  bool ok = want == ISA_GENERIC || want == best || (want == ISA_AVX2 && best == ISA_AVX512);
  if (ok) g_isa.store((int)want);
  return ok;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case ISA_AVX2: return "avx2";
    case ISA_AVX512: return "avx512";
    case ISA_NEON: return "neon";
    default: return "generic";
  }
}

std::vector<std::string> compiled_isas() {
  std::vector<std::string> v{"generic"};
#if defined(LOWBIT_HAVE_X86_VARIANTS)
  v.push_back("avx2");
  v.push_back("avx512");
#endif
#if defined(LOWBIT_HAVE_NEON_VARIANTS)
  v.push_back("neon");
#endif
  return v;
}

}  // namespace lowbit
