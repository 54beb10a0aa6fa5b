/**
 * Child process of the checkpoint benchmarks: runs ONE operation on a model directory and prints
 * one JSON line to stdout with its time and this process's peak RSS (so the figure belongs to that
 * operation alone, not to the benchmark parent's buffers).
 *
 * Two peak-RSS figures are printed. `maxRssKiB` is process.resourceUsage().maxRSS (getrusage
 * ru_maxrss); on Linux it is NOT reset by execve, so it also covers the parent's resident set at the
 * moment it forked this child (measured: a child of a 540 MB parent reports ~490 MB although it
 * never exceeds ~42 MB). `vmHwmKiB` is VmHWM from /proc/self/status, the high-water mark of this
 * process's own address space, which exec does reset: that is the figure to trust on Linux.
 *
 *   node checkpoint-child.js baseline
 *   node checkpoint-child.js inspect <dir>
 *   node checkpoint-child.js rtn <dir> <out> <threads>
 *   node checkpoint-child.js gguf <dir> <out.gguf> <threads> <tokenizer.bin>
 */
import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { inspectModel, quantize, setThreads, hasAddon } from '../../lib';
import { exportGguf } from '../../lib/pipeline/gguf-export';

async function main(): Promise<Record<string, unknown>> {
  const [op, dir, out, threads, tokenizer] = process.argv.slice(2);
  if (!hasAddon()) throw new Error('the native addon did not load');
  if (op === 'baseline') return { op };
  if (op === 'inspect') {
    const t0 = performance.now();
    const s = inspectModel(dir);
    const seconds = (performance.now() - t0) / 1000;
    return { op, seconds, parameters: s.parameters, tensors: s.tensors.length, tensorBytes: s.tensorBytes, bytesOnDisk: s.bytesOnDisk, files: s.files.length };
  }
  if (op === 'rtn') {
    if (threads) setThreads(Number(threads));
    const t0 = performance.now();
    const r = await quantize(dir, { method: 'rtn', bits: 4, groupSize: 128 }, { out, overwrite: true });
    const seconds = (performance.now() - t0) / 1000;
    return {
      op, seconds, quantizedModules: r.quantizedModules, skippedModules: r.skippedModules,
      sourceBytes: r.sourceBytes, outputBytes: r.outputBytes, meanRelError: r.meanRelError,
    };
  }
  if (op === 'gguf') {
    if (threads) setThreads(Number(threads));
    const t0 = performance.now();
    const r = await exportGguf(dir, out, { type: 'Q4_0', tokenizer, overwrite: true });
    const seconds = (performance.now() - t0) / 1000;
    return { op, seconds, sourceBytes: r.sourceBytes, outputBytes: r.bytes, tensors: r.tensors, fallbacks: r.fallbacks.length };
  }
  throw new Error(`unknown op ${JSON.stringify(op)}`);
}

/** VmHWM (peak resident set of this address space) in KiB, or null off Linux. */
function vmHwmKiB(): number | null {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

main().then((r) => {
  // maxRSS: getrusage ru_maxrss in KiB (inherits the forking parent's RSS on Linux, see above).
  process.stdout.write(`${JSON.stringify({ ...r, maxRssKiB: process.resourceUsage().maxRSS, vmHwmKiB: vmHwmKiB() })}\n`);
}, (e: unknown) => {
  process.stderr.write(`checkpoint-child: ${(e instanceof Error ? e.stack : undefined) ?? String(e)}\n`);
  process.exitCode = 1;
});
