/**
 * Print the Markdown tables of docs/PERFORMANCE.md from one benchmark JSON document:
 *
 *   node dist/scripts/bench/table.js bench-results/bench-<date>.json
 */
import * as fs from 'node:fs';
import type { CheckpointEntry } from './checkpoint';
import type { GemmEntry } from './gemm';
import type { GptqBenchEntry, GptqPipelineEntry, GptqPipelineSkipped } from './gptq';
import type { KernelEntry } from './kernels';
import type { Limits } from './limits';
import type { RuntimeEntry } from './runtime';

/**
 * One entry of `benchmarks` as read from the file: only the fields the filters below test. Each
 * filter narrows its entries to the type the benchmark's module writes (run.ts collects them).
 */
interface Entry {
  name: string;
  unit?: unknown;
  copy?: unknown;
  /** The reason (runtime.ts) or `true` with a `reason` field (gptq.ts, runtime-q.ts). */
  skipped?: string | boolean;
  peakRssBytes?: unknown;
}

/** The row copy-same-bytes that run.ts adds after the kernels. */
type CopyRow = Entry & Pick<KernelEntry, 'shape' | 'dtype' | 'gbps'>;

/** The parts of a benchmark document (run.ts) the tables read. */
export interface BenchDoc {
  limits: Limits;
  benchmarks: Entry[];
}

const f = (x: unknown, d = 2) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(d) : '—');
const pct = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? `${Math.round(x * 100)}%` : '—');
/** tokens/s: whole numbers from 100 up, one decimal below. */
const tps = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(x >= 100 ? 0 : 1) : '—');
const mib = (x: unknown) => (typeof x === 'number' ? `${(x / 2 ** 20).toFixed(0)} MiB` : '—');
const gb = (x: unknown) => (typeof x === 'number' ? `${(x / 1e9).toFixed(2)} GB` : '—');

function gptqTables(benches: Entry[]): string[] {
  const out: string[] = [];
  const g = benches.filter((b): b is GptqBenchEntry => /^(hessian-syrk|gptq-inverse-factor|gptq-layer-)/.test(b.name));
  if (g.length) {
    out.push('| task | shape | median s | GFLOP/s (counted) | % of FMA peak |', '|---|---|---|---|---|');
    for (const b of g) out.push(`| \`${b.name}\` | ${b.shape.join('×')} | ${f(b.timing.medianSeconds, 3)} | ${f(b.gflops, 1)} | ${pct(b.fractionOfFmaPeak)} |`);
    out.push('');
  }
  const p = benches.find((b): b is GptqPipelineEntry | GptqPipelineSkipped => b.name === 'gptq-pipeline-1b');
  if (p && !p.skipped) {
    out.push('| task | checkpoint | wall s | calibration + GPTQ s | calibration tokens | modules | peak RSS (VmHWM) | output |', '|---|---|---|---|---|---|---|---|');
    out.push(`| \`gptq-pipeline-1b\` | ${gb(p.checkpointBytes)} F16 | ${f(p.seconds, 1)} | ${f(p.calibrationSeconds, 1)} | ${p.tokens} | ${p.modules} | ${mib(p.peakRssBytes)} | ${gb(p.outputBytes)} |`);
    out.push('');
  }
  return out;
}

export function tables(doc: BenchDoc): string {
  const out: string[] = [];
  const L = doc.limits;
  out.push('| limit | threads | median | best |', '|---|---|---|---|');
  out.push(`| copy, 256 MiB (DRAM), STREAM GB/s | ${L.copy.threads} | ${f(L.copy.gbps, 1)} | ${f(L.copy.gbpsBest, 1)} |`);
  out.push(`| copy, 8 MiB (L3, "hot"), STREAM GB/s | ${L.copyHot.threads} | ${f(L.copyHot.gbps, 1)} | ${f(L.copyHot.gbpsBest, 1)} |`);
  out.push(`| fp32 FMA peak, GFLOP/s | 1 | ${f(L.fmaPeak1.gflops, 1)} | ${f(L.fmaPeak1.gflopsBest, 1)} |`);
  out.push(`| fp32 FMA peak, GFLOP/s | ${L.fmaPeakAll.threads} | ${f(L.fmaPeakAll.gflops, 1)} | ${f(L.fmaPeakAll.gflopsBest, 1)} |`);
  out.push('');
  const benches = doc.benchmarks;
  const kernels = benches.filter((b): b is KernelEntry => Boolean(b.copy));
  if (kernels.length) {
    out.push('| task | shape | lowbit GB/s (median) | copy GB/s | % of copy | reference-path GB/s | speed-up vs reference |');
    out.push('|---|---|---|---|---|---|---|');
    for (const b of kernels) {
      out.push(`| \`${b.name}\` | ${b.shape.join('×')} ${b.dtype} | ${f(b.gbps)} | ${f(b.copy.gbps)} | ${pct(b.fractionOfCopy)} | ` +
        `${b.reference ? f(b.reference.gbps, 3) : '—'} | ${b.reference ? `${f(b.reference.speedup, 1)}×` : '—'} |`);
    }
    const c = benches.find((b): b is CopyRow => b.name === 'copy-same-bytes');
    if (c) out.push(`| \`copy-same-bytes\` | ${c.shape.join('×')} ${c.dtype} | — | ${f(c.gbps)} | 100% | — | — |`);
    out.push('');
    out.push('| task | median s | min s | repeats | quantize phase s | pack phase s | (in+out bytes)/s over copy STREAM |');
    out.push('|---|---|---|---|---|---|---|');
    for (const b of kernels) {
      out.push(`| \`${b.name}\` | ${f(b.medianSeconds, 4)} | ${f(b.minSeconds, 4)} | ${b.repeats} (+${b.warmup} warmup) | ` +
        `${b.phases ? f(b.phases.quantizeMedianSeconds, 4) : '—'} | ${b.phases ? f(b.phases.packMedianSeconds, 4) : '—'} | ${pct(b.fractionOfCopyTraffic)} |`);
    }
    out.push('');
  }
  const gm = benches.filter((b): b is GemmEntry => b.unit === 'GFLOP/s');
  if (gm.length) {
    out.push('| shape m×k×n | layer | lowbit GFLOP/s | OpenBLAS GFLOP/s | lowbit / OpenBLAS | lowbit % of FMA peak | OpenBLAS % of FMA peak | lowbit GB/s of w | max \\|Δ\\| / max \\|y\\| |');
    out.push('|---|---|---|---|---|---|---|---|---|');
    for (const b of gm) {
      const sh = `${b.shape.m}×${b.shape.k}×${b.shape.n}`;
      out.push(`| ${sh} | ${b.label} | ${f(b.lowbit.gflops, 1)} | ${b.peer ? f(b.peer.gflops, 1) : '—'} | ${b.ratio !== null ? `${f(b.ratio)}×` : '—'} | ` +
        `${pct(b.lowbit.fractionOfFmaPeak)} | ${b.peer ? pct(b.peer.fractionOfFmaPeak) : '—'} | ${b.shape.m <= 32 ? f(b.lowbit.weightGBps, 1) : '—'} | ${b.check ? `${b.check.relToMax.toExponential(1)}${b.check.pass ? '' : ' (FAIL)'}` : '—'} |`);
    }
    out.push('');
  }
  const rt = benches.filter((b): b is RuntimeEntry => b.unit === 'tokens/s');
  if (rt.length) {
    const ths = [...new Set(rt.flatMap((b) => (b.byThreads ?? []).map((t) => t.threads)))].sort((a, b) => a - b);
    out.push(`| task | model | tokens (positions) | tokens/s (median) | best | ${ths.map((t) => `${t} thread${t > 1 ? 's' : ''}, tokens/s`).join(' | ')}${ths.length ? ' | ' : ''}runs |`);
    out.push(`|---|---|---|---|---|${ths.map(() => '---|').join('')}---|`);
    for (const b of rt) {
      const by = (t: number) => { const r = (b.byThreads ?? []).find((x) => x.threads === t); return r ? tps(r.tokensPerSecond) : '—'; };
      out.push(`| \`${b.name}\` | ${b.model.preset ?? 'stories260K'} | ${b.tokens} (${b.positions[0]}…${b.positions[1]}) | ${tps(b.tokensPerSecond)} | ${tps(b.tokensPerSecondBest)} | ` +
        `${ths.map(by).join(' | ')}${ths.length ? ' | ' : ''}${b.runs} |`);
    }
    out.push('');
    for (const b of rt) {
      const w = b.weightBandwidth;
      if (!w) continue;
      out.push(`\`${b.name}\`: ${(w.bytesPerToken / 1e9).toFixed(3)} GB of f32 weights per token, ${f(w.secondsPerToken, 3)} s per token (mean; median ` +
        `${f(b.perTokenMedianSeconds, 3)} s) → ` +
        `**${f(w.gbps)} GB/s** of weights read; 256 MiB copy ${f(w.copyBeforeGBps, 1)} GB/s before and ${f(w.copyAfterGBps, 1)} GB/s after (STREAM) → ` +
        `${pct(w.fractionOfCopy)} of the copy.`);
      out.push('');
    }
  }
  const sk = benches.filter((b) => b.skipped !== undefined);
  for (const b of sk) out.push(`\`${b.name}\`: skipped: ${b.skipped === true ? ((b as { reason?: string }).reason ?? 'no reason given') : String(b.skipped)}`, '');
  const ck = benches.filter((b): b is CheckpointEntry => b.peakRssBytes !== undefined && !b.name.startsWith('gptq-'));
  if (ck.length) {
    out.push('| task | checkpoint | median s | peak RSS (VmHWM) | RSS / checkpoint | baseline RSS (load only) | GB/s of source |');
    out.push('|---|---|---|---|---|---|---|');
    for (const b of ck) {
      out.push(`| \`${b.name}\` | ${b.preset}, ${(b.parameters / 1e9).toFixed(3)} B params, ${gb(b.checkpointBytes)} | ${f(b.medianSeconds, 3)} | ` +
        `${mib(b.peakRssBytes)} | ${pct(b.peakRssFractionOfCheckpoint)} | ${mib(b.baselineRssBytes)} | ${b.gbps !== undefined ? f(b.gbps) : '—'} |`);
    }
    out.push('');
  }
  out.push(...gptqTables(benches));
  return out.join('\n');
}

if (require.main === module) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node dist/scripts/bench/table.js bench-results/bench-<date>.json\n');
    process.exit(2);
  }
  process.stdout.write(tables(JSON.parse(fs.readFileSync(file, 'utf8')) as BenchDoc));
}
