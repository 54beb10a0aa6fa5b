/**
 * The typed face of the run-time quantizers (native/kernels/rtquant.h): KV-cache rows, activation
 * fake quantization, and the orthogonal rotations (Hadamard ⊗ …) that `transform: rotate` folds into
 * weights and the runtime applies online.
 */
import { LowbitError } from '../errors';
import { addon, modeId, runTask } from '../native';
import { invalidOption } from '../config/validate';
import { checkThreads, nativeThreads } from '../config/run';

/** 'ref' forces the plain reference; default: the current kernel mode. */
export type KernelModeOption = 'fast' | 'ref' | undefined;
const mode = (m: KernelModeOption): number => (m === 'ref' ? 1 : m === 'fast' ? 0 : modeId());

/** The shape of KV rows: `rows` rows of `n` values, `bits` (2, 4, 8), groups of `group` along a row (or per channel). */
export interface KvRowShape { rows: number; n: number; bits: 2 | 4 | 8; group: number; sym?: boolean; channel?: boolean }

/** Encode rows as the KV cache stores them: codes (rows, n·bits/8) and {scale, offset} fp16 pairs. */
export function kvQuantize(x: Float32Array, s: KvRowShape): { codes: Uint8Array; sz: Uint16Array } {
  if (x.length < s.rows * s.n) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `kvQuantize: x has ${x.length} values, expected ${s.rows * s.n}`);
  return addon().kvQuantize({ ...s, x });
}

/** Decode KV rows (the inverse of {@link kvQuantize}, up to rounding). */
export function kvDequantize(codes: Uint8Array, sz: Uint16Array, s: KvRowShape): Float32Array {
  return addon().kvDequantize({ ...s, codes, sz });
}

/** Per-group Σ q·code over one row of codes (the attention kernel's inner product). */
export function kvDotGroups(q: Float32Array, codes: Uint8Array, s: Omit<KvRowShape, 'rows'>, m?: KernelModeOption): Float32Array {
  return addon().kvDotGroups({ ...s, rows: 1, q, codes, mode: mode(m) });
}

/** y[i] += w[i / group] · code[i] over one row of codes (the attention kernel's accumulation). */
export function kvAxpyGroups(w: Float32Array, codes: Uint8Array, y: Float32Array, s: Omit<KvRowShape, 'rows'>, m?: KernelModeOption): void {
  addon().kvAxpyGroups({ ...s, rows: 1, w, codes, y, mode: mode(m) });
}

/** Fake-quantize rows in place: symmetric `bits`, a scale per row (dynamic) or the one given (static). */
export function actFakeQuant(x: Float32Array, rows: number, n: number, bits: number, scale?: number, m?: KernelModeOption): void {
  if (x.length < rows * n) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `actFakeQuant: x has ${x.length} values, expected ${rows * n}`);
  addon().actFakeQuant({ x, rows, n, bits, ...(scale !== undefined ? { scale } : {}), mode: mode(m) });
}

/** How the rotation of length n is built: n = m · p (p a power of two); `hadamard`: H_m is a Hadamard matrix (else random orthogonal). */
export interface RotationInfo { n: number; p: number; m: number; hadamard: boolean; matrix?: Float64Array }

export function rotationInfo(n: number, seed: number, withMatrix = false): RotationInfo {
  if (!Number.isSafeInteger(n) || n < 1 || n > 65536) throw invalidOption('n', '1…65536', n);
  if (withMatrix && n > 8192) throw invalidOption('n', 'at most 8192 with the explicit matrix', n);
  return addon().rotationInfo({ n, seed, matrix: withMatrix });
}

/** x ← Q x for each of `rows` contiguous vectors of length n (Q = H · D, kernels/rtquant.h), in place. */
export async function rotateRows(x: Float32Array, rows: number, n: number, seed: number, opts: { mode?: KernelModeOption; threads?: number; signal?: AbortSignal } = {}): Promise<void> {
  if (!Number.isSafeInteger(seed) || seed < 0) throw invalidOption('seed', 'a non-negative integer', seed);
  if (x.length < rows * n) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `rotateRows: x has ${x.length} values, expected ${rows * n}`);
  const threads = checkThreads(opts.threads);
  await runTask(() => addon().rotate({ x, rows, n, seed, mode: mode(opts.mode), threads: nativeThreads(threads) }), opts.signal, 'rotate');
}

/** A standalone quantized KV cache (the runtime's, native/runtime/kv_cache.h): for tests and the bench. */
export interface KvCacheHandle {
  readonly bytesPerToken: number;
  readonly fixedBytes: number;
  /** Write k, v (n × kvHeads·headDim) at pos0… of `layer`; out (n × heads·headDim) = causal attention of q over 0 … pos0+n−1. */
  attend(layer: number, q: Float32Array, k: Float32Array, v: Float32Array, n: number, pos0: number, out: Float32Array, m?: KernelModeOption): void;
}

export function createKvCache(shape: { layers: number; seqLen: number; nHeads: number; nKvHeads: number; headDim: number },
  kv: { bits: number; group: number; sym: boolean; axis: 'token' | 'channel'; block: number; window: number }): KvCacheHandle {
  const c = addon().createKvCache({ ...shape, kv: { bits: kv.bits, group: kv.group, sym: kv.sym, kChannel: kv.axis === 'channel', block: kv.block, window: kv.window, rotate: false } });
  return {
    bytesPerToken: c.bytesPerToken,
    fixedBytes: c.fixedBytes,
    attend: (layer, q, k, v, n, pos0, out, m) => { c.attend({ layer, q, k, v, n, pos0, out, mode: mode(m) }); },
  };
}
