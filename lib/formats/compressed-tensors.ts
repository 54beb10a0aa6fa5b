/**
 * compressed-tensors checkpoints (the format vLLM reads as `quant_method: "compressed-tensors"`):
 * the tensors of one quantized linear module, re-encoded from the GPTQ (v2, true zeros) tensors a
 * lowbit method produces, and the `quantization_config` object.
 *
 * Format facts (read from the sources below; lowbit's own wording, nothing copied):
 *
 * 1. Two layouts are written. `pack-quantized` (lowbit format `ct-w4a16`) and `int-quantized`
 *    (`ct-w8a8`). [ct: src/compressed_tensors/config/base.py, CompressionFormat]
 * 2. pack-quantized, per module `<m>`:
 *    - `<m>.weight_packed` int32 [out, ceil(in·b/32)]: the signed code q ∈ [−2^(b−1), 2^(b−1))
 *      stored as q + 2^(b−1) (unsigned), each row read as one little-endian bit stream, value k
 *      at bits [k·b, k·b + b) — for b = 2, 4, 8 (divisors of 32): word floor(k·b/32), value k in bits
 *      [(k mod 32/b)·b, …) of it, least significant first. (For b = 3, 5, 6, 7 versions differ:
 *      before 0.18 each word holds floor(32/b) values and wastes the rest, 0.18 packs densely
 *      across words — so lowbit writes only 2, 4, 8.)
 *      [ct 0.9: compressors/quantized_compressors/pack_quantized.py pack_to_int32;
 *       ct 0.18: compressors/pack_quantized/helpers.py]
 *    - `<m>.weight_scale` [out, groups] in a float type (one column per group; per channel: 1).
 *    - `<m>.weight_zero_point` int32 [ceil(out·b/32), groups], only when asymmetric (strategy
 *      group or channel): the signed zero point + 2^(b−1), packed like `weight_packed` but down
 *      the output channels (dim 0). Symmetric modules store no zero point. (Since ct 0.9.4.)
 *      [ct: compressors/pack_quantized/base.py compress(); vLLM compressed_tensors_wNa16.py]
 *    - `<m>.weight_shape` int64 [2] = [out, in] (torch.tensor(shape); vLLM allocates int64).
 *    - `<m>.weight_g_idx` int32 [in], only with `actorder: "group"`: the group of each input
 *      channel, weights kept in the original column order.
 *      [ct: quantization/quant_args.py ActivationOrdering; vLLM compressed_tensors_wNa16.py]
 *    vLLM's WNA16 scheme loads 4 and 8 bits (2–8 symmetric in recent versions), asymmetric for 4
 *    and 8 only. [vLLM: model_executor/layers/quantization/compressed_tensors/schemes/
 *    compressed_tensors_wNa16.py, WNA16_SUPPORTED_TYPES_MAP, WNA16_ZP_SUPPORTED_TYPES_MAP]
 * 3. int-quantized, per module: `<m>.weight` int8 [out, in] (the signed code itself, no offset) and
 *    `<m>.weight_scale` [out, 1] for strategy "channel". vLLM's W8A8 int8 scheme reads the scale
 *    into float32, per channel or per tensor. [ct: naive_quantized.py; vLLM
 *    compressed_tensors_w8a8_int8.py]
 * 4. Dequantisation: W[n, k] = scale[n, g(k)] · (q[n, k] − zp[n, g(k)]), zp = 0 when symmetric;
 *    g(k) = g_idx[k] when stored, else floor(k / group_size). In lowbit's terms (code c, zero z,
 *    both in [0, 2^b)): q = c − 2^(b−1), zp = z − 2^(b−1), so the stored unsigned fields are
 *    exactly c and z, and a symmetric module is one whose every zero is 2^(b−1).
 *    [ct: quantization/lifecycle/forward.py dequantize]
 * 5. config.json `quantization_config`: `quant_method: "compressed-tensors"`, `format`,
 *    `quantization_status: "compressed"`, `version` (the compressed-tensors release),
 *    `config_groups: {group_0: {targets: ["Linear"], weights, input_activations,
 *    output_activations}}`, `ignore` (module names left unquantized; `lm_head` by convention),
 *    `kv_cache_scheme`, `global_compression_ratio`, `sparsity_config`. QuantizationArgs fields:
 *    num_bits, type ("int"), symmetric, group_size (null unless strategy "group"), strategy
 *    ("group" | "channel" | "token" …), block_structure, dynamic, actorder ("group" | "weight" |
 *    null), observer, observer_kwargs. Strategy "token" requires dynamic true; actorder "group"
 *    requires strategy "group". Presets: W4A16 = int4 group 128 symmetric static weights;
 *    W8A8 = int8 channel symmetric static weights + int8 token symmetric dynamic inputs, observer
 *    null. [ct: quantization/quant_scheme.py PRESET_SCHEMES, quant_args.py QuantizationArgs,
 *    quant_config.py QuantizationConfig, compressors/model_compressors/model_compressor.py
 *    update_config, examples/llama_1.1b/example_quant_config.json]
 *
 * Sources: github.com/neuralmagic/compressed-tensors (0.9 line) and
 * github.com/vllm-project/compressed-tensors (0.18), github.com/vllm-project/vllm
 * (vllm/model_executor/layers/quantization/compressed_tensors/).
 *
 * Choices: scales are written F16 — the values lowbit's codes were computed with (`scaleF16`), so
 * decoding is exact; loaders convert them to their compute type. The re-encoding is a word
 * transpose for b = 2, 4, 8 (a GPTQ qweight word holds 32/b consecutive input channels of one
 * output channel, which is also a compressed-tensors word), so it costs one pass over the bytes.
 */
import { LowbitError } from '../errors';
import { checkBool, checkEnum, checkString, invalidOption } from '../config/validate';
import { checkGroupSize } from '../config/quant';
import { CT_PACK_BITS } from '../config/quantize';

/** The compressed-tensors release whose layout is written (the first with packed zero points, §2). */
export const CT_FORMAT_VERSION = '0.9.4';

/** The two schemes lowbit writes: int weights with float activations, int8 weights with int8 per-token activations. */
export type CtScheme = 'w4a16' | 'w8a8';

/** What one module's compressed-tensors tensors depend on. */
export interface CtModuleLayout {
  scheme: CtScheme;
  /** out_features. */
  rows: number;
  /** in_features. */
  cols: number;
  /** 2, 4 or 8 (w4a16), 8 (w8a8). */
  bits: number;
  /** Groups along the input channels (1 = per channel). */
  groups: number;
  /** true: every zero is 2^(bits−1), no zero point is stored. */
  sym: boolean;
  /** Store `weight_g_idx` (actorder "group"). */
  gIdx: boolean;
}

/** One tensor the writer declares: name, safetensors dtype and shape. */
export interface CtTensorSpec {
  name: string;
  dtype: 'I32' | 'I64' | 'I8' | 'F16';
  shape: number[];
}

/** The GPTQ v2 tensors of one module, as little-endian bytes (what `methods/store.ts` produces). */
export interface GptqModuleBytes {
  /** I32 [cols·bits/32, rows]. */
  qweight: Uint8Array;
  /** I32 [groups, rows·bits/32], true zeros. */
  qzeros: Uint8Array;
  /** F16 [groups, rows]. */
  scales: Uint8Array;
  /** I32 [cols]. */
  gIdx: Uint8Array;
}

/** Parameters of {@link ctQuantizationConfig}. */
export interface CtQuantizationConfigOptions {
  scheme: CtScheme;
  bits: number;
  /** −1 = per channel. */
  groupSize: number;
  sym: boolean;
  /** `"group"`: g_idx stored; `"weight"`: act-order used in calibration, layout unchanged; null: none. */
  actorder: 'group' | 'weight' | null;
  /** How lowbit chose each range: min/max or an MSE search (written as the weights' `observer`). */
  clip: 'minmax' | 'mse';
  /** Module names left unquantized (`lm_head` is always added). */
  ignore: readonly string[];
}

function internal(module: string, msg: string): LowbitError {
  return new LowbitError('LOWBIT_INTERNAL', `${module}: ${msg}`, { module });
}

/** Why `layout` cannot be written, or null. */
function layoutProblem(l: CtModuleLayout): string | null {
  if (!(Number.isInteger(l.rows) && l.rows > 0 && Number.isInteger(l.cols) && l.cols > 0)) return `shape ${l.rows}×${l.cols} is not positive`;
  if (l.scheme === 'w8a8' && (l.bits !== 8 || !l.sym || l.groups !== 1 || l.gIdx)) return 'ct-w8a8 holds 8-bit symmetric per-channel codes only';
  if (!CT_PACK_BITS.includes(l.bits)) return `bits ${l.bits} is not one of ${CT_PACK_BITS.join(', ')}`;
  if ((l.cols * l.bits) % 32 !== 0 || (l.rows * l.bits) % 32 !== 0) return `${l.rows}×${l.cols} at ${l.bits} bits does not fill whole int32 words`;
  if (!(Number.isInteger(l.groups) && l.groups > 0 && l.cols % l.groups === 0)) return `${l.groups} groups do not divide ${l.cols} input channels`;
  return null;
}

/**
 * The tensors of module `prefix` in the order they are written, with dtype and shape (§2, §3).
 *
 * @throws LowbitError `LOWBIT_INTERNAL` when the layout cannot be written (the config checks rule it out first)
 */
export function ctTensorSpecs(prefix: string, l: CtModuleLayout): CtTensorSpec[] {
  const why = layoutProblem(l);
  if (why) throw internal(prefix, why);
  if (l.scheme === 'w8a8') {
    return [
      { name: `${prefix}.weight`, dtype: 'I8', shape: [l.rows, l.cols] },
      { name: `${prefix}.weight_scale`, dtype: 'F16', shape: [l.rows, 1] },
    ];
  }
  const specs: CtTensorSpec[] = [
    { name: `${prefix}.weight_packed`, dtype: 'I32', shape: [l.rows, (l.cols * l.bits) / 32] },
    { name: `${prefix}.weight_scale`, dtype: 'F16', shape: [l.rows, l.groups] },
  ];
  if (!l.sym) specs.push({ name: `${prefix}.weight_zero_point`, dtype: 'I32', shape: [(l.rows * l.bits) / 32, l.groups] });
  specs.push({ name: `${prefix}.weight_shape`, dtype: 'I64', shape: [2] });
  if (l.gIdx) specs.push({ name: `${prefix}.weight_g_idx`, dtype: 'I32', shape: [l.cols] });
  return specs;
}

function checkLength(module: string, what: string, b: Uint8Array, want: number): void {
  if (b.byteLength !== want) throw internal(module, `${what}: expected ${want} bytes, got ${b.byteLength}`);
}

/** Copy 4-byte word (r, c) of a (rows, cols) word matrix to (c, r) of its transpose (byte copies: no endianness question). */
function transposeWords(src: Uint8Array, rows: number, cols: number): Uint8Array {
  const out = new Uint8Array(src.byteLength);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const s = 4 * (r * cols + c), d = 4 * (c * rows + r);
      out[d] = src[s];
      out[d + 1] = src[s + 1];
      out[d + 2] = src[s + 2];
      out[d + 3] = src[s + 3];
    }
  }
  return out;
}

/** The same for 2-byte elements. */
function transposeHalves(src: Uint8Array, rows: number, cols: number): Uint8Array {
  const out = new Uint8Array(src.byteLength);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const s = 2 * (r * cols + c), d = 2 * (c * rows + r);
      out[d] = src[s];
      out[d + 1] = src[s + 1];
    }
  }
  return out;
}

/** Field `index` (b bits, b dividing 32) of the little-endian int32 words starting at byte `base`. */
function field(bytes: Uint8Array, base: number, index: number, bits: number): number {
  const bit = index * bits;
  const at = base + 4 * (bit >>> 5);
  const word = (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
  return (word >>> (bit & 31)) & ((1 << bits) - 1);
}

/**
 * Re-encode the GPTQ v2 tensors of module `prefix` as its compressed-tensors tensors (§2–§4), by
 * name. A symmetric layout requires every zero to be 2^(bits−1) (checked: a module quantized on
 * another grid is refused, never written wrong).
 *
 * @throws LowbitError `LOWBIT_INTERNAL` (byte lengths, a zero that the symmetric layout cannot hold)
 */
export function ctTensorsFromGptq(prefix: string, l: CtModuleLayout, g: GptqModuleBytes): Map<string, Uint8Array> {
  const specs = ctTensorSpecs(prefix, l);
  const { rows, cols, bits, groups } = l;
  const qwWords = (cols * bits) / 32, qzWords = (rows * bits) / 32;
  checkLength(prefix, 'qweight', g.qweight, 4 * qwWords * rows);
  checkLength(prefix, 'qzeros', g.qzeros, 4 * groups * qzWords);
  checkLength(prefix, 'scales', g.scales, 2 * groups * rows);
  checkLength(prefix, 'g_idx', g.gIdx, 4 * cols);
  const symZero = 1 << (bits - 1);
  if (l.sym) {
    for (let grp = 0; grp < groups; grp++) {
      for (let n = 0; n < rows; n++) {
        const z = field(g.qzeros, 4 * grp * qzWords, n, bits);
        if (z !== symZero) throw internal(prefix, `group ${grp}, output channel ${n}: zero ${z} is not ${symZero}, so the symmetric layout cannot hold it`);
      }
    }
  }
  if (!l.gIdx) {
    // without weight_g_idx a reader takes group k div (cols / groups): lowbit's g_idx must say the same
    const size = cols / groups;
    for (let k = 0; k < cols; k++) {
      const gi = g.gIdx[4 * k] | (g.gIdx[4 * k + 1] << 8) | (g.gIdx[4 * k + 2] << 16) | (g.gIdx[4 * k + 3] << 24);
      if (gi !== Math.floor(k / size)) throw internal(prefix, `g_idx[${k}] = ${gi} is not ${Math.floor(k / size)}: groups out of column order need weight_g_idx (actorder "group")`);
    }
  }
  const out = new Map<string, Uint8Array>();
  const scale = transposeHalves(g.scales, groups, rows); // [groups, rows] → [rows, groups]
  if (l.scheme === 'w8a8') {
    // GPTQ 8-bit word w of column n holds input channels 4w … 4w+3, one per byte (little-endian);
    // the int8 value is the code − 128, i.e. its top bit flipped.
    const weight = new Uint8Array(rows * cols);
    for (let n = 0; n < rows; n++) {
      for (let k = 0; k < cols; k++) weight[n * cols + k] = g.qweight[4 * ((k >>> 2) * rows + n) + (k & 3)] ^ 0x80;
    }
    out.set(specs[0].name, weight);
    out.set(specs[1].name, scale);
    return out;
  }
  out.set(`${prefix}.weight_packed`, transposeWords(g.qweight, qwWords, rows)); // [in·b/32, out] → [out, in·b/32]
  out.set(`${prefix}.weight_scale`, scale);
  if (!l.sym) out.set(`${prefix}.weight_zero_point`, transposeWords(g.qzeros, groups, qzWords)); // [groups, out·b/32] → [out·b/32, groups]
  const shape = new Uint8Array(16);
  const dv = new DataView(shape.buffer);
  dv.setBigInt64(0, BigInt(rows), true);
  dv.setBigInt64(8, BigInt(cols), true);
  out.set(`${prefix}.weight_shape`, shape);
  if (l.gIdx) out.set(`${prefix}.weight_g_idx`, g.gIdx.slice());
  return out;
}

/**
 * The `quantization_config` object of §5 for config.json. `ignore` lists `lm_head` first, then the
 * given modules in order (no duplicates).
 *
 * @throws LowbitError `LOWBIT_INVALID_OPTION` naming the parameter
 */
export function ctQuantizationConfig(p: CtQuantizationConfigOptions): Record<string, unknown> {
  const scheme = checkEnum('scheme', p.scheme, ['w4a16', 'w8a8'] as const);
  const sym = checkBool('sym', p.sym);
  if (scheme === 'w8a8' ? p.bits !== 8 : !CT_PACK_BITS.includes(p.bits)) {
    throw invalidOption('bits', scheme === 'w8a8' ? '8 for w8a8' : `one of ${CT_PACK_BITS.join(', ')}`, p.bits);
  }
  checkGroupSize(p.groupSize);
  if (scheme === 'w8a8' && (p.groupSize !== -1 || !sym)) throw invalidOption('scheme', '"w4a16" for grouped or asymmetric codes (w8a8 stores symmetric per-channel codes)', scheme);
  const actorder = p.actorder === null ? null : checkEnum('actorder', p.actorder, ['group', 'weight'] as const);
  if (actorder === 'group' && p.groupSize === -1) throw invalidOption('actorder', '"weight" or null per channel ("group" needs groups)', actorder);
  const observer = checkEnum('clip', p.clip, ['minmax', 'mse'] as const);
  if (!Array.isArray(p.ignore)) throw invalidOption('ignore', 'an array of module names', p.ignore);
  const ignore = [...new Set(['lm_head', ...p.ignore.map((m, i) => checkString(`ignore[${i}]`, m))])];
  const grouped = p.groupSize > 0;
  const weights = {
    num_bits: p.bits, type: 'int', symmetric: sym, group_size: grouped ? p.groupSize : null, strategy: grouped ? 'group' : 'channel',
    block_structure: null, dynamic: false, actorder, observer, observer_kwargs: {},
  };
  const inputs = scheme === 'w8a8'
    ? { num_bits: 8, type: 'int', symmetric: true, group_size: null, strategy: 'token', block_structure: null, dynamic: true, actorder: null, observer: null, observer_kwargs: {} }
    : null;
  return {
    quant_method: 'compressed-tensors',
    format: scheme === 'w8a8' ? 'int-quantized' : 'pack-quantized',
    quantization_status: 'compressed',
    version: CT_FORMAT_VERSION,
    config_groups: { group_0: { targets: ['Linear'], weights, input_activations: inputs, output_activations: null } },
    ignore,
    kv_cache_scheme: null,
    global_compression_ratio: null,
    sparsity_config: {},
  };
}
