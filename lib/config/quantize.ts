/**
 * Configuration of a whole-model quantization run (`quantize()`, `lowbit quantize`): the method,
 * its quantizer, what to quantize and how to save it — normalized and validated here, once. The
 * pipeline and the methods take the normalized form and never check an option again.
 */
import { normalizeQuantizer, QUANTIZER_KEYS, type NormalizedQuantizer, type QuantizerOptions } from './quant';
import { checkBool, checkEnum, checkInt, checkNumber, invalidOption, checkObject } from './validate';
import { LowbitError, optionError } from '../errors';
import { normalizeTransforms, type Transform } from './transform';
import { resolveRecipe, type Recipe } from './recipe';

/** GGUF tensor types lowbit writes (the type of the embedding and the linear weights; norms stay F32). */
export const GGUF_EXPORT_TYPES = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q4_K'] as const;
export type GgufExportType = (typeof GGUF_EXPORT_TYPES)[number];

/** Output formats of the quantize pipeline: checkpoint directories, or one GGUF file. */
export type OutputFormat = 'gptq' | 'gptq-v2' | 'dequant' | CtOutputFormat | GgufOutputFormat;
/** compressed-tensors checkpoints (vLLM's `quant_method: "compressed-tensors"`; lib/formats/compressed-tensors.ts). */
export type CtOutputFormat = 'ct-w4a16' | 'ct-w8a8';
/** A GGUF file whose weights use one ggml type (`gguf:q4_0` …). */
export type GgufOutputFormat = `gguf:${Lowercase<GgufExportType>}`;
export const CHECKPOINT_FORMATS = ['gptq', 'gptq-v2', 'dequant', 'ct-w4a16', 'ct-w8a8'] as const;
export const OUTPUT_FORMATS: readonly OutputFormat[] = [...CHECKPOINT_FORMATS, ...GGUF_EXPORT_TYPES.map((t) => `gguf:${t.toLowerCase()}` as GgufOutputFormat)];

/**
 * Weight widths the compressed-tensors `pack-quantized` layout is written with: the divisors of 32,
 * which every compressed-tensors version packs alike (3 bits is packed differently by 0.9 and 0.18).
 */
export const CT_PACK_BITS: readonly number[] = [2, 4, 8];

/** The grid `ct-w8a8` stores (vLLM's int8 W8A8: one symmetric scale per output channel). */
const CT_W8A8_GRID = { bits: 8, groupSize: -1, sym: true } as const;

/** The methods `quantize` runs. */
export const QUANT_METHODS = ['rtn', 'gptq'] as const;
export type QuantMethodName = (typeof QUANT_METHODS)[number];

/**
 * The grid of each GGUF block type that GPTQ can quantize onto directly, so that its codes go into
 * the blocks without a second rounding (Q4_0 with llama.cpp's own signed-max scale).
 */
const GGUF_GPTQ_GRIDS: Partial<Record<GgufExportType, { bits: number; groupSize: number; sym: boolean; signedMax: boolean }>> = {
  Q4_0: { bits: 4, groupSize: 32, sym: true, signedMax: true },
  Q4_1: { bits: 4, groupSize: 32, sym: false, signedMax: false },
  Q8_0: { bits: 8, groupSize: 32, sym: true, signedMax: false },
};

/** RTN configuration: the quantizer options plus what to quantize and how to save it. */
export interface RtnConfig extends QuantizerOptions {
  method: 'rtn';
  /**
   * `'gptq'`: HF GPTQ checkpoint, zeros stored as zero − 1 (checkpoint_format "gptq", what the
   * common tools read); `'gptq-v2'`: true zeros (checkpoint_format "gptq_v2"); `'dequant'`: the
   * same architecture with every quantized linear stored dequantized (fake quant: any layer width,
   * a shorter last group, codebooks); `'ct-w4a16'`: a compressed-tensors "pack-quantized" checkpoint
   * (2, 4 or 8-bit weights, per group or per channel, symmetric or not; activations in float);
   * `'ct-w8a8'`: compressed-tensors "int-quantized", int8 weights with one symmetric scale per output
   * channel and int8 per-token dynamic activations (bits 8, groupSize -1, sym are filled in when
   * left out, and refused when given otherwise); `'gguf:<type>'`: one GGUF file (`out` is the file) — with RTN,
   * ggml's own block quantizers decide every parameter, so no quantizer option may be given; with
   * GPTQ, Q4_0/Q4_1/Q8_0 fix the grid (bits, groups of 32, symmetry) and GPTQ runs on it.
   * @default 'gptq'
   */
  format?: OutputFormat;
  /** Also quantize `lm_head` (dequant format only). @default false */
  lmHead?: boolean;
  /** Only modules whose name contains one of these strings (or matches a RegExp). */
  include?: (string | RegExp)[];
  /** Skip modules whose name contains one of these strings (or matches a RegExp). */
  exclude?: (string | RegExp)[];
  /** Largest safetensors shard in bytes (checkpoint formats). @default 5 GiB */
  maxShardBytes?: number;
  /**
   * Transforms applied to the weights first, exact in full precision (lib/pipeline/transform.ts):
   * `{kind: 'rotate', down?}` / `'rotate'`, `'rotate:down'` (QuaRot-style Hadamard rotations), or
   * `{kind: 'smoothquant', alpha?}` / `'smoothquant:0.5'`, `'smoothquant:search'` (α per layer;
   * needs calibration data). The method then
   * quantizes the transformed model. @default []
   */
  transforms?: (Transform | string)[];
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

/**
 * A recipe (lib/config/recipe.ts: a preset name, a JSON file or an object) and, beside it, options
 * that override its weight settings (`groupSize: 32` for a narrow model, another `format`).
 */
export interface RecipeConfig extends Partial<Omit<GptqConfig, 'method'>> {
  recipe: string | Recipe;
  method?: QuantMethodName;
}

/** Any method's configuration. */
export type QuantizeConfig = RtnConfig | GptqConfig | RecipeConfig;

/** @internal */
export interface NormalizedGptqOptions {
  actOrder: boolean;
  staticGroups: boolean;
  dampPercent: number;
  blockSize: number;
  trueSequential: boolean;
}

/** @internal */
export interface NormalizedQuantizeConfig {
  method: QuantMethodName;
  gptq: NormalizedGptqOptions | null;
  quantizer: NormalizedQuantizer;
  format: OutputFormat;
  /** The checkpoint the method writes: the format itself, or for GGUF with GPTQ the intermediate GPTQ checkpoint. */
  checkpointFormat: (typeof CHECKPOINT_FORMATS)[number];
  /** The GGUF type when `format` is `gguf:*`, else null. */
  ggufType: GgufExportType | null;
  lmHead: boolean;
  include?: (string | RegExp)[];
  exclude?: (string | RegExp)[];
  maxShardBytes: number;
  transforms: Transform[];
  /** The recipe as it ran (weights with their final values), or null. */
  recipe: Recipe | null;
  /** Other quantizers for modules whose name contains `pattern` (first match wins; recipe.modules). */
  overrides: { pattern: string; quantizer: NormalizedQuantizer }[];
}

/** The quantizer of one module: its override (recipe.modules), else the run's. */
export function quantizerFor(cfg: Pick<NormalizedQuantizeConfig, 'quantizer' | 'overrides'>, moduleName: string): NormalizedQuantizer {
  return cfg.overrides.find((o) => moduleName.includes(o.pattern))?.quantizer ?? cfg.quantizer;
}
/** @deprecated the old name of {@link NormalizedQuantizeConfig}. @internal */
export type NormalizedRtnConfig = NormalizedQuantizeConfig;

const GPTQ_KEYS = ['actOrder', 'staticGroups', 'dampPercent', 'blockSize', 'trueSequential'] as const;
const RUN_KEYS = ['method', 'format', 'lmHead', 'include', 'exclude', 'maxShardBytes', 'transforms'] as const;

function checkPatterns(name: string, v: unknown): (string | RegExp)[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' || x instanceof RegExp)) throw invalidOption(name, 'an array of strings or RegExps', v);
  return v;
}

function checkGptqOptions(g: GptqConfig): NormalizedGptqOptions {
  return {
    actOrder: g.actOrder === undefined ? false : checkBool('actOrder', g.actOrder),
    staticGroups: g.staticGroups === undefined ? false : checkBool('staticGroups', g.staticGroups),
    dampPercent: g.dampPercent === undefined ? 0.01 : checkNumber('dampPercent', g.dampPercent, 0, 1),
    blockSize: g.blockSize === undefined ? 128 : checkInt('blockSize', g.blockSize, 1, 65536),
    trueSequential: g.trueSequential === undefined ? true : checkBool('trueSequential', g.trueSequential),
  };
}

/**
 * GGUF output: which quantizer options the type decides. RTN writes with ggml's own encoders, so
 * every quantizer option is refused; GPTQ on Q4_0/Q4_1/Q8_0 takes the type's grid, and an option
 * that disagrees with it is refused (never silently replaced).
 */
function ggufQuantizer(method: QuantMethodName, type: GgufExportType, format: string, raw: QuantizerOptions): QuantizerOptions {
  const given = QUANTIZER_KEYS.filter((k) => raw[k] !== undefined);
  if (method === 'rtn') {
    if (given.length) {
      throw optionError(given[0], `${given[0]}: format ${format} with method "rtn" uses ggml's own ${type} encoder, which sets every quantizer parameter; leave ${given.join(', ')} out (or use method "gptq", or a checkpoint format)`);
    }
    return {};
  }
  const grid = GGUF_GPTQ_GRIDS[type];
  if (!grid) return raw; // GPTQ checkpoint at the given grid, then re-encoded by ggml's encoder (recorded per module)
  const wants: Record<string, unknown> = { bits: grid.bits, groupSize: grid.groupSize, sym: grid.sym, signedMax: grid.signedMax, scaleF16: true };
  for (const k of given) {
    const agree = k in wants ? raw[k] === wants[k] : k === 'clip' || k === 'clipGrid' || k === 'clipMaxShrink' || k === 'clipNorm' || (k === 'codebook' && raw[k] === 'uniform') || (k === 'perTensor' && raw[k] === false) || (k === 'raggedLastGroup' && raw[k] === false) || (k === 'zeroMin');
    if (!agree) {
      throw optionError(k, `${k}: format ${format} stores ${grid.bits}-bit ${grid.sym ? 'symmetric' : 'asymmetric'} groups of ${grid.groupSize}; GPTQ runs on that grid (leave ${k} out), received ${JSON.stringify(raw[k])}`);
    }
  }
  return { ...raw, bits: grid.bits, groupSize: grid.groupSize, sym: grid.sym, signedMax: grid.signedMax };
}

/**
 * `ct-w8a8` fixes bits, groupSize and sym: filled in when left out, refused when given otherwise
 * (never silently replaced).
 */
function ctW8a8Quantizer(raw: QuantizerOptions): QuantizerOptions {
  for (const [k, v] of Object.entries(CT_W8A8_GRID) as [keyof typeof CT_W8A8_GRID, number | boolean][]) {
    if (raw[k] !== undefined && raw[k] !== v) {
      throw optionError(k, `${k}: format ct-w8a8 stores int8 weights with one symmetric scale per output channel (bits 8, groupSize -1, sym true); leave ${k} out or set it to ${String(v)}, received ${JSON.stringify(raw[k])}`);
    }
  }
  return { ...raw, ...CT_W8A8_GRID };
}

/** The rules of the compressed-tensors formats on a normalized quantizer (the ones the GPTQ checks below do not cover). */
function checkCtQuantizer(format: 'ct-w4a16' | 'ct-w8a8', q: NormalizedQuantizer): void {
  if (format === 'ct-w4a16' && !CT_PACK_BITS.includes(q.bits)) {
    throw optionError('bits', `bits: format ct-w4a16 packs ${CT_PACK_BITS.join(', ')} bits into int32 (3 bits is packed differently by different compressed-tensors versions), received ${q.bits}; use format "gptq" or "dequant" for it`);
  }
  if (q.signedMax) {
    throw optionError('signedMax', `signedMax: format ${format} stores symmetric codes with the zero at 2^(bits−1) (or true zero points with sym false); the signed-max grid's zeros are not, so leave signedMax out`);
  }
}

/** Validate a quantize config (any method) and fill its defaults. The one place these options are checked. */
export function normalizeQuantizeConfig(c: QuantizeConfig): NormalizedQuantizeConfig {
  checkObject('config', c, 'an object');
  if ('recipe' in c) return normalizeRecipeConfig(c);
  const methodRaw = (c as { method?: unknown }).method;
  if (methodRaw === 'awq') {
    throw new LowbitError('LOWBIT_UNSUPPORTED', `method: "awq" is not implemented in this version (available: ${QUANT_METHODS.map((m) => `"${m}"`).join(', ')})`, { option: 'method' });
  }
  const method = checkEnum('method', methodRaw, QUANT_METHODS);
  const gptq = method === 'gptq' ? checkGptqOptions(c as GptqConfig) : null;
  const format = c.format === undefined ? 'gptq' : checkEnum('format', c.format, OUTPUT_FORMATS);
  const ggufType = format.startsWith('gguf:') ? (format.slice(5).toUpperCase() as GgufExportType) : null;
  // the quantizer's own options: everything but the run's and GPTQ's keys
  const skip = new Set<string>([...RUN_KEYS, ...GPTQ_KEYS]);
  let raw = Object.fromEntries(Object.entries(c).filter(([k]) => !skip.has(k))) as QuantizerOptions;
  if (method !== 'gptq') {
    for (const k of GPTQ_KEYS) {
      if ((c as unknown as Record<string, unknown>)[k] !== undefined) throw optionError(k, `${k}: a GPTQ option, but method is "${method}"`);
    }
  }
  if (ggufType) {
    raw = ggufQuantizer(method, ggufType, format, raw);
    for (const k of ['lmHead', 'include', 'maxShardBytes'] as const) {
      if (c[k] !== undefined) throw optionError(k, `${k}: does not apply to format ${format} (a GGUF file; exclude keeps tensors in float)`);
    }
    if (gptq?.actOrder && !gptq.staticGroups && GGUF_GPTQ_GRIDS[ggufType]) {
      throw optionError('actOrder', `actOrder: format ${format} needs groups of consecutive input channels; add staticGroups (--static-groups)`);
    }
    if (c.exclude?.some((p) => typeof p !== 'string')) throw invalidOption('exclude', `strings with format ${format}`, c.exclude);
  }
  const checkpointFormat: NormalizedQuantizeConfig['checkpointFormat'] = ggufType ? 'gptq' : (format as NormalizedQuantizeConfig['checkpointFormat']);
  if (checkpointFormat === 'dequant' && raw.raggedLastGroup === undefined) raw.raggedLastGroup = true;
  if (checkpointFormat === 'ct-w8a8') raw = ctW8a8Quantizer(raw);
  const quantizer = normalizeQuantizer(raw);
  if (checkpointFormat === 'ct-w4a16' || checkpointFormat === 'ct-w8a8') checkCtQuantizer(checkpointFormat, quantizer);
  if (method === 'gptq' && (quantizer.codebook !== 'uniform' || quantizer.perTensor)) {
    throw optionError('method', 'method: GPTQ quantizes on a uniform per-channel or per-group grid (no codebook, no per-tensor scale)');
  }
  if (checkpointFormat !== 'dequant' && !(ggufType && method === 'rtn')) {
    if (quantizer.codebook !== 'uniform') {
      throw optionError('codebook', `codebook: "${quantizer.codebook}" has no GPTQ representation; use format "dequant"`);
    }
    if (![2, 3, 4, 8].includes(quantizer.bits)) {
      throw optionError('bits', `bits: the GPTQ layout holds 2, 3, 4 or 8 bits, received ${quantizer.bits}; use format "dequant" for other widths`);
    }
    if (quantizer.perTensor) {
      throw optionError('perTensor', 'perTensor: a GPTQ checkpoint stores per-channel or per-group scales; use format "dequant" (or groupSize -1)');
    }
    if (quantizer.raggedLastGroup) {
      throw optionError('raggedLastGroup', 'raggedLastGroup: the GPTQ layout needs groups that divide the columns; use format "dequant"');
    }
    if (!quantizer.scaleF16) {
      throw optionError('scaleF16', 'scaleF16: a GPTQ checkpoint stores fp16 scales, so codes must be computed with fp16-rounded scales; use format "dequant" for f32 scales');
    }
    // GPTQ v1 stores zero − 1: a zero of 0 cannot be written, so quantize with zeros >= 1.
    if (checkpointFormat === 'gptq' && !quantizer.sym) quantizer.zeroMin = 1;
  }
  const lmHead = c.lmHead === undefined ? false : checkBool('lmHead', c.lmHead);
  if (lmHead && method === 'gptq') throw new LowbitError('LOWBIT_UNSUPPORTED', 'lmHead: GPTQ of lm_head is not supported', { option: 'lmHead' });
  if (lmHead && format !== 'dequant') throw new LowbitError('LOWBIT_UNSUPPORTED', 'lmHead: quantizing lm_head is supported with format "dequant" only', { option: 'lmHead' });
  const maxShardBytes = c.maxShardBytes === undefined ? 5 * 1024 ** 3 : checkInt('maxShardBytes', c.maxShardBytes, 1024, Number.MAX_SAFE_INTEGER);
  return {
    method, gptq, quantizer, format, checkpointFormat, ggufType, lmHead,
    include: checkPatterns('include', c.include), exclude: checkPatterns('exclude', c.exclude), maxShardBytes,
    transforms: c.transforms === undefined ? [] : normalizeTransforms(c.transforms),
    recipe: null,
    overrides: [],
  };
}

/** A recipe expanded into the config (options given beside it win), normalized, the recipe recording the final values. */
function normalizeRecipeConfig(c: RecipeConfig): NormalizedQuantizeConfig {
  const recipe = resolveRecipe(c.recipe);
  const given: Partial<RecipeConfig> = { ...c };
  delete given.recipe;
  const w = recipe.weights;
  const method = given.method ?? w.method;
  if (typeof given.format === 'string' && given.format.startsWith('gguf:') && (recipe.activations || recipe.kv)) {
    throw optionError('recipe', `recipe: format ${given.format} is a GGUF file, which cannot carry the recipe's ${recipe.kv ? 'KV-cache' : 'activation'} settings (llama.cpp sets its own at run time); use a checkpoint format`);
  }
  const merged = {
    method, bits: w.bits, ...(w.groupSize !== undefined ? { groupSize: w.groupSize } : {}), ...(w.sym !== undefined ? { sym: w.sym } : {}), ...(w.clip !== undefined ? { clip: w.clip } : {}),
    ...(method === 'gptq' && w.actOrder !== undefined ? { actOrder: w.actOrder } : {}),
    ...(recipe.transforms ? { transforms: recipe.transforms } : {}),
    ...given,
  } as QuantizeConfig;
  // modules left alone: the recipe's exclude and its skip patterns, with any exclude given beside it
  const skips = [...(recipe.exclude ?? []), ...(recipe.modules ?? []).filter((x) => x.skip === true).map((x) => x.pattern)];
  if (skips.length) (merged as { exclude?: (string | RegExp)[] }).exclude = [...skips, ...(given.exclude ?? [])];
  const n = normalizeQuantizeConfig(merged);
  const base = Object.fromEntries(QUANTIZER_KEYS.map((k) => [k, n.quantizer[k]])) as QuantizerOptions;
  const overrides = (recipe.modules ?? []).filter((x) => x.weights !== undefined).map((x, i) => {
    if (n.checkpointFormat !== 'dequant') {
      throw optionError('recipe.modules', `recipe.modules: per-module weight settings need format "dequant" (a ${n.format} checkpoint holds one setting for every module), received ${JSON.stringify(x.pattern)}`);
    }
    const w = x.weights ?? {};
    for (const [k, v] of Object.entries(w)) {
      if (k !== 'clip' && k !== 'sym' && typeof v !== 'number') throw invalidOption(`recipe.modules[${i}].weights.${k}`, 'a number', v);
    }
    return { pattern: x.pattern, quantizer: normalizeQuantizer({ ...base, ...w }) };
  });
  const q = n.quantizer;
  return {
    ...n,
    overrides,
    recipe: {
      ...recipe,
      weights: { method: n.method, bits: q.bits, groupSize: q.groupSize, sym: q.sym, clip: q.clip, ...(n.gptq ? { actOrder: n.gptq.actOrder } : {}) },
      transforms: n.transforms,
      ...(n.exclude ? { exclude: n.exclude.map(String) } : {}),
    },
  };
}

/** @deprecated the old name of {@link normalizeQuantizeConfig}. @internal */
export const normalizeRtnConfig = normalizeQuantizeConfig;
