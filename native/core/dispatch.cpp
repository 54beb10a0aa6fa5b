// Picks the kernel family once: the best ISA variant compiled in and supported by this CPU,
// lowered by LOWBIT_ISA if set. AVX-512 needs F+BW+VL+DQ (the variant uses all four).
#include "core/dispatch.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/cpu_features.h"

namespace lowbit {

// The best variant this CPU can run.
static Isa cpu_best_isa() {
  const CpuFeatures& f = cpu_features();
  Isa best = ISA_GENERIC;
#if defined(LOWBIT_HAVE_X86_VARIANTS)
  if (f.avx2 && f.fma && f.f16c) best = ISA_AVX2;
  if (best == ISA_AVX2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) best = ISA_AVX512;
#elif defined(LOWBIT_HAVE_NEON_VARIANTS)
  if (f.neon) best = ISA_NEON;
#endif
  (void)f;
  return best;
}

// The default choice. The AVX-512 variants have not yet been run on an AVX-512 machine by the
// project (its development machine has none), so they are opt-in (LOWBIT_ISA=avx512) until they
// have: AVX-512 CPUs run the tested AVX2 kernels by default. The test suite exercises every variant
// the CPU supports regardless (the addon's setIsa), so the first AVX-512 machine to run it checks them.
static Isa detect_isa() {
  const Isa cpu = cpu_best_isa();
  Isa best = cpu == ISA_AVX512 ? ISA_AVX2 : cpu;
  const char* env = std::getenv("LOWBIT_ISA");
  if (env && *env) {
    Isa want = best;
    if (!std::strcmp(env, "generic")) want = ISA_GENERIC;
    else if (!std::strcmp(env, "avx2")) want = ISA_AVX2;
    else if (!std::strcmp(env, "avx512")) want = ISA_AVX512;
    else if (!std::strcmp(env, "neon")) want = ISA_NEON;
    // never select a variant the CPU cannot run
    bool ok = want == ISA_GENERIC || (want == ISA_AVX2 && (cpu == ISA_AVX2 || cpu == ISA_AVX512)) || want == cpu;
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
  const Isa cpu = cpu_best_isa();
  bool ok = want == ISA_GENERIC || want == cpu || (want == ISA_AVX2 && cpu == ISA_AVX512);
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
