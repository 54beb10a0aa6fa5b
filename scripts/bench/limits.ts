/**
 * The machine's own limits, measured in the same run as the kernels: a multi-threaded streaming
 * copy (memory bandwidth, STREAM "copy" convention: 2·bytes per copy, read + write) and a
 * register-resident FMA loop (peak fp32 FLOP/s).
 */
import { addon } from '../../lib/native';
import { median, round, summarize, type Timing } from './timing';

export interface CopyLimit {
  /** Bytes copied per iteration (source size). */
  bytes: number;
  threads: number;
  warmup: number;
  repeats: number;
  minSeconds: number;
  medianSeconds: number;
  /** STREAM convention: 2·bytes / seconds (read + write), median. */
  gbps: number;
  /** STREAM convention at the fastest repeat. */
  gbpsBest: number;
}

export interface PeakLimit {
  threads: number;
  repeats: number;
  /** Median over repeats. */
  gflops: number;
  gflopsBest: number;
}

export interface Limits {
  threads: number;
  /** DRAM: a 256 MiB buffer (source + destination 512 MiB, far beyond L3). */
  copy: CopyLimit;
  /** "Hot": an 8 MiB buffer (source + destination fit in L3): the cache, not DRAM. */
  copyHot: CopyLimit;
  fmaPeak1: PeakLimit;
  fmaPeakAll: PeakLimit;
}

/**
 * Time `iters` copies of `bytes` with the native benchCopy (first `warmup` samples dropped).
 * Each call allocates and first-touches fresh buffers from the copying threads.
 */
export async function copySamples(bytes: number, iters: number, threads: number): Promise<number[]> {
  const r = await addon().benchCopy({ bytes, iters, threads }).promise;
  return r.seconds;
}

export async function measureCopy(bytes: number, warmup: number, repeats: number, threads: number): Promise<CopyLimit> {
  const all = await copySamples(bytes, warmup + repeats, threads);
  const t: Timing = summarize(all.slice(warmup), warmup);
  return {
    bytes, threads, warmup, repeats: t.repeats, minSeconds: t.minSeconds, medianSeconds: t.medianSeconds,
    gbps: round((2 * bytes) / t.medianSeconds / 1e9), gbpsBest: round((2 * bytes) / t.minSeconds / 1e9),
  };
}

export async function measurePeak(threads: number, millis: number, repeats: number): Promise<PeakLimit> {
  const g: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const r = await addon().benchPeak({ kind: 'fma', threads, millis }).promise;
    g.push(r.ops / r.seconds / 1e9);
  }
  return { threads, repeats, gflops: round(median(g)), gflopsBest: round(Math.max(...g)) };
}

export async function measureLimits(threads: number, quick: boolean): Promise<Limits> {
  const MiB = 1024 * 1024;
  const copy = await measureCopy(256 * MiB, 1, quick ? 5 : 11, threads);
  const copyHot = await measureCopy(8 * MiB, 10, quick ? 50 : 200, threads);
  const fmaPeak1 = await measurePeak(1, quick ? 150 : 400, 3);
  const fmaPeakAll = await measurePeak(threads, quick ? 150 : 400, 3);
  return { threads, copy, copyHot, fmaPeak1, fmaPeakAll };
}
