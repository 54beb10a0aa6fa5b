#!/usr/bin/env bash
# npm run test:asan — rebuild the CPU addon with AddressSanitizer + UndefinedBehaviorSanitizer
# (cmake-js, into build-asan/, leaving the normal build alone) and run the native tests with it.
# Node itself is not instrumented, so libasan is preloaded; leak checking is off (V8 keeps
# allocations alive until exit by design), every other ASan/UBSan report aborts the run.
set -euo pipefail
cd "$(dirname "$0")/.."
npx cmake-js compile --out build-asan --CDLOWBIT_SANITIZE=ON -p "$(nproc)"
addon=build-asan/Release/lowbit.node
[ -f "$addon" ] || { echo "test:asan: $addon was not built" >&2; exit 1; }
npm run build:ts
asan=$(g++ -print-file-name=libasan.so)
ubsan=$(g++ -print-file-name=libubsan.so)
export LD_PRELOAD="$asan:$ubsan"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LOWBIT_ADDON="$PWD/$addon" LOWBIT_NO_CUDA=1
npx mocha --no-config --timeout 600000 'dist/test/native/**/*.test.js' 'dist/test/e2e/pipeline.test.js' 'dist/test/e2e/runtime.test.js' 'dist/test/e2e/calibrate.test.js' 'dist/test/e2e/packed-runtime.test.js' 'dist/test/e2e/concurrency.test.js' 'dist/test/e2e/nonfinite.test.js' 'dist/test/e2e/kv-cache.test.js' 'dist/test/e2e/act-quant.test.js' 'dist/test/e2e/train.test.js'
