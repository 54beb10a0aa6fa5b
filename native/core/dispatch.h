// Kernel-family selection. The best ISA variant compiled in and supported by the CPU is chosen
// at run time; LOWBIT_ISA=generic|avx2|avx512|neon lowers the choice (for tests and debugging).
// Kernel mode MODE_REF routes every op through its plain reference (LOWBIT_FORCE_REF=1).
#pragma once
#include <string>
#include <vector>

namespace lowbit {

enum Isa { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_NEON = 3 };
enum KernelMode { MODE_FAST = 0, MODE_REF = 1 };

Isa active_isa();
// Lower (or restore) the active variant at run time, for tests comparing variants. Returns false
// when the CPU cannot run `isa` (the choice is then unchanged).
bool set_isa(Isa isa);
const char* isa_name(Isa isa);
std::vector<std::string> compiled_isas();

}  // namespace lowbit
