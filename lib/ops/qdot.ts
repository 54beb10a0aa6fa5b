/**
 * The integer-dot path (W4A8 / W8A8): linear layers repacked at load into lowbit's kernel layout
 * and multiplied against activations quantized to int8 per block of input channels, with int32
 * accumulation (AVX2 `vpmaddubsw`; a portable kernel elsewhere). See native/kernels/qdot.h for the
 * layout and the arithmetic. Files on disk keep their formats: this is an in-memory layout.
 */
import { LowbitError } from '../errors';
import { addon, modeId, runTask, type NativeQBlock } from '../native';
import { invalidOption } from '../config/validate';
import { checkThreads, nativeThreads } from '../config/run';
import { f16BitsToF32 } from '../formats/dtype';
import { GGML_TYPES } from '../formats/gguf';
import type { GptqInt4Weights } from './qmatmul';

export type QBlock = NativeQBlock;

/** ggml block types that run in the integer-dot layout. */
export const GGML_QBLOCK_TYPES = ['Q4_0', 'Q4_1', 'Q8_0', 'Q4_K', 'Q6_K'] as const;
export type GgmlQBlockType = (typeof GGML_QBLOCK_TYPES)[number];

/** A GPTQ linear layer of any width lowbit writes (2, 3, 4, 8 bits), zeros as true zeros. */
export interface GptqWeights extends Omit<GptqInt4Weights, 'qweight'> {
  bits: number;
  /** (in·bits/32, out) */
  qweight: Int32Array;
}

/** Options of the integer-dot products ({@link qdotLinear}, {@link qdotLinearMulti}, {@link quantizeActivations}). */
export interface QdotOptions {
  /** 'ref' forces the reference kernel; default: the current kernel mode. */
  mode?: 'fast' | 'ref';
  /** Compute threads for this call (1–1024). @default the process default (setThreads, LOWBIT_THREADS, physical cores) */
  threads?: number;
}

/** Options of the repacks ({@link qblockFromGptq}, {@link qblockFromGgml}). */
export interface QblockRepackOptions {
  /** Compute threads for this call (1–1024). @default the process default (setThreads, LOWBIT_THREADS, physical cores) */
  threads?: number;
}

/**
 * Repack a GPTQ layer (consecutive or act-order groups of equal size, in % 32 == 0, group size a
 * multiple of 32) into the integer-dot layout. 2- and 3-bit codes go to the 4-bit layout (read as
 * nibbles). Throws LOWBIT_UNSUPPORTED naming the reason when the layout can't hold the layer.
 */
export async function qblockFromGptq(w: GptqWeights, signal?: AbortSignal, options: QblockRepackOptions = {}): Promise<QBlock> {
  const threads = checkThreads(options.threads);
  const { bits, inFeatures: inF, outFeatures: out, groups } = w;
  if (![2, 3, 4, 8].includes(bits)) throw invalidOption('bits', '2, 3, 4 or 8', bits);
  if (w.qweight.length !== (inF * bits / 32) * out || w.scales.length !== groups * out || w.zeros.length !== groups * out || w.gIdx.length !== inF) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `qblockFromGptq: tensor sizes disagree with in ${inF}, out ${out}, groups ${groups}, bits ${bits}`);
  }
  return runTask(() => addon().qblockFromGptq({
    bits, inFeatures: inF, outFeatures: out, groups, qweight: w.qweight, scales: w.scales, zeros: w.zeros, gIdx: w.gIdx, threads: nativeThreads(threads),
  }), signal, 'qblockFromGptq');
}

/**
 * Repack an (out × in) ggml tensor's blocks: Q4_0 / Q4_1 / Q8_0 (in % 32 == 0) and the k-quants Q4_K
 * (4-bit codes, f32 scale and offset per 32) and Q6_K (codes − 32 as 8-bit, f32 scale per 16;
 * in % 256 == 0) — the values ggml's dequantization gives, exactly.
 */
export async function qblockFromGgml(type: GgmlQBlockType, data: Uint8Array, outFeatures: number, inFeatures: number, signal?: AbortSignal,
  options: QblockRepackOptions = {}): Promise<QBlock> {
  const threads = checkThreads(options.threads);
  if (!GGML_QBLOCK_TYPES.includes(type)) throw invalidOption('type', GGML_QBLOCK_TYPES.join(', '), type);
  return runTask(() => addon().qblockFromGgml({ type: GGML_TYPES[type].id, data, outFeatures, inFeatures, threads: nativeThreads(threads) }), signal, 'qblockFromGgml');
}

function modeOf(opts: QdotOptions): number {
  return opts.mode === 'ref' ? 1 : opts.mode === 'fast' ? 0 : modeId();
}

/** y (rows × out) = x (rows × in) · Wᵀ through the integer-dot kernel (x quantized to int8 per block). */
export async function qdotLinear(w: QBlock, x: Float32Array, rows: number, y?: Float32Array, opts: QdotOptions = {}): Promise<Float32Array> {
  const threads = checkThreads(opts.threads);
  if (!Number.isInteger(rows) || rows < 1) throw invalidOption('rows', 'a positive integer', rows);
  if (x.length !== rows * w.inFeatures) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `qdotLinear: x has ${x.length} elements, expected ${rows} × ${w.inFeatures}`);
  const yy = y ?? new Float32Array(rows * w.outFeatures);
  if (yy.length !== rows * w.outFeatures) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `qdotLinear: y has ${yy.length} elements, expected ${rows} × ${w.outFeatures}`);
  await runTask(() => addon().qdotLinear({ w, x, rows, y: yy, mode: modeOf(opts), threads: nativeThreads(threads) }), undefined, 'qdotLinear');
  return yy;
}

/**
 * Several matrices applied to the same x (q/k/v, gate/up): one int8 quantization of x and one
 * parallel region over all their outputs — what the runtime does per layer. The matrices must agree
 * on inFeatures, kb and channel order (else LOWBIT_INVALID_OPTION); 1 to 8 of them.
 */
export async function qdotLinearMulti(ws: QBlock[], x: Float32Array, rows: number, opts: QdotOptions = {}): Promise<Float32Array[]> {
  const threads = checkThreads(opts.threads);
  if (!Number.isInteger(rows) || rows < 1) throw invalidOption('rows', 'a positive integer', rows);
  if (ws.length < 1 || ws.length > 8) throw invalidOption('ws', '1 to 8 matrices', ws.length);
  for (const w of ws)
    if (x.length !== rows * w.inFeatures) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `qdotLinearMulti: x has ${x.length} elements, expected ${rows} × ${w.inFeatures}`);
  const ys = ws.map((w) => new Float32Array(rows * w.outFeatures));
  await runTask(() => addon().qdotLinear({ w: ws, x, rows, y: ys, mode: modeOf(opts), threads: nativeThreads(threads) }), undefined, 'qdotLinearMulti');
  return ys;
}

/** The activation quantizer of the integer path, exposed for tests: int8 codes, scale and code sum per block. */
export function quantizeActivations(x: Float32Array, rows: number, inFeatures: number, kb: number, perm: Int32Array | null = null, opts: QdotOptions = {}):
  { xq: Int8Array; sx: Float32Array; sum: Int32Array } {
  const threads = checkThreads(opts.threads);
  if (x.length !== rows * inFeatures) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `quantizeActivations: x has ${x.length} elements, expected ${rows} × ${inFeatures}`);
  return addon().quantizeActs({ x, rows, inFeatures, kb, perm, mode: modeOf(opts), threads: nativeThreads(threads) });
}

/** The weight W[n, k] of a QBlock at layout position kLayout (channel perm[kLayout] of the source when permuted), for tests and tools. */
export function qblockWeight(w: QBlock, n: number, kLayout: number): number {
  const B = w.inFeatures / w.kb, b = Math.floor(kLayout / w.kb);
  const T = Math.floor(n / 8), j = n % 8, k = kLayout;
  let code: number;
  if (w.bits === 8) code = (w.q[(T * (w.inFeatures / 4) + Math.floor(k / 4)) * 32 + j * 4 + (k % 4)] << 24) >> 24;
  else if (w.bits === 2) code = (w.q[(T * (w.inFeatures / 16) + Math.floor(k / 16)) * 32 + j * 4 + (k % 4)] >> (2 * Math.floor((k % 16) / 4))) & 3;
  else if (w.bits === 3) {
    const u = (T * (w.inFeatures / 16) + Math.floor(k / 16)) * 48, s = Math.floor((k % 16) / 4), p = j * 4 + (k % 4);
    code = ((w.q[u + p] >> (2 * s)) & 3) | (((w.q[u + 32 + (p % 16)] >> (4 * Math.floor(p / 16) + s)) & 1) << 2);
  }
  else {
    const byte = w.q[(T * (w.inFeatures / 8) + Math.floor(k / 8)) * 32 + j * 4 + (k % 4)];
    code = k % 8 < 4 ? byte & 15 : byte >> 4;
  }
  const { d, m } = qblockScale(w, (T * B + b) * 8 + j);
  return d * code + m;
}

/**
 * The scale and offset of scale index si ((tile · blocks + block) · 8 + column) as the kernels use
 * them (f32 values; two-level scales multiplied in f32 as ggml does).
 */
export function qblockScale(w: QBlock, si: number): { d: number; m: number } {
  const B = w.inFeatures / w.kb, S = w.sbk ?? 1;
  const tb = Math.floor(si / 8), sup = (Math.floor(tb / B) * (B / S) + Math.floor((tb % B) / S)) * 8 + (si % 8);
  const d = w.ds ? Math.fround(f16BitsToF32(w.d[sup]) * w.ds[si]) : f16BitsToF32(w.d[si]);
  const m = w.ms && w.mh ? -Math.fround(f16BitsToF32(w.mh[sup]) * w.ms[si]) : w.m ? w.m[si] : -w.zeroFixed * d;
  return { d, m };
}

/** Bytes of the codes of an `out` × `inFeatures` matrix in the kernel layout (kernels/qdot.h: rows padded to 8). */
export function qblockCodeBytes(bits: 2 | 3 | 4 | 8, out: number, inFeatures: number): number {
  const perRow = bits === 2 ? inFeatures / 4 : bits === 3 ? (inFeatures / 16) * 6 : bits === 4 ? inFeatures / 2 : inFeatures;
  return Math.ceil(out / 8) * 8 * perRow;
}

/** Bytes of a QBlock's codes, scales and offsets (what a product reads). */
export function qblockBytes(w: QBlock): number {
  return w.q.byteLength + w.d.byteLength + (w.m ? w.m.byteLength : 0) + (w.ds ? w.ds.byteLength : 0) + (w.mh ? w.mh.byteLength : 0) + (w.ms ? w.ms.byteLength : 0);
}
