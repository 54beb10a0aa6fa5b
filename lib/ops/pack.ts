/**
 * Packing of quantized codes into the checkpoint layouts of docs/FORMATS.md (GPTQ v1/v2, AWQ
 * GEMM), and unpacking. All work runs in native code (fast path, or the reference when the kernel
 * mode is 'ref'); both are bit-identical.
 */
import { LowbitError, optionError } from '../errors';
import { addon, modeId, runTask } from '../native';
import { invalidOption, checkEnum, checkSignal } from '../config/validate';
import { normalizeQuantizer } from '../config/quant';
import { checkThreads, nativeThreads } from '../config/run';
import { quantizeNormalized, checkShape, type QuantizeTensorOptions, type TensorBytes, type QuantStats } from './quantize';
import { fromFloat32 } from '../formats/dtype';

/** Low-level layouts (see docs/FORMATS.md). */
export type PackLayout = 'gptq-qweight' | 'gptq-qzeros' | 'awq-qweight' | 'awq-qzeros';
const LAYOUT_ID: Record<PackLayout, number> = { 'gptq-qweight': 0, 'gptq-qzeros': 1, 'awq-qweight': 2, 'awq-qzeros': 3 };

function words(layout: PackLayout, bits: number, rows: number, cols: number): number {
  if (layout.startsWith('gptq')) {
    if (![2, 3, 4, 8].includes(bits)) throw invalidOption('bits', '2, 3, 4 or 8 for the GPTQ layout', bits);
    if (cols % 32 !== 0) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${layout}: expected a multiple of 32 values per run, got ${cols}`);
    return (rows * cols * bits) / 32;
  }
  if (bits !== 4) throw invalidOption('bits', '4 for the AWQ GEMM layout', bits);
  const out = layout === 'awq-qweight' ? rows : cols;
  if (out % 8 !== 0) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${layout}: expected out_features divisible by 8, got ${out}`);
  return (rows * cols) / 8;
}

/** Options of {@link packValues}, {@link unpackValues} and {@link packGptq}. */
export interface PackOptions {
  /** Compute threads for this call (1–1024). @default the process default (setThreads, LOWBIT_THREADS, physical cores) */
  threads?: number;
}

/** {@link packValues} on a checked thread count (what packGptq and the pipelines call). */
async function packChecked(layout: PackLayout, bits: number, values: Uint8Array, rows: number, cols: number, offset: number, signal: AbortSignal | undefined,
  threads: number | undefined): Promise<Int32Array> {
  if (!(layout in LAYOUT_ID)) throw invalidOption('layout', Object.keys(LAYOUT_ID).join(', '), layout);
  if (values.length !== rows * cols) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${layout}: expected ${rows * cols} values, got ${values.length}`);
  const packed = new Int32Array(words(layout, bits, rows, cols));
  await runTask(() => addon().pack({ layout: LAYOUT_ID[layout], bits, values, rows, cols, packed, offset, mode: modeId(), threads: nativeThreads(threads) }), signal, `pack ${layout}`);
  return packed;
}

/**
 * Pack `values` ((rows, cols) uint8) into int32 words. For qweight layouts values are codes with
 * rows = out_features, cols = in_features; for qzeros layouts rows = groups, cols = out_features.
 * `offset` is subtracted first (1 for GPTQ v1 zeros).
 */
export async function packValues(layout: PackLayout, bits: number, values: Uint8Array, rows: number, cols: number, offset = 0, signal?: AbortSignal,
  options: PackOptions = {}): Promise<Int32Array> {
  return packChecked(layout, bits, values, rows, cols, offset, signal, checkThreads(options.threads));
}

/** Inverse of {@link packValues}. With offset 1 an all-ones field is refused (LOWBIT_BAD_FORMAT). */
export async function unpackValues(layout: PackLayout, bits: number, packed: Int32Array, rows: number, cols: number, offset = 0, signal?: AbortSignal,
  options: PackOptions = {}): Promise<Uint8Array> {
  const threads = checkThreads(options.threads);
  if (!(layout in LAYOUT_ID)) throw invalidOption('layout', Object.keys(LAYOUT_ID).join(', '), layout);
  const n = words(layout, bits, rows, cols);
  if (packed.length !== n) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${layout}: expected ${n} words, got ${packed.length}`);
  const values = new Uint8Array(rows * cols);
  await runTask(() => addon().unpack({ layout: LAYOUT_ID[layout], bits, values, rows, cols, packed, offset, mode: modeId(), threads: nativeThreads(threads) }), signal, `unpack ${layout}`);
  return values;
}

/** Transpose a (rows, cols) array into (cols, rows). @internal */
export function transpose<T extends Uint8Array | Float32Array | Int32Array>(a: T, rows: number, cols: number): T {
  const out = new (a.constructor as new (n: number) => T)(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** Tensors of one GPTQ-packed linear layer. */
export interface GptqPacked {
  /** (in·bits/32, out) */
  qweight: Int32Array;
  /** (groups, out·bits/32) */
  qzeros: Int32Array;
  /** (groups, out), f32 values (stored as fp16) */
  scales: Float32Array;
  /** (in) */
  gIdx: Int32Array;
}

/** The codes of one quantized layer as {@link packGptq} takes them. */
export interface GptqCodes {
  codes: Uint8Array;
  scales: Float32Array;
  zeros: Uint8Array;
  rows: number;
  cols: number;
  bits: number;
  groupSize: number;
  groups: number;
}

/**
 * Pack a quantized (out, in) layer into the HF GPTQ layout. `codes` (out, in), `scales` and
 * `zeros` (out, groups) as {@link quantizeTensor} returns them. format 'gptq' (v1) stores zero − 1
 * and refuses a zero of 0; 'gptq_v2' stores true zeros.
 */
export async function packGptq(q: GptqCodes, format: 'gptq' | 'gptq_v2', gIdx?: Int32Array, name = 'layer', qweightPacked?: Int32Array,
  options: PackOptions = {}): Promise<GptqPacked> {
  return packGptqNormalized(q, format, gIdx, name, qweightPacked, checkThreads(options.threads));
}

/** {@link packGptq} on a checked thread count (what the methods call). @internal */
export async function packGptqNormalized(q: GptqCodes, format: 'gptq' | 'gptq_v2', gIdx: Int32Array | undefined, name: string,
  qweightPacked: Int32Array | undefined, threads: number | undefined): Promise<GptqPacked> {
  const { rows: out, cols: inF, bits, groups } = q;
  if (format === 'gptq') {
    for (let i = 0; i < q.zeros.length; i++) {
      if (q.zeros[i] === 0) {
        throw new LowbitError('LOWBIT_UNSUPPORTED',
          `${name}: zero point 0 at output channel ${Math.floor(i / groups)}, group ${i % groups} cannot be stored in a GPTQ v1 checkpoint; quantize with zeroMin 1, or write format gptq_v2, or use sym`,
          { tensor: name });
      }
    }
  }
  const qweight = qweightPacked ?? await packChecked('gptq-qweight', bits, q.codes, out, inF, 0, undefined, threads);
  const zerosT = transpose(q.zeros, out, groups);
  const qzeros = await packChecked('gptq-qzeros', bits, zerosT, groups, out, format === 'gptq' ? 1 : 0, undefined, threads);
  const scales = transpose(q.scales, out, groups);
  let g = gIdx;
  if (!g) {
    g = new Int32Array(inF);
    for (let k = 0; k < inF; k++) g[k] = Math.floor(k / q.groupSize);
  }
  return { qweight, qzeros, scales, gIdx: g };
}

/** Options of {@link quantizeGptq}. */
export interface QuantizeGptqOptions extends QuantizeTensorOptions {
  /** `'gptq'` (v1: zero − 1 stored; asymmetric zeros are kept ≥ 1) or `'gptq_v2'`. @default 'gptq' */
  format?: 'gptq' | 'gptq_v2';
}

/** The result of {@link quantizeGptq}: the four GPTQ tensors of a layer, plus what they encode. */
export interface GptqQuantized extends GptqPacked {
  rows: number;
  cols: number;
  bits: number;
  groupSize: number;
  groups: number;
  sym: boolean;
  /** True zeros, (rows = out, groups). */
  zeros: Uint8Array;
  stats: QuantStats;
}

/** The checkpoint bytes of a packed module: `<module>.qweight/.qzeros/.scales` (F16)`/.g_idx`. */
export function gptqTensorBytes(module: string, p: GptqPacked): Map<string, Uint8Array> {
  const bytes = (a: Int32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return new Map([
    [`${module}.qweight`, bytes(p.qweight)],
    [`${module}.qzeros`, bytes(p.qzeros)],
    [`${module}.scales`, fromFloat32(p.scales, 'F16', `${module}.scales`)],
    [`${module}.g_idx`, bytes(p.gIdx)],
  ]);
}

/**
 * Round-to-nearest quantization of a (out, in) layer straight into the HF GPTQ tensors: codes are
 * packed natively as they are produced (no code matrix is materialised). Bit-identical to
 * `quantizeTensor` followed by `packGptq`.
 */
export async function quantizeGptq(data: Float32Array | TensorBytes, shape: [number, number], options: QuantizeGptqOptions = {}): Promise<GptqQuantized> {
  const [rows, cols] = checkShape(shape);
  const format = options.format === undefined ? 'gptq' : checkEnum('format', options.format, ['gptq', 'gptq_v2'] as const);
  const q = normalizeQuantizer(options, ['name', 'dequantize', 'signal', 'onProgress', 'format', 'threads']);
  const threads = checkThreads(options.threads);
  const name = options.name ?? 'tensor';
  if (q.codebook !== 'uniform' || q.perTensor || q.raggedLastGroup) throw optionError('codebook', `${name}: the GPTQ layout holds uniform per-channel or per-group codes only`);
  if (![2, 3, 4, 8].includes(q.bits)) throw invalidOption('bits', '2, 3, 4 or 8 for the GPTQ layout', q.bits);
  if (cols % 32 !== 0 || rows % 32 !== 0) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${name}: the GPTQ layout needs in and out features divisible by 32, got ${rows}×${cols}`);
  if (format === 'gptq' && !q.sym && options.zeroMin === undefined) q.zeroMin = 1;
  const r = await quantizeNormalized(data, rows, cols, q, { name, dequantize: false, signal: checkSignal(options.signal), onProgress: options.onProgress, packGptq: true, threads });
  const p = await packGptqNormalized({ ...r, codes: new Uint8Array(0) }, format, undefined, name, r.qweight, threads);
  return { ...p, rows, cols, bits: q.bits, groupSize: r.groupSize, groups: r.groups, sym: q.sym, zeros: r.zeros, stats: r.stats };
}
