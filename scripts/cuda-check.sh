#!/usr/bin/env bash
# Build the CUDA variant, run the CUDA tests and the CUDA benchmarks, and write the results as JSON
# (device, driver, test counts, figures) to $OUT, or ./cuda-results when $OUT is unset.
#
#   bash scripts/cuda-check.sh            # full benchmark (a few minutes on an H100)
#   QUICK=1 bash scripts/cuda-check.sh    # smaller benchmark
#
# Files written:  device.json (nvidia-smi + the addon's own report), build.log, tests.json (mocha
# JSON reporter), tests.log (console, with the skip reasons), bench.json (scripts/bench/cuda.ts),
# summary.json (the gist of all of them). Exit status: non-zero when the build or a test failed.
# Without a GPU everything still runs: the device tests and the benchmark skip with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-$PWD/cuda-results}"
mkdir -p "$OUT_DIR"
log() { echo "[cuda-check] $*" >&2; }

log "results in $OUT_DIR"
SMI=null
if command -v nvidia-smi >/dev/null 2>&1; then
  SMI=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null | head -1 | node -e '
    const s = require("fs").readFileSync(0, "utf8").trim(); if (!s) { console.log("null"); process.exit(0); }
    const [name, driver, memory, cc] = s.split(",").map((x) => x.trim());
    console.log(JSON.stringify({ name, driver, memory, computeCapability: cc }));') || SMI=null
fi

log "building the CUDA variant (npm run build:cuda)"
if ! npm run build:cuda >"$OUT_DIR/build.log" 2>&1; then
  log "build failed: see $OUT_DIR/build.log"
  tail -30 "$OUT_DIR/build.log" >&2
  echo "{\"ok\": false, \"stage\": \"build:cuda\", \"log\": \"$OUT_DIR/build.log\"}" >"$OUT_DIR/summary.json"
  exit 1
fi
# The tests compare with the CPU path. With a device visible the CUDA variant serves both (it
# contains every CPU kernel); without one, the CPU variant is needed for the host checks.
if [ ! -f build/Release/lowbit.node ]; then
  log "building the CPU variant too (node-gyp rebuild)"
  npx node-gyp rebuild >>"$OUT_DIR/build.log" 2>&1 || { log "CPU build failed: see $OUT_DIR/build.log"; exit 1; }
fi
npm run -s build:ts >>"$OUT_DIR/build.log" 2>&1 || { log "tsc failed: see $OUT_DIR/build.log"; exit 1; }

node -e '
  const { cudaAddonPath } = require("./dist/lib/native");
  let report;
  try { report = require(cudaAddonPath()).cudaInfo(); } catch (e) { report = { error: String(e.message) }; }
  const smi = JSON.parse(process.argv[1]);
  process.stdout.write(JSON.stringify({ nvidiaSmi: smi, addon: report }, null, 2) + "\n");
' "$SMI" >"$OUT_DIR/device.json"
log "device: $(node -e 'const d = require(process.argv[1]); console.log(d.addon.devices && d.addon.devices.length ? d.addon.devices.map((x) => x.name).join(", ") : "none (" + (d.addon.error || "?") + ")")' "$OUT_DIR/device.json")"

log "CUDA tests"
npx mocha --no-config --timeout 600000 --reporter json --reporter-option "output=$OUT_DIR/tests.json" 'dist/test/cuda/**/*.test.js' >"$OUT_DIR/tests.log" 2>&1
TEST_RC=$?
node -e '
  const r = require(process.argv[1]);
  console.error(`[cuda-check] tests: ${r.stats.passes} passed, ${r.stats.pending} skipped, ${r.stats.failures} failed`);
  for (const f of r.failures) console.error(`  ✗ ${f.fullTitle}: ${(f.err.message || "").split("\n")[0]}`);
' "$OUT_DIR/tests.json" || true
grep -h "no CUDA device" "$OUT_DIR/tests.log" | sort -u | head -3 >&2 || true

log "CUDA benchmarks"
BENCH_ARGS=(--out "$OUT_DIR/bench.json")
[ "${QUICK:-0}" = "1" ] && BENCH_ARGS+=(--quick)
node dist/scripts/bench/cuda.js "${BENCH_ARGS[@]}" >/dev/null
BENCH_RC=$?

node -e '
  const fs = require("fs");
  const dir = process.argv[1];
  const read = (f) => { try { return JSON.parse(fs.readFileSync(`${dir}/${f}`, "utf8")); } catch { return null; } };
  const dev = read("device.json"), t = read("tests.json"), b = read("bench.json");
  const summary = {
    ok: Number(process.argv[2]) === 0 && Number(process.argv[3]) === 0,
    date: new Date().toISOString(),
    device: dev, tests: t ? t.stats : null,
    failures: t ? t.failures.map((f) => ({ test: f.fullTitle, message: f.err.message })) : null,
    bench: b ? (b.skipped ? { skipped: true, reason: b.reason } : {
      copyGBps: b.copy.gbps,
      matmul: b.matmul.map((e) => ({ name: e.name, int4Ms: e.int4.medianMs, fp16Ms: e.fp16.medianMs, speedup: e.speedup, kernel: e.kernel })),
      gptq: b.gptq.map((e) => ({ name: e.name, seconds: e.medianSeconds, peakDeviceBytes: e.peakDeviceBytes })),
    }) : null,
  };
  fs.writeFileSync(`${dir}/summary.json`, JSON.stringify(summary, null, 2) + "\n");
' "$OUT_DIR" "$TEST_RC" "$BENCH_RC"
log "summary: $OUT_DIR/summary.json"
[ "$TEST_RC" -eq 0 ] && [ "$BENCH_RC" -eq 0 ]
