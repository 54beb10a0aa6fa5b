/** y = x · wᵀ on lowbit's native kernels (for tests and benchmarks; the runtime calls it natively). */
import { addon, modeId, runTask } from '../native';
import { LowbitError } from '../errors';
import { checkThreads, nativeThreads } from '../config/run';

/** Options of {@link gemm}. */
export interface GemmOptions {
  /** Add to y instead of overwriting it. @default false */
  accumulate?: boolean;
  /** 'ref' forces the reference kernel; default: the current kernel mode. */
  mode?: 'fast' | 'ref';
  /** Compute threads for this call (1–1024). @default the process default (setThreads, LOWBIT_THREADS, physical cores) */
  threads?: number;
}

/** y (m × n) = x (m × k) · wᵀ, w (n × k) row-major. Runs off the event loop. */
export async function gemm(x: Float32Array, m: number, k: number, w: Float32Array, n: number, y: Float32Array, opts: GemmOptions = {}): Promise<void> {
  const threads = checkThreads(opts.threads);
  if (x.length !== m * k || w.length !== n * k || y.length !== m * n) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `gemm: expected x ${m}×${k}, w ${n}×${k}, y ${m}×${n}; got lengths ${x.length}, ${w.length}, ${y.length}`);
  }
  const mode = opts.mode === 'ref' ? 1 : opts.mode === 'fast' ? 0 : modeId();
  await runTask(() => addon().gemm({ x, m, k, w, n, y, accumulate: !!opts.accumulate, mode, threads: nativeThreads(threads) }), undefined, 'gemm');
}
