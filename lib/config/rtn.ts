/** Configuration of round-to-nearest (RTN) quantization of a whole model. */
import { normalizeQuantizer, type NormalizedQuantizer, type QuantizerOptions } from './quant';
import { checkBool, checkEnum, checkInt, checkNumber, invalidOption } from '../validate';
import { LowbitError } from '../errors';

/** Output formats of the quantize pipeline. */
export type OutputFormat = 'gptq' | 'gptq-v2' | 'dequant';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['gptq', 'gptq-v2', 'dequant'];

/** RTN configuration: the quantizer options plus what to quantize and how to save it. */
export interface RtnConfig extends QuantizerOptions {
  method: 'rtn';
  /**
   * `'gptq'`: HF GPTQ checkpoint, zeros stored as zero − 1 (checkpoint_format "gptq", what the
   * common tools read); `'gptq-v2'`: true zeros (checkpoint_format "gptq_v2"); `'dequant'`: the
   * same architecture with every quantized linear stored dequantized (fake quant: any layer width,
   * a shorter last group, codebooks). @default 'gptq'
   */
  format?: OutputFormat;
  /** Also quantize `lm_head` (dequant format only). @default false */
  lmHead?: boolean;
  /** Only modules whose name contains one of these strings (or matches a RegExp). */
  include?: (string | RegExp)[];
  /** Skip modules whose name contains one of these strings (or matches a RegExp). */
  exclude?: (string | RegExp)[];
  /** Largest safetensors shard in bytes. @default 5 GiB */
  maxShardBytes?: number;
}

/** GPTQ configuration: RTN's options plus the algorithm's own (see {@link gptqLayer}). */
export interface GptqConfig extends Omit<RtnConfig, 'method'> {
  method: 'gptq';
  /** Columns by descending Hessian diagonal (desc_act). @default false */
  actOrder?: boolean;
  /** Group params from the original column order (g_idx stays trivial). @default false */
  staticGroups?: boolean;
  /** Damping, fraction of mean(diag H); raised in 0.01 steps when Cholesky fails. @default 0.01 */
  dampPercent?: number;
  /** Columns per lazy-update block. @default 128 */
  blockSize?: number;
  /** Quantize q/k/v, then o, then gate/up, then down, each seeing the earlier ones quantized. @default true */
  trueSequential?: boolean;
}

/** Any method's configuration. */
export type QuantizeConfig = RtnConfig | GptqConfig;

/** @internal */
export interface NormalizedGptqOptions {
  actOrder: boolean;
  staticGroups: boolean;
  dampPercent: number;
  blockSize: number;
  trueSequential: boolean;
}

/** @internal */
export interface NormalizedRtnConfig {
  method: 'rtn' | 'gptq';
  gptq: NormalizedGptqOptions | null;
  quantizer: NormalizedQuantizer;
  format: OutputFormat;
  lmHead: boolean;
  include?: (string | RegExp)[];
  exclude?: (string | RegExp)[];
  maxShardBytes: number;
}

function checkPatterns(name: string, v: unknown): (string | RegExp)[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' || x instanceof RegExp)) throw invalidOption(name, 'an array of strings or RegExps', v);
  return v;
}

function lmHeadRequested(c: QuantizeConfig): boolean {
  return (c as RtnConfig).lmHead === true;
}

/** Validate an RTN (or GPTQ) config and fill its defaults. */
export function normalizeRtnConfig(c: QuantizeConfig): NormalizedRtnConfig {
  if (typeof c !== 'object' || c === null) throw invalidOption('config', 'an object', c);
  let gptq: NormalizedGptqOptions | null = null;
  if ((c as { method?: unknown }).method === 'gptq') {
    const g = c as GptqConfig;
    gptq = {
      actOrder: g.actOrder === undefined ? false : checkBool('actOrder', g.actOrder),
      staticGroups: g.staticGroups === undefined ? false : checkBool('staticGroups', g.staticGroups),
      dampPercent: g.dampPercent === undefined ? 0.01 : checkNumber('dampPercent', g.dampPercent, 0, 1),
      blockSize: g.blockSize === undefined ? 128 : checkInt('blockSize', g.blockSize, 1, 65536),
      trueSequential: g.trueSequential === undefined ? true : checkBool('trueSequential', g.trueSequential),
    };
    const rest = { ...g, method: 'rtn' } as Record<string, unknown>;
    for (const k of ['actOrder', 'staticGroups', 'dampPercent', 'blockSize', 'trueSequential']) delete rest[k];
    const n = normalizeRtnConfig(rest as unknown as RtnConfig);
    if (n.quantizer.codebook !== 'uniform' || n.quantizer.perTensor) {
      throw new LowbitError('LOWBIT_INVALID_OPTION', 'method: GPTQ quantizes on a uniform per-channel or per-group grid (no codebook, no per-tensor scale)', { option: 'method' });
    }
    return { ...n, method: 'gptq', gptq };
  }
  if ((c as { method?: unknown }).method === 'awq') {
    throw new LowbitError('LOWBIT_UNSUPPORTED', `method: "${String((c as { method?: unknown }).method)}" is not implemented in this version (available: "rtn")`, { option: 'method' });
  }
  checkEnum('method', c.method, ['rtn'] as const);
  const format = c.format === undefined ? 'gptq' : checkEnum('format', c.format, OUTPUT_FORMATS);
  const raw: QuantizerOptions = { ...c };
  for (const k of ['method', 'format', 'lmHead', 'include', 'exclude', 'maxShardBytes'] as const) delete (raw as Record<string, unknown>)[k];
  if (lmHeadRequested(c) && (c as { method?: unknown }).method === 'gptq') throw new LowbitError('LOWBIT_UNSUPPORTED', 'lmHead: GPTQ of lm_head is not supported', { option: 'lmHead' });
  if (format === 'dequant' && raw.raggedLastGroup === undefined) raw.raggedLastGroup = true;
  const quantizer = normalizeQuantizer(raw);
  if (format !== 'dequant') {
    if (quantizer.codebook !== 'uniform') {
      throw new LowbitError('LOWBIT_INVALID_OPTION', `codebook: "${quantizer.codebook}" has no GPTQ representation; use format "dequant"`, { option: 'codebook' });
    }
    if (![2, 3, 4, 8].includes(quantizer.bits)) {
      throw new LowbitError('LOWBIT_INVALID_OPTION', `bits: the GPTQ layout holds 2, 3, 4 or 8 bits, received ${quantizer.bits}; use format "dequant" for other widths`, { option: 'bits' });
    }
    if (quantizer.perTensor) {
      throw new LowbitError('LOWBIT_INVALID_OPTION', 'perTensor: a GPTQ checkpoint stores per-channel or per-group scales; use format "dequant" (or groupSize -1)', { option: 'perTensor' });
    }
    if (quantizer.raggedLastGroup) {
      throw new LowbitError('LOWBIT_INVALID_OPTION', 'raggedLastGroup: the GPTQ layout needs groups that divide the columns; use format "dequant"', { option: 'raggedLastGroup' });
    }
    if (!quantizer.scaleF16) {
      throw new LowbitError('LOWBIT_INVALID_OPTION', 'scaleF16: a GPTQ checkpoint stores fp16 scales, so codes must be computed with fp16-rounded scales; use format "dequant" for f32 scales', { option: 'scaleF16' });
    }
    // GPTQ v1 stores zero − 1: a zero of 0 cannot be written, so quantize with zeros >= 1.
    if (format === 'gptq' && !quantizer.sym) quantizer.zeroMin = 1;
  }
  const lmHead = c.lmHead === undefined ? false : c.lmHead;
  if (typeof lmHead !== 'boolean') throw invalidOption('lmHead', 'a boolean', lmHead);
  if (lmHead && format !== 'dequant') throw new LowbitError('LOWBIT_UNSUPPORTED', 'lmHead: quantizing lm_head is supported with format "dequant" only', { option: 'lmHead' });
  const maxShardBytes = c.maxShardBytes === undefined ? 5 * 1024 ** 3 : checkInt('maxShardBytes', c.maxShardBytes, 1024, Number.MAX_SAFE_INTEGER);
  return { method: 'rtn', gptq: null, quantizer, format, lmHead, include: checkPatterns('include', c.include), exclude: checkPatterns('exclude', c.exclude), maxShardBytes };
}
