/** Configuration of round-to-nearest (RTN) quantization of a whole model. */
import { normalizeQuantizer, type NormalizedQuantizer, type QuantizerOptions } from './quant';
import { checkEnum, checkInt, invalidOption } from '../validate';
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

/** @internal */
export interface NormalizedRtnConfig {
  method: 'rtn';
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

/** Validate an RTN config and fill its defaults. */
export function normalizeRtnConfig(c: RtnConfig): NormalizedRtnConfig {
  if (typeof c !== 'object' || c === null) throw invalidOption('config', 'an object', c);
  if ((c as { method?: unknown }).method === 'gptq' || (c as { method?: unknown }).method === 'awq') {
    throw new LowbitError('LOWBIT_UNSUPPORTED', `method: "${String((c as { method?: unknown }).method)}" is not implemented in this version (available: "rtn")`, { option: 'method' });
  }
  checkEnum('method', c.method, ['rtn'] as const);
  const format = c.format === undefined ? 'gptq' : checkEnum('format', c.format, OUTPUT_FORMATS);
  const raw: QuantizerOptions = { ...c };
  for (const k of ['method', 'format', 'lmHead', 'include', 'exclude', 'maxShardBytes'] as const) delete (raw as Record<string, unknown>)[k];
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
  return { method: 'rtn', quantizer, format, lmHead, include: checkPatterns('include', c.include), exclude: checkPatterns('exclude', c.exclude), maxShardBytes };
}
