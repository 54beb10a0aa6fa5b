#!/usr/bin/env bash
# npm run test:tsan — ThreadSanitizer over lowbit's thread pool and the kernels that share it.
# Builds native/tests/tsan_stress.cpp with every CPU source the addon uses but the N-API layer
# (the thread pool, the dispatcher, the kernels of each ISA group this machine compiles, GPTQ, the
# Llama runtime) with -fsanitize=thread, and runs it: several caller threads — as libuv's workers
# are when JS starts several native jobs at once — run RTN, GPTQ, GEMM, the NaN scan, conversion
# and a Llama forward pass concurrently, each with its own thread count, and every result must be
# byte-identical to a serial run. Any data race TSan reports aborts the run (halt_on_error=1).
# Node itself is not instrumented, so the addon is not loaded under TSan: the caller threads play
# libuv's part. Output binaries go to build-tsan/ (ignored by git).
#   scripts/test-tsan.sh [callers (default 4)] [rounds (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CXX:-g++}
out=build-tsan
mkdir -p "$out"
COMMON="-std=c++17 -O1 -g -fsanitize=thread -fno-omit-frame-pointer -ffp-contract=off -Inative -pthread"
SOURCES="native/core/cpu_features.cpp native/core/dispatch.cpp native/core/thread_pool.cpp
  $(ls native/kernels/ref/*.cpp native/kernels/cpu/*.cpp native/quant/*.cpp | tr '\n' ' ') $(ls native/runtime/*.cpp native/train/*.cpp | tr '\n' ' ') native/tests/tsan_stress.cpp"
# spawn / drain / src / flags / compile (into $out, with $CXX $COMMON)
. scripts/parallel.sh
objs=()
case "$(uname -m)" in
  x86_64)
    for f in $SOURCES; do compile "$f" -DLOWBIT_HAVE_X86_VARIANTS=1; done
    for g in x86_avx2 x86_avx512 x86_avx512vnni x86_avx512bf16; do
      for f in $(src $g); do compile "$f" -DLOWBIT_HAVE_X86_VARIANTS=1 $(flags $g); done
    done ;;
  aarch64)
    for f in $SOURCES; do compile "$f" -DLOWBIT_HAVE_NEON_VARIANTS=1; done
    for f in $(src arm_neon); do compile "$f" -DLOWBIT_HAVE_NEON_VARIANTS=1; done
    for f in $(src arm_neon_dotprod); do compile "$f" -DLOWBIT_HAVE_NEON_VARIANTS=1 $(flags arm_neon_dotprod); done ;;
  *)
    for f in $SOURCES; do compile "$f"; done ;;
esac
drain
$CXX -fsanitize=thread -pthread "${objs[@]}" -o "$out/tsan_stress"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
"$out/tsan_stress" "${1:-4}" "${2:-3}"
