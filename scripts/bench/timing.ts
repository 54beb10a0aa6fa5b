/**
 * Timing helpers for `npm run bench`: warmup runs, then timed repeats; min and median seconds.
 * Nothing here asserts anything about speed.
 */
import { performance } from 'node:perf_hooks';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

/**
 * A full garbage collection, made available without `node --expose-gc` (the npm script runs plain
 * `node`): the flag is set at run time and `gc` taken from a fresh context.
 */
const forceGc: (() => void) | null = (() => {
  try {
    v8.setFlagsFromString('--expose-gc');
    const g = vm.runInNewContext('gc') as unknown;
    return typeof g === 'function' ? (g as () => void) : null;
  } catch {
    return null;
  }
})();

/** Whether {@link settle} can force a garbage collection. */
export const canForceGc = forceGc !== null;

/**
 * Untimed, before every timed sample: collect the previous sample's garbage and give the
 * background threads that free it a moment, so that neither side of a pair pays for the other's
 * garbage (on 2 cores, one busy GC thread halves a 2-thread kernel).
 */
export async function settle(ms = 20): Promise<void> {
  forceGc?.();
  await new Promise((r) => setTimeout(r, ms));
}

/** Timings of one measured operation. */
export interface Timing {
  warmup: number;
  repeats: number;
  /** Every timed repeat, in order. */
  seconds: number[];
  minSeconds: number;
  medianSeconds: number;
}

/** Median of a non-empty list (mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Summarise a list of timed repeats. */
export function summarize(seconds: number[], warmup: number): Timing {
  return { warmup, repeats: seconds.length, seconds, minSeconds: Math.min(...seconds), medianSeconds: median(seconds) };
}

/** Run `fn` `warmup` times untimed, then `repeats` times timed with performance.now(). */
export async function measure(fn: () => unknown, opts: { warmup: number; repeats: number }): Promise<Timing> {
  for (let i = 0; i < opts.warmup; i++) await fn();
  const seconds: number[] = [];
  for (let i = 0; i < opts.repeats; i++) {
    await settle();
    const t0 = performance.now();
    await fn();
    seconds.push((performance.now() - t0) / 1000);
  }
  return summarize(seconds, opts.warmup);
}

/**
 * Interleaved A/B timing (A, B, A, B, …) so that both sides see the same machine state (DRAM
 * bandwidth on the development VM flips between two levels from one minute to the next).
 * `b` reports its own seconds (e.g. a native copy that times itself), `a` is timed here. Each
 * sample starts after {@link settle}.
 */
export async function measurePaired(
  a: () => Promise<unknown>, b: () => Promise<number>, opts: { warmup: number; repeats: number },
): Promise<{ a: Timing; b: Timing }> {
  for (let i = 0; i < opts.warmup; i++) { await b(); await a(); }
  const sa: number[] = [];
  const sb: number[] = [];
  for (let i = 0; i < opts.repeats; i++) {
    await settle();
    sb.push(await b());
    await settle();
    const t0 = performance.now();
    await a();
    sa.push((performance.now() - t0) / 1000);
  }
  return { a: summarize(sa, opts.warmup), b: summarize(sb, opts.warmup) };
}

/** Bytes per second in GB/s (10^9). */
export function gbps(bytes: number, seconds: number): number {
  return bytes / seconds / 1e9;
}

/** Round to `digits` significant digits for the JSON (full-precision samples stay in `seconds`). */
export function round(x: number, digits = 4): number {
  return Number.isFinite(x) ? Number(x.toPrecision(digits)) : x;
}

/** Progress line on stderr (stdout carries only the JSON document). */
export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}
