/** Byte-level mutations shared by the binary targets: lies in integer fields, cuts, flips, non-finite floats. */
import type { FuzzRng } from './rng';

/** Lies for a u64 length or count: near the truth, zero, the file size, the remaining bytes, 2^31/2^32/2^53/2^63/2^64 − 1. */
export function lieU64(rng: FuzzRng, truth: bigint, fileSize: number, at: number): bigint {
  const left = BigInt(Math.max(0, fileSize - at));
  return rng.pick([
    0n, 1n, truth + 1n, truth - 1n, truth * 2n, truth + 8n, left, left + 1n, BigInt(fileSize), 1_000_001n, 2n ** 31n, 2n ** 32n,
    2n ** 53n + 1n, 2n ** 62n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n, 100_000_001n,
  ]);
}

/** Lies for a u32 field (type id, n_dims, count). */
export function lieU32(rng: FuzzRng, truth: number): number {
  return rng.pick([0, 1, truth + 1, truth - 1, 5, 9, 13, 99, 255, 0x7fffffff, 0x80000000, 0xffffffff, 0x10000]) >>> 0;
}

/** Interesting signed 32-bit values (llama2.c header fields). */
export function lieI32(rng: FuzzRng, truth: number): number {
  return rng.pick([0, -1, 1, 2, 3, 7, truth + 1, truth - 1, truth * 2, -truth, 0x7fffffff, -0x80000000, 1 << 16, 1 << 20, 1 << 24, 1 << 30, 4096]) | 0;
}

/** `bytes` with `n` random bit flips in [lo, hi). */
export function flipBits(rng: FuzzRng, bytes: Uint8Array, n: number, lo = 0, hi = bytes.length): { bytes: Uint8Array; where: number[] } {
  const out = bytes.slice();
  const where: number[] = [];
  if (hi <= lo) return { bytes: out, where };
  for (let i = 0; i < n; i++) {
    const at = lo + rng.int(hi - lo);
    if (rng.chance(0.5)) out[at] ^= 1 << rng.int(8);
    else out[at] = rng.pick([0, 0xff, 0x7f, 0x80, rng.int(256)]);
    where.push(at);
  }
  return { bytes: out, where };
}

/** A cut point near one of `boundaries` (the boundary, or one byte either side), clamped to the file. */
export function cutNear(rng: FuzzRng, boundaries: readonly number[], size: number): number {
  const b = rng.pick(boundaries) + rng.pick([0, 0, -1, 1]);
  return Math.max(0, Math.min(size - 1, b));
}

/** Bit patterns of NaN, +Inf, −Inf and a signalling NaN per float dtype (little-endian). */
const NON_FINITE: Record<string, number[][]> = {
  F32: [[0x00, 0x00, 0xc0, 0x7f], [0x00, 0x00, 0x80, 0x7f], [0x00, 0x00, 0x80, 0xff], [0x01, 0x00, 0x80, 0x7f]],
  F16: [[0x00, 0x7e], [0x00, 0x7c], [0x00, 0xfc], [0x01, 0x7c]],
  BF16: [[0xc0, 0x7f], [0x80, 0x7f], [0x80, 0xff], [0x81, 0x7f]],
};

/** Write a NaN or an infinity of `dtype` at element `index` of the data starting at `at`; false when `dtype` is not a float. */
export function plantNonFinite(rng: FuzzRng, bytes: Uint8Array, dtype: string, at: number, index: number): string | null {
  const patterns = NON_FINITE[dtype] as number[][] | undefined;
  if (!patterns) return null;
  const k = rng.int(patterns.length);
  bytes.set(patterns[k], at + index * patterns[k].length);
  return ['NaN', '+Inf', '-Inf', 'signalling NaN'][k];
}

/** Little-endian field writers on a copy. */
export function withU64(bytes: Uint8Array, at: number, v: bigint): Uint8Array {
  const out = Buffer.from(bytes);
  out.writeBigUInt64LE(BigInt.asUintN(64, v), at);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

export function withU32(bytes: Uint8Array, at: number, v: number): Uint8Array {
  const out = Buffer.from(bytes);
  out.writeUInt32LE(v >>> 0, at);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

export function withI32(bytes: Uint8Array, at: number, v: number): Uint8Array {
  const out = Buffer.from(bytes);
  out.writeInt32LE(v | 0, at);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Garbage to append: a few bytes, a block, or more. */
export function junk(rng: FuzzRng): Uint8Array {
  return rng.bytes(rng.pick([1, 3, 4, 8, 64, 4096]));
}
