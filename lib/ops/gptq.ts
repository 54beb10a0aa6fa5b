/**
 * gptqLayer: GPTQ (Frantar et al., ICLR 2023) on one linear layer, in native code — the
 * published algorithm's order of operations (dead inputs, static groups, act-order, damping
 * raised on failure, upper Cholesky factor of H⁻¹, blocked column sweep with lazy batch updates,
 * group params when a group starts), with lowbit's quantization grid (fp16-rounded scales,
 * half-to-even, clamped codes) so the result packs exactly into a GPTQ checkpoint.
 */
import { LowbitError } from '../errors';
import { addon, modeId, runTask, type NativeGptqLayerJob } from '../native';
import { checkBool, checkInt, checkKnownKeys, checkNumber, checkSignal, invalidOption, checkObject } from '../config/validate';
import { normalizeQuantizer, type NormalizedQuantizer } from '../config/quant';
import { checkThreads, nativeThreads, progressCallback, type Progress } from '../config/run';

/** Options of {@link gptqLayer}. */
export interface GptqLayerOptions {
  /** out_features. */
  rows: number;
  /** in_features. */
  cols: number;
  /** 2–8. @default 4 */
  bits?: number;
  /** Input channels per group; -1 = per channel. @default 128 */
  groupSize?: number;
  /** Process columns by descending H_jj (with g_idx for dynamic groups). @default false */
  actOrder?: boolean;
  /** Symmetric grid (fixed zero 2^(bits−1)). @default true */
  sym?: boolean;
  /** Damping, as a fraction of mean(diag H); raised by 0.01 steps when Cholesky fails. @default 0.01 */
  dampPercent?: number;
  /** Give up (LOWBIT_NUMERICAL) when the damping needed exceeds this. @default 1.0 */
  dampMax?: number;
  /** Columns per lazy-update block. @default 128 */
  blockSize?: number;
  /** Group params from the original column order before the sweep (g_idx stays trivial). @default false */
  staticGroups?: boolean;
  /** Range of each group: 'minmax' or an MSE clip search. @default 'minmax' */
  clip?: 'minmax' | 'mse';
  /** Smallest zero point (1 for GPTQ v1 checkpoints with asymmetric groups). @default 0 */
  zeroMin?: number;
  /** Symmetric groups on llama.cpp's Q4_0 grid (see QuantizerOptions.signedMax); needs `sym`. @default false */
  signedMax?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** Compute threads for this call (1–1024). @default the process default (setThreads, LOWBIT_THREADS, physical cores) */
  threads?: number;
}

/** The result of {@link gptqLayer}. */
export interface GptqLayerResult {
  /** Q, (rows × cols) f32 = scale · (code − zero). */
  dequantized: Float32Array;
  /** (rows × cols), original column order. */
  codes: Uint8Array;
  /** (rows × groups): group k of the GPTQ checkpoint (processing order under act-order). */
  scales: Float32Array;
  zeros: Uint8Array;
  /** Group of each input channel (cols). */
  gIdx: Int32Array;
  groups: number;
  /** The damping actually used (fraction of mean diag). */
  dampUsed: number;
  /** Σ (w − q)² / U_jj² / 2, the reference's loss. */
  loss: number;
}

const KEYS = ['rows', 'cols', 'bits', 'groupSize', 'actOrder', 'sym', 'dampPercent', 'dampMax', 'blockSize', 'staticGroups', 'clip', 'zeroMin', 'signedMax', 'signal', 'onProgress', 'threads'];

/** The checked options of one GPTQ layer (what the pipelines pass: no option is checked again). @internal */
export interface NormalizedGptqLayerOptions {
  rows: number;
  cols: number;
  /** bits, groupSize, sym, clip, zeroMin, signedMax (the rest of the quantizer is not used by GPTQ). */
  quantizer: NormalizedQuantizer;
  actOrder: boolean;
  staticGroups: boolean;
  dampPercent: number;
  dampMax: number;
  blockSize: number;
  signal: AbortSignal | undefined;
  threads: number | undefined;
  onProgress: ((p: Progress) => void) | undefined;
  /**
   * Buffers to write the codes and the dequantized weight into (at least rows × cols each; the
   * result's arrays are views of them), instead of new ones per layer: a whole-model run reuses
   * one pair, so nothing of that size waits for the garbage collector. @internal
   */
  scratch?: { dequant: Float32Array; codes: Uint8Array };
}

/** @internal The checked options of one GPTQ layer (shared by {@link gptqLayer} and cudaGptqLayer). */
export function normalizeGptqLayerOptions(where: string, options: GptqLayerOptions, maxCols: number): NormalizedGptqLayerOptions {
  checkObject('options', options, 'an object with rows and cols');
  checkKnownKeys(`${where} options`, options, KEYS);
  const rows = checkInt('rows', options.rows, 1, 1 << 26);
  const cols = checkInt('cols', options.cols, 1, maxCols);
  // bits, groupSize, sym, clip, zeroMin, signedMax: the quantizer's one normalizer checks them
  const quantizer = normalizeQuantizer({
    bits: options.bits, groupSize: options.groupSize, sym: options.sym, clip: options.clip, zeroMin: options.zeroMin, signedMax: options.signedMax,
  });
  const dampPercent = checkNumber('dampPercent', options.dampPercent ?? 0.01, 0, 1);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw invalidOption('onProgress', 'a function', options.onProgress);
  return {
    rows, cols, quantizer,
    actOrder: checkBool('actOrder', options.actOrder ?? false),
    staticGroups: checkBool('staticGroups', options.staticGroups ?? false),
    dampPercent,
    dampMax: checkNumber('dampMax', options.dampMax ?? 1.0, dampPercent, 100),
    blockSize: checkInt('blockSize', options.blockSize ?? 128, 1, 1 << 16),
    signal: checkSignal(options.signal),
    threads: checkThreads(options.threads),
    onProgress: options.onProgress,
  };
}

/** The group size a layer of `cols` columns uses (per channel: cols; a last group may be shorter). @internal */
export function gptqGroupSize(o: NormalizedGptqLayerOptions): number {
  const gs = o.quantizer.groupSize;
  return gs === -1 ? o.cols : Math.min(gs, o.cols);
}

/** @internal The weight/Hessian shape checks and the output buffers of one GPTQ layer. */
export function gptqLayerBuffers(weight: Float32Array, hessian: Float32Array, rows: number, cols: number, gs: number,
  scratch?: { dequant: Float32Array; codes: Uint8Array }) {
  if (!(weight instanceof Float32Array) || weight.length !== rows * cols) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `weight: expected a Float32Array of ${rows}×${cols}, got ${weight instanceof Float32Array ? weight.length : typeof weight}`);
  }
  if (!(hessian instanceof Float32Array) || hessian.length !== cols * cols) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `hessian: expected a Float32Array of ${cols}×${cols}, got ${hessian instanceof Float32Array ? hessian.length : typeof hessian}`);
  }
  const groups = gs < cols ? Math.ceil(cols / gs) : 1;
  const n = rows * cols;
  const fits = scratch !== undefined && scratch.dequant.length >= n && scratch.codes.length >= n;
  return { groups, codes: fits ? scratch.codes.subarray(0, n) : new Uint8Array(n), scales: new Float32Array(rows * groups), zeros: new Uint8Array(rows * groups),
    gIdx: new Int32Array(cols), dequant: fits ? scratch.dequant.subarray(0, n) : new Float32Array(n) };
}

/** The native job of one GPTQ layer (CPU and CUDA take the same fields). @internal */
export function gptqLayerJob(weight: Float32Array, hessian: Float32Array, o: NormalizedGptqLayerOptions, out: ReturnType<typeof gptqLayerBuffers>): NativeGptqLayerJob {
  const q = o.quantizer;
  return {
    rows: o.rows, cols: o.cols, bits: q.bits, groupSize: gptqGroupSize(o), sym: q.sym, clip: q.clip === 'mse' ? 1 : 0, zeroMin: q.zeroMin, scaleF16: true,
    signedMax: q.signedMax, actOrder: o.actOrder, staticGroups: o.staticGroups, damp: o.dampPercent, dampMax: o.dampMax, blockSize: o.blockSize,
    weight, hessian, codes: out.codes, scales: out.scales, zeros: out.zeros, gIdx: out.gIdx, dequant: out.dequant, mode: modeId(), threads: nativeThreads(o.threads),
    ...progressCallback(o.onProgress, 'gptq'),
  };
}

/** GPTQ one layer: `weight` (rows × cols) row-major, `hessian` (cols × cols). Runs off the event loop. */
export async function gptqLayer(weight: Float32Array, hessian: Float32Array, options: GptqLayerOptions): Promise<GptqLayerResult> {
  return gptqLayerNormalized(weight, hessian, normalizeGptqLayerOptions('gptqLayer', options, 1 << 20));
}

/** {@link gptqLayer} on checked options (what the pipelines call). @internal */
export async function gptqLayerNormalized(weight: Float32Array, hessian: Float32Array, o: NormalizedGptqLayerOptions): Promise<GptqLayerResult> {
  const out = gptqLayerBuffers(weight, hessian, o.rows, o.cols, gptqGroupSize(o), o.scratch);
  const r = await runTask(() => addon().gptqLayer(gptqLayerJob(weight, hessian, o, out)), o.signal, 'gptqLayer');
  return { dequantized: out.dequant, codes: out.codes, scales: out.scales, zeros: out.zeros, gIdx: out.gIdx, groups: out.groups, dampUsed: r.dampUsed, loss: r.loss };
}
