/**
 * Weight quantizer options (shared by `quantizeTensor` and the RTN/GPTQ pipelines) and their
 * normalization. Validation happens here, before anything crosses into native code.
 */
import { checkBool, checkEnum, checkInt, checkKnownKeys, checkNumber, invalidOption, checkObject } from './validate';
import { LowbitError } from '../errors';

/** Options of the uniform / codebook weight quantizer. */
export interface QuantizerOptions {
  /** Bits per weight, 2–8. @default 4 */
  bits?: number;
  /**
   * Columns (input channels) per quantization group. `-1` = one group per row (per channel).
   * Must divide the columns unless `raggedLastGroup` is set. @default 128
   */
  groupSize?: number;
  /** One scale (and zero) for the whole tensor; overrides `groupSize`. @default false */
  perTensor?: boolean;
  /**
   * Symmetric (fixed zero 2^(bits−1), GPTQ offset-binary style) or asymmetric (scale + zero point).
   * @default true
   */
  sym?: boolean;
  /**
   * How the range is chosen: `'minmax'` (full range) or `'mse'` (grid search over shrink factors
   * minimising Σ|x̂ − x|^clipNorm per group). @default 'minmax'
   */
  clip?: 'minmax' | 'mse';
  /** Grid resolution of the MSE clip search: shrink factors 1 − i/clipGrid. @default 100 */
  clipGrid?: number;
  /** Largest shrink explored: i < clipMaxShrink · clipGrid (0 < x ≤ 1). @default 0.8 */
  clipMaxShrink?: number;
  /** Exponent p of the clip search error Σ|x̂ − x|^p (1–4). @default 2.4 */
  clipNorm?: number;
  /**
   * `'uniform'` grid, or a non-uniform codebook: `'nf4'` (4-bit NormalFloat) or `'log2'`
   * (0 and ±2^−k). Codebooks have no zero point and are saved only in the `dequant` format.
   * @default 'uniform'
   */
  codebook?: 'uniform' | 'nf4' | 'log2';
  /**
   * Smallest integer zero point (0 or 1). GPTQ v1 checkpoints store zero − 1 and cannot hold a
   * zero of 0, so the GPTQ v1 writer quantizes with 1. @default 0
   */
  zeroMin?: number;
  /** Round scales to fp16 before computing codes (what checkpoints store). @default true */
  scaleF16?: boolean;
  /**
   * Symmetric groups on llama.cpp's Q4_0 grid instead of the default symmetric one: the group's
   * value e of largest magnitude maps exactly to the end code on its side, scale = |e| / 2^(bits−1),
   * zero 2^(bits−1) (e < 0) or 2^(bits−1) − 1 (e > 0) — a finer step (|e|/8 rather than 2|e|/15 at
   * 4 bits) and per-group zeros of two values. Checkpoints record `sym: false` (their zeros are not
   * all 2^(bits−1)). Needs `sym`. @default false
   */
  signedMax?: boolean;
  /** Allow a shorter last group when groupSize does not divide the columns. @default false */
  raggedLastGroup?: boolean;
}

/** Normalized quantizer options: every field present. */
export interface NormalizedQuantizer {
  bits: number;
  groupSize: number;
  perTensor: boolean;
  sym: boolean;
  clip: 'minmax' | 'mse';
  clipGrid: number;
  clipMaxShrink: number;
  clipNorm: number;
  codebook: 'uniform' | 'nf4' | 'log2';
  zeroMin: number;
  scaleF16: boolean;
  signedMax: boolean;
  raggedLastGroup: boolean;
}

export const QUANTIZER_KEYS = ['bits', 'groupSize', 'perTensor', 'sym', 'clip', 'clipGrid', 'clipMaxShrink', 'clipNorm', 'codebook',
  'zeroMin', 'scaleF16', 'signedMax', 'raggedLastGroup'] as const;

/** Validate and fill defaults. `extraKeys` are accepted without checks (callers' own options). */
export function normalizeQuantizer(o: QuantizerOptions, extraKeys: readonly string[] = []): NormalizedQuantizer {
  checkObject('options', o, 'an object');
  checkKnownKeys('quantizer options', o, [...QUANTIZER_KEYS, ...extraKeys]);
  const bits = o.bits === undefined ? 4 : checkInt('bits', o.bits, 2, 8);
  const groupSize = o.groupSize === undefined ? 128 : checkGroupSize(o.groupSize);
  const codebook = o.codebook === undefined ? 'uniform' : checkEnum('codebook', o.codebook, ['uniform', 'nf4', 'log2'] as const);
  if (codebook === 'nf4' && bits !== 4) throw invalidOption('bits', '4 with codebook "nf4"', bits);
  const sym = o.sym === undefined ? true : checkBool('sym', o.sym);
  const zeroMin = o.zeroMin === undefined ? 0 : checkInt('zeroMin', o.zeroMin, 0, 1);
  const signedMax = o.signedMax === undefined ? false : checkBool('signedMax', o.signedMax);
  if (signedMax && !sym) throw invalidOption('signedMax', 'false with asymmetric groups (sym: false): the signed-max grid is symmetric', signedMax);
  if (signedMax && codebook !== 'uniform') throw invalidOption('signedMax', `false with codebook "${codebook}"`, signedMax);
  const n: NormalizedQuantizer = {
    bits,
    groupSize,
    perTensor: o.perTensor === undefined ? false : checkBool('perTensor', o.perTensor),
    sym,
    clip: o.clip === undefined ? 'minmax' : checkEnum('clip', o.clip, ['minmax', 'mse'] as const),
    clipGrid: o.clipGrid === undefined ? 100 : checkInt('clipGrid', o.clipGrid, 1, 10000),
    clipMaxShrink: o.clipMaxShrink === undefined ? 0.8 : checkNumber('clipMaxShrink', o.clipMaxShrink, 0.01, 1),
    clipNorm: o.clipNorm === undefined ? 2.4 : checkNumber('clipNorm', o.clipNorm, 1, 4),
    codebook,
    zeroMin,
    scaleF16: o.scaleF16 === undefined ? true : checkBool('scaleF16', o.scaleF16),
    signedMax,
    raggedLastGroup: o.raggedLastGroup === undefined ? false : checkBool('raggedLastGroup', o.raggedLastGroup),
  };
  return n;
}

/**
 * The one check of a group size, wherever it comes from (CLI `--group-size`, the API's
 * `groupSize`, {@link normalizeQuantizer}, the GPTQ layer): a positive integer or -1 (per channel).
 */
export function checkGroupSize(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || (v < 1 && v !== -1) || v > 1 << 24) {
    throw invalidOption('groupSize', 'a positive integer or -1 (per channel)', v);
  }
  return v;
}

/**
 * Effective group size for a tensor of `cols` columns (per channel → cols), and the one check that
 * a group size divides the columns (unless a shorter last group is allowed): LOWBIT_SHAPE_MISMATCH
 * naming the tensor (`rows` only adds its shape to the message).
 */
export function effectiveGroupSize(q: NormalizedQuantizer, cols: number, what: string, rows?: number): number {
  if (q.groupSize === -1) return cols;
  if (cols % q.groupSize !== 0 && !q.raggedLastGroup) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH',
      `${what}: expected cols divisible by groupSize ${q.groupSize}, got ${rows === undefined ? `${cols} columns` : `${rows}×${cols}`} (use groupSize -1, a divisor of ${cols}, or the dequant format, which allows a shorter last group)`,
      { tensor: what, option: 'groupSize' });
  }
  return Math.min(q.groupSize, cols);
}
