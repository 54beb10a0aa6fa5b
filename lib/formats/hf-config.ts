/**
 * Hugging Face `config.json` for the LLaMA family (docs/formats.md §3.1): read, validate, write back.
 *
 * Supported families: `llama` (LlamaForCausalLM), `mistral` (MistralForCausalLM) and `qwen2`
 * (Qwen2ForCausalLM, whose q/k/v projections carry biases). The parsed JSON is kept in `raw` so a
 * writer can reproduce every field lowbit does not model (rope_scaling, sliding_window, …).
 *
 * Field names map through one table ({@link INT_FIELDS}), used by both the reader and the writer.
 */
import * as fs from 'fs';
import * as path from 'path';
import { LowbitError, toLowbitError } from '../errors';
import { readJsonFile } from './json';

/** A model family lowbit can load; decides tensor names and which projections have biases. */
export type ModelFamily = 'llama' | 'mistral' | 'qwen2';

/** dtype of the unquantised tensors (`torch_dtype`, or `dtype` in transformers ≥ 4.56). */
export type TorchDtype = 'float16' | 'bfloat16' | 'float32';

/** A normalized `config.json` of a LLaMA-family model. Sizes are in elements. */
export interface ModelConfig {
  /** Family, from `architectures` (or `model_type` when `architectures` is absent). */
  family: ModelFamily;
  /** `architectures` as stored (e.g. `["LlamaForCausalLM"]`); `[]` when absent. */
  architectures: string[];
  /** `model_type` as stored; the family name when absent. */
  modelType: string;
  /** Model width `d` (`hidden_size`). */
  hiddenSize: number;
  /** FFN width (`intermediate_size`). */
  intermediateSize: number;
  /** Number of decoder layers (`num_hidden_layers`). */
  numLayers: number;
  /** Attention heads (`num_attention_heads`). */
  numHeads: number;
  /** Key/value heads (`num_key_value_heads`); divides `numHeads`. @default numHeads */
  numKvHeads: number;
  /** Head size (`head_dim`). @default hiddenSize / numHeads (must then divide exactly) */
  headDim: number;
  /** Vocabulary size (`vocab_size`). */
  vocabSize: number;
  /** Context length the model was trained for (`max_position_embeddings`). */
  maxPositionEmbeddings: number;
  /** RMSNorm epsilon (`rms_norm_eps`). @default 1e-6 (the transformers default for all three families) */
  rmsNormEps: number;
  /** RoPE base (`rope_theta`, or `rope_parameters.rope_theta`). @default 10000 */
  ropeTheta: number;
  /**
   * RoPE scaling (`rope_scaling`, or `rope_parameters` with a `rope_type` other than "default"):
   * its type and the numeric parameters it carries; null when the model has none. The runtime
   * applies "linear" and "llama3" and refuses the others (it never drops one).
   */
  ropeScaling: RopeScaling | null;
  /** true ⇒ `lm_head` shares `embed_tokens` and no `lm_head.weight` is stored. @default false */
  tieWordEmbeddings: boolean;
  /** dtype of unquantised tensors. @default 'float32' (what transformers loads when neither key is set) */
  torchDtype: TorchDtype;
  /**
   * Whether attention projections carry biases: always true for qwen2 (q/k/v only); for llama
   * `attention_bias` (q/k/v/o). @default false
   */
  attentionBias: boolean;
  /** `bos_token_id`, when set. */
  bosTokenId?: number;
  /** `eos_token_id`, when set; the first id when the file stores a list. */
  eosTokenId?: number;
  /** Every id of `eos_token_id` when the file stores a list (Llama 3.x does). */
  eosTokenIds?: number[];
  /** The parsed JSON as read, kept so {@link hfConfigToJson} can write it back. */
  raw: Record<string, unknown>;
}

/** Architecture name → family. */
const ARCHITECTURES: Readonly<Record<string, ModelFamily>> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
};

/** Family → the architecture name lowbit writes. */
const FAMILY_ARCHITECTURE: Readonly<Record<ModelFamily, string>> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};

/** The architecture names lowbit reads, for error messages. */
export const SUPPORTED_ARCHITECTURES: readonly string[] = Object.keys(ARCHITECTURES);

const TORCH_DTYPES: readonly TorchDtype[] = ['float16', 'bfloat16', 'float32'];

/** Required positive-integer fields: ModelConfig key ↔ config.json key (the one table). */
const INT_FIELDS = [
  ['hiddenSize', 'hidden_size'],
  ['intermediateSize', 'intermediate_size'],
  ['numLayers', 'num_hidden_layers'],
  ['numHeads', 'num_attention_heads'],
  ['vocabSize', 'vocab_size'],
  ['maxPositionEmbeddings', 'max_position_embeddings'],
] as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return v === undefined ? 'nothing' : JSON.stringify(v);
}

function bad(file: string, msg: string, details?: Record<string, unknown>): LowbitError {
  return new LowbitError('LOWBIT_BAD_FORMAT', `${file}: ${msg}`, { file, ...details });
}

/**
 * Largest value of a size field (hidden_size, num_hidden_layers, vocab_size, max_position_embeddings,
 * …): 2^31 − 1, because the runtime and the kernels index with 32-bit integers. A larger value is
 * refused here, naming the field, instead of deep inside loading.
 */
export const MAX_CONFIG_INT = 2 ** 31 - 1;

function positiveInt(file: string, obj: Record<string, unknown>, key: string): number {
  const v = obj[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw bad(file, `${key}: expected a positive integer, got ${show(v)}`, { field: key });
  }
  if (v > MAX_CONFIG_INT) {
    throw bad(file, `${key}: expected a positive integer ≤ ${MAX_CONFIG_INT} (2^31 − 1), got ${show(v)}`, { field: key });
  }
  return v;
}

function optionalPositiveInt(file: string, obj: Record<string, unknown>, key: string): number | undefined {
  return obj[key] === undefined || obj[key] === null ? undefined : positiveInt(file, obj, key);
}

function optionalPositiveNumber(file: string, obj: Record<string, unknown>, key: string, where = key): number | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw bad(file, `${where}: expected a positive number, got ${show(v)}`, { field: where });
  }
  return v;
}

function optionalBool(file: string, obj: Record<string, unknown>, key: string): boolean | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(file, `${key}: expected a boolean, got ${show(v)}`, { field: key });
  return v;
}

function optionalTokenId(file: string, obj: Record<string, unknown>, key: string): number | number[] | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  const ok = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;
  if (ok(v)) return v;
  if (Array.isArray(v) && v.length > 0 && v.every(ok)) return v.slice();
  throw bad(file, `${key}: expected a non-negative integer or a list of them, got ${show(v)}`, { field: key });
}

function familyOf(file: string, obj: Record<string, unknown>): { family: ModelFamily; architectures: string[] } {
  const supported = `supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`;
  const archs = obj.architectures;
  if (archs !== undefined && archs !== null) {
    if (!Array.isArray(archs) || !archs.every((a) => typeof a === 'string')) {
      throw bad(file, `architectures: expected a list of strings, got ${show(archs)}`, { field: 'architectures' });
    }
    if (archs.length > 0) {
      for (const a of archs) {
        const family = ARCHITECTURES[a] as ModelFamily | undefined;
        if (family) return { family, architectures: archs.slice() };
      }
      throw new LowbitError(
        'LOWBIT_UNSUPPORTED',
        `${file}: architecture ${archs.map((a) => JSON.stringify(a)).join(', ')} is not supported (${supported})`,
        { file, architectures: archs },
      );
    }
  }
  const mt = obj.model_type;
  if (typeof mt === 'string' && (mt === 'llama' || mt === 'mistral' || mt === 'qwen2')) {
    return { family: mt, architectures: [] };
  }
  if (mt === undefined || mt === null) {
    throw bad(file, `neither architectures nor model_type is set; cannot tell the model family (${supported})`, {
      field: 'architectures',
    });
  }
  throw new LowbitError('LOWBIT_UNSUPPORTED', `${file}: model_type ${show(mt)} is not supported (${supported})`, {
    file,
    modelType: mt,
  });
}

function torchDtypeOf(file: string, obj: Record<string, unknown>): TorchDtype {
  const read = (key: string): TorchDtype | undefined => {
    const v = obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw bad(file, `${key}: expected a string, got ${show(v)}`, { field: key });
    if (!(TORCH_DTYPES as readonly string[]).includes(v)) {
      throw new LowbitError(
        'LOWBIT_UNSUPPORTED',
        `${file}: ${key} ${JSON.stringify(v)} is not supported (supported: ${TORCH_DTYPES.join(', ')})`,
        { file, field: key },
      );
    }
    return v as TorchDtype;
  };
  const a = read('torch_dtype');
  const b = read('dtype');
  if (a !== undefined && b !== undefined && a !== b) {
    throw bad(file, `torch_dtype ${JSON.stringify(a)} and dtype ${JSON.stringify(b)} disagree`, { field: 'dtype' });
  }
  return a ?? b ?? 'float32';
}

/**
 * Validate and normalize an already-parsed `config.json` object. {@link readHfConfig} is this plus
 * the file read; use this one when the JSON comes from elsewhere.
 *
 * @param obj  the parsed JSON
 * @param file the name used in error messages (e.g. the path of config.json)
 * @throws LowbitError `LOWBIT_BAD_FORMAT` (not an object, missing/invalid field, naming the field),
 *   `LOWBIT_UNSUPPORTED` (architecture, model_type or dtype lowbit cannot load)
 */
/** RoPE scaling as config.json states it. */
export interface RopeScaling {
  /** `rope_type` (or the older `type`): "linear", "llama3", "dynamic", "yarn", … */
  type: string;
  /** `factor`, when given. */
  factor?: number;
  /** llama3: `low_freq_factor`, `high_freq_factor`, `original_max_position_embeddings`. */
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

function parseRopeScaling(file: string, obj: Record<string, unknown>): RopeScaling | null {
  const where = isObject(obj.rope_scaling) ? 'rope_scaling' : isObject(obj.rope_parameters) ? 'rope_parameters' : null;
  if (where === null) {
    if (obj.rope_scaling !== undefined && obj.rope_scaling !== null) throw bad(file, `rope_scaling: expected an object or null, got ${show(obj.rope_scaling)}`, { field: 'rope_scaling' });
    return null;
  }
  const r = obj[where] as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type === undefined && where === 'rope_parameters') return null; // only rope_theta there
  if (typeof type !== 'string') throw bad(file, `${where}.rope_type: expected a string, got ${show(type)}`, { field: `${where}.rope_type` });
  if (type === 'default') return null;
  const num = (k: string): number | undefined => optionalPositiveNumber(file, r, k, `${where}.${k}`);
  const out: RopeScaling = { type };
  const factor = num('factor'), low = num('low_freq_factor'), high = num('high_freq_factor'), orig = num('original_max_position_embeddings');
  if (factor !== undefined) out.factor = factor;
  if (low !== undefined) out.lowFreqFactor = low;
  if (high !== undefined) out.highFreqFactor = high;
  if (orig !== undefined) out.originalMaxPositionEmbeddings = orig;
  return out;
}

export function parseHfConfig(obj: unknown, file = 'config.json'): ModelConfig {
  if (!isObject(obj)) throw bad(file, `expected a JSON object, got ${Array.isArray(obj) ? 'an array' : show(obj)}`);
  const { family, architectures } = familyOf(file, obj);
  const ints = {} as Record<(typeof INT_FIELDS)[number][0], number>;
  for (const [key, jsonKey] of INT_FIELDS) ints[key] = positiveInt(file, obj, jsonKey);

  const numKvHeads = optionalPositiveInt(file, obj, 'num_key_value_heads') ?? ints.numHeads;
  if (ints.numHeads % numKvHeads !== 0) {
    throw bad(file, `num_key_value_heads: expected a divisor of num_attention_heads ${ints.numHeads}, got ${numKvHeads}`, {
      field: 'num_key_value_heads',
    });
  }
  let headDim = optionalPositiveInt(file, obj, 'head_dim');
  if (headDim === undefined) {
    if (ints.hiddenSize % ints.numHeads !== 0) {
      throw bad(
        file,
        `head_dim: absent, and hidden_size ${ints.hiddenSize} is not divisible by num_attention_heads ${ints.numHeads}`,
        { field: 'head_dim' },
      );
    }
    headDim = ints.hiddenSize / ints.numHeads;
  }

  let ropeTheta = optionalPositiveNumber(file, obj, 'rope_theta');
  if (ropeTheta === undefined && isObject(obj.rope_parameters)) {
    ropeTheta = optionalPositiveNumber(file, obj.rope_parameters, 'rope_theta', 'rope_parameters.rope_theta');
  }
  const ropeScaling = parseRopeScaling(file, obj);
  const modelType = obj.model_type;
  if (modelType !== undefined && modelType !== null && typeof modelType !== 'string') {
    throw bad(file, `model_type: expected a string, got ${show(modelType)}`, { field: 'model_type' });
  }
  const attentionBias = family === 'qwen2' ? true : (optionalBool(file, obj, 'attention_bias') ?? false);

  const cfg: ModelConfig = {
    family,
    architectures,
    modelType: modelType ?? family,
    ...ints,
    numKvHeads,
    headDim,
    rmsNormEps: optionalPositiveNumber(file, obj, 'rms_norm_eps') ?? 1e-6,
    ropeTheta: ropeTheta ?? 10000,
    ropeScaling,
    tieWordEmbeddings: optionalBool(file, obj, 'tie_word_embeddings') ?? false,
    torchDtype: torchDtypeOf(file, obj),
    attentionBias,
    raw: obj,
  };
  const bos = optionalTokenId(file, obj, 'bos_token_id');
  if (bos !== undefined) cfg.bosTokenId = Array.isArray(bos) ? bos[0] : bos;
  const eos = optionalTokenId(file, obj, 'eos_token_id');
  if (eos !== undefined) {
    cfg.eosTokenId = Array.isArray(eos) ? eos[0] : eos;
    if (Array.isArray(eos)) cfg.eosTokenIds = eos;
  }
  return cfg;
}

/**
 * Read `<dir>/config.json` of a Hugging Face model directory (docs/formats.md §3.1).
 *
 * @param dir the model directory
 * @throws LowbitError `LOWBIT_NOT_FOUND` (directory or config.json missing, naming the path),
 *   `LOWBIT_BAD_FORMAT` (invalid JSON naming the file; missing or invalid field naming the field),
 *   `LOWBIT_UNSUPPORTED` (architecture not in {@link SUPPORTED_ARCHITECTURES}), `LOWBIT_IO`
 */
export function readHfConfig(dir: string): ModelConfig {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new LowbitError('LOWBIT_NOT_FOUND', `${dir}: model directory not found`, { path: dir });
    }
    throw toLowbitError(e, dir);
  }
  if (!st.isDirectory()) {
    throw new LowbitError('LOWBIT_NOT_FOUND', `${dir}: expected a model directory, found a file`, { path: dir });
  }
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) {
    throw new LowbitError('LOWBIT_NOT_FOUND', `${file}: not found (a Hugging Face model directory has a config.json)`, {
      path: file,
    });
  }
  // size (MAX_JSON_FILE_BYTES), strict UTF-8 and nesting depth (MAX_JSON_DEPTH) are checked
  // before the value is built: a 1e6-deep config would parse, then overflow the stack when the
  // output's config.json is written from `raw`
  return parseHfConfig(readJsonFile(file), file);
}

/**
 * The `config.json` object for `cfg`: `cfg.raw` (keys in their original order, unknown fields kept)
 * with the modelled fields overwritten from `cfg` and missing ones appended. Writes `torch_dtype`
 * (and drops a `dtype` key, §3.1). Serialize with `JSON.stringify(obj, null, 2)`.
 */
export function hfConfigToJson(cfg: ModelConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...cfg.raw };
  out.architectures = cfg.architectures.length > 0 ? cfg.architectures.slice() : [FAMILY_ARCHITECTURE[cfg.family]];
  out.model_type = cfg.modelType;
  for (const [key, jsonKey] of INT_FIELDS) out[jsonKey] = cfg[key];
  out.num_key_value_heads = cfg.numKvHeads;
  if ('head_dim' in out || cfg.headDim * cfg.numHeads !== cfg.hiddenSize) out.head_dim = cfg.headDim;
  out.rms_norm_eps = cfg.rmsNormEps;
  if (!('rope_theta' in out) && isObject(out.rope_parameters) && out.rope_parameters.rope_theta !== undefined) {
    out.rope_parameters = { ...out.rope_parameters, rope_theta: cfg.ropeTheta };
  } else {
    out.rope_theta = cfg.ropeTheta;
  }
  if (!('hidden_act' in out)) out.hidden_act = 'silu';
  out.tie_word_embeddings = cfg.tieWordEmbeddings;
  if (cfg.family !== 'qwen2' && ('attention_bias' in out || cfg.attentionBias)) out.attention_bias = cfg.attentionBias;
  if (cfg.bosTokenId !== undefined) out.bos_token_id = cfg.bosTokenId;
  if (cfg.eosTokenIds !== undefined) out.eos_token_id = cfg.eosTokenIds.slice();
  else if (cfg.eosTokenId !== undefined) out.eos_token_id = cfg.eosTokenId;
  delete out.dtype;
  out.torch_dtype = cfg.torchDtype;
  return out;
}
