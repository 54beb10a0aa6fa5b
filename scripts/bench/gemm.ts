/**
 * fp32 GEMM, y (m × n) = x (m × k) · wᵀ with w (n × k) row-major: lowbit's `gemm` beside the peer
 * OpenBLAS cblas_sgemm (Debian's libopenblas, found by the addon with dlopen at run time) in the
 * same process, samples interleaved (lowbit, OpenBLAS, lowbit, …; each a burst of back-to-back calls), against the FMA peak measured
 * in the same run.
 */
import { performance } from 'node:perf_hooks';
import { spawnSync } from 'node:child_process';
import { addon } from '../../lib/native';
import { gemm } from '../../lib';
import type { Limits } from './limits';
import { log, median, round, settle, summarize, type Timing } from './timing';

export interface GemmShape {
  /** What the shape stands for. */
  label: string;
  m: number;
  k: number;
  n: number;
}

/** Square shapes, then TinyLlama-1.1B's linear layers (dim 2048, FFN 5632, kv 256) at 1, 32 and 512 rows. */
export function gemmShapes(quick: boolean): GemmShape[] {
  if (quick) {
    return [
      { label: 'square', m: 512, k: 512, n: 512 },
      { label: 'TinyLlama q/o proj, decode', m: 1, k: 2048, n: 2048 },
    ];
  }
  const out: GemmShape[] = [512, 1024, 2048].map((s) => ({ label: 'square', m: s, k: s, n: s }));
  const llm: [string, number, number][] = [
    ['TinyLlama q/o proj', 2048, 2048], ['TinyLlama k/v proj', 2048, 256],
    ['TinyLlama gate/up proj', 2048, 5632], ['TinyLlama down proj', 5632, 2048],
  ];
  for (const m of [1, 32, 512]) {
    for (const [label, k, n] of llm) out.push({ label: `${label}, ${m === 1 ? 'decode' : `${m} tokens`}`, m, k, n });
  }
  return out;
}

interface Side {
  medianSeconds: number;
  minSeconds: number;
  seconds: number[];
  /** 2·m·k·n / medianSeconds / 1e9. */
  gflops: number;
  gflopsBest: number;
  /** gflops over limits.fmaPeakAll.gflops (same thread count, same run). */
  fractionOfFmaPeak: number;
  /** Bytes of w (4·n·k) / medianSeconds / 1e9: the figure that matters when m is small (memory-bound). */
  weightGBps: number;
}

export interface GemmEntry {
  name: string;
  description: string;
  label: string;
  shape: { m: number; k: number; n: number };
  flops: number;
  /** Bytes of x, w and y (f32). */
  bytes: number;
  threads: number;
  warmup: number;
  repeats: number;
  /** Back-to-back calls per timed sample (the same for lowbit and the peer); seconds are per call. */
  callsPerSample: number;
  unit: 'GFLOP/s';
  /** lowbit's fast path (the headline). */
  medianSeconds: number;
  minSeconds: number;
  gflops: number;
  lowbit: Side;
  peer: (Side & { name: string; lib: string; version: string | null; env: { OPENBLAS_THREAD_TIMEOUT: string } }) | null;
  peerReason?: string;
  /** lowbit GFLOP/s / peer GFLOP/s (medians), or null without a peer. */
  ratio: number | null;
  /** The same from each side's fastest sample: this VM's speed flips between two levels (samples of
   *  one shape 1.65× apart in one run), and a median of 7 can land on either for one side only. */
  ratioBest: number | null;
  /** lowbit's y against the peer's on the same inputs: max |Δ| / max |y_peer|. */
  check: { maxAbsDiff: number; maxAbsPeer: number; relToMax: number; tolerance: number; pass: boolean } | null;
}

/** Deterministic values in [−1, 1) (xorshift32). */
function fill(a: Float32Array, seed: number): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < a.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    a[i] = s / 2147483648 - 1;
  }
  return a;
}

function side(t: Timing, flops: number, peak: number, wBytes: number): Side {
  const g = flops / t.medianSeconds / 1e9;
  return {
    weightGBps: round(wBytes / t.medianSeconds / 1e9),
    medianSeconds: round(t.medianSeconds, 5), minSeconds: round(t.minSeconds, 5), seconds: t.seconds.map((x) => round(x, 5)),
    gflops: round(g), gflopsBest: round(flops / t.minSeconds / 1e9), fractionOfFmaPeak: round(g / peak, 3),
  };
}

const TOLERANCE = 1e-4;

/** The Debian package version of the OpenBLAS the addon opens (dpkg), or null. */
export function openblasVersion(): string | null {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Package} ${Version}\\n', 'libopenblas0-pthread', 'libopenblas0-openmp', 'libopenblas0-serial'], { encoding: 'utf8', timeout: 10000 });
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- stdout is null when dpkg-query cannot be spawned (ENOENT), though @types/node types it string
  const lines = (r.stdout ?? '').split('\n').map((l) => l.trim()).filter((l) => /\s\S+$/.test(l));
  return lines.length ? lines.join(', ') : null;
}

/**
 * OpenBLAS's worker threads busy-wait 2^28 cycles (≈ 0.1 s) after each call by default: through the
 * pause before the next sample and into lowbit's sample, where the spinning thread takes one of the
 * two cores (measured: lowbit's 1024³ at 0.39× OpenBLAS with the default, 0.80× with 2^4). Both
 * libraries' threads therefore sleep right after a call, as lowbit's do by default
 * (LOWBIT_SPIN_US=0). Read by OpenBLAS when it is loaded (the first peerSgemmInfo()); a value the
 * user set is kept. Recorded in each entry.
 */
function quietPeerThreads(): string {
  if (process.env.OPENBLAS_THREAD_TIMEOUT === undefined) process.env.OPENBLAS_THREAD_TIMEOUT = '4';
  return process.env.OPENBLAS_THREAD_TIMEOUT;
}

/** Seconds a sample's burst of calls should last. */
export const BURST_SECONDS = 0.1;

/** Calls per sample for a call that took `oneCallSeconds`: a burst of ≈ BURST_SECONDS, 1 to 200 calls. */
export function burstCalls(oneCallSeconds: number): number {
  return Math.max(1, Math.min(200, Math.round(BURST_SECONDS / Math.max(oneCallSeconds, 1e-6))));
}

export async function benchGemm(o: { quick: boolean; threads: number; limits: Limits }): Promise<GemmEntry[]> {
  const threadTimeout = quietPeerThreads();
  const info = addon().peerSgemmInfo();
  const peerLib = info.lib;
  const peerReason = peerLib ? undefined : `OpenBLAS not available in this process: ${info.error ?? 'unknown reason'}`;
  const warmup = 1;
  const repeats = o.quick ? 5 : 7;
  const peak = o.limits.fmaPeakAll.gflops;
  const version = peerLib ? openblasVersion() : null;
  const out: GemmEntry[] = [];
  for (const s of gemmShapes(o.quick)) {
    const { m, k, n } = s;
    const name = `gemm-${m}x${k}x${n}`;
    log(`${name} (${s.label}): lowbit${peerLib ? ' interleaved with OpenBLAS' : ''}, ${o.threads} thread(s)`);
    const x = fill(new Float32Array(m * k), 1 + m + k);
    const w = fill(new Float32Array(n * k), 7 + n + k);
    const y = new Float32Array(m * n);
    const yPeer = new Float32Array(m * n);
    const flops = 2 * m * k * n;
    const runA = () => gemm(x, m, k, w, n, y, { mode: 'fast', threads: o.threads });
    const runB = () => addon().peerSgemm({ x, m, k, w, n, y: yPeer, threads: o.threads }).promise;
    for (let i = 0; i < warmup; i++) {
      await runA();
      if (peerLib) await runB();
    }
    // A sample is a burst of back-to-back calls (the same count for both libraries) lasting about
    // BURST_SECONDS, timed as a whole: GEMMs run back to back in prefill and calibration, and this VM
    // runs any kernel 20–45% slower straight after an idle pause, which swamped single calls of a
    // few milliseconds (512×2048×256: 0.63–1.05× OpenBLAS from run to run, single calls).
    let t0 = performance.now();
    await runA();
    const calls = burstCalls((performance.now() - t0) / 1000);
    const burst = async (run: () => Promise<void>, into: number[]) => {
      await settle();
      t0 = performance.now();
      for (let c = 0; c < calls; c++) await run();
      into.push((performance.now() - t0) / 1000 / calls);
    };
    const sa: number[] = [];
    const sb: number[] = [];
    for (let i = 0; i < repeats; i++) {
      await burst(runA, sa);
      if (peerLib) await burst(runB, sb);
    }
    const a = side(summarize(sa, warmup), flops, peak, 4 * n * k);
    const b = peerLib ? side(summarize(sb, warmup), flops, peak, 4 * n * k) : null;
    let check: GemmEntry['check'] = null;
    if (peerLib) {
      let maxAbsDiff = 0;
      let maxAbsPeer = 0;
      for (let i = 0; i < y.length; i++) {
        maxAbsDiff = Math.max(maxAbsDiff, Math.abs(y[i] - yPeer[i]));
        maxAbsPeer = Math.max(maxAbsPeer, Math.abs(yPeer[i]));
      }
      const rel = maxAbsDiff / (maxAbsPeer || 1);
      check = { maxAbsDiff: round(maxAbsDiff, 3), maxAbsPeer: round(maxAbsPeer, 5), relToMax: round(rel, 3), tolerance: TOLERANCE, pass: rel <= TOLERANCE };
      if (!check.pass) log(`${name}: lowbit differs from OpenBLAS: max |Δ| / max |y| = ${rel}`);
    }
    out.push({
      name,
      description: `y (${m}×${n}) = x (${m}×${k}) · wᵀ, w (${n}×${k}) row-major, f32 (${s.label}): lowbit gemm() fast path beside ` +
        'OpenBLAS cblas_sgemm(RowMajor, NoTrans, Trans) on the same buffers, samples interleaved, each a burst of ' +
        `${calls} back-to-back call(s) after a 20 ms pause; inputs reused (warm caches)`,
      label: s.label, shape: { m, k, n }, flops, bytes: 4 * (m * k + n * k + m * n), threads: o.threads, warmup, repeats, callsPerSample: calls,
      unit: 'GFLOP/s', medianSeconds: a.medianSeconds, minSeconds: a.minSeconds, gflops: a.gflops,
      lowbit: a,
      peer: b && peerLib ? { name: 'OpenBLAS cblas_sgemm', lib: peerLib, version, env: { OPENBLAS_THREAD_TIMEOUT: threadTimeout }, ...b } : null,
      ...(peerReason ? { peerReason } : {}),
      ratio: b ? round(a.gflops / b.gflops, 3) : null,
      ratioBest: b ? round(a.gflopsBest / b.gflopsBest, 3) : null,
      check,
    });
  }
  return out;
}

/** Median of the lowbit/peer ratios of a set of entries (for the summary line). */
export function medianRatio(entries: GemmEntry[]): number | null {
  const r = entries.map((e) => e.ratio).filter((x): x is number => x !== null);
  return r.length ? round(median(r), 3) : null;
}
