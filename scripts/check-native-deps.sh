#!/usr/bin/env bash
# The C++ half of STYLE.md §1's dependency direction, checked from the #include lines of native/:
#
#   addon → quant | runtime | train → kernels/* → core   (only addon/ sees napi.h)
#
#   1. nothing under native/kernels/ includes quant/, runtime/, train/, addon/ or napi.h;
#   2. nothing under native/core/ includes kernels/, quant/, runtime/ or addon/;
#   3. nothing outside native/addon/ includes napi.h or addon/;
#   4. native/train/ (the training engine) includes neither runtime/ nor quant/: it shares kernels, not
#      the inference model (and nothing but addon/ and the tests includes train/).
# So the core and the kernels build into a plain C++ test binary (native/tests/, the CUDA host
# emulation) without Node, and the CUDA twins of algorithms sit in quant/cuda/, not kernels/cuda/.
# Prints every offending line as path:line and exits 1; exit 0 and one line when all hold.
#
#   bash scripts/check-native-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
# check <description> <folder> <include-target regex> [folder to leave out]
# Lists the #include lines (quoted or angled, any spacing after '#') under <folder> whose target
# matches; comment lines do not match because they do not start with '#'.
check() {
  local what=$1 dir=$2 target=$3 skip=${4:-}
  local hits
  hits=$(grep -rnE --include='*.h' --include='*.hpp' --include='*.cpp' --include='*.cc' \
    --include='*.cu' --include='*.cuh' --include='*.inl' \
    "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($target)" "$dir" \
    | { if [ -n "$skip" ]; then grep -v "^$skip/" || true; else cat; fi; } || true)
  if [ -n "$hits" ]; then
    echo "check-native-deps: $what:" >&2
    echo "$hits" | sed 's/^/  /' >&2
    failed=1
  fi
}

check "native/kernels/ must not include quant/, runtime/, train/, addon/ or napi.h (kernels → core only)" \
  native/kernels '(quant|runtime|train|addon)/|napi\.h'
check "native/core/ must not include kernels/, quant/, runtime/, train/ or addon/ (core depends on nothing)" \
  native/core '(kernels|quant|runtime|train|addon)/'
check "native/train/ must not include runtime/ or quant/ (the training engine shares kernels, not the inference model)" \
  native/train '(runtime|quant)/'
check "native/runtime/ and native/quant/ must not include train/" \
  native/runtime 'train/'
check "native/quant/ must not include train/" \
  native/quant 'train/'
check "only native/addon/ may include napi.h or addon/ (the core is plain C++)" \
  native '(addon/|napi\.h)' native/addon

if [ "$failed" -ne 0 ]; then
  echo "check-native-deps: move the code to the layer that may depend on it (STYLE.md §1," >&2
  echo "  docs/guide-development.md \"Layout\"), or pass what it needs in as a parameter." >&2
  exit 1
fi
echo "check-native-deps: ok (kernels → core, core → nothing, napi.h only in addon/)"
