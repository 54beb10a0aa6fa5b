/** y = x · wᵀ on lowbit's native kernels (for tests and benchmarks; the runtime calls it natively). */
import { addon, modeId, runTask } from '../native';
import { LowbitError } from '../errors';
import { checkThreads, nativeThreads } from '../config/run';
import { invalidOption } from '../config/validate';

/** Options of {@link gemm}. */
export interface GemmOptions {
  /** Add to y instead of overwriting it. @default false */
  accumulate?: boolean;
  /** 'ref' forces the reference kernel; default: the current kernel mode. */
  mode?: 'fast' | 'ref';
  /** Compute threads for this call (1–1024). @default the process default (setThreads, LOWBIT_THREADS, physical cores) */
  threads?: number;
  /**
   * The dtype of `w` when it is a Uint16Array of 16-bit values: 'F16' or 'BF16' (multiplied as
   * stored, bit-identical to converting w to f32 first; no `accumulate`).
   */
  wDtype?: 'F16' | 'BF16';
  /**
   * 'bf16': x and w are rounded to bf16 and multiplied with f32 sums (AVX-512 BF16 `vdpbf16ps`
   * where the CPU has it; elsewhere the rounded values through the f32 kernels): twice the
   * multiply-adds per instruction, at the cost of bf16 input rounding (at most 2⁻⁸ relative per operand). f32 x and
   * w only, no `accumulate`. @default 'f32'
   */
  compute?: 'f32' | 'bf16';
}

/** y (m × n) = x (m × k) · wᵀ, w (n × k) row-major. Runs off the event loop. */
export async function gemm(x: Float32Array, m: number, k: number, w: Float32Array | Uint16Array, n: number, y: Float32Array, opts: GemmOptions = {}): Promise<void> {
  const threads = checkThreads(opts.threads);
  const w16 = w instanceof Uint16Array;
  if (w16 !== (opts.wDtype !== undefined)) throw invalidOption('wDtype', w16 ? "'F16' or 'BF16' for a Uint16Array w" : 'absent for a Float32Array w', opts.wDtype);
  if (opts.wDtype !== undefined && !(['F16', 'BF16'] as unknown[]).includes(opts.wDtype)) throw invalidOption('wDtype', "'F16' or 'BF16'", opts.wDtype);
  if (w16 && opts.accumulate) throw invalidOption('accumulate', 'false with 16-bit weights', opts.accumulate);
  if (opts.compute !== undefined && !(['f32', 'bf16'] as unknown[]).includes(opts.compute)) throw invalidOption('compute', "'f32' or 'bf16'", opts.compute);
  const bf16 = opts.compute === 'bf16';
  if (bf16 && (w16 || opts.accumulate)) throw invalidOption('compute', "'bf16' with f32 weights and no accumulate", opts.compute);
  if (x.length !== m * k || w.length !== n * k || y.length !== m * n) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `gemm: expected x ${m}×${k}, w ${n}×${k}, y ${m}×${n}; got lengths ${x.length}, ${w.length}, ${y.length}`);
  }
  const mode = opts.mode === 'ref' ? 1 : opts.mode === 'fast' ? 0 : modeId();
  const wDtype = opts.wDtype === 'F16' ? { wDtype: 1 } : opts.wDtype === 'BF16' ? { wDtype: 2 } : {};
  await runTask(() => addon().gemm({ x, m, k, w, n, y, accumulate: !!opts.accumulate, mode, threads: nativeThreads(threads), ...wDtype, ...(bf16 ? { bf16 } : {}) }), undefined, 'gemm');
}
