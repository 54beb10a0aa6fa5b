/**
 * Matrix products straight from packed low-bit weights (no dequantized copy of W).
 * Today: GPTQ 4-bit (AVX2 fast path for consecutive groups; the reference for act-order g_idx).
 */
import { LowbitError } from '../errors';
import { addon, modeId, runTask, type NativeGptqTensors } from '../native';
import { invalidOption } from '../config/validate';
import { checkThreads, nativeThreads } from '../config/run';

/** A GPTQ 4-bit linear layer as stored in a checkpoint (scales as f32, true zeros; qweight (in/8, out)). */
export type GptqInt4Weights = NativeGptqTensors;

/** Options of {@link qmatmulGptq4}. */
export interface QmatmulOptions {
  /** 'ref' forces the reference kernel; default: the current kernel mode. */
  mode?: 'fast' | 'ref';
  /** Compute threads for this call (1–1024). @default the process default (setThreads, LOWBIT_THREADS, physical cores) */
  threads?: number;
}

/** y (m × out) = x (m × in) · Wᵀ with W decoded in registers from the packed words. */
export async function qmatmulGptq4(x: Float32Array, m: number, w: GptqInt4Weights, y?: Float32Array, opts: QmatmulOptions = {}): Promise<Float32Array> {
  const threads = checkThreads(opts.threads);
  const { inFeatures: inF, outFeatures: out, groups } = w;
  if (!Number.isInteger(m) || m < 1) throw invalidOption('m', 'a positive integer', m);
  if (inF % 8 !== 0) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `qmatmulGptq4: in_features ${inF} is not a multiple of 8`);
  if (x.length !== m * inF || w.qweight.length !== (inF / 8) * out || w.scales.length !== groups * out || w.zeros.length !== groups * out || w.gIdx.length !== inF) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `qmatmulGptq4: tensor sizes disagree with m ${m}, in ${inF}, out ${out}, groups ${groups}`);
  }
  const yy = y ?? new Float32Array(m * out);
  if (yy.length !== m * out) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `qmatmulGptq4: y has ${yy.length} elements, expected ${m * out}`);
  const mode = opts.mode === 'ref' ? 1 : opts.mode === 'fast' ? 0 : modeId();
  await runTask(() => addon().qgemmGptq4({ x, m, inFeatures: inF, outFeatures: out, groups, qweight: w.qweight, scales: w.scales, zeros: w.zeros, gIdx: w.gIdx, y: yy, mode, threads: nativeThreads(threads) }), undefined, 'qmatmulGptq4');
  return yy;
}
