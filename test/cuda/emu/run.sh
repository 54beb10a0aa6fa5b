#!/usr/bin/env bash
# Run lowbit's CUDA kernels on the CPU, for machines without a GPU (docs/CUDA.md, "What has been
# checked without a GPU"). The .cu sources are rewritten by transform.py and compiled with g++
# against the shims in shim/ (CUDA threads as user-level contexts; warp ops and mma.sync emulated).
# This checks indexing, fragment layouts, the algorithms and their arithmetic — not memory
# ordering, resource limits, alignment faults or speed. One OS thread; minutes for the suite.
#
#   bash test/cuda/emu/run.sh [qgemm|linalg|gptq]   # driver.cpp: kernels vs the CPU core
#   bash test/cuda/emu/run.sh --mocha [files…]      # the test/cuda suite against a CUDA variant
#                                                   # built with the emulated kernels, in a scratch
#                                                   # copy of the repository (build-emu/tree)
# Everything is built under build-emu/ (git-ignored). EMU_NICE (default 19) sets the niceness.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
HERE="$ROOT/test/cuda/emu"
EMU="$ROOT/build-emu"
NICE="nice -n ${EMU_NICE:-19}"
CXX=${CXX:-g++}
# The CUDA sources live in two folders: the kernels (native/kernels/cuda) and the algorithms' twins
# (native/quant/cuda). src/ and kobj/ are rebuilt every run, so a moved or deleted .cu leaves nothing behind.
CUDA_DIRS=(kernels/cuda quant/cuda)
rm -rf "$EMU/src" "$EMU/kobj"
mkdir -p "$EMU/obj" "$EMU/kobj"
for d in "${CUDA_DIRS[@]}"; do
  python3 "$HERE/transform.py" "$ROOT/native/$d" "$EMU/src/$d"
done

# 1. the CPU core (no addon glue), as CMakeLists builds it: -ffp-contract=off, ISA groups with their flags
node -e '
  const j = require(process.argv[1]);
  for (const f of j.common) if (!f.startsWith("native/addon/")) console.log("- " + f);
  for (const g of ["x86_avx2", "x86_avx512", "x86_avx512vnni"]) for (const f of j[g]) console.log(j.flags[g].join(",") + " " + f);
' "$ROOT/native/sources.json" | while read -r flags file; do
  obj="$EMU/obj/$(echo "$file" | tr / _).o"
  [ -f "$obj" ] && [ "$obj" -nt "$ROOT/$file" ] && continue
  extra=""; [ "$flags" != "-" ] && extra=$(echo "$flags" | tr , ' ')
  # shellcheck disable=SC2086
  $NICE "$CXX" -std=c++17 -O2 -ffp-contract=off -fPIC -DLOWBIT_HAVE_X86_VARIANTS=1 -I "$ROOT/native" $extra -c "$ROOT/$file" -o "$obj"
done

# 2. the kernels, emulated
FL=(-std=c++17 -O1 -ffp-contract=off -fPIC -I "$HERE/shim" -I "$EMU/src" -I "$ROOT/native" -w)
for d in "${CUDA_DIRS[@]}"; do
  for f in "$EMU/src/$d"/*.cu.cpp; do
    $NICE "$CXX" "${FL[@]}" -c "$f" -o "$EMU/kobj/$(echo "$d" | tr / _)_$(basename "$f" .cu.cpp).o"
  done
done
$NICE "$CXX" "${FL[@]}" -c "$HERE/shim/emu.cpp" -o "$EMU/kobj/emu.o"

if [ "${1:-}" != "--mocha" ]; then
  $NICE "$CXX" "${FL[@]}" -c "$HERE/driver.cpp" -o "$EMU/driver.o"
  $NICE "$CXX" -o "$EMU/emu_test" "$EMU/driver.o" "$EMU"/kobj/*.o "$EMU"/obj/*.o -lpthread
  exec $NICE "$EMU/emu_test" "$@"
fi
shift

# 3. --mocha: the whole CUDA variant (addon glue included) with the emulated kernels, in a copy
TREE="$EMU/tree"
rm -rf "$TREE" && mkdir -p "$TREE/build-cuda/Release" "$EMU/aobj"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$TREE" 2>/dev/null) || true
ln -s "$ROOT/node_modules" "$TREE/node_modules"
NAPI=(-I "$(node -p 'require("path").join(process.execPath, "../../include/node")')" -I "$ROOT/node_modules/node-addon-api"
      -DNAPI_VERSION=8 -DNODE_ADDON_API_DISABLE_DEPRECATED -DNAPI_CPP_EXCEPTIONS -DLOWBIT_WITH_CUDA=1 -DLOWBIT_HAVE_X86_VARIANTS=1)
for f in "$ROOT"/native/addon/*.cpp; do
  $NICE "$CXX" -std=c++17 -O1 -fPIC -fexceptions -I "$ROOT/native" "${NAPI[@]}" -w -c "$f" -o "$EMU/aobj/$(basename "$f" .cpp).o"
done
$NICE "$CXX" -shared -o "$TREE/build-cuda/Release/lowbit_cuda.node" "$EMU"/aobj/*.o "$EMU"/kobj/*.o "$EMU"/obj/*.o -lpthread
(cd "$TREE" && $NICE npm run -s build:ts >/dev/null)
cd "$TREE"
if [ $# -eq 0 ]; then set -- 'dist/test/cuda/**/*.test.js'; fi
exec $NICE npx mocha --no-config --timeout 3600000 "$@"
