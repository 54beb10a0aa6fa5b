#!/usr/bin/env bash
# clang-format over native/ (*.cpp, *.h, *.cu, *.cuh, native/tests/ included), with the repository's
# .clang-format. Regions that must keep their hand layout are fenced with `// clang-format off/on`,
# each with the reason on the line above.
#
#   bash scripts/check-format.sh          # check: exit 1 and list what would change
#   bash scripts/check-format.sh --fix    # rewrite the files in place
#
# The style was tuned with clang-format 14 (Debian 12's), and other majors format a few
# constructs differently: CLANG_FORMAT picks the binary (default: clang-format-14 if installed,
# else clang-format), and another major is named in a warning.
# A missing clang-format is an error, unless LOWBIT_LINT_ALLOW_MISSING=1 (then: skip, exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."

fix=0
case "${1:-}" in
  --fix) fix=1 ;;
  "") ;;
  *) echo "usage: bash scripts/check-format.sh [--fix]" >&2; exit 2 ;;
esac

CF=${CLANG_FORMAT:-}
if [ -z "$CF" ]; then
  if command -v clang-format-14 >/dev/null 2>&1; then CF=clang-format-14; else CF=clang-format; fi
fi
if ! command -v "$CF" >/dev/null 2>&1; then
  if [ "${LOWBIT_LINT_ALLOW_MISSING:-}" = "1" ]; then
    echo "check-format: clang-format not installed; skipped (LOWBIT_LINT_ALLOW_MISSING=1)"
    exit 0
  fi
  echo "check-format: $CF not found. Install it (Debian/Ubuntu: apt-get install clang-format), set" >&2
  echo "  CLANG_FORMAT to its path, or set LOWBIT_LINT_ALLOW_MISSING=1 to skip this check." >&2
  exit 1
fi
version=$("$CF" --version)
major=$(echo "$version" | sed -n 's/.*version \([0-9][0-9]*\).*/\1/p')
if [ "$major" != "14" ]; then
  echo "check-format: warning: $version; .clang-format was tuned with clang-format 14, and another" >&2
  echo "  major may format a few constructs differently (set CLANG_FORMAT=clang-format-14)." >&2
fi

# Tracked files and new ones not yet added (build outputs are git-ignored, so never listed).
mapfile -d '' files < <(git ls-files -z --cached --others --exclude-standard -- \
  'native/*.cpp' 'native/*.h' 'native/*.cu' 'native/*.cuh')
if [ "${#files[@]}" -eq 0 ]; then
  echo "check-format: no files under native/" >&2
  exit 1
fi

if [ "$fix" = 1 ]; then
  "$CF" -i --style=file "${files[@]}"
  echo "check-format: formatted ${#files[@]} files with $CF ($major)"
  exit 0
fi
if ! "$CF" --dry-run -Werror --style=file "${files[@]}"; then
  echo "check-format: the files above are not clang-formatted; run: bash scripts/check-format.sh --fix" >&2
  exit 1
fi
echo "check-format: ok (${#files[@]} files under native/, $CF $major)"
