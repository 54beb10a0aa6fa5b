/**
 * GPTQ and AWQ (GEMM) checkpoints: configuration objects, layout checks, and plain decoders of the
 * packed tensors of one linear module (docs/formats.md §4, §5).
 *
 * Dequantisation (n = output channel, k = input channel, g = group of k):
 *
 *   W[n, k] = f32(scale[g, n]) · (code(k, n) − zero(g, n))        code, zero ∈ [0, 2^b)
 *
 * computed as one float32 multiply (the fp16 scale widened exactly to float32, the integer
 * difference exact, one `Math.fround`), so the result can be compared bit-exactly with the
 * quantiser's own output.
 *
 * GPTQ packing: an int32 word holds `32/b` fields, field j in bits `[j·b, j·b + b)`, least
 * significant first. A run of 32 values fills `b` consecutive words, and value i of the run sits in
 * bits `[i·b, i·b + b)` of that run read as one little-endian bit stream; this one rule also covers
 * b = 3, where values 10 and 21 straddle two words. `qweight` runs go down a column (consecutive
 * input channels of one output channel); `qzeros` runs go along a row (consecutive output channels
 * of one group). v1 (`checkpoint_format: "gptq"`) stores `zero − 1`, v2 stores the zero.
 *
 * AWQ GEMM packing: `qweight[k, c]` / `qzeros[g, c]` hold output channels `8c … 8c+7`, channel
 * `8c + m` in nibble `POS[m]`, POS = [0, 4, 1, 5, 2, 6, 3, 7]; zeros are stored as they are.
 *
 * The decoders validate before they decode (§4.5, §5.5) and every error names the module.
 */
import { LowbitError } from '../errors';
import { checkBool, checkEnum, checkNumber, checkString, invalidOption } from '../config/validate';
import { f16BitsToF32 } from './dtype';
import type { TensorShapeSource } from './hf-model';

/** What the decoders need from a tensor container (a SafetensorsReader fits). */
export interface TensorByteSource extends TensorShapeSource {
  /** The tensor's raw little-endian bytes (the view may start at any byte offset). */
  bytes(name: string): Uint8Array;
}

/** Bit widths the GPTQ layout supports. */
export const GPTQ_BITS: readonly number[] = [2, 3, 4, 8];

/** The GPTQ checkpoint formats lowbit reads: v1 stores `zero − 1`, v2 the zero itself. */
export type GptqCheckpointFormat = 'gptq' | 'gptq_v2';

/** A parsed GPTQ `quantization_config` / `quantize_config.json` (§4.4). */
export interface GptqConfig {
  /** Bits per code: 2, 3, 4 or 8. */
  bits: number;
  /** Input channels per group; −1 = one group spanning all inputs. */
  groupSize: number;
  /** Activation-order flag (informational: decoding always goes through `g_idx`). */
  descAct: boolean;
  /** Informational: groups are `k div g` even with `descAct`. */
  staticGroups: boolean;
  /** true ⇒ every zero is `2^(bits−1)`. */
  sym: boolean;
  /** Zero-point storage: `gptq` (v1, stored `zero − 1`) or `gptq_v2` (true zeros). */
  checkpointFormat: GptqCheckpointFormat;
  /** Per-module overrides/exclusions `{"<regex>": {...}}`, or null. See {@link resolveGptqModuleConfig}. */
  dynamic: Record<string, unknown> | null;
  /** true ⇒ `lm_head` is quantised too. */
  lmHead: boolean;
  /** The object as read. */
  raw: Record<string, unknown>;
}

/** Parameters of {@link gptqQuantizationConfig}; field names are the camelCase of §4.4. */
export interface GptqQuantizationConfigOptions {
  /** 2, 3, 4 or 8. */
  bits: number;
  /** −1 or a positive group size. */
  groupSize: number;
  descAct: boolean;
  staticGroups: boolean;
  sym: boolean;
  /** Damping as a fraction of the mean Hessian diagonal, in [0, 1]. */
  dampPercent: number;
  trueSequential: boolean;
  checkpointFormat: GptqCheckpointFormat;
  /** lowbit's version, written as `meta.quantizer: ["lowbit:<version>"]`. */
  version: string;
  /** Optional `dynamic` object, written only when given. */
  dynamic?: Record<string, unknown>;
}

/** A decoded quantised linear module. `rows` = out_features, `cols` = in_features. */
export interface DecodedModule {
  /** Dequantised weight, (rows, cols) row-major. */
  weight: Float32Array;
  rows: number;
  cols: number;
  /** Integer codes, (rows, cols) row-major, same indexing as `weight`. */
  codes: Uint8Array;
  /** Scales widened from fp16, (G, rows) row-major. */
  scales: Float32Array;
  /** True zero points (v1 offset removed), (G, rows) row-major. */
  zeros: Uint8Array;
  /** Group of each input channel, length `cols`. */
  gIdx: Int32Array;
}

/** A parsed AWQ `quantization_config` (§5.4). */
export interface AwqConfig {
  /** Always 4. */
  bits: number;
  /** Input channels per group; −1 = one group spanning all inputs. */
  groupSize: number;
  /** Always true in the GEMM layout. */
  zeroPoint: boolean;
  /** Always `gemm`. */
  version: 'gemm';
  /** Name substrings of modules left unquantised, or null. */
  modulesToNotConvert: string[] | null;
  /** The object as read. */
  raw: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// small helpers

/** AWQ GEMM: output channel `8c + m` lives in nibble POS[m] of word c. */
const AWQ_POS = [0, 4, 1, 5, 2, 6, 3, 7];

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  return v === undefined ? 'nothing' : JSON.stringify(v);
}

function fmtShape(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

function isPositiveInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0;
}

/** Little-endian int32 words of `b` (a view when aligned on a little-endian host, else a copy). */
function int32Words(b: Uint8Array): Int32Array {
  if (LITTLE_ENDIAN && b.byteOffset % 4 === 0) return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Int32Array(b.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = dv.getInt32(4 * i, true);
  return out;
}

/** Little-endian fp16 values of `b`, widened to float32 (exact). */
function f16ToF32(b: Uint8Array): Float32Array {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Float32Array(b.byteLength / 2);
  for (let i = 0; i < out.length; i++) out[i] = f16BitsToF32(dv.getUint16(2 * i, true));
  return out;
}

/**
 * Field `index` (b bits) of the little-endian bit stream whose j-th word is `words[base + j·stride]`.
 * A field that crosses a word boundary (b = 3) takes its high bits from the next word.
 */
function readField(words: Int32Array, base: number, stride: number, index: number, bits: number): number {
  const bit = index * bits;
  const w = bit >>> 5;
  const shift = bit & 31;
  let v = words[base + w * stride] >>> shift;
  if (shift + bits > 32) v |= words[base + (w + 1) * stride] << (32 - shift);
  return v & ((1 << bits) - 1);
}

/** OR `value` (< 2^bits) into field `index` of the stream described as in {@link readField}. */
function writeField(words: Int32Array, base: number, stride: number, index: number, bits: number, value: number): void {
  const bit = index * bits;
  const w = bit >>> 5;
  const shift = bit & 31;
  words[base + w * stride] |= value << shift;
  if (shift + bits > 32) words[base + (w + 1) * stride] |= value >>> (32 - shift);
}

/** One module's tensor, checked for presence, dtype, rank, shape and byte length. */
function takeTensor(
  reader: TensorByteSource,
  module: string,
  name: string,
  dtype: string,
  expected: readonly number[] | number,
  context: string,
): { shape: readonly number[] } {
  if (!reader.has(name)) {
    throw new LowbitError('LOWBIT_BAD_FORMAT', `${module}: missing tensor ${name}`, { module, tensor: name });
  }
  const info = reader.info(name);
  if (info.dtype !== dtype) {
    throw new LowbitError('LOWBIT_BAD_FORMAT', `${name}: expected dtype ${dtype}, got ${info.dtype}`, {
      module,
      tensor: name,
    });
  }
  const rank = typeof expected === 'number' ? expected : expected.length;
  if (info.shape.length !== rank) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${name}: expected a ${rank}-D tensor, got shape ${fmtShape(info.shape)}`, {
      module,
      tensor: name,
    });
  }
  if (typeof expected !== 'number' && info.shape.some((v, i) => v !== expected[i])) {
    throw new LowbitError(
      'LOWBIT_SHAPE_MISMATCH',
      `${name}: expected shape ${fmtShape(expected)} (${context}), got ${fmtShape(info.shape)}`,
      { module, tensor: name, expected: expected.slice(), got: info.shape.slice() },
    );
  }
  return { shape: info.shape };
}

function tensorBytes(reader: TensorByteSource, module: string, name: string, shape: readonly number[], elemSize: number): Uint8Array {
  const b = reader.bytes(name);
  const want = shape.reduce((a, v) => a * v, 1) * elemSize;
  if (b.byteLength !== want) {
    throw new LowbitError('LOWBIT_BAD_FORMAT', `${name}: expected ${want} bytes for shape ${fmtShape(shape)}, got ${b.byteLength}`, {
      module,
      tensor: name,
    });
  }
  return b;
}

function checkShapeArg(shape: { rows: number; cols: number } | undefined): void {
  if (shape === undefined) return;
  if (!isPositiveInt(shape.rows)) throw invalidOption('shape.rows', 'a positive integer', shape.rows);
  if (!isPositiveInt(shape.cols)) throw invalidOption('shape.cols', 'a positive integer', shape.cols);
}

function checkBitsArg(bits: unknown): number {
  if (typeof bits !== 'number' || !GPTQ_BITS.includes(bits)) throw invalidOption('bits', 'one of 2, 3, 4, 8', bits);
  return bits;
}

function checkGroupSizeArg(name: string, g: unknown): number {
  if (g !== -1 && !isPositiveInt(g)) throw invalidOption(name, 'a positive integer or -1', g);
  return g;
}

// ---------------------------------------------------------------------------------------------
// layout checks

/**
 * Why a `rows` × `cols` (out × in) layer cannot be written in the packed GPTQ layout of §4.2, or
 * null when it can. Several loaders need `in % 32 == 0` and `out % 32 == 0`; the group size must be
 * −1 or divide `in`. All problems are listed, joined with "; ".
 */
export function gptqLayoutProblem(rows: number, cols: number, bits: number, groupSize: number): string | null {
  const p: string[] = [];
  if (!(Number.isInteger(rows) && rows > 0)) p.push(`out_features ${rows} is not a positive integer`);
  else if (rows % 32 !== 0) p.push(`out_features ${rows} is not a multiple of 32`);
  if (!(Number.isInteger(cols) && cols > 0)) p.push(`in_features ${cols} is not a positive integer`);
  else if (cols % 32 !== 0) p.push(`in_features ${cols} is not a multiple of 32`);
  if (!GPTQ_BITS.includes(bits)) p.push(`bits ${bits} is not one of 2, 3, 4, 8`);
  if (groupSize !== -1 && !(Number.isInteger(groupSize) && groupSize > 0)) p.push(`group size ${groupSize} is not a positive integer or -1`);
  else if (groupSize !== -1 && isPositiveInt(cols) && cols % groupSize !== 0) {
    p.push(`group size ${groupSize} does not divide in_features ${cols}`);
  }
  return p.length > 0 ? p.join('; ') : null;
}

/**
 * Why a `rows` × `cols` (out × in) layer cannot be written in the AWQ GEMM layout of §5.1 (4-bit,
 * `out % 8 == 0`, group size −1 or dividing `in`), or null when it can.
 */
export function awqLayoutProblem(rows: number, cols: number, bits: number, groupSize: number): string | null {
  const p: string[] = [];
  if (!(Number.isInteger(rows) && rows > 0)) p.push(`out_features ${rows} is not a positive integer`);
  else if (rows % 8 !== 0) p.push(`out_features ${rows} is not a multiple of 8`);
  if (!(Number.isInteger(cols) && cols > 0)) p.push(`in_features ${cols} is not a positive integer`);
  if (bits !== 4) p.push(`bits ${bits} is not 4 (the AWQ GEMM layout is 4-bit only)`);
  if (groupSize !== -1 && !(Number.isInteger(groupSize) && groupSize > 0)) p.push(`group size ${groupSize} is not a positive integer or -1`);
  else if (groupSize !== -1 && isPositiveInt(cols) && cols % groupSize !== 0) {
    p.push(`group size ${groupSize} does not divide in_features ${cols}`);
  }
  return p.length > 0 ? p.join('; ') : null;
}

// ---------------------------------------------------------------------------------------------
// configuration

/**
 * The `quantization_config` object of §4.4, keys in that order; `dynamic` is appended only when
 * given. Write it into config.json and, unchanged, as quantize_config.json.
 *
 * @throws LowbitError `LOWBIT_INVALID_OPTION` naming the parameter
 */
export function gptqQuantizationConfig(p: GptqQuantizationConfigOptions): Record<string, unknown> {
  checkBitsArg(p.bits);
  checkGroupSizeArg('groupSize', p.groupSize);
  const descAct = checkBool('descAct', p.descAct);
  const staticGroups = checkBool('staticGroups', p.staticGroups);
  const sym = checkBool('sym', p.sym);
  const dampPercent = checkNumber('dampPercent', p.dampPercent, 0, 1);
  const trueSequential = checkBool('trueSequential', p.trueSequential);
  const checkpointFormat = checkEnum('checkpointFormat', p.checkpointFormat, ['gptq', 'gptq_v2'] as const);
  const version = checkString('version', p.version);
  if (p.dynamic !== undefined && !isObject(p.dynamic)) throw invalidOption('dynamic', 'an object', p.dynamic);
  const out: Record<string, unknown> = {
    quant_method: 'gptq',
    checkpoint_format: checkpointFormat,
    bits: p.bits,
    group_size: p.groupSize,
    desc_act: descAct,
    static_groups: staticGroups,
    sym,
    true_sequential: trueSequential,
    damp_percent: dampPercent,
    lm_head: false,
    pack_dtype: 'int32',
    model_name_or_path: null,
    model_file_base_name: 'model',
    meta: { quantizer: [`lowbit:${version}`] },
  };
  if (p.dynamic !== undefined) out.dynamic = p.dynamic;
  return out;
}

function badConfig(file: string, msg: string, field?: string): LowbitError {
  return new LowbitError('LOWBIT_BAD_FORMAT', `${file}: ${msg}`, field ? { file, field } : { file });
}

/** The value under `a` or its synonym `b` (null counts as absent); both present ⇒ they must agree. */
function synonym(obj: Record<string, unknown>, file: string, a: string, b: string): unknown {
  const va = obj[a] ?? undefined;
  const vb = obj[b] ?? undefined;
  if (va !== undefined && vb !== undefined && JSON.stringify(va) !== JSON.stringify(vb)) {
    throw badConfig(file, `${a} ${show(va)} and its synonym ${b} ${show(vb)} disagree`, a);
  }
  return va !== undefined ? va : vb;
}

function optBool(obj: Record<string, unknown>, file: string, key: string, dflt: boolean): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw badConfig(file, `${key}: expected a boolean, got ${show(v)}`, key);
  return v;
}

function parseBits(v: unknown, file: string, key: string): number {
  if (v === undefined) throw badConfig(file, `${key}: missing (expected one of 2, 3, 4, 8)`, key);
  if (typeof v !== 'number' || !GPTQ_BITS.includes(v)) throw badConfig(file, `${key}: expected one of 2, 3, 4, 8, got ${show(v)}`, key);
  return v;
}

function parseGroupSize(v: unknown, file: string, key: string): number {
  if (v === undefined) throw badConfig(file, `${key}: missing (expected -1 or a positive integer)`, key);
  if (v !== -1 && !isPositiveInt(v)) throw badConfig(file, `${key}: expected -1 or a positive integer, got ${show(v)}`, key);
  return v;
}

/**
 * Parse a GPTQ `quantization_config` (or quantize_config.json) object (§4.4). Accepts the synonyms
 * `w_bit`, `q_group_size`, `method` and `format` (both names present ⇒ they must agree), defaults a
 * missing `checkpoint_format` to `gptq`, `sym` to true and `desc_act`/`static_groups` to false, and
 * ignores unknown fields.
 *
 * @param obj  the parsed JSON object
 * @param file name used in error messages
 * @throws LowbitError `LOWBIT_BAD_FORMAT` (not an object, bad or conflicting field, bits ∉ {2,3,4,8}),
 *   `LOWBIT_UNSUPPORTED` (quant_method not gptq; checkpoint_format other than gptq/gptq_v2;
 *   `is_marlin_format: true`; pack_dtype other than int32)
 */
export function parseGptqConfig(obj: unknown, file: string): GptqConfig {
  if (!isObject(obj)) throw badConfig(file, `quantization config: expected a JSON object, got ${Array.isArray(obj) ? 'an array' : show(obj)}`);
  const method = synonym(obj, file, 'quant_method', 'method');
  if (method !== undefined && (typeof method !== 'string' || method.toLowerCase() !== 'gptq')) {
    throw new LowbitError('LOWBIT_UNSUPPORTED', `${file}: quant_method ${show(method)} is not "gptq"`, { file, field: 'quant_method' });
  }
  const fmt = synonym(obj, file, 'checkpoint_format', 'format');
  let checkpointFormat: GptqCheckpointFormat = 'gptq';
  if (fmt !== undefined) {
    if (typeof fmt !== 'string') throw badConfig(file, `checkpoint_format: expected a string, got ${show(fmt)}`, 'checkpoint_format');
    const f = fmt.toLowerCase();
    if (f !== 'gptq' && f !== 'gptq_v2') {
      throw new LowbitError(
        'LOWBIT_UNSUPPORTED',
        `${file}: checkpoint_format ${JSON.stringify(fmt)} is not supported; lowbit reads "gptq" and "gptq_v2" ` +
          '(gptq_p, marlin and bitblas are different byte layouts)',
        { file, field: 'checkpoint_format' },
      );
    }
    checkpointFormat = f;
  }
  if (obj.is_marlin_format === true) {
    throw new LowbitError(
      'LOWBIT_UNSUPPORTED',
      `${file}: is_marlin_format is true: qweight is Marlin-repacked, not in the GPTQ layout lowbit reads`,
      { file, field: 'is_marlin_format' },
    );
  }
  const packDtype = obj.pack_dtype ?? undefined;
  if (packDtype !== undefined && packDtype !== 'int32') {
    throw new LowbitError('LOWBIT_UNSUPPORTED', `${file}: pack_dtype ${show(packDtype)} is not supported (only "int32")`, {
      file,
      field: 'pack_dtype',
    });
  }
  const bits = parseBits(synonym(obj, file, 'bits', 'w_bit'), file, 'bits');
  const groupSize = parseGroupSize(synonym(obj, file, 'group_size', 'q_group_size'), file, 'group_size');
  const dynamic = (obj.dynamic ?? null) as Record<string, unknown> | null;
  if (dynamic !== null) {
    if (!isObject(dynamic)) throw badConfig(file, `dynamic: expected an object, got ${show(dynamic)}`, 'dynamic');
    for (const [k, v] of Object.entries(dynamic)) {
      if (!isObject(v)) throw badConfig(file, `dynamic[${JSON.stringify(k)}]: expected an object, got ${show(v)}`, 'dynamic');
    }
  }
  return {
    bits,
    groupSize,
    descAct: optBool(obj, file, 'desc_act', false),
    staticGroups: optBool(obj, file, 'static_groups', false),
    sym: optBool(obj, file, 'sym', true),
    checkpointFormat,
    dynamic,
    lmHead: optBool(obj, file, 'lm_head', false),
    raw: obj,
  };
}

/**
 * The configuration that applies to module `name` once `cfg.dynamic` is taken into account, or null
 * when a `-:` pattern excludes it (it then stays unquantised). Patterns are matched like Python's
 * `re.match` (anchored at the start) in key order; the first match wins. A `+:` (or unprefixed)
 * pattern overrides `bits`, `group_size`, `sym`, `desc_act` (synonyms accepted).
 *
 * @throws LowbitError `LOWBIT_UNSUPPORTED` (a pattern JavaScript cannot compile),
 *   `LOWBIT_BAD_FORMAT` (invalid override value)
 */
export function resolveGptqModuleConfig(cfg: GptqConfig, name: string): GptqConfig | null {
  if (cfg.dynamic === null) return cfg;
  for (const [key, overrides] of Object.entries(cfg.dynamic)) {
    const exclude = key.startsWith('-:');
    const pattern = exclude || key.startsWith('+:') ? key.slice(2) : key;
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${pattern})`);
    } catch (e) {
      throw new LowbitError('LOWBIT_UNSUPPORTED', `dynamic: pattern ${JSON.stringify(key)} is not a valid JavaScript regular expression: ${(e as Error).message}`, {
        field: 'dynamic',
      });
    }
    if (!re.test(name)) continue;
    if (exclude) return null;
    const o = isObject(overrides) ? overrides : {};
    const where = `dynamic[${JSON.stringify(key)}]`;
    const bits = synonym(o, where, 'bits', 'w_bit');
    const groupSize = synonym(o, where, 'group_size', 'q_group_size');
    return {
      ...cfg,
      bits: bits === undefined ? cfg.bits : parseBits(bits, where, 'bits'),
      groupSize: groupSize === undefined ? cfg.groupSize : parseGroupSize(groupSize, where, 'group_size'),
      sym: optBool(o, where, 'sym', cfg.sym),
      descAct: optBool(o, where, 'desc_act', cfg.descAct),
    };
  }
  return cfg;
}

/**
 * Parse an AWQ `quantization_config` (§5.4): `quant_method` "awq", `version` "gemm" (any case),
 * `bits`/`w_bit` 4, `group_size`/`q_group_size`, `zero_point` true (absent ⇒ true).
 *
 * @throws LowbitError `LOWBIT_BAD_FORMAT` (bad or conflicting field), `LOWBIT_UNSUPPORTED` (another
 *   method, another version such as gemv/gemv_fast/marlin, bits ≠ 4, zero_point false)
 */
export function parseAwqConfig(obj: unknown, file: string): AwqConfig {
  if (!isObject(obj)) throw badConfig(file, `quantization config: expected a JSON object, got ${Array.isArray(obj) ? 'an array' : show(obj)}`);
  const unsupported = (field: string, msg: string) => new LowbitError('LOWBIT_UNSUPPORTED', `${file}: ${msg}`, { file, field });
  const method = synonym(obj, file, 'quant_method', 'method');
  if (method !== undefined && (typeof method !== 'string' || method.toLowerCase() !== 'awq')) {
    throw unsupported('quant_method', `quant_method ${show(method)} is not "awq"`);
  }
  const version = obj.version ?? 'gemm';
  if (typeof version !== 'string' || version.toLowerCase() !== 'gemm') {
    throw unsupported('version', `version ${show(version)} is not supported; lowbit reads the AWQ "gemm" layout (gemv, gemv_fast and marlin are different byte layouts)`);
  }
  const bits = synonym(obj, file, 'bits', 'w_bit');
  if (bits === undefined) throw badConfig(file, 'bits: missing (expected 4)', 'bits');
  if (bits !== 4) throw unsupported('bits', `bits ${show(bits)} is not supported by the AWQ GEMM layout (4 only)`);
  const groupSize = parseGroupSize(synonym(obj, file, 'group_size', 'q_group_size'), file, 'group_size');
  const zeroPoint = optBool(obj, file, 'zero_point', true);
  if (!zeroPoint) throw unsupported('zero_point', 'zero_point false is not supported (the GEMM layout is asymmetric)');
  const m = obj.modules_to_not_convert ?? null;
  if (m !== null && (!Array.isArray(m) || !m.every((x) => typeof x === 'string'))) {
    throw badConfig(file, `modules_to_not_convert: expected a list of strings or null, got ${show(m)}`, 'modules_to_not_convert');
  }
  return { bits: 4, groupSize, zeroPoint, version: 'gemm', modulesToNotConvert: m === null ? null : m.slice(), raw: obj };
}

// ---------------------------------------------------------------------------------------------
// decoders

/**
 * Read and dequantise GPTQ module `prefix` (e.g. `model.layers.0.self_attn.q_proj`) from its
 * `qweight`/`qzeros`/`scales`/`g_idx` tensors, validating §4.5 first: all four present, dtypes
 * I32/I32/F16/I32, shapes exactly `[in·b/32, out]`, `[G, out·b/32]`, `[G, out]`, `[in]` with
 * `G = ceil(in / groupSize)` (1 for −1), every `g_idx` in `[0, G)`, in v1 no all-ones `qzeros` field,
 * and with `sym` every zero equal to `2^(b−1)`.
 *
 * `cfg` must already be the module's own configuration ({@link resolveGptqModuleConfig}).
 *
 * @param shape expected (rows = out_features, cols = in_features); inferred from `scales` and
 *   `g_idx` when absent
 * @throws LowbitError `LOWBIT_BAD_FORMAT` (missing tensor, dtype, byte length, g_idx range, zeros),
 *   `LOWBIT_SHAPE_MISMATCH` (shapes), `LOWBIT_INVALID_OPTION` (bad `cfg`/`shape`); messages name the module
 */
export function decodeGptqModule(
  reader: TensorByteSource,
  prefix: string,
  cfg: Pick<GptqConfig, 'bits' | 'groupSize' | 'sym' | 'checkpointFormat'>,
  shape?: { rows: number; cols: number },
): DecodedModule {
  const bits = checkBitsArg(cfg.bits);
  const groupSize = checkGroupSizeArg('groupSize', cfg.groupSize);
  const v1 = checkEnum('checkpointFormat', cfg.checkpointFormat, ['gptq', 'gptq_v2'] as const) === 'gptq';
  checkShapeArg(shape);
  const names = {
    qweight: `${prefix}.qweight`,
    qzeros: `${prefix}.qzeros`,
    scales: `${prefix}.scales`,
    gIdx: `${prefix}.g_idx`,
  };
  // Presence, dtype and rank of all four first, so the first error is the most basic one.
  takeTensor(reader, prefix, names.qweight, 'I32', 2, '');
  takeTensor(reader, prefix, names.qzeros, 'I32', 2, '');
  const sc = takeTensor(reader, prefix, names.scales, 'F16', 2, '');
  const gi = takeTensor(reader, prefix, names.gIdx, 'I32', 1, '');

  const out = shape ? shape.rows : sc.shape[1];
  const inF = shape ? shape.cols : gi.shape[0];
  if ((out * bits) % 32 !== 0 || (inF * bits) % 32 !== 0 || out === 0 || inF === 0) {
    throw new LowbitError(
      'LOWBIT_SHAPE_MISMATCH',
      `${prefix}: ${inF} in × ${out} out features cannot be packed at ${bits} bits (each count × bits must be a positive multiple of 32)`,
      { module: prefix },
    );
  }
  const G = groupSize === -1 ? 1 : Math.ceil(inF / groupSize);
  const ctx = `in ${inF}, out ${out}, bits ${bits}, group_size ${groupSize}`;
  const qwShape = [(inF * bits) / 32, out];
  const qzShape = [G, (out * bits) / 32];
  takeTensor(reader, prefix, names.qweight, 'I32', qwShape, ctx);
  takeTensor(reader, prefix, names.qzeros, 'I32', qzShape, ctx);
  takeTensor(reader, prefix, names.scales, 'F16', [G, out], ctx);
  takeTensor(reader, prefix, names.gIdx, 'I32', [inF], ctx);

  const qweight = int32Words(tensorBytes(reader, prefix, names.qweight, qwShape, 4));
  const qzeros = int32Words(tensorBytes(reader, prefix, names.qzeros, qzShape, 4));
  const scales = f16ToF32(tensorBytes(reader, prefix, names.scales, [G, out], 2));
  const gIdx = Int32Array.from(int32Words(tensorBytes(reader, prefix, names.gIdx, [inF], 4)));

  for (let k = 0; k < inF; k++) {
    if (gIdx[k] < 0 || gIdx[k] >= G) {
      throw new LowbitError('LOWBIT_BAD_FORMAT', `${names.gIdx}: g_idx[${k}] = ${gIdx[k]} is outside [0, ${G})`, {
        module: prefix,
        tensor: names.gIdx,
      });
    }
  }

  const maxq = (1 << bits) - 1;
  const symZero = 1 << (bits - 1);
  const zWords = (out * bits) / 32;
  const zeros = new Uint8Array(G * out);
  for (let g = 0; g < G; g++) {
    for (let n = 0; n < out; n++) {
      const stored = readField(qzeros, g * zWords, 1, n, bits);
      if (v1 && stored === maxq) {
        throw new LowbitError(
          'LOWBIT_BAD_FORMAT',
          `${names.qzeros}: group ${g}, output channel ${n}: all-ones field (${maxq}) in a gptq v1 checkpoint ` +
            `is undecodable (readers disagree between zero 0 and ${maxq + 1})`,
          { module: prefix, tensor: names.qzeros, group: g, channel: n },
        );
      }
      const zero = v1 ? stored + 1 : stored;
      if (cfg.sym && zero !== symZero) {
        throw new LowbitError(
          'LOWBIT_BAD_FORMAT',
          `${names.qzeros}: group ${g}, output channel ${n}: sym is true, so the zero must be ${symZero}, got ${zero}` +
            ` (stored ${stored}, format ${cfg.checkpointFormat})`,
          { module: prefix, tensor: names.qzeros, group: g, channel: n },
        );
      }
      zeros[g * out + n] = zero;
    }
  }

  const codes = new Uint8Array(out * inF);
  const weight = new Float32Array(out * inF);
  for (let n = 0; n < out; n++) {
    const row = n * inF;
    for (let k = 0; k < inF; k++) {
      const code = readField(qweight, n, out, k, bits);
      const gz = gIdx[k] * out + n;
      codes[row + k] = code;
      weight[row + k] = Math.fround(scales[gz] * (code - zeros[gz]));
    }
  }
  return { weight, rows: out, cols: inF, codes, scales, zeros, gIdx };
}

/**
 * Read and dequantise AWQ GEMM module `prefix` from its `qweight` [in, out/8], `qzeros` [G, out/8]
 * (I32) and `scales` [G, out] (F16), validating §5.5 first (presence, dtypes, exact shapes,
 * `out % 8 == 0`, `in % g == 0`). Groups are `k div g`; zeros are stored without offset.
 *
 * @param cfg `groupSize` (−1 = all inputs); `bits`, if given, must be 4
 * @param shape expected (rows = out_features, cols = in_features); inferred when absent
 * @throws LowbitError `LOWBIT_BAD_FORMAT`, `LOWBIT_SHAPE_MISMATCH`, `LOWBIT_UNSUPPORTED` (bits ≠ 4),
 *   `LOWBIT_INVALID_OPTION`; messages name the module
 */
export function decodeAwqModule(
  reader: TensorByteSource,
  prefix: string,
  cfg: { groupSize: number; bits?: number },
  shape?: { rows: number; cols: number },
): DecodedModule {
  const groupSize = checkGroupSizeArg('groupSize', cfg.groupSize);
  if (cfg.bits !== undefined && cfg.bits !== 4) {
    throw new LowbitError('LOWBIT_UNSUPPORTED', `${prefix}: bits ${cfg.bits} is not supported by the AWQ GEMM layout (4 only)`, {
      module: prefix,
    });
  }
  checkShapeArg(shape);
  const names = { qweight: `${prefix}.qweight`, qzeros: `${prefix}.qzeros`, scales: `${prefix}.scales` };
  const qw = takeTensor(reader, prefix, names.qweight, 'I32', 2, '');
  takeTensor(reader, prefix, names.qzeros, 'I32', 2, '');
  const sc = takeTensor(reader, prefix, names.scales, 'F16', 2, '');
  const out = shape ? shape.rows : sc.shape[1];
  const inF = shape ? shape.cols : qw.shape[0];
  if (out === 0 || out % 8 !== 0) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${prefix}: out_features ${out} is not a positive multiple of 8`, { module: prefix });
  }
  const g = groupSize === -1 ? inF : groupSize;
  if (inF === 0 || inF % g !== 0) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${prefix}: group size ${g} does not divide in_features ${inF}`, { module: prefix });
  }
  const G = inF / g;
  const cw = out / 8;
  const ctx = `in ${inF}, out ${out}, group_size ${groupSize}`;
  takeTensor(reader, prefix, names.qweight, 'I32', [inF, cw], ctx);
  takeTensor(reader, prefix, names.qzeros, 'I32', [G, cw], ctx);
  takeTensor(reader, prefix, names.scales, 'F16', [G, out], ctx);
  const qweight = int32Words(tensorBytes(reader, prefix, names.qweight, [inF, cw], 4));
  const qzeros = int32Words(tensorBytes(reader, prefix, names.qzeros, [G, cw], 4));
  const scales = f16ToF32(tensorBytes(reader, prefix, names.scales, [G, out], 2));

  const zeros = new Uint8Array(G * out);
  for (let grp = 0; grp < G; grp++) {
    for (let n = 0; n < out; n++) zeros[grp * out + n] = (qzeros[grp * cw + (n >> 3)] >>> (4 * AWQ_POS[n & 7])) & 15;
  }
  const gIdx = new Int32Array(inF);
  for (let k = 0; k < inF; k++) gIdx[k] = Math.floor(k / g);
  const codes = new Uint8Array(out * inF);
  const weight = new Float32Array(out * inF);
  for (let k = 0; k < inF; k++) {
    const grp = gIdx[k];
    for (let n = 0; n < out; n++) {
      const code = (qweight[k * cw + (n >> 3)] >>> (4 * AWQ_POS[n & 7])) & 15;
      const gz = grp * out + n;
      codes[n * inF + k] = code;
      weight[n * inF + k] = Math.fround(scales[gz] * (code - zeros[gz]));
    }
  }
  return { weight, rows: out, cols: inF, codes, scales, zeros, gIdx };
}

/**
 * Convert packed GPTQ `qzeros` between v1 (stored `zero − 1`) and v2 (stored zero), field by field
 * (§4.3): unpack each `bits`-wide field, add or subtract 1, repack. Never a whole-word constant,
 * which carries/borrows between fields and cannot work for 3-bit fields straddling words.
 *
 * @param qzeros (groups, out·bits/32) int32 words, row-major
 * @param name   module name used in error messages
 * @returns a new array in the other format
 * @throws LowbitError `LOWBIT_UNSUPPORTED` (v2→v1 of a zero 0, which v1 cannot store),
 *   `LOWBIT_BAD_FORMAT` (v1→v2 of an all-ones v1 field, which is undecodable),
 *   `LOWBIT_SHAPE_MISMATCH` (length), `LOWBIT_INVALID_OPTION`
 */
export function convertZerosV1V2(
  qzeros: Int32Array,
  groups: number,
  out: number,
  bits: number,
  direction: 'v1-to-v2' | 'v2-to-v1',
  name = 'qzeros',
): Int32Array {
  checkBitsArg(bits);
  if (!isPositiveInt(groups)) throw invalidOption('groups', 'a positive integer', groups);
  if (!isPositiveInt(out) || (out * bits) % 32 !== 0) {
    throw invalidOption('out', `a positive integer with out × ${bits} divisible by 32`, out);
  }
  checkEnum('direction', direction, ['v1-to-v2', 'v2-to-v1'] as const);
  const words = (out * bits) / 32;
  if (qzeros.length !== groups * words) {
    throw new LowbitError(
      'LOWBIT_SHAPE_MISMATCH',
      `${name}: expected ${groups} × ${words} words for ${groups} groups × ${out} outputs at ${bits} bits, got ${qzeros.length}`,
      { module: name },
    );
  }
  const maxq = (1 << bits) - 1;
  const res = new Int32Array(qzeros.length);
  for (let g = 0; g < groups; g++) {
    for (let n = 0; n < out; n++) {
      const v = readField(qzeros, g * words, 1, n, bits);
      let w: number;
      if (direction === 'v1-to-v2') {
        if (v === maxq) {
          throw new LowbitError(
            'LOWBIT_BAD_FORMAT',
            `${name}: group ${g}, output channel ${n}: all-ones v1 field (${maxq}) is undecodable, cannot convert to gptq_v2`,
            { module: name, group: g, channel: n },
          );
        }
        w = v + 1;
      } else {
        if (v === 0) {
          throw new LowbitError(
            'LOWBIT_UNSUPPORTED',
            `${name}: group ${g}, output channel ${n}: a zero of 0 cannot be stored in gptq v1 (it would be −1); keep gptq_v2`,
            { module: name, group: g, channel: n },
          );
        }
        w = v - 1;
      }
      writeField(res, g * words, 1, n, bits, w);
    }
  }
  return res;
}
