/**
 * quantizeTensor: quantize one weight matrix (rows = out_features, cols = in_features) with the
 * native uniform / codebook quantizer. Runs off the event loop on lowbit's thread pool.
 */
import { LowbitError } from '../errors';
import { normalizeQuantizer, effectiveGroupSize, type QuantizerOptions, type NormalizedQuantizer } from '../config/quant';
import { addon, modeId, runTask, DTYPE_ID } from '../native';
import { checkSignal, invalidOption } from '../config/validate';
import { checkThreads, nativeThreads, progressCallback, type Progress } from '../config/run';
export type { Progress } from '../config/run';

/** Raw tensor bytes with their element type (e.g. a zero-copy view from a safetensors file). */
export interface TensorBytes {
  dtype: 'F32' | 'F16' | 'BF16';
  bytes: Uint8Array;
}

/** Options of {@link quantizeTensor}. */
export interface QuantizeTensorOptions extends QuantizerOptions {
  /** Name used in error messages (e.g. the tensor name). @default 'tensor' */
  name?: string;
  /** Also return the dequantized weights (rows × cols f32). @default true */
  dequantize?: boolean;
  /** Cancels the operation; the promise rejects with LOWBIT_ABORTED. */
  signal?: AbortSignal;
  /** Progress in rows done. */
  onProgress?: (p: Progress) => void;
  /** Compute threads for this call (1–1024). @default the process default (setThreads, LOWBIT_THREADS, physical cores) */
  threads?: number;
}

/** Error statistics of a quantized tensor against its input. */
export interface QuantStats {
  /** Mean squared error per element. */
  mse: number;
  /** Relative Frobenius error ‖W − Ŵ‖ / ‖W‖. */
  relError: number;
  /** Largest absolute error of one element. */
  maxAbsError: number;
  /** Signal-to-quantization-noise ratio in dB (10·log10(‖W‖² / ‖W − Ŵ‖²)). */
  sqnrDb: number;
}

/** The result of {@link quantizeTensor}. */
export interface QuantizedTensor {
  rows: number;
  cols: number;
  bits: number;
  /** Effective group size (cols for per channel / per tensor). */
  groupSize: number;
  /** Groups per row: ceil(cols / groupSize). */
  groups: number;
  sym: boolean;
  codebook: 'uniform' | 'nf4' | 'log2';
  perTensor: boolean;
  /** Codes, (rows, cols) row-major, values in [0, 2^bits). */
  codes: Uint8Array;
  /** Scales, (rows, groups) row-major; fp16-representable when scaleF16. */
  scales: Float32Array;
  /** Integer zero points, (rows, groups); 0 for codebooks; 2^(bits−1) when sym. */
  zeros: Uint8Array;
  /** Dequantized weights ŵ = scale·(code − zero) (rows, cols), or null if not requested. */
  dequantized: Float32Array | null;
  stats: QuantStats;
}

const CLIP_ID = { minmax: 0, mse: 1 } as const;
const CODEBOOK_ID = { uniform: 0, nf4: 1, log2: 2 } as const;

function inputBytes(data: Float32Array | TensorBytes, n: number, name: string): { view: ArrayBufferView; dtype: number } {
  if (data instanceof Float32Array) {
    if (data.length !== n) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${name}: expected ${n} elements, got ${data.length}`);
    return { view: data, dtype: DTYPE_ID.F32 };
  }
  const d: unknown = data;
  if (typeof d !== 'object' || d === null || !(data.bytes instanceof Uint8Array) || !(data.dtype in DTYPE_ID)) {
    throw invalidOption('data', 'a Float32Array or {dtype: "F32"|"F16"|"BF16", bytes: Uint8Array}', data);
  }
  const size = data.dtype === 'F32' ? 4 : 2;
  if (data.bytes.byteLength !== n * size) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${name}: expected ${n * size} bytes of ${data.dtype}, got ${data.bytes.byteLength}`);
  }
  let bytes = data.bytes;
  if (bytes.byteOffset % size !== 0) bytes = bytes.slice(); // native kernels need element alignment
  return { view: bytes, dtype: DTYPE_ID[data.dtype] };
}

/** The native quantizer spec of `q` (the quantize job's fields; groupSize -1: one group per row). @internal */
export function quantSpecJob(q: NormalizedQuantizer): { bits: number; groupSize: number; sym: boolean; codebook: number; clip: number; clipGrid: number; clipMaxShrink: number; clipNorm: number; zeroMin: number; scaleF16: boolean; signedMax: boolean } {
  return {
    bits: q.bits, groupSize: q.groupSize === -1 ? 1 << 30 : q.groupSize, sym: q.sym, codebook: CODEBOOK_ID[q.codebook], clip: CLIP_ID[q.clip], clipGrid: q.clipGrid,
    clipMaxShrink: q.clipMaxShrink, clipNorm: q.clipNorm, zeroMin: q.zeroMin, scaleF16: q.scaleF16, signedMax: q.signedMax,
  };
}

/** @internal */
export async function quantizeNormalized(
  data: Float32Array | TensorBytes, rows: number, cols: number, q: NormalizedQuantizer,
  opts: { name: string; dequantize: boolean; signal?: AbortSignal; onProgress?: (p: Progress) => void; packGptq?: boolean; threads?: number },
): Promise<QuantizedTensor & { qweight?: Int32Array }> {
  const { name } = opts;
  const n = rows * cols;
  const src = inputBytes(data, n, name);
  // Per tensor = one row of rows·cols values with one group; scales are then broadcast per row.
  const nRows = q.perTensor ? 1 : rows;
  const nCols = q.perTensor ? n : cols;
  const gs = q.perTensor ? n : effectiveGroupSize(q, cols, name);
  const groups = Math.ceil(nCols / gs);
  // Fused path: codes are packed natively into GPTQ qweight (cols·bits/32, rows); no code matrix.
  const qweight = opts.packGptq ? new Int32Array((cols * q.bits / 32) * rows) : null;
  const codes = new Uint8Array(qweight ? 0 : n);
  const scales = new Float32Array(nRows * groups);
  const zeros = new Uint8Array(nRows * groups);
  const dequant = opts.dequantize && !qweight ? new Float32Array(n) : null;
  const task = () => addon().quantize({
    rows: nRows, cols: nCols, srcDtype: src.dtype, src: src.view, bits: q.bits, groupSize: gs, perTensor: q.perTensor,
    sym: q.sym, codebook: CODEBOOK_ID[q.codebook], clip: CLIP_ID[q.clip], clipGrid: q.clipGrid,
    clipMaxShrink: q.clipMaxShrink, clipNorm: q.clipNorm, zeroMin: q.zeroMin, scaleF16: q.scaleF16, signedMax: q.signedMax,
    codes: qweight ? null : codes, qweight, scales, zeros, dequant, mode: modeId(), threads: nativeThreads(opts.threads),
    ...progressCallback(opts.onProgress, 'quantize'),
  });
  const st = await runTask(task, opts.signal, `quantize ${name}`);
  if (st.nonFinite > 0) {
    const i = st.firstNonFinite;
    throw new LowbitError('LOWBIT_NUMERICAL',
      `${name}: non-finite weight (NaN or Inf) at [${Math.floor(i / cols)}, ${i % cols}] (${st.nonFinite} in total); refusing to quantize`,
      { tensor: name, index: i, count: st.nonFinite });
  }
  const outScales = q.perTensor ? new Float32Array(rows).fill(scales[0]) : scales;
  const outZeros = q.perTensor ? new Uint8Array(rows).fill(zeros[0]) : zeros;
  const mse = st.sumSqErr / Math.max(1, n);
  return {
    rows, cols, bits: q.bits, groupSize: q.perTensor ? cols : gs, groups: q.perTensor ? 1 : groups, sym: q.sym,
    codebook: q.codebook, perTensor: q.perTensor, codes, scales: outScales, zeros: outZeros, dequantized: dequant,
    ...(qweight ? { qweight } : {}),
    stats: {
      mse,
      relError: st.sumSqRef > 0 ? Math.sqrt(st.sumSqErr / st.sumSqRef) : 0,
      maxAbsError: st.maxAbsErr,
      sqnrDb: st.sumSqErr > 0 ? 10 * Math.log10(st.sumSqRef / st.sumSqErr) : Infinity,
    },
  };
}

/** A [rows, cols] shape of positive integers, or LOWBIT_INVALID_OPTION. @internal */
export function checkShape(shape: unknown): [number, number] {
  if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d): d is number => typeof d === 'number' && Number.isInteger(d) && d > 0)) {
    throw invalidOption('shape', '[rows, cols] with positive integers', shape);
  }
  return [shape[0], shape[1]];
}

/**
 * Quantize a (rows, cols) weight matrix: returns codes, scales, zeros, the dequantized weights
 * and error statistics. Rounding is half to even; codes are clamped to [0, 2^bits).
 *
 * @example
 * const q = await quantizeTensor(w, [4096, 4096], { bits: 4, groupSize: 128, sym: true });
 */
export async function quantizeTensor(data: Float32Array | TensorBytes, shape: [number, number], options: QuantizeTensorOptions = {}): Promise<QuantizedTensor> {
  const [rows, cols] = checkShape(shape);
  const q = normalizeQuantizer(options, ['name', 'dequantize', 'signal', 'onProgress', 'threads']);
  const signal = checkSignal(options.signal);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw invalidOption('onProgress', 'a function', options.onProgress);
  return quantizeNormalized(data, rows, cols, q, {
    name: options.name ?? 'tensor', dequantize: options.dequantize ?? true, signal, onProgress: options.onProgress, threads: checkThreads(options.threads),
  });
}
