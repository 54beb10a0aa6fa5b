/**
 * `npm run bench` and `lowbit bench`: lowbit's benchmarks as ONE JSON document on stdout (progress
 * on stderr). `npm run bench` also writes bench-results/bench-<date>.json in the checkout;
 * `lowbit bench --out FILE` writes where it is told. See docs/PERFORMANCE.md.
 *
 *   node dist/scripts/bench/run.js [--quick] [--only a,b] [--threads N]
 *
 * --quick      smaller sizes and fewer repeats (a smoke run, ~30 s): two GEMM shapes, the
 *              'demo' checkpoint for the checkpoint and 1.1B runtime tasks
 * --only a,b   only these benchmarks (names below; a trailing * matches a prefix). The machine
 *              limits are always measured: every figure is reported against them.
 * --threads N  lowbit's compute threads (default: the addon's default, one per physical core)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { addon, packageRoot } from '../../lib/native';
import { setThreads, setKernelMode } from '../../lib';
import { writeJsonAtomic } from '../../lib/formats/output';
import { commandLine, gitInfo, machineInfo, versions } from './env';
import { measureLimits } from './limits';
import { benchConvert, benchScan, benchRtn, makeF16Weights, RTN_VARIANTS, ROWS, COLS, type KernelEntry } from './kernels';
import { benchCheckpoint, type CheckpointEntry } from './checkpoint';
import { benchGemm, gemmShapes, medianRatio, type GemmEntry } from './gemm';
import { benchRuntime, type RuntimeEntry, type SkippedEntry } from './runtime';
import { benchGptq, benchGptqPipeline, type GptqBenchEntry, type GptqPipelineEntry, type GptqPipelineSkipped } from './gptq';
import { benchQgemm, benchQdot, QDOT_NAMES } from './qgemm';
import { benchGemm16, GEMM16_NAMES } from './gemm16';
import { benchKv, KV_NAMES } from './kvcache';
import { benchTrain, TRAIN_NAMES } from './train';
import { benchRuntimeQ } from './runtime-q';
import { canForceGc, log, median, round } from './timing';

const GEMM_NAMES = gemmShapes(false).map((s) => `gemm-${s.m}x${s.k}x${s.n}`);
const RUNTIME_NAMES = ['runtime-stories260k-prefill', 'runtime-stories260k-decode', 'runtime-1b-prefill', 'runtime-1b-decode'];
/** Every benchmark name `--only` accepts. */
export const NAMES = [
  'convert-f16-f32', 'scan-nonfinite-f16', 'copy-same-bytes', ...RTN_VARIANTS.map((v) => v.name), ...GEMM_NAMES,
  'checkpoint-1b-inspect', 'checkpoint-1b-rtn', 'checkpoint-1b-gguf', ...RUNTIME_NAMES,
  'hessian-syrk', 'gptq-inverse-factor', 'gptq-layer-4096x4096', 'gptq-layer-11008x4096', 'gptq-layer-1024x1024', 'gptq-pipeline-1b',
  'qgemv-int4-4096x4096', 'qgemv-int4-11008x4096', 'qgemm-int4-32x4096x4096', 'qgemm-int4-512x4096x4096',
  'runtime-1b-gptq4-prefill', 'runtime-1b-gptq4-decode', 'runtime-1b-q4_0-prefill', 'runtime-1b-q4_0-decode', 'runtime-1b-q4_k-prefill', 'runtime-1b-q4_k-decode',
  ...QDOT_NAMES, ...GEMM16_NAMES, ...KV_NAMES, ...TRAIN_NAMES,
];

export interface BenchArgs {
  quick: boolean;
  only: string[] | null;
  threads: number | null;
}

/** Where the document goes: bench-results/ and stdout (npm run bench), one file (--out), or stdout only (--stdout). */
interface OutputArgs {
  out: string | null;
  stdoutOnly: boolean;
  list: boolean;
}

function usage(): string {
  return 'usage: node dist/scripts/bench/run.js [--quick] [--only name,name] [--threads N] [--out FILE | --stdout] [--list]\n' +
    `benchmarks: ${NAMES.join(', ')}\n`;
}

function parseArgs(argv: string[]): BenchArgs & OutputArgs {
  const a: BenchArgs & OutputArgs = { quick: false, only: null, threads: null, out: null, stdoutOnly: false, list: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => {
      const v = inline ?? argv.at(++i);
      if (v === undefined) throw new Error(`${flag}: expected a value\n${usage()}`);
      return v;
    };
    if (flag === '--quick') a.quick = true;
    else if (flag === '--list') a.list = true;
    else if (flag === '--stdout') a.stdoutOnly = true;
    else if (flag === '--out') a.out = value();
    else if (flag === '--only') a.only = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (flag === '--threads') {
      const n = Number(value());
      if (!Number.isInteger(n) || n < 1) throw new Error(`--threads: expected a positive integer\n${usage()}`);
      a.threads = n;
    } else if (flag === '--help' || flag === '-h') {
      process.stdout.write(usage());
      process.exit(0);
    } else throw new Error(`unknown argument ${JSON.stringify(arg)}\n${usage()}`);
  }
  const bad = unknownBenchNames(a.only);
  if (bad) throw new Error(`--only: no benchmark named ${JSON.stringify(bad)}\n${usage()}`);
  return a;
}

/** The first `--only` pattern that names no benchmark (a trailing * matches a prefix), or null. */
export function unknownBenchNames(only: string[] | null): string | null {
  for (const p of only ?? []) {
    const ok = p.endsWith('*') ? NAMES.some((n) => n.startsWith(p.slice(0, -1))) : NAMES.includes(p);
    if (!ok) return p;
  }
  return null;
}

/**
 * Run the selected benchmarks and return the JSON document (progress goes to stderr). The caller
 * decides where the document goes.
 */
export async function runBench(args: BenchArgs): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const want = (name: string) => !args.only || args.only.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : p === name));
  const timestamp = new Date();
  const info = addon().info();
  if (args.threads !== null) setThreads(args.threads);
  const threads = args.threads ?? info.threads;
  setKernelMode('fast');

  const doc: Record<string, unknown> = {
    schema: 'lowbit-bench/1',
    timestamp: timestamp.toISOString(),
    command: { ...commandLine(), cwd: process.cwd() },
    options: { quick: args.quick, only: args.only, threads, gcBeforeEachSample: canForceGc },
    git: gitInfo(),
    machine: machineInfo(threads),
    versions: versions(),
    /** 1/5/15-minute load averages: other work on these cores shows up here. */
    loadAverage: { start: os.loadavg().map((x) => round(x, 3)), end: null as number[] | null },
  };

  log(`machine limits (${threads} thread(s)): copy 256 MiB, copy 8 MiB, FMA peak`);
  const limits = await measureLimits(threads, args.quick);
  doc.limits = limits;
  log(`copy ${limits.copy.gbps} GB/s (DRAM, STREAM), ${limits.copyHot.gbps} GB/s (8 MiB hot); ` +
    `FMA ${limits.fmaPeak1.gflops} GFLOP/s (1 thread), ${limits.fmaPeakAll.gflops} (${threads})`);
  doc.definitions = {
    gbps: 'GB/s (10^9 bytes/s) of INPUT bytes (the fp16 tensor, 2 bytes per element): inputBytes / medianSeconds',
    'copy.gbps': 'a plain multi-threaded memcpy of the same number of input bytes, measured interleaved with the kernel (copy, kernel, copy, kernel, …): inputBytes / seconds',
    'copy.streamGBps / limits.copy.gbps': 'STREAM "copy" convention: 2·bytes / seconds (read + write)',
    fractionOfCopy: 'kernel GB/s of input over copy GB/s of the same input bytes = copy time / kernel time (goal ≥ 0.5)',
    fractionOfCopyTraffic: '(input + output bytes) / kernel time over the copy\'s STREAM bandwidth',
    'reference.speedup': 'reference-path time (every kernel in its plain reference, timed once) / fast-path median time',
    'gemm.gflops': 'GFLOP/s = 2·m·k·n / median seconds / 1e9, for lowbit (gemm) and the peer (OpenBLAS cblas_sgemm) measured interleaved in this process',
    'gemm.ratio': 'lowbit GFLOP/s / OpenBLAS GFLOP/s (medians); > 1: lowbit faster',
    'gemm.fractionOfFmaPeak': 'GFLOP/s over limits.fmaPeakAll.gflops (same thread count, this run)',
    'gemm.check.relToMax': 'max |y_lowbit − y_openblas| / max |y_openblas| on the same inputs (tolerance 1e-4)',
    tokensPerSecond: 'runtime: tokens timed / median seconds (prefill: one batched forward; decode: a loop of single-token forwards)',
    'weightBandwidth.gbps': 'runtime-1b-decode: 4 bytes × (linear-layer + classifier parameters) per token / seconds per token (f32 weights read once per token)',
    'weightBandwidth.fractionOfCopy': 'weight read GB/s over the 256 MiB copy\'s STREAM GB/s (2·bytes/s) measured just before and after the decode',
    peakRssFractionOfCheckpoint: 'child peak RSS (VmHWM of the child\'s own address space on Linux, see peakRssSource; getrusage maxRSS elsewhere) / bytes of the checkpoint directory',
    maxRssBytes: 'process.resourceUsage().maxRSS of the child: on Linux it survives execve, so it includes the parent\'s RSS at fork time; kept for the record, not the headline',
  };

  const kernels: KernelEntry[] = [];
  const wantKernels = ['convert-f16-f32', 'scan-nonfinite-f16', 'copy-same-bytes', ...RTN_VARIANTS.map((v) => v.name)].some(want);
  if (wantKernels) {
    log(`making a ${ROWS}×${COLS} fp16 tensor`);
    const src = makeF16Weights(ROWS, COLS);
    const ko = { threads, warmup: args.quick ? 1 : 2, repeats: args.quick ? 3 : 10, reference: true };
    if (want('convert-f16-f32') || want('copy-same-bytes')) {
      log('convert-f16-f32 (interleaved with copy-same-bytes)');
      kernels.push(await benchConvert(src, ko));
    }
    if (want('scan-nonfinite-f16')) {
      log('scan-nonfinite-f16 (interleaved with copy-same-bytes)');
      kernels.push(await benchScan(src, ko));
    }
    for (const v of RTN_VARIANTS) {
      if (!want(v.name)) continue;
      log(`${v.name} (interleaved with copy-same-bytes)`);
      // The reference path once, for the headline 4-bit symmetric variant only.
      kernels.push(await benchRtn(src, v, { ...ko, reference: v.name === 'rtn-quantize-pack' }));
    }
  }
  const benchmarks: (KernelEntry | GemmEntry | CheckpointEntry | RuntimeEntry | SkippedEntry | GptqBenchEntry | GptqPipelineEntry | GptqPipelineSkipped | Record<string, unknown>)[] = [...kernels];
  if (kernels.length > 0) {
    // Every paired copy sample of the same input bytes, pooled: the copy row of the results table.
    const bytes = kernels[0].inputBytes;
    const med = median(kernels.map((k) => k.copy.medianSeconds));
    benchmarks.splice(1, 0, {
      name: 'copy-same-bytes',
      description: `plain multi-threaded memcpy (native benchCopy, 1 MiB chunks over ${threads} thread(s)) of the ${bytes} input bytes ` +
        'of the 4096×11008 fp16 tensor; measured interleaved with each kernel above (one sample = median of 3 copies); ' +
        'this row is the median over the kernels\' medians',
      shape: [ROWS, COLS], dtype: 'F16', inputBytes: bytes,
      repeats: kernels.reduce((n, k) => n + k.repeats, 0),
      medianSeconds: round(med), minSeconds: round(Math.min(...kernels.map((k) => k.copy.minSeconds))),
      unit: 'GB/s of input bytes', gbps: round(bytes / med / 1e9), streamGBps: round((2 * bytes) / med / 1e9),
      fractionOfLimitsCopy: round((2 * bytes) / med / 1e9 / limits.copy.gbps, 3),
      peer: null, peerReason: 'this is the reference itself: the machine limit for moving the same bytes',
    });
  }
  if (GEMM_NAMES.some(want)) {
    const g = (await benchGemm({ quick: args.quick, threads, limits })).filter((e) => want(e.name));
    benchmarks.push(...g);
    const r = medianRatio(g);
    if (r !== null) log(`gemm: median lowbit/OpenBLAS ratio over ${g.length} shape(s): ${r}`);
  }
  if (want('checkpoint-1b-inspect') || want('checkpoint-1b-rtn') || want('checkpoint-1b-gguf')) {
    const c = await benchCheckpoint({ quick: args.quick, threads, limits, want });
    doc.checkpoint = c.checkpoint;
    benchmarks.push(...c.entries);
  }
  if (['hessian-syrk', 'gptq-inverse-factor', 'gptq-layer-4096x4096', 'gptq-layer-11008x4096', 'gptq-layer-1024x1024'].some(want)) {
    benchmarks.push(...(await benchGptq({ quick: args.quick, limits, want })));
  }
  if (['qgemv-int4-4096x4096', 'qgemv-int4-11008x4096', 'qgemm-int4-32x4096x4096', 'qgemm-int4-512x4096x4096'].some(want)) {
    benchmarks.push(...((await benchQgemm({ quick: args.quick, limits, want })) as unknown as typeof benchmarks));
  }
  if (GEMM16_NAMES.some(want)) {
    benchmarks.push(...((await benchGemm16({ quick: args.quick, limits, want })) as unknown as typeof benchmarks));
  }
  if (KV_NAMES.some(want)) {
    benchmarks.push(...((await benchKv({ quick: args.quick, limits, want, threads: undefined })) as unknown as typeof benchmarks));
  }
  if (TRAIN_NAMES.some(want)) {
    benchmarks.push(...((await benchTrain({ quick: args.quick, limits, want, threads: undefined })) as unknown as typeof benchmarks));
  }
  if (QDOT_NAMES.some(want)) {
    benchmarks.push(...((await benchQdot({ quick: args.quick, limits, want })) as unknown as typeof benchmarks));
  }
  if (['runtime-1b-gptq4-prefill', 'runtime-1b-gptq4-decode', 'runtime-1b-q4_0-prefill', 'runtime-1b-q4_0-decode', 'runtime-1b-q4_k-prefill', 'runtime-1b-q4_k-decode'].some(want)) {
    benchmarks.push(...((await benchRuntimeQ({ quick: args.quick, limits, want })) as unknown as typeof benchmarks));
  }
  if (want('gptq-pipeline-1b')) benchmarks.push(await benchGptqPipeline({ quick: args.quick }));
  // Last: the 1.1B runtime holds ~4.4 GB of f32 weights while it runs (disposed afterwards).
  if (RUNTIME_NAMES.some(want)) benchmarks.push(...(await benchRuntime({ quick: args.quick, threads, limits, want })));
  doc.benchmarks = benchmarks;
  (doc.loadAverage as { end: number[] | null }).end = os.loadavg().map((x) => round(x, 3));
  doc.totalSeconds = round((performance.now() - t0) / 1000);
  return doc;
}

/** The hot- and cold-cache timings of the qgemv/qdot entries (qgemm.ts). */
interface HotCold {
  medianSeconds: number;
  gbps: number;
  fractionOfReadBandwidth?: number;
}

/** The fields of a benchmark entry its summary line reads: each kind of entry has some of them. */
interface SummaryEntry {
  name: string;
  skipped?: string | boolean;
  /** Why an entry with `skipped: true` was skipped. */
  reason?: string;
  medianSeconds?: number;
  timing?: { medianSeconds: number };
  gbps?: number;
  /** null where a GPTQ entry counts no FLOPs. */
  gflops?: number | null;
  ratio?: number | null;
  tokensPerSecond?: number;
  weightBandwidth?: { gbps: number };
  fractionOfCopy?: number;
  peakRssBytes?: number;
  peakRssFractionOfCheckpoint?: number;
  hot?: HotCold;
  cold?: HotCold;
}

/** One line per benchmark on stderr: the headline figure of each. */
export function logSummary(doc: Record<string, unknown>): void {
  for (const e of doc.benchmarks as SummaryEntry[]) {
    const extra = e.fractionOfCopy !== undefined ? `, ${Math.round(e.fractionOfCopy * 100)}% of copy` : '';
    const rss = e.peakRssBytes !== undefined ? `, peak RSS ${(e.peakRssBytes / 2 ** 20).toFixed(0)} MiB` +
      (e.peakRssFractionOfCheckpoint !== undefined ? ` (${Math.round(e.peakRssFractionOfCheckpoint * 100)}% of checkpoint)` : '') : '';
    const g = e.gbps !== undefined ? `, ${e.gbps} GB/s` : '';
    const fl = e.gflops !== undefined ? `, ${String(e.gflops)} GFLOP/s${e.ratio !== null && e.ratio !== undefined ? ` (${String(e.ratio)}× OpenBLAS)` : ''}` : '';
    const tps = e.tokensPerSecond !== undefined ? `, ${e.tokensPerSecond} tokens/s` : '';
    const wb = e.weightBandwidth ? `, weights ${e.weightBandwidth.gbps} GB/s` : '';
    const hot = e.hot, cold = e.cold;
    if (e.skipped !== undefined) log(`${e.name.padEnd(30)} skipped: ${e.skipped === true ? (e.reason ?? 'no reason given') : String(e.skipped)}`);
    else if (e.medianSeconds === undefined && hot) {
      log(`${e.name.padEnd(30)} hot ${hot.medianSeconds.toPrecision(4)} s (${hot.gbps} GB/s)` +
        (cold ? `, cold ${cold.medianSeconds.toPrecision(4)} s (${cold.gbps} GB/s${cold.fractionOfReadBandwidth !== undefined ? `, ${Math.round(cold.fractionOfReadBandwidth * 100)}% of read bandwidth` : ''})` : '') + fl);
    } else {
      const t = e.medianSeconds ?? e.timing?.medianSeconds;
      log(`${e.name.padEnd(30)}${t !== undefined ? ` median ${t.toPrecision(4)} s` : ''}${g}${fl}${tps}${wb}${extra}${rss}`.replace(/^(\S+\s*), /, '$1'));
    }
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.list) {
    process.stdout.write(NAMES.join('\n') + '\n');
    return;
  }
  const doc = await runBench(args);
  const json = `${JSON.stringify(doc, null, 2)}\n`;
  if (args.out !== null || args.stdoutOnly) {
    // `lowbit bench`: the document goes where it was asked, atomically for a file, and nowhere else
    if (args.out !== null) await writeJsonAtomic(args.out, doc);
    else process.stdout.write(json);
    logSummary(doc);
    return;
  }
  const dir = path.join(packageRoot(), 'bench-results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `bench-${String(doc.timestamp).replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
  fs.writeFileSync(file, json);
  process.stdout.write(json);
  log(`wrote ${path.relative(process.cwd(), file) || file}`);
  logSummary(doc);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`bench: ${(e instanceof Error ? e.stack : undefined) ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
