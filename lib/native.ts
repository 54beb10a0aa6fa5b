/**
 * The only file that loads the native addon, and the typed face of its whole surface.
 *
 * Load order (each attempt's failure is kept for `lowbit doctor` and for the error message):
 *   1. `LOWBIT_ADDON=<path>`: an explicit .node file (sanitizer builds, experiments);
 *   2. the CUDA variant `build-cuda/Release/lowbit_cuda.node` (cmake-js), probed first in a child
 *      process because a driver mismatch can kill the process that loads it;
 *   3. the CPU variant: a local build `build/Release/lowbit.node` (node-gyp: `npm run build`, or the
 *      install script when no prebuilt addon matches), else the prebuilt `prebuilds/<platform>-<arch>/`
 *      shipped in the package, found with node-gyp-build.
 */
import * as path from 'node:path';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { LowbitError, invalidOption, toLowbitError } from './errors';

/** Options crossing into native quantization (normalized, all fields present). @internal */
export interface NativeQuantJob extends NativeThreads {
  rows: number;
  cols: number;
  /** Source element type of `src`: 0 f32, 1 f16, 2 bf16. */
  srcDtype: number;
  src: ArrayBufferView;
  bits: number;
  /** Columns per group; equals cols for per-channel; rows*cols handled by `perTensor`. */
  groupSize: number;
  perTensor: boolean;
  sym: boolean;
  /** 0 uniform, 1 nf4, 2 log2 codebook. */
  codebook: number;
  /** 0 minmax, 1 mse grid search. */
  clip: number;
  clipGrid: number;
  clipMaxShrink: number;
  clipNorm: number;
  /** Smallest integer zero point allowed (1 for the GPTQ v1 format, else 0). */
  zeroMin: number;
  /** Round scales to fp16 before computing codes (what a fp16 checkpoint stores). */
  scaleF16: boolean;
  /** Symmetric groups on llama.cpp's Q4_0 grid (see QuantizerOptions.signedMax). */
  signedMax: boolean;
  /** Codes (rows × cols), or null when `qweight` is given (fused quantize + GPTQ pack). */
  codes: Uint8Array | null;
  qweight?: Int32Array | null;
  scales: Float32Array;
  zeros: Uint8Array;
  dequant: Float32Array | null;
  mode: number;
}

/** Error statistics of one quantized tensor. @internal */
export interface NativeQuantStats {
  sumSqErr: number;
  sumSqRef: number;
  maxAbsErr: number;
  nonFinite: number;
  firstNonFinite: number;
}

/** A cancellable native task. @internal */
export interface NativeTask<T> {
  promise: Promise<T>;
  cancel(): void;
}

/** A memory-mapped file; views are zero-copy and keep the mapping alive. @internal */
export interface NativeMapping {
  readonly size: number;
  view(offset: number, length: number): ArrayBuffer;
  /** Drop a range's pages from the resident set (re-read from the file if touched again). */
  release(offset: number, length: number): void;
  close(): void;
}

/** The raw addon surface. @internal */
export interface NativeAddon {
  version: string;
  variant: 'cpu' | 'cuda';
  info(): NativeInfo;
  setThreads(n: number): void;
  setIsa(isa: string): boolean;
  setKernelMode(mode: number): void;
  getKernelMode(): number;
  convert(job: NativeConvertJob & { onProgress?: (done: number, total: number) => void }): NativeTask<NativeConvertResult>;
  convertSync(job: NativeConvertJob): NativeConvertResult;
  firstNonFiniteSync(job: { src: Uint8Array; dtype: number; mode: number; threads?: number }): number;
  ggmlEncodeSync(job: NativeGgmlEncodeJob): boolean;
  quantize(job: NativeQuantJob): NativeTask<NativeQuantStats>;
  pack(job: NativePackJob): NativeTask<void>;
  unpack(job: NativePackJob): NativeTask<void>;
  mapFile(path: string): NativeMapping;
  gemm(job: NativeGemmJob): NativeTask<void>;
  qgemmGptq4(job: NativeQgemmGptq4Job): NativeTask<void>;
  qblockFromGptq(job: NativeQblockFromGptqJob): NativeTask<NativeQBlock>;
  qblockFromGgml(job: NativeQblockFromGgmlJob): NativeTask<NativeQBlock>;
  qdotLinear(job: NativeQdotLinearJob): NativeTask<void>;
  kvQuantize(job: NativeKvJob & { x: Float32Array }): { codes: Uint8Array; sz: Uint16Array };
  kvDequantize(job: NativeKvJob & { codes: Uint8Array; sz: Uint16Array }): Float32Array;
  kvDotGroups(job: NativeKvJob & { q: Float32Array; codes: Uint8Array; mode: number }): Float32Array;
  kvAxpyGroups(job: NativeKvJob & { w: Float32Array; codes: Uint8Array; y: Float32Array; mode: number }): void;
  actFakeQuant(job: { x: Float32Array; rows: number; n: number; bits: number; scale?: number; mode: number }): void;
  rotate(job: NativeThreads & { x: Float32Array; rows: number; n: number; seed: number; mode: number }): NativeTask<void>;
  createKvCache(job: { layers: number; seqLen: number; nHeads: number; nKvHeads: number; headDim: number; kv: NonNullable<NativeModelConfig['kv']> }): NativeKvCache;
  rotationInfo(job: { n: number; seed: number; matrix?: boolean }): { n: number; p: number; m: number; hadamard: boolean; matrix?: Float64Array };
  quantizeActs(job: NativeQuantizeActsJob): { xq: Int8Array; sx: Float32Array; sum: Int32Array };
  hessian(job: NativeHessianJob): NativeTask<void>;
  createModel(config: NativeModelConfig, weights: NativeModelWeights): NativeModel;
  trainOp(job: NativeTrainOpJob): Record<string, Float32Array | number>;
  adamw(job: NativeThreads & { p: Float32Array; g: Float32Array; m: Float32Array; v: Float32Array; lr: number; b1: number; b2: number; eps: number; wd: number; t: number; mode: number }): void;
  sumSquares(job: NativeThreads & { x: Float32Array; mode: number }): number;
  scaleInPlace(job: NativeThreads & { x: Float32Array; s: number }): void;
  createTrainer(job: { shape: NativeTrainShape; params: NativeTrainTensors; grads: NativeTrainTensors; quant?: NativeTrainQuant }): NativeTrainer;
  benchCopy(job: NativeBenchCopyJob): NativeTask<{ seconds: number[] }>;
  benchPeak(job: NativeBenchPeakJob): NativeTask<{ ops: number; seconds: number }>;
  gptqLayer(job: NativeGptqLayerJob): NativeTask<{ loss: number; dampUsed: number }>;
  gptqInverseFactor(job: NativeInverseFactorJob): NativeTask<{ ok: boolean }>;
  peerSgemmInfo(): { lib: string | null; error: string | null };
  peerSgemm(job: NativePeerSgemmJob): NativeTask<void>;
  cudaInfo?(): NativeCudaInfo;
  cudaDequantInt4?(job: { qweight: Int32Array; scales: Float32Array; zeros: Uint8Array; gIdx: Int32Array; rows: number; cols: number; groups: number; out: Float32Array } & NativeThreads): NativeTask<{ kernelMs: number }>;
  /** CUDA variant only (lib/cuda.ts; native/kernels/cuda/cuda_api.h). Runs report per-repeat kernel ms, peak device bytes, what ran. */
  cudaQgemm?(job: { x: Float32Array | Uint16Array; xDtype: number; m: number; inFeatures: number; outFeatures: number; bits: number; groups: number; qweight: Int32Array; scales: Float32Array; zeros: Uint8Array; gIdx: Int32Array; y: Float32Array; kernel: number; warmup: number; repeats: number; cold?: boolean } & NativeThreads): NativeTask<{ ms: number[]; deviceBytes: number; kernel: 'gemv' | 'mma'; splits: number; groupSize: number }>;
  cudaGemmF16?(job: { x: Float32Array; w: Float32Array; m: number; inFeatures: number; outFeatures: number; y: Float32Array; warmup: number; repeats: number; cold?: boolean } & NativeThreads): NativeTask<{ ms: number[]; deviceBytes: number; kernel: 'gemv' | 'mma'; splits: number; groupSize: number }>;
  cudaHessian?(job: { x: Float32Array; n: number; cols: number; H: Float32Array; alpha: number; beta: number } & NativeThreads): NativeTask<{ ms: number[]; deviceBytes: number; kernel: 'gemv' | 'mma'; splits: number; groupSize: number }>;
  cudaInverseFactor?(job: { H: Float32Array; n: number; U: Float32Array } & NativeThreads): NativeTask<{ ms: number[]; deviceBytes: number; kernel: 'gemv' | 'mma'; splits: number; groupSize: number; ok: boolean }>;
  cudaGptqLayer?(job: NativeGptqLayerJob): NativeTask<{ loss: number; dampUsed: number; msTotal: number; msPrepare: number; msFactor: number; msSweep: number; msCopy: number; deviceBytes: number; factorAttempts: number }>;
  cudaBenchCopy?(job: NativeCudaBenchCopyJob): NativeTask<{ ms: number[] }>;
}

/**
 * Every native call that can take long carries `threads`: the compute threads for that call, 0 for
 * the process default (setThreads / LOWBIT_THREADS / physical cores). @internal
 */
export interface NativeThreads {
  threads?: number;
}

/** f32 ↔ f16 ↔ bf16 over typed arrays (native/kernels/convert.h). @internal */
export interface NativeConvertJob extends NativeThreads {
  /** The values to convert: n elements of `srcDtype` (bytes or a typed array of any type). */
  src: ArrayBufferView;
  /** 0 f32, 1 f16, 2 bf16 ({@link DTYPE_ID}). */
  srcDtype: number;
  /** At least n elements of `dstDtype`. */
  dst: ArrayBufferView;
  dstDtype: number;
  /** Clamp values past the target's range to its largest finite value instead of ±Inf (counted in `overflow` either way). */
  saturate: boolean;
  /** 0 fast kernels, 1 references. */
  mode: number;
}

/** What a conversion reports: values past the target's range, and the first one's index (−1: none). @internal */
export interface NativeConvertResult {
  overflow: number;
  firstOverflow: number;
}

/** ggml block encoding (native/kernels/ggml_encode.h). @internal */
export interface NativeGgmlEncodeJob extends NativeThreads {
  /** 0 Q8_0, 1 Q4_0, 2 Q4_1, 3 Q4_K. */
  type: number;
  /** The values, a multiple of the type's block (32; 256 for Q4_K). */
  x: Float32Array;
  /** (x.length / block) blocks of the type's bytes. */
  out: Uint8Array;
}

/** y (m × n) = x (m × k) · wᵀ, w (n × k) row-major, f32 (native/kernels/gemm.h). @internal */
export interface NativeGemmJob extends NativeThreads {
  x: Float32Array;
  m: number;
  k: number;
  /** f32, or 16-bit bits (Uint16Array) with `wDtype`. */
  w: Float32Array | Uint16Array;
  /** 1: w is f16, 2: bf16 (kernels/gemm.h gemm_w16; no accumulate). Absent: f32. */
  wDtype?: number;
  /** Compute on bf16-rounded operands with f32 sums (kernels/gemm.h gemm_bf16; f32 x and w, no accumulate). */
  bf16?: boolean;
  n: number;
  y: Float32Array;
  /** Add to y instead of overwriting it. */
  accumulate: boolean;
  mode: number;
}

/**
 * The tensors of a GPTQ-packed linear layer as the kernels read them (the checkpoint's layout with
 * scales as f32 and true zeros): what the repack, the GEMM jobs and the public GPTQ weight types share.
 */
export interface NativeGptqTensors {
  inFeatures: number;
  outFeatures: number;
  groups: number;
  /** (in·bits/32, out) */
  qweight: Int32Array;
  /** (groups, out) */
  scales: Float32Array;
  /** (groups, out), true zeros (GPTQ v1's stored value + 1) */
  zeros: Uint8Array;
  /** (in) */
  gIdx: Int32Array;
}

/** Repack a GPTQ layer into the integer-dot layout (native/kernels/qdot.h). @internal */
export interface NativeQblockFromGptqJob extends NativeThreads, NativeGptqTensors {
  bits: number;
}

/** Repack an (out × in) ggml tensor's blocks into the integer-dot layout. @internal */
export interface NativeQblockFromGgmlJob extends NativeThreads {
  /** The ggml type id (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K). */
  type: number;
  data: Uint8Array;
  outFeatures: number;
  inFeatures: number;
}

/** y (rows × out) = x (rows × in) · Wᵀ through the integer-dot kernel; several matrices on one x share its quantization. @internal */
export interface NativeQdotLinearJob extends NativeThreads {
  /** One matrix, or 1 to 8 that agree on inFeatures, kb and channel order. */
  w: NativeQBlock | NativeQBlock[];
  /** (rows × in) */
  x: Float32Array;
  rows: number;
  /** (rows × out) for one matrix; one such output per matrix for an array. */
  y: Float32Array | Float32Array[];
  mode: number;
}

/** The integer path's activation quantizer: int8 codes, scale and code sum per block of kb channels (synchronous). @internal */
export interface NativeQuantizeActsJob extends NativeThreads {
  /** (rows × inFeatures) */
  x: Float32Array;
  rows: number;
  inFeatures: number;
  /** Channels per block: 16, 32, 64, 128 or 256. */
  kb: number;
  /** Channel order (inFeatures), or null. */
  perm: Int32Array | null;
  mode: number;
}

/** H (cols × cols) += XᵀX, X (n × cols); optional per-column Σ|x| and max|x| (native/quant/hessian.h). @internal */
export interface NativeHessianJob extends NativeThreads {
  x: Float32Array;
  n: number;
  cols: number;
  H: Float32Array;
  /** (cols), accumulated, or null. */
  sumAbs: Float32Array | null;
  /** (cols), accumulated, or null. */
  maxAbs: Float32Array | null;
  mode: number;
}

/** U (n × n) upper triangular with Uᵀ U = H⁻¹ (native/quant/linalg.h); resolves ok false when H is not positive definite. @internal */
export interface NativeInverseFactorJob extends NativeThreads {
  /** (n × n) */
  H: Float32Array;
  n: number;
  /** (n × n) output. */
  U: Float32Array;
  mode: number;
}

/** Copy `bytes` between two fresh buffers `iters` times on lowbit's pool: per-copy seconds (native/kernels/bench.h). @internal */
export interface NativeBenchCopyJob extends NativeThreads {
  bytes: number;
  iters: number;
}

/** Every thread runs an FMA chain for about `millis`: total operations and seconds. @internal */
export interface NativeBenchPeakJob extends NativeThreads {
  kind: 'fma';
  millis: number;
}

/** y (m × n) = x (m × k) · wᵀ with OpenBLAS's cblas_sgemm (a peer in the benchmark), on `threads` OpenBLAS threads. @internal */
export interface NativePeerSgemmJob extends NativeThreads {
  x: Float32Array;
  m: number;
  k: number;
  w: Float32Array;
  n: number;
  y: Float32Array;
}

/** Device-to-device copy of `bytes`, `repeats` times (CUDA variant only). @internal */
export interface NativeCudaBenchCopyJob extends NativeThreads {
  bytes: number;
  repeats: number;
}

/** One GPTQ layer (native/quant/gptq.h; the CUDA twin takes the same job). @internal */
export interface NativeGptqLayerJob extends NativeThreads {
  rows: number;
  cols: number;
  bits: number;
  /** Effective group size (per channel: cols). */
  groupSize: number;
  sym: boolean;
  /** 0 minmax, 1 MSE clip search. */
  clip: number;
  zeroMin: number;
  scaleF16: boolean;
  /** Symmetric groups on llama.cpp's Q4_0 grid. @default false */
  signedMax?: boolean;
  actOrder: boolean;
  staticGroups: boolean;
  damp: number;
  dampMax: number;
  blockSize: number;
  /** (rows × cols) f32, updated in place by the sweep. */
  weight: Float32Array;
  /** (cols × cols) f32. */
  hessian: Float32Array;
  codes: Uint8Array;
  scales: Float32Array;
  zeros: Uint8Array;
  gIdx: Int32Array;
  dequant: Float32Array;
  /** 0 fast kernels, 1 references (the CUDA twin ignores it). @default 0 */
  mode?: number;
  onProgress?: (done: number, total: number) => void;
}

/** y = x · Wᵀ with W a GPTQ 4-bit layer (native/kernels/qgemm.h). @internal */
export interface NativeQgemmGptq4Job extends NativeThreads, NativeGptqTensors {
  x: Float32Array;
  m: number;
  y: Float32Array;
  mode: number;
}

/** Packing job. layout: 0 = GPTQ qweight, 1 = GPTQ qzeros, 2 = AWQ qweight, 3 = AWQ qzeros. @internal */
export interface NativePackJob extends NativeThreads {
  layout: number;
  bits: number;
  /** Values, (rows, cols) row-major, one uint8 each: codes (rows = out, cols = in) or zeros (rows = groups, cols = out). */
  values: Uint8Array;
  rows: number;
  cols: number;
  /** Packed int32 words. */
  packed: Int32Array;
  /** Subtracted from each value when packing, added when unpacking (1 for GPTQ v1 zeros). */
  offset: number;
  mode: number;
}

/** A standalone quantized KV cache (native/runtime/kv_cache.h), for tests. @internal */
export interface NativeKvCache {
  bytesPerToken: number;
  fixedBytes: number;
  attend(job: { layer: number; q: Float32Array; k: Float32Array; v: Float32Array; n: number; pos0: number; out: Float32Array; mode: number }): void;
}

/** The shape of KV-cache rows for the kernel entries (kernels/rtquant.h). @internal */
export interface NativeKvJob { rows: number; n: number; bits: number; group: number; sym?: boolean; channel?: boolean }

/** Model configuration crossing into the native runtime. @internal */
export interface NativeModelConfig {
  dim: number; hiddenDim: number; nLayers: number; nHeads: number; nKvHeads: number; vocabSize: number; seqLen: number;
  headDim: number; rmsEps: number; ropeTheta: number;
  /** 0: adjacent pairs (llama2.c, GGUF); 1: half split (Hugging Face). */
  ropeStyle: number;
  /** RoPE frequencies (headDim / 2) of a model that scales them. */
  invFreq?: Float32Array;
  /** f32-weight linear layers multiply bf16-rounded operands with f32 sums (kernels/gemm.h gemm_bf16). */
  bf16Compute?: boolean;
  /** A quantized KV cache (native/runtime/llama.h KvQuantConfig). */
  kv?: { bits: number; group: number; sym: boolean; kChannel: boolean; block?: number; window: number; rotate: boolean; rotateSeed?: number };
  /** Activation bits and static scales (0: dynamic) per layer and input (nLayers × 4: qkv, o, gate/up, down). */
  actBits?: Int32Array;
  actScale?: Float32Array;
  /** Apply the rotation of this seed to down_proj's input (weights folded with it offline). */
  rotateDownSeed?: number;
}

/** Weights of the native runtime: f32, (out, in) row-major. @internal */
export interface NativeModelWeights {
  /** The embedding, head and linear layers may be 16-bit (Uint16Array of `dtype16` bits: the checkpoint's own, read where they lie). */
  embed: Float32Array | Uint16Array; finalNorm: Float32Array; classifier: Float32Array | Uint16Array;
  /** 1 (F16) or 2 (BF16) when any weight is a Uint16Array. */
  dtype16?: number;
  layers: {
    attnNorm: Float32Array; ffnNorm: Float32Array; q: Float32Array | Uint16Array; k: Float32Array | Uint16Array; v: Float32Array | Uint16Array; o: Float32Array | Uint16Array;
    gate: Float32Array | Uint16Array; up: Float32Array | Uint16Array; down: Float32Array | Uint16Array; qBias?: Float32Array; kBias?: Float32Array; vBias?: Float32Array;
    /** Linear layers kept packed (GPTQ 4-bit); their f32 entry is then an unused empty array. */
    packed?: Partial<Record<'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down', NativePackedLinear | NativeQBlock>>;
  }[];
  /** The output head in the integer-dot layout (GGUF Q8_0/Q4_0 heads); `classifier` is then unused. */
  classifierPacked?: NativeQBlock;
}

/** One training op's forward and backward (native/addon/addon_train.cpp). @internal */
export type NativeTrainOpJob = { op: string; mode: number } & Record<string, Float32Array | Int32Array | number | boolean | string>;

/** The architecture a trainer runs (native/train/model.h TrainShape). @internal */
export interface NativeTrainShape {
  dim: number; hiddenDim: number; nLayers: number; nHeads: number; nKvHeads: number; headDim: number; vocabSize: number;
  rmsEps: number; ropeStyle: number; invFreq: Float32Array;
}

/** A trainer's parameters or their gradients, f32, HF layouts ((out, in) linears). @internal */
export interface NativeTrainTensors {
  embed: Float32Array; finalNorm: Float32Array; head?: Float32Array;
  layers: { attnNorm: Float32Array; ffnNorm: Float32Array; q: Float32Array; k: Float32Array; v: Float32Array; o: Float32Array; gate: Float32Array; up: Float32Array; down: Float32Array; qBias?: Float32Array; kBias?: Float32Array; vBias?: Float32Array }[];
}

/** What a trainer fake-quantizes (native/train/model.h TrainQuant). @internal */
export interface NativeTrainQuant {
  weights?: { bits: number; groupSize: number; sym: boolean; codebook: number; clip: number; clipGrid: number; clipMaxShrink: number; clipNorm: number; zeroMin: number; scaleF16: boolean; signedMax: boolean };
  /** Which block linears the weight quantizer applies to (nLayers × 7: q k v o gate up down); absent: all. */
  weightsMask?: Uint8Array;
  actBits?: number;
  kv?: { bits: number; group: number; sym: boolean };
}

/** A native trainer: one forward (+ backward) over a batch per `run`. @internal */
export interface NativeTrainer {
  run(job: NativeThreads & { tokens: Int32Array; batch: number; seqLen: number; targets?: Int32Array; teacher?: Float32Array; scale: number; backward: boolean; logits?: Float32Array; mode: number }): NativeTask<number>;
  dispose(): void;
}

/** Calibration statistics buffers of one linear input. @internal */
export interface NativeStats { H: Float32Array; sumAbs: Float32Array; maxAbs: Float32Array }

/** A GPTQ 4-bit linear layer for the runtime (float activations). @internal */
export interface NativePackedLinear { qweight: Int32Array; scales: Float32Array; zeros: Uint8Array; gIdx: Int32Array; groups: number }

/**
 * A linear layer in the integer-dot kernel layout (native/kernels/qdot.h): 2-, 3-, 4- or 8-bit codes,
 * fp16 scales per block of `kb` input channels, offsets (or one fixed zero), an optional channel
 * permutation (act-order).
 */
export interface NativeQBlock {
  bits: 2 | 3 | 4 | 8;
  /** Channels per scale block (16 only with 8-bit codes: GGUF Q6_K). */
  kb: 16 | 32 | 64 | 128 | 256;
  inFeatures: number;
  outFeatures: number;
  /** Codes in tiles of 8 output columns (out padded to a multiple of 8): 2-bit crumbs (3-bit: crumbs + a high-bit plane), 4-bit nibbles or signed bytes. */
  q: Uint8Array;
  /** (out8/8, in/kb, 8) fp16 bit patterns; with `ds`, (out8/8, in/kb/sbk, 8): one per super-block. */
  d: Uint16Array;
  /** (out8/8, in/kb, 8) f32 offsets, or null: then the offset is −zeroFixed·d. */
  m: Float32Array | null;
  /**
   * Two-level scales (GGUF Q4_K / Q6_K, whose block scales are products fp16 cannot hold): a block's
   * scale is f32(d[super-block]) · ds[block], its offset −f32(mh[super-block]) · ms[block]; null otherwise.
   */
  ds?: Int8Array | null;
  mh?: Uint16Array | null;
  ms?: Int8Array | null;
  /** Blocks per super-block (1 unless two-level). */
  sbk?: number;
  zeroFixed: number;
  /** Channel order of the layout (act-order checkpoints), or null. */
  perm: Int32Array | null;
}

/** A native model instance (KV cache included). @internal */
export interface NativeModel {
  /** Bytes the KV cache holds per position (all layers, K and V, scales included). */
  kvBytesPerToken: number;
  /** The cache's fixed full-precision part (window, pending per-channel block). */
  kvFixedBytes: number;
  forward(job: NativeForwardJob): NativeTask<void>;
  calibrateBlock(job: NativeCalibrateBlockJob): NativeTask<void>;
  dispose(): void;
}

/** One forward pass: tokens at positions pos0…; the last `logitRows` positions' logits. @internal */
export interface NativeForwardJob extends NativeThreads {
  tokens: Int32Array;
  pos0: number;
  /** (logitRows × vocab), or null when no logits are wanted. */
  logits: Float32Array | null;
  logitRows: number;
  mode: number;
}

/** One decoder layer over calibration hidden states (samples × seqLen × dim, in place). @internal */
export interface NativeCalibrateBlockJob extends NativeThreads {
  layer: number;
  hidden: Float32Array;
  seqLen: number;
  stats: Partial<Record<'attn' | 'o' | 'mlp' | 'down', NativeStats>>;
  mode: number;
  onProgress?: (done: number, total: number) => void;
}

/** What the addon reports about itself and the machine. */
export interface NativeInfo {
  version: string;
  variant: 'cpu' | 'cuda';
  compiler: string;
  arch: string;
  /** The kernel family picked at run time: 'avx512', 'avx2', 'neon' or 'generic'. */
  isa: string;
  /** ISA variants compiled into this build. */
  compiledIsas: string[];
  features: Record<string, boolean>;
  cpuModel: string;
  physicalCores: number;
  logicalCores: number;
  threads: number;
  cuda: boolean;
}

/** CUDA toolkit/device state as seen by the CUDA variant. */
export interface NativeCudaInfo {
  compiled: boolean;
  runtimeVersion: number;
  driverVersion: number;
  deviceCount: number;
  devices: { name: string; major: number; minor: number; totalMemory: number; multiProcessors: number }[];
  error: string | null;
}

/** One load attempt and why it failed (or 'loaded'). */
export interface LoadAttempt {
  /** 'prebuilt': the CPU addon shipped in the package (prebuilds/); 'cpu': built on this machine. */
  variant: 'explicit' | 'cuda' | 'cpu' | 'prebuilt';
  path: string;
  result: string;
}

let cached: NativeAddon | null = null;
let attempts: LoadAttempt[] = [];
let loadError: LowbitError | null = null;

const root = (() => {
  // dist/lib/native.js -> package root; lib/native.ts (ts-node) -> package root
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..');
})();

/** The package root (where binding.gyp lives). @internal */
export function packageRoot(): string {
  return root;
}

function probeInChild(file: string): string | null {
  // A CUDA build that cannot find its driver may abort the process on load: try it elsewhere
  // first. It is used only when it sees a device; otherwise the CPU variant serves (same CPU code).
  const r = spawnSync(process.execPath, ['-e',
    `const a=require(${JSON.stringify(file)});a.info();const c=a.cudaInfo();process.stdout.write(JSON.stringify(c));`], {
    encoding: 'utf8', timeout: 30000, env: { ...process.env, LOWBIT_PROBE: '1' },
  });
  if (r.error) return `probe failed: ${r.error.message}`;
  if (r.status !== 0) return `probe exited ${String(r.status ?? r.signal)}: ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`;
  try {
    const c = JSON.parse(r.stdout) as NativeCudaInfo;
    if (c.deviceCount < 1) return `built, but not used: ${c.error ?? 'no CUDA device visible'}`;
  } catch {
    return `probe printed no device report: ${r.stdout.slice(0, 200)}`;
  }
  return null;
}

/**
 * The CUDA variant itself, for CUDA tests and benchmarks: loaded only when it is built and its
 * child-process probe sees a device; otherwise null with the reason.
 * @internal
 */
export function cudaAddon(): { addon: NativeAddon | null; reason: string } {
  const file = cudaAddonPath();
  if (!fs.existsSync(file)) return { addon: null, reason: `the CUDA variant is not built (${file}; run npm run build:cuda)` };
  const why = probeInChild(file);
  if (why) return { addon: null, reason: why };
  return { addon: tryRequire(file), reason: 'loaded' };
}

/** Path of the CUDA variant (built by `npm run build:cuda`). @internal */
export function cudaAddonPath(): string {
  return path.join(root, 'build-cuda', 'Release', 'lowbit_cuda.node');
}

function tryRequire(file: string): NativeAddon {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(file) as NativeAddon;
}

/** Load the addon (once). Throws LOWBIT_NO_ADDON listing every attempt and the next step. */
export function addon(): NativeAddon {
  if (cached) return cached;
  if (loadError) throw loadError;
  attempts = [];
  const explicit = process.env.LOWBIT_ADDON;
  if (explicit) {
    try {
      cached = tryRequire(path.resolve(explicit));
      attempts.push({ variant: 'explicit', path: explicit, result: 'loaded' });
      return cached;
    } catch (e) {
      attempts.push({ variant: 'explicit', path: explicit, result: (e as Error).message });
    }
  }
  const cudaFile = cudaAddonPath();
  if (process.env.LOWBIT_NO_CUDA === '1') {
    attempts.push({ variant: 'cuda', path: cudaFile, result: 'skipped: LOWBIT_NO_CUDA=1' });
  } else if (!fs.existsSync(cudaFile)) {
    attempts.push({ variant: 'cuda', path: cudaFile, result: 'not built (npm run build:cuda)' });
  } else {
    const why = probeInChild(cudaFile);
    if (why) attempts.push({ variant: 'cuda', path: cudaFile, result: why });
    else {
      try {
        cached = tryRequire(cudaFile);
        attempts.push({ variant: 'cuda', path: cudaFile, result: 'loaded' });
        return cached;
      } catch (e) {
        attempts.push({ variant: 'cuda', path: cudaFile, result: (e as Error).message });
      }
    }
  }
  // the CPU variant: a local build (build/Release, what a source install or `npm run build` makes)
  // wins over a prebuilt one (prebuilds/<platform>-<arch>/, shipped in the package); node-gyp-build
  // picks the file the way the install script did
  let cpuFile = path.join(root, 'build', 'Release', 'lowbit.node');
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const gypBuild = require('node-gyp-build') as { path(dir: string): string };
    cpuFile = gypBuild.path(root);
    cached = tryRequire(cpuFile);
    attempts.push({ variant: cpuFile.includes(`${path.sep}prebuilds${path.sep}`) ? 'prebuilt' : 'cpu', path: cpuFile, result: 'loaded' });
    return cached;
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    attempts.push({ variant: 'cpu', path: cpuFile, result: /No native build was found/.test(msg) ? `not built and no prebuilt addon for ${process.platform}-${process.arch} (the install script did not run or failed)` : `failed to load: ${msg}` });
  }
  const list = attempts.map((a) => `  - ${a.variant} (${a.path}): ${a.result}`).join('\n');
  loadError = new LowbitError('LOWBIT_NO_ADDON',
    `the lowbit native addon could not be loaded:\n${list}\n` +
    `Next step: build it with \`npm rebuild lowbit\` (inside the lowbit checkout: \`npm run build\`); ` +
    `it needs Node.js headers, Python 3, make and a C++17 compiler. npm 11 may have skipped lowbit's install script: ` +
    `approve it in your project with \`npm install-scripts approve lowbit\`, then run \`npm rebuild lowbit\`. ` +
    `\`npx lowbit doctor\` prints this report.`,
    { attempts });
  throw loadError;
}

/** True when the addon loads; never throws. */
export function hasAddon(): boolean {
  try { addon(); return true; } catch { return false; }
}

/** Every load attempt so far and its result (for `lowbit doctor`). */
export function loadAttempts(): LoadAttempt[] {
  if (!cached && !loadError) hasAddon();
  return attempts.slice();
}

/** Kernel mode: 'fast' (default) or 'ref' (every op through its plain reference). */
export type KernelMode = 'fast' | 'ref';
let kernelMode: KernelMode = process.env.LOWBIT_FORCE_REF === '1' ? 'ref' : 'fast';

/** Route every native op through its plain reference (`'ref'`) or the fast kernels (`'fast'`). */
export function setKernelMode(mode: KernelMode): void {
  const m: unknown = mode;
  if (m !== 'fast' && m !== 'ref') throw invalidOption('mode', '"fast" or "ref"', m);
  kernelMode = mode;
}
/** The current kernel mode. */
export function getKernelMode(): KernelMode {
  return kernelMode;
}
/** @internal */
export function modeId(): number {
  return kernelMode === 'ref' ? 1 : 0;
}

/** Dtype ids shared with native code. @internal */
export const DTYPE_ID = { F32: 0, F16: 1, BF16: 2 } as const;

/**
 * Map a whole file; returns null when the addon is unavailable (callers then read with fs).
 * @internal
 */
export function openMapping(file: string): NativeMapping | null {
  if (!hasAddon()) return null;
  return addon().mapFile(file);
}

/**
 * Convert F16/BF16/F32 bytes to a Float32Array with the native SIMD kernels (synchronous: use for
 * tensors of moderate size or off the hot path). Returns false when the addon is unavailable.
 * @internal
 */
export function convertToF32Sync(src: Uint8Array, dtype: 'F32' | 'F16' | 'BF16', dst: Float32Array): boolean {
  if (!hasAddon()) return false;
  addon().convertSync({ src, srcDtype: DTYPE_ID[dtype], dst, dstDtype: DTYPE_ID.F32, saturate: false, mode: modeId() });
  return true;
}

/**
 * The index of the first NaN/±Inf among `src` read as `dtype`, or -1, with the native vector scan
 * (kernels/convert.h first_nonfinite); null when the addon is unavailable.
 * @internal
 */
export function firstNonFiniteNative(src: Uint8Array, dtype: 'F32' | 'F16' | 'BF16'): number | null {
  if (!hasAddon()) return null;
  return addon().firstNonFiniteSync({ src, dtype: DTYPE_ID[dtype], mode: modeId() });
}

/**
 * ggml's Q8_0 / Q4_0 / Q4_1 / Q4_K block encoders, native and multi-threaded (bit-identical to the
 * TypeScript reference encoders of formats/ggml-blocks). Returns false when the addon is
 * unavailable, the kernel mode is 'ref', or a value is not finite / a scale overflows fp16 (the
 * reference encoder then reports which).
 * @internal
 */
export function ggmlEncodeNative(type: 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q4_K', x: Float32Array, out: Uint8Array): boolean {
  if (!hasAddon() || kernelMode === 'ref') return false;
  return addon().ggmlEncodeSync({ type: type === 'Q8_0' ? 0 : type === 'Q4_0' ? 1 : type === 'Q4_1' ? 2 : 3, x, out });
}

/**
 * Run a native task with an AbortSignal: rejects with `signal.reason` wrapped as LOWBIT_ABORTED.
 * @internal
 */
export async function runTask<T>(task: NativeTask<T> | (() => NativeTask<T>), signal: AbortSignal | undefined, what: string): Promise<T> {
  // The caller's stack, captured before crossing into native code (STYLE.md §2 "Errors").
  const site = new Error();
  const rethrow = (e: unknown): never => {
    const le = toLowbitError(e);
    if (site.stack) le.stack = `${le.name} [${le.code}]: ${le.message}\n${site.stack.split('\n').slice(1).join('\n')}`;
    throw le;
  };
  let t: NativeTask<T>;
  try {
    t = typeof task === 'function' ? task() : task;
  } catch (e) {
    return rethrow(e);
  }
  const onAbort = () => t.cancel();
  if (signal) {
    if (signal.aborted) t.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
  }
  try {
    return await t.promise;
  } catch (e) {
    if (signal?.aborted) throw new LowbitError('LOWBIT_ABORTED', `${what}: aborted by signal (no output written)`, undefined, { cause: signal.reason });
    return rethrow(e);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
