/**
 * What the runtime quantizes besides the weights: the KV cache and the inputs of the linear
 * modules (activations). Normalized and validated here, once; `loadModel` (`kv`, `actQuant`), the
 * CLI (`--kv-*`, `--act-*`) and recipes all go through these functions.
 */
import { optionError } from '../errors';
import { checkBool, checkInt, checkKnownKeys, checkObject, checkOneOf, invalidOption } from './validate';

/** A quantized KV cache (the native row format: kernels/rtquant.h). */
export interface KvCacheOptions {
  /** Bits per cached value: 8, 4 or 2 (16/32: leave `kv` out, the cache is f32). */
  bits: 2 | 4 | 8;
  /** Values per scale along the head dimension: 'head' (the whole head), or a size dividing it (64, 32, …). @default 'head' */
  group?: 'head' | number;
  /** Symmetric codes (scale only); else asymmetric (scale and minimum). @default false */
  sym?: boolean;
  /**
   * How K is grouped: 'token' (each token's head, like V), or 'channel' (KIVI: each channel over blocks
   * of `block` tokens; a block not yet complete stays in full precision). V is always per token. @default 'token'
   */
  axis?: 'token' | 'channel';
  /** Tokens per block of per-channel K. @default 32 */
  block?: number;
  /** The positions before each query, itself included, that it reads in full precision (KIVI's residual). @default 0 */
  window?: number;
  /** Rotate Q and K of every head by a Hadamard matrix after RoPE (exact in full precision; spreads outliers before K is quantized). @default false */
  rotate?: boolean;
}

/** The normalized KV settings. */
export interface NormalizedKv {
  bits: 2 | 4 | 8;
  /** 0: the whole head. */
  group: number;
  sym: boolean;
  axis: 'token' | 'channel';
  block: number;
  window: number;
  rotate: boolean;
}

export const KV_KEYS = ['bits', 'group', 'sym', 'axis', 'block', 'window', 'rotate'] as const;

/** Check `kv` against a model's head size and context. `name` is the option's name in errors. */
export function normalizeKv(kv: KvCacheOptions, headDim: number, seqLen: number, name = 'kv'): NormalizedKv {
  checkObject(name, kv, 'an object {bits, group, sym, axis, block, window, rotate}');
  checkKnownKeys(name, kv, KV_KEYS);
  const bits = checkOneOf(`${name}.bits`, kv.bits, [2, 4, 8] as const);
  let group = 0;
  if (kv.group !== undefined && kv.group !== 'head') {
    group = checkInt(`${name}.group`, kv.group, 1, 1 << 20);
    if (headDim % group !== 0) throw optionError(`${name}.group`, `${name}.group: ${group} does not divide the head size ${headDim} (use 'head' or a divisor of ${headDim})`);
    if ((group * bits) % 8 !== 0) throw optionError(`${name}.group`, `${name}.group: ${group} values of ${bits} bits are not a whole number of bytes`);
    if (group === headDim) group = 0;
  }
  if ((headDim * bits) % 8 !== 0) throw optionError(`${name}.bits`, `${name}.bits: a head of ${headDim} values at ${bits} bits is not a whole number of bytes`);
  const sym = kv.sym === undefined ? false : checkBool(`${name}.sym`, kv.sym);
  const axis = kv.axis === undefined ? 'token' : checkOneOf(`${name}.axis`, kv.axis, ['token', 'channel'] as const);
  const block = kv.block === undefined ? 32 : checkInt(`${name}.block`, kv.block, 1, 4096);
  if (kv.block !== undefined && axis !== 'channel') throw optionError(`${name}.block`, `${name}.block: applies to per-channel keys only (axis 'channel')`);
  const window = kv.window === undefined ? 0 : checkInt(`${name}.window`, kv.window, 0, seqLen);
  const rotate = kv.rotate === undefined ? false : checkBool(`${name}.rotate`, kv.rotate);
  return { bits, group, sym, axis, block, window, rotate };
}

/** The inputs of a layer's linear modules, in the native order (one scale each per layer). */
export const ACT_INPUTS = ['qkv', 'o', 'gate_up', 'down'] as const;
export type ActInput = (typeof ACT_INPUTS)[number];

/** Quantization of the linear modules' inputs. */
export interface ActQuantOptions {
  /** Bits, symmetric: 8 or 4 (2…8 accepted). */
  bits: number;
  /**
   * 'dynamic': a scale per token, computed as the model runs; 'static': one scale per module input,
   * measured on calibration text (`scales`, from `measureActScales`). @default 'dynamic'
   */
  scheme?: 'dynamic' | 'static';
  /** Which inputs: q/k/v ('qkv'), o, gate/up ('gate_up'), down. @default all four */
  inputs?: ActInput[];
  /** Static scales, nLayers × 4 in ACT_INPUTS order (scheme 'static'). */
  scales?: Float32Array | number[];
}

/** The normalized activation settings. */
export interface NormalizedActQuant {
  bits: number;
  scheme: 'dynamic' | 'static';
  inputs: ActInput[];
  scales: Float32Array | null;
}

export const ACT_KEYS = ['bits', 'scheme', 'inputs', 'scales'] as const;

export function normalizeActQuant(a: ActQuantOptions, nLayers: number, name = 'actQuant'): NormalizedActQuant {
  checkObject(name, a, 'an object {bits, scheme, inputs, scales}');
  checkKnownKeys(name, a, ACT_KEYS);
  const bits = checkInt(`${name}.bits`, a.bits, 2, 8);
  const scheme = a.scheme === undefined ? 'dynamic' : checkOneOf(`${name}.scheme`, a.scheme, ['dynamic', 'static'] as const);
  let inputs: ActInput[] = [...ACT_INPUTS];
  if (a.inputs !== undefined) {
    if (!Array.isArray(a.inputs) || a.inputs.length === 0) throw invalidOption(`${name}.inputs`, `a non-empty array of ${ACT_INPUTS.join(', ')}`, a.inputs);
    inputs = a.inputs.map((x) => checkOneOf(`${name}.inputs`, x, ACT_INPUTS));
  }
  let scales: Float32Array | null = null;
  if (a.scales !== undefined) {
    if (scheme !== 'static') throw optionError(`${name}.scales`, `${name}.scales: given with scheme 'dynamic' (dynamic scales are computed per token; use scheme 'static')`);
    const s = a.scales;
    if (!(s instanceof Float32Array) && !Array.isArray(s)) throw invalidOption(`${name}.scales`, 'a Float32Array or number[]', s);
    if (s.length !== nLayers * ACT_INPUTS.length) throw optionError(`${name}.scales`, `${name}.scales: ${s.length} values; the model needs ${nLayers} layers × ${ACT_INPUTS.length} inputs = ${nLayers * ACT_INPUTS.length}`);
    scales = Float32Array.from(s);
    for (let i = 0; i < scales.length; i++) {
      if (!(scales[i] > 0) || !Number.isFinite(scales[i])) throw invalidOption(`${name}.scales[${i}]`, 'a positive finite scale', scales[i]);
    }
  } else if (scheme === 'static') {
    throw optionError(`${name}.scales`, `${name}: scheme 'static' needs scales measured on calibration text (scales, or --calib FILE on the command line)`);
  }
  return { bits, scheme, inputs, scales };
}
