#!/usr/bin/env bash
# npm run fuzz:native — libFuzzer over the native code that reads tensor bytes from untrusted
# files (native/tests/fuzz_native.cpp: the GPTQ and ggml repacks loadModel runs, the NaN/Inf scan,
# conversion), built with clang -fsanitize=fuzzer,address,undefined together with the kernels it
# calls (every ISA group this machine compiles; the dispatcher picks the best at run time).
# A crash, a sanitizer report or a fast/reference mismatch stops the run and leaves the input in
# build-fuzz/crash-*. The TypeScript parsers have their own harness: npm run fuzz.
#   scripts/fuzz-native.sh [seconds (default 60)] [seed (default 1)]
# Needs clang++ with libFuzzer (Debian: apt-get install clang-14 libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
CXX=${CLANGXX:-$(command -v clang++ || command -v clang++-14 || true)}
if [ -z "$CXX" ]; then echo "fuzz-native: clang++ not found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 2; fi
seconds=${1:-60}
seed=${2:-1}
out=build-fuzz
mkdir -p "$out/corpus"
COMMON="-std=c++17 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -ffp-contract=off -Inative -pthread"
SOURCES="native/core/cpu_features.cpp native/core/dispatch.cpp native/core/thread_pool.cpp
  $(ls native/kernels/ref/*.cpp native/kernels/cpu/*.cpp | tr '\n' ' ') native/tests/fuzz_native.cpp"
# spawn / drain / src / flags / compile (into $out, with $CXX $COMMON)
. scripts/parallel.sh
objs=()
if [ "$(uname -m)" = x86_64 ]; then
  for f in $SOURCES; do compile "$f" -DLOWBIT_HAVE_X86_VARIANTS=1; done
  for g in x86_avx2 x86_avx512 x86_avx512vnni x86_avx512bf16; do
    # -Wno-unknown-warning-option: the groups' GCC-only -Wno-* flags
    for f in $(src $g); do compile "$f" -DLOWBIT_HAVE_X86_VARIANTS=1 $(flags $g) -Wno-unknown-warning-option; done
  done
else
  for f in $SOURCES; do compile "$f"; done
fi
drain
$CXX -fsanitize=fuzzer,address,undefined -pthread "${objs[@]}" -o "$out/fuzz_native"
echo "fuzz-native: $CXX, $seconds s, seed $seed"
# one thread per run: the kernels' own thread pool is exercised by the other suites (test:tsan)
LOWBIT_THREADS=1 "$out/fuzz_native" -seed="$seed" -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 \
  -artifact_prefix="$out/" "$out/corpus"
