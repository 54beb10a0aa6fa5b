#!/usr/bin/env bash
# Builds lowbit's native kernels for AArch64 with a cross compiler and runs the standalone kernel
# self-test (native/tests/selftest.cpp) under qemu-aarch64: every NEON kernel against its plain
# reference on fresh random inputs, on a CPU model with the dot-product extension (-cpu max: the
# SDOT kernel) and one without (-cpu cortex-a57: the widening-multiply kernel).
#
# Needs (Debian/Ubuntu): apt-get install g++-aarch64-linux-gnu qemu-user
#   scripts/check-arm64.sh [seed]       exit 0: all passed; 2: tools missing (says which)
#   SELFTEST_HOST=1 scripts/check-arm64.sh   also builds and runs the self-test natively (x86-64)
# Output binaries go to build-selftest/ (ignored by git). Correctness only: qemu says nothing about speed.
set -euo pipefail
cd "$(dirname "$0")/.."
CXX_ARM=${CXX_ARM:-aarch64-linux-gnu-g++}
QEMU=${QEMU:-qemu-aarch64}
for t in "$CXX_ARM" "$QEMU"; do
  if ! command -v "$t" >/dev/null 2>&1; then
    echo "check-arm64: $t not found (apt-get install g++-aarch64-linux-gnu qemu-user)" >&2
    exit 2
  fi
done
seed=${1:-$(date +%s%N)}
out=build-selftest
mkdir -p "$out"
# compiles run as parallel jobs, one per core (spawn / drain), and src reads native/sources.json
. scripts/parallel.sh
# the kernel sources (no N-API glue): core, references, portable kernels, ISA variants
KERNELS="native/core/cpu_features.cpp native/core/dispatch.cpp native/core/thread_pool.cpp
  $(ls native/kernels/ref/*.cpp native/kernels/cpu/*.cpp | tr '\n' ' ')"
COMMON_FLAGS="-std=c++17 -O2 -Wall -Wextra -ffp-contract=off -Inative -pthread"

echo "check-arm64: building for aarch64 with $($CXX_ARM --version | head -1)"
objs=()
for f in $KERNELS native/tests/selftest.cpp $(src arm_neon); do
  o="$out/arm64-$(echo "$f" | tr / _).o"
  spawn $CXX_ARM $COMMON_FLAGS -DLOWBIT_HAVE_NEON_VARIANTS=1 -c "$f" -o "$o"
  objs+=("$o")
done
for f in $(src arm_neon_dotprod); do
  o="$out/arm64-$(echo "$f" | tr / _).o"
  spawn $CXX_ARM $COMMON_FLAGS -DLOWBIT_HAVE_NEON_VARIANTS=1 $(node -p "require('./native/sources.json').flags.arm_neon_dotprod.join(' ')") -c "$f" -o "$o"
  objs+=("$o")
done
drain
$CXX_ARM -static -pthread "${objs[@]}" -o "$out/selftest-arm64"
status=0
for cpu in max cortex-a57; do
  echo "check-arm64: qemu-aarch64 -cpu $cpu"
  $QEMU -cpu "$cpu" "$out/selftest-arm64" "$seed" || status=1
done
if [ "${SELFTEST_HOST:-0}" = 1 ]; then
  echo "check-arm64: native build ($(uname -m))"
  hobjs=()
  for f in $KERNELS native/tests/selftest.cpp; do
    o="$out/host-$(echo "$f" | tr / _).o"
    spawn g++ $COMMON_FLAGS -DLOWBIT_HAVE_X86_VARIANTS=1 -c "$f" -o "$o"
    hobjs+=("$o")
  done
  for group in x86_avx2 x86_avx512 x86_avx512vnni x86_avx512bf16; do
    flags=$(node -p "require('./native/sources.json').flags.$group.join(' ')")
    for f in $(src $group); do
      o="$out/host-$(echo "$f" | tr / _).o"
      spawn g++ $COMMON_FLAGS -DLOWBIT_HAVE_X86_VARIANTS=1 $flags -c "$f" -o "$o"
      hobjs+=("$o")
    done
  done
  drain
  g++ -pthread "${hobjs[@]}" -o "$out/selftest-host"
  "$out/selftest-host" "$seed" || status=1
fi
exit $status
