#!/usr/bin/env bash
# Checks lowbit's AVX-512 kernels (x86_avx512, x86_avx512vnni, x86_avx512bf16 in native/sources.json) against
# their plain references on fresh random inputs, on any x86-64 CPU with AVX2: the standalone
# self-test (native/tests/selftest.cpp) is built with the AVX-512 sources compiled against portable
# emulations of their intrinsics (SIMDe, plus native/tests/avx512_emu.h for the few SIMDe lacks)
# and the CPU-feature check told to report AVX-512 + VNNI (LOWBIT_EMULATE_AVX512). That checks
# the kernels' logic, not the instruction encodings or speed. On a CPU that has AVX-512, the same
# sources are also built with the real -mavx512* flags and run natively.
#
# Needs: g++, node, SIMDe headers (Debian/Ubuntu: apt-get install libsimde-dev)
#   scripts/check-avx512.sh [seed]      exit 0: all passed; 2: a tool is missing (says which)
# Output binaries go to build-selftest/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CXX:-g++}
if [ "$(uname -m)" != x86_64 ]; then echo "check-avx512: x86-64 only (this is $(uname -m))" >&2; exit 2; fi
if ! echo '#include <simde/x86/avx512.h>' | $CXX -x c++ -std=c++17 -fsyntax-only - 2>/dev/null; then
  echo "check-avx512: SIMDe headers not found (apt-get install libsimde-dev)" >&2
  exit 2
fi
seed=${1:-$(date +%s%N)}
out=build-selftest
mkdir -p "$out"
# compiles run as parallel jobs, one per core (spawn / drain), and src / flags read native/sources.json
. scripts/parallel.sh
KERNELS="native/core/cpu_features.cpp native/core/dispatch.cpp native/core/thread_pool.cpp
  $(ls native/kernels/ref/*.cpp native/kernels/cpu/*.cpp | tr '\n' ' ')"
COMMON_FLAGS="-std=c++17 -O2 -Wall -Wextra -ffp-contract=off -Inative -pthread -DLOWBIT_HAVE_X86_VARIANTS=1"
AVX2_FLAGS=$(flags x86_avx2)

# build <tag> <extra flags for common sources> <command printing flags for an AVX-512 group>
build() {
  local tag=$1 common_extra=$2 objs=() f o
  for f in $KERNELS native/tests/selftest.cpp; do
    o="$out/$tag-$(echo "$f" | tr / _).o"
    spawn $CXX $COMMON_FLAGS $common_extra -c "$f" -o "$o"
    objs+=("$o")
  done
  for f in $(src x86_avx2); do
    o="$out/$tag-$(echo "$f" | tr / _).o"
    spawn $CXX $COMMON_FLAGS $AVX2_FLAGS -c "$f" -o "$o"
    objs+=("$o")
  done
  for group in x86_avx512 x86_avx512vnni x86_avx512bf16; do
    local gflags
    gflags=$($3 $group)
    for f in $(src $group); do
      o="$out/$tag-$(echo "$f" | tr / _).o"
      spawn $CXX $COMMON_FLAGS $gflags -c "$f" -o "$o"
      objs+=("$o")
    done
  done
  drain
  $CXX -pthread "${objs[@]}" -o "$out/selftest-$tag"
}
# emulated: AVX2 code generation; the intrinsics become portable calls (psABI notes about passing
# 512-bit vectors without AVX-512 are expected and silenced)
emu_flags() { echo "$AVX2_FLAGS -Wno-psabi -include native/tests/avx512_emu.h"; }
native_flags() { flags "$1"; }

echo "check-avx512: building with AVX-512 emulated ($($CXX --version | head -1))"
build avx512emu "-DLOWBIT_EMULATE_AVX512=1" emu_flags
status=0
"$out/selftest-avx512emu" "$seed" || status=1
if grep -qw avx512f /proc/cpuinfo; then
  echo "check-avx512: this CPU has AVX-512: native build"
  build avx512native "" native_flags
  "$out/selftest-avx512native" "$seed" || status=1
fi
exit $status
