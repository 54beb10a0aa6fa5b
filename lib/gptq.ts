/**
 * gptqLayer: GPTQ (Frantar et al., ICLR 2023) on one linear layer, in native code — the
 * published algorithm's order of operations (dead inputs, static groups, act-order, damping
 * raised on failure, upper Cholesky factor of H⁻¹, blocked column sweep with lazy batch updates,
 * group params when a group starts), with lowbit's quantization grid (fp16-rounded scales,
 * half-to-even, clamped codes) so the result packs exactly into a GPTQ checkpoint.
 */
import { LowbitError } from './errors';
import { addon, modeId, runTask } from './native';
import { checkBool, checkEnum, checkInt, checkKnownKeys, checkNumber, checkSignal, invalidOption } from './validate';
import type { Progress } from './quantize-tensor';

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

const KEYS = ['rows', 'cols', 'bits', 'groupSize', 'actOrder', 'sym', 'dampPercent', 'dampMax', 'blockSize', 'staticGroups', 'clip', 'zeroMin', 'signedMax', 'signal', 'onProgress'];

/** @internal The checked options of one GPTQ layer (shared by {@link gptqLayer} and cudaGptqLayer). */
export function checkGptqLayerOptions(where: string, options: GptqLayerOptions, maxCols: number) {
  if (typeof options !== 'object' || options === null) throw invalidOption('options', 'an object with rows and cols', options);
  checkKnownKeys(`${where} options`, options, KEYS);
  const rows = checkInt('rows', options.rows, 1, 1 << 26);
  const cols = checkInt('cols', options.cols, 1, maxCols);
  const bits = checkInt('bits', options.bits ?? 4, 2, 8);
  const groupSize = options.groupSize ?? 128;
  if (!Number.isInteger(groupSize) || (groupSize < 1 && groupSize !== -1)) throw invalidOption('groupSize', 'a positive integer or -1 (per channel)', groupSize);
  const gs = groupSize === -1 ? cols : Math.min(groupSize, cols);
  const actOrder = checkBool('actOrder', options.actOrder ?? false);
  const sym = checkBool('sym', options.sym ?? true);
  const damp = checkNumber('dampPercent', options.dampPercent ?? 0.01, 0, 1);
  const dampMax = checkNumber('dampMax', options.dampMax ?? 1.0, damp, 100);
  const blockSize = checkInt('blockSize', options.blockSize ?? 128, 1, 1 << 16);
  const staticGroups = checkBool('staticGroups', options.staticGroups ?? false);
  const clip = checkEnum('clip', options.clip ?? 'minmax', ['minmax', 'mse'] as const);
  const zeroMin = checkInt('zeroMin', options.zeroMin ?? 0, 0, 1);
  const signedMax = checkBool('signedMax', options.signedMax ?? false);
  if (signedMax && !sym) throw invalidOption('signedMax', 'false with sym: false (the signed-max grid is symmetric)', signedMax);
  const signal = checkSignal(options.signal);
  return { rows, cols, bits, gs, actOrder, sym, damp, dampMax, blockSize, staticGroups, clip, zeroMin, signedMax, signal };
}

/** @internal The weight/Hessian shape checks and the output buffers of one GPTQ layer. */
export function gptqLayerBuffers(weight: Float32Array, hessian: Float32Array, rows: number, cols: number, gs: number) {
  if (!(weight instanceof Float32Array) || weight.length !== rows * cols) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `weight: expected a Float32Array of ${rows}×${cols}, got ${weight instanceof Float32Array ? weight.length : typeof weight}`);
  }
  if (!(hessian instanceof Float32Array) || hessian.length !== cols * cols) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `hessian: expected a Float32Array of ${cols}×${cols}, got ${hessian instanceof Float32Array ? hessian.length : typeof hessian}`);
  }
  const groups = gs < cols ? Math.ceil(cols / gs) : 1;
  return { groups, codes: new Uint8Array(rows * cols), scales: new Float32Array(rows * groups), zeros: new Uint8Array(rows * groups),
    gIdx: new Int32Array(cols), dequant: new Float32Array(rows * cols) };
}

/** GPTQ one layer: `weight` (rows × cols) row-major, `hessian` (cols × cols). Runs off the event loop. */
export async function gptqLayer(weight: Float32Array, hessian: Float32Array, options: GptqLayerOptions): Promise<GptqLayerResult> {
  const { rows, cols, bits, gs, actOrder, sym, damp, dampMax, blockSize, staticGroups, clip, zeroMin, signedMax, signal } = checkGptqLayerOptions('gptqLayer', options, 1 << 20);
  const { groups, codes, scales, zeros, gIdx, dequant } = gptqLayerBuffers(weight, hessian, rows, cols, gs);
  const r = await runTask(() => addon().gptqLayer({
    rows, cols, bits, groupSize: gs, sym, clip: clip === 'mse' ? 1 : 0, zeroMin, scaleF16: true, signedMax, actOrder, staticGroups, damp, dampMax, blockSize,
    weight, hessian, codes, scales, zeros, gIdx, dequant, mode: modeId(),
    ...(options.onProgress ? { onProgress: (done: number, total: number) => options.onProgress!({ phase: 'gptq', done, total }) } : {}),
  }), signal, 'gptqLayer');
  return { dequantized: dequant, codes, scales, zeros, gIdx, groups, dampUsed: r.dampUsed, loss: r.loss };
}
