/**
 * The CUDA path's typed face (native/kernels/cuda/cuda_api.h), for tests, benchmarks and a future
 * `device: 'cuda'` pipeline. Each function validates its arguments here, before anything crosses,
 * then runs on the CUDA variant of the addon (build-cuda/Release/lowbit_cuda.node) off the event
 * loop. Without a usable device every call rejects with LOWBIT_NO_CUDA and the reason (not built,
 * no driver, no device); {@link cudaStatus} reports it without throwing.
 *
 * Status: compiled and exercised on the host only (a CPU emulation of the kernels, see
 * docs/CUDA.md); nothing here has run on a GPU yet.
 */
import type { GptqWeights } from './qdot';
import { LowbitError } from '../errors';
import { cudaAddon, runTask, type NativeAddon } from '../native';
import { checkBool, checkEnum, checkInt, checkKnownKeys, checkNumber, checkOneOf, invalidOption } from '../config/validate';
import { gptqGroupSize, gptqLayerBuffers, gptqLayerJob, normalizeGptqLayerOptions, type GptqLayerOptions, type GptqLayerResult } from './gptq';

let probed: { addon: NativeAddon | null; reason: string } | null = null;

/** Whether the CUDA variant is built and sees a device; `reason` says why not. Probes once per process. */
export function cudaStatus(): { available: boolean; reason: string } {
  if (!probed) probed = cudaAddon();
  return { available: probed.addon !== null, reason: probed.reason };
}

/** The CUDA variant's addon: every device entry is present (checked, not assumed). */
type CudaAddon = NativeAddon & Required<Pick<NativeAddon, 'cudaQgemm' | 'cudaGemmF16' | 'cudaHessian' | 'cudaInverseFactor' | 'cudaGptqLayer' | 'cudaBenchCopy'>>;
const CUDA_ENTRIES = ['cudaQgemm', 'cudaGemmF16', 'cudaHessian', 'cudaInverseFactor', 'cudaGptqLayer', 'cudaBenchCopy'] as const;

function cuda(what: string): CudaAddon {
  const s = cudaStatus();
  const a = probed?.addon ?? null;
  if (!s.available || a === null) throw new LowbitError('LOWBIT_NO_CUDA', `${what}: no CUDA device: ${s.reason}`);
  const missing = CUDA_ENTRIES.filter((k) => typeof a[k] !== 'function');
  if (missing.length) throw new LowbitError('LOWBIT_NO_CUDA', `${what}: the CUDA addon lacks ${missing.join(', ')} (rebuild it: npm run build:cuda)`);
  return a as CudaAddon;
}

/** What a caller passed where an array was expected, for shape errors (untyped callers may pass anything). */
function lengthOf(v: unknown): string {
  return ArrayBuffer.isView(v) ? String((v as unknown as { length: number }).length) : `a ${typeof v}`;
}

/** Timings of one CUDA call. */
export interface CudaTimings {
  /** Kernel milliseconds of each timed repeat (CUDA events around the launches; no copies). */
  ms: number[];
  /** The most device memory the call held at once (its own buffers, bytes). */
  deviceBytes: number;
}

/** A GPTQ-packed 4- or 8-bit linear layer (the checkpoint layout of lib/qdot.ts's GptqWeights; scales as f32, true zeros). */
export interface GptqPackedLinear extends GptqWeights {
  bits: 4 | 8;
}

/** Options of {@link cudaQmatmul}. */
export interface CudaQmatmulOptions {
  /** 'gemv' (one token per pass, f32 math), 'mma' (tensor cores, f16 inputs, f32 sums), or 'auto': gemv for one token. @default 'auto' */
  kernel?: 'auto' | 'gemv' | 'mma';
  /** Untimed launches before the timed ones. @default 0 */
  warmup?: number;
  /** Timed launches (y holds the last). @default 1 */
  repeats?: number;
  /** Evict the L2 cache before each timed launch (untimed), so the figures are DRAM-bound. @default false */
  cold?: boolean;
  /** Output (m × outFeatures); allocated when absent. */
  y?: Float32Array;
}

/** The result of {@link cudaQmatmul} and {@link cudaGemmF16}. */
export interface CudaMatmulResult extends CudaTimings {
  y: Float32Array;
  kernel: 'gemv' | 'mma';
  /** Pieces the input dimension was split into (partial sums added by a second kernel). */
  splits: number;
  /** Run length of g_idx used by the grouped fast path; 0 = the general (act-order) path. */
  groupSize: number;
}

const KERNELS = ['auto', 'gemv', 'mma'] as const;

function shapeError(what: string, expected: string, got: string): LowbitError {
  return new LowbitError('LOWBIT_SHAPE_MISMATCH', `${what}: expected ${expected}, got ${got}`);
}

/**
 * y (m × out) = x (m × in) · Wᵀ on the device from GPTQ-packed words (W is never materialised).
 * `x` is f32, or f16 bit patterns in a Uint16Array. Error bound vs the f32 formula: GEMV ≈ float
 * sums; MMA rounds x and each s·(q − z) to f16 (|Δ| ≲ 2⁻¹⁰·Σ|x·w|).
 */
export async function cudaQmatmul(x: Float32Array | Uint16Array, m: number, w: GptqPackedLinear, options: CudaQmatmulOptions = {}): Promise<CudaMatmulResult> {
  checkKnownKeys('cudaQmatmul options', options, ['kernel', 'warmup', 'repeats', 'cold', 'y']);
  m = checkInt('m', m, 1, 1 << 24);
  const bits = checkOneOf('bits', w.bits, [4, 8]);
  const kernel = checkEnum('kernel', options.kernel ?? 'auto', KERNELS);
  const warmup = checkInt('warmup', options.warmup ?? 0, 0, 10000);
  const repeats = checkInt('repeats', options.repeats ?? 1, 1, 10000);
  const cold = checkBool('cold', options.cold ?? false);
  const { inFeatures: inF, outFeatures: out, groups } = w;
  checkInt('inFeatures', inF, 1, 1 << 24);
  checkInt('outFeatures', out, 1, 1 << 24);
  checkInt('groups', groups, 1, inF);
  const word = 32 / bits;
  if (inF % word !== 0) throw shapeError('cudaQmatmul', `in_features a multiple of ${word} for ${bits}-bit words`, String(inF));
  if (!(x instanceof Float32Array) && !(x instanceof Uint16Array)) throw invalidOption('x', 'a Float32Array (f32) or Uint16Array (f16 bits)', x);
  if (x.length !== m * inF) throw shapeError('cudaQmatmul x', `${m}×${inF} = ${m * inF} values`, String(x.length));
  if (!(w.qweight instanceof Int32Array) || w.qweight.length !== (inF / word) * out) {
    throw shapeError('cudaQmatmul qweight', `an Int32Array of ${inF / word}×${out}`, lengthOf(w.qweight));
  }
  if (!(w.scales instanceof Float32Array) || w.scales.length !== groups * out) throw shapeError('cudaQmatmul scales', `a Float32Array of ${groups}×${out}`, lengthOf(w.scales));
  if (!(w.zeros instanceof Uint8Array) || w.zeros.length !== groups * out) throw shapeError('cudaQmatmul zeros', `a Uint8Array of ${groups}×${out}`, lengthOf(w.zeros));
  if (!(w.gIdx instanceof Int32Array) || w.gIdx.length !== inF) throw shapeError('cudaQmatmul gIdx', `an Int32Array of ${inF}`, lengthOf(w.gIdx));
  for (let k = 0; k < inF; k++) {
    const g = w.gIdx[k];
    if (g < 0 || g >= groups) throw new LowbitError('LOWBIT_BAD_FORMAT', `cudaQmatmul: g_idx[${k}] = ${g} is outside [0, ${groups})`);
  }
  const y = options.y ?? new Float32Array(m * out);
  if (!(y instanceof Float32Array) || y.length !== m * out) throw shapeError('cudaQmatmul y', `a Float32Array of ${m}×${out}`, lengthOf(y));
  const a = cuda('cudaQmatmul');
  const r = await runTask(() => a.cudaQgemm({
    x, xDtype: x instanceof Uint16Array ? 1 : 0, m, inFeatures: inF, outFeatures: out, bits, groups,
    qweight: w.qweight, scales: w.scales, zeros: w.zeros, gIdx: w.gIdx, y, kernel: KERNELS.indexOf(kernel), warmup, repeats, cold,
  }), undefined, 'cudaQmatmul');
  return { y, ms: r.ms, deviceBytes: r.deviceBytes, kernel: r.kernel, splits: r.splits, groupSize: r.groupSize };
}

/**
 * y (m × out) = x (m × in) · Wᵀ with x and W (out × in, f32) rounded to f16 on the device and f32
 * sums: the fp16 baseline the benchmark compares the packed kernels with. in % 8 === 0.
 */
export async function cudaGemmF16(x: Float32Array, m: number, w: Float32Array, out: number, options: Omit<CudaQmatmulOptions, 'kernel'> = {}): Promise<CudaMatmulResult> {
  checkKnownKeys('cudaGemmF16 options', options, ['warmup', 'repeats', 'cold', 'y']);
  m = checkInt('m', m, 1, 1 << 24);
  out = checkInt('out', out, 1, 1 << 24);
  const warmup = checkInt('warmup', options.warmup ?? 0, 0, 10000);
  const repeats = checkInt('repeats', options.repeats ?? 1, 1, 10000);
  const cold = checkBool('cold', options.cold ?? false);
  if (!(x instanceof Float32Array) || x.length % m !== 0) throw shapeError('cudaGemmF16 x', `a Float32Array of m×in`, lengthOf(x));
  const inF = x.length / m;
  if (inF < 8 || inF % 8 !== 0) throw shapeError('cudaGemmF16', 'in_features a positive multiple of 8', String(inF));
  if (!(w instanceof Float32Array) || w.length !== out * inF) throw shapeError('cudaGemmF16 w', `a Float32Array of ${out}×${inF}`, lengthOf(w));
  const y = options.y ?? new Float32Array(m * out);
  if (!(y instanceof Float32Array) || y.length !== m * out) throw shapeError('cudaGemmF16 y', `a Float32Array of ${m}×${out}`, lengthOf(y));
  const a = cuda('cudaGemmF16');
  const r = await runTask(() => a.cudaGemmF16({ x, w, m, inFeatures: inF, outFeatures: out, y, warmup, repeats, cold }), undefined, 'cudaGemmF16');
  return { y, ms: r.ms, deviceBytes: r.deviceBytes, kernel: r.kernel, splits: r.splits, groupSize: r.groupSize };
}

/**
 * H (cols × cols) ← beta·H + alpha·XᵀX on the device, X (n × cols) row-major; both halves of H are
 * written. GPTQ's running mean: beta = nOld/nNew, alpha = 2/nNew. Defaults alpha 1, beta 1 (the
 * CPU `hessian` accumulation).
 */
export async function cudaHessian(x: Float32Array, n: number, cols: number, H: Float32Array, options: { alpha?: number; beta?: number } = {}): Promise<CudaTimings> {
  checkKnownKeys('cudaHessian options', options, ['alpha', 'beta']);
  n = checkInt('n', n, 1, 2 ** 31 - 1);
  cols = checkInt('cols', cols, 1, 65536);
  const alpha = checkNumber('alpha', options.alpha ?? 1, -1e30, 1e30);
  const beta = checkNumber('beta', options.beta ?? 1, -1e30, 1e30);
  if (!(x instanceof Float32Array) || x.length !== n * cols) throw shapeError('cudaHessian x', `a Float32Array of ${n}×${cols}`, lengthOf(x));
  if (!(H instanceof Float32Array) || H.length !== cols * cols) throw shapeError('cudaHessian H', `a Float32Array of ${cols}×${cols}`, lengthOf(H));
  const a = cuda('cudaHessian');
  const r = await runTask(() => a.cudaHessian({ x, n, cols, H, alpha, beta }), undefined, 'cudaHessian');
  return { ms: r.ms, deviceBytes: r.deviceBytes };
}

/**
 * U (n × n) upper triangular with Uᵀ U = H⁻¹ (GPTQ's "upper Cholesky factor of the inverse"), on
 * the device; `ok` is false when H is not positive definite (U is then unspecified).
 */
export async function cudaInverseFactor(H: Float32Array, n: number): Promise<CudaTimings & { ok: boolean; U: Float32Array }> {
  n = checkInt('n', n, 1, 65536);
  if (!(H instanceof Float32Array) || H.length !== n * n) throw shapeError('cudaInverseFactor H', `a Float32Array of ${n}×${n}`, lengthOf(H));
  const U = new Float32Array(n * n);
  const a = cuda('cudaInverseFactor');
  const r = await runTask(() => a.cudaInverseFactor({ H, n, U }), undefined, 'cudaInverseFactor');
  return { ok: r.ok, U, ms: r.ms, deviceBytes: r.deviceBytes };
}

/** Where the time of {@link cudaGptqLayer} went (host wall milliseconds; device work synchronized per phase). */
export interface CudaGptqTimings {
  /** prepare + factor + sweep: the layer's device work, without the copies. */
  msTotal: number;
  /** Checks, params, dead inputs, act-order permutation. */
  msPrepare: number;
  /** Damped Cholesky and inverse factor (all attempts). */
  msFactor: number;
  /** Column sweep, lazy updates and output scatter. */
  msSweep: number;
  /** Host ↔ device copies of the inputs and outputs. */
  msCopy: number;
  deviceBytes: number;
  /** Factorizations tried (1 unless the damping had to be raised). */
  factorAttempts: number;
}


/**
 * GPTQ of one layer on the device: the options and results of {@link gptqLayer} (same algorithm
 * and order of operations, same outputs), plus where the time went. The device path supports
 * `clip: 'minmax'` and `blockSize` ≤ 128 (LOWBIT_UNSUPPORTED otherwise). Codes may differ from the
 * CPU path's where a value lies within float rounding of a grid boundary (different summation
 * order in the factorization and the lazy updates). `threads` is accepted and checked as by gptqLayer;
 * it covers only host-side work, and the device path has none that runs on lowbit's pool today.
 */
export async function cudaGptqLayer(weight: Float32Array, hessian: Float32Array, options: GptqLayerOptions): Promise<GptqLayerResult & { timings: CudaGptqTimings }> {
  // the checks of gptqLayer (lib/ops/gptq.ts), then the device path's own limits
  const o = normalizeGptqLayerOptions('cudaGptqLayer', options, 65536);
  if (o.blockSize > 128) throw new LowbitError('LOWBIT_UNSUPPORTED', `cudaGptqLayer: blockSize ${o.blockSize} is above the device path's 128 (the block lives in shared memory); use ≤ 128 or the CPU path`);
  if (o.quantizer.clip !== 'minmax') throw new LowbitError('LOWBIT_UNSUPPORTED', `cudaGptqLayer: clip 'mse' is not implemented on the device; use 'minmax' or the CPU path`);
  if (o.rows * o.cols > 2 ** 34) throw new LowbitError('LOWBIT_UNSUPPORTED', `cudaGptqLayer: ${o.rows}×${o.cols} is above the device path's 2^34 weights`);
  const out = gptqLayerBuffers(weight, hessian, o.rows, o.cols, gptqGroupSize(o));
  const { codes, scales, zeros, gIdx, dequant, groups } = out;
  const a = cuda('cudaGptqLayer');
  const r = await runTask(() => a.cudaGptqLayer(gptqLayerJob(weight, hessian, o, out)), o.signal, 'cudaGptqLayer');
  const { loss, dampUsed, ...timings } = r;
  return { dequantized: dequant, codes, scales, zeros, gIdx, groups, dampUsed, loss, timings };
}

/** Device-to-device copy of `bytes`: per-repeat milliseconds (a bandwidth reference for the benchmark: 2·bytes move per copy). */
export async function cudaBenchCopy(bytes: number, repeats = 5): Promise<number[]> {
  bytes = checkInt('bytes', bytes, 1, 2 ** 40);
  repeats = checkInt('repeats', repeats, 1, 10000);
  const a = cuda('cudaBenchCopy');
  return (await runTask(() => a.cudaBenchCopy({ bytes, repeats }), undefined, 'cudaBenchCopy')).ms;
}
