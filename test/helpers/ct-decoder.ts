/**
 * A deliberately plain compressed-tensors decoder for tests, written from the format's description
 * alone (it does not import lib/formats). It reads single bits out of the little-endian bytes, so
 * it is slow and obviously correct: use it on small tensors only.
 *
 *   W[n, k] = f32(scale[n, g]) · (q[n, k] − zp[n, g])      (n = output, k = input channel)
 *
 * pack-quantized: row n of `weight_packed` is one little-endian bit stream (word 0 bit 0 first);
 * value k is bits [k·b, k·b + b) of it, stored as q + 2^(b−1). `weight_zero_point` (asymmetric
 * only) holds column g as one such stream running down the output channels, stored as zp + 2^(b−1).
 * g = g_idx[k] when `weight_g_idx` is given, else k div group size. int-quantized: `weight` is q
 * itself as int8, one scale per output channel.
 */
import { plainF16At } from './gptq-decoder';

/** Raw tensors and parameters of one pack-quantized module. Byte arrays are little-endian tensor data. */
export interface PlainCtPackedInput {
  /** I32 [rows, ceil(cols·bits/32)]. */
  weightPacked: Uint8Array;
  /** F16 [rows, groups]. */
  weightScale: Uint8Array;
  /** I32 [ceil(rows·bits/32), groups]; absent when symmetric. */
  weightZeroPoint?: Uint8Array;
  /** I32 [cols]; absent unless actorder "group". */
  weightGIdx?: Uint8Array;
  bits: number;
  /** out_features. */
  rows: number;
  /** in_features. */
  cols: number;
  /** −1 = one group per output channel. */
  groupSize: number;
}

/** Raw tensors of one int-quantized (int8, per-channel) module. */
export interface PlainCtInt8Input {
  /** I8 [rows, cols]. */
  weight: Uint8Array;
  /** F16 [rows, 1]. */
  weightScale: Uint8Array;
  rows: number;
  cols: number;
}

/** Decoded result: weight and signed codes (rows, cols) row-major; signed zero points (rows, groups). */
export interface PlainCtDecoded {
  weight: Float32Array;
  q: number[];
  zp: number[];
  /** Group of each input channel. */
  groupOf: number[];
}

/** Bit `bit` (0 = least significant) of int32 word number `word` of little-endian `bytes`. */
function bitOfWord(bytes: Uint8Array, word: number, bit: number): number {
  const byte = bytes[word * 4 + Math.floor(bit / 8)];
  return Math.floor(byte / 2 ** (bit % 8)) % 2;
}

/** Value `index` (b bits, unsigned) of the bit stream whose j-th word is word number `wordOf(j)`. */
function streamValue(bytes: Uint8Array, wordOf: (j: number) => number, index: number, bits: number): number {
  let value = 0;
  for (let t = 0; t < bits; t++) {
    const pos = index * bits + t;
    value += bitOfWord(bytes, wordOf(Math.floor(pos / 32)), pos % 32) * 2 ** t;
  }
  return value;
}

/** Signed little-endian int32 number `i` of `bytes`. */
function int32At(bytes: Uint8Array, i: number): number {
  const u = bytes[4 * i] + bytes[4 * i + 1] * 256 + bytes[4 * i + 2] * 65536 + bytes[4 * i + 3] * 16777216;
  return u >= 2 ** 31 ? u - 2 ** 32 : u;
}

/** Dequantise a pack-quantized module. */
export function plainDecodeCtPacked(p: PlainCtPackedInput): PlainCtDecoded {
  const { bits, rows, cols } = p;
  const offset = 2 ** (bits - 1);
  const groupSize = p.groupSize === -1 ? cols : p.groupSize;
  const groups = cols / groupSize;
  const wordsPerRow = Math.ceil((cols * bits) / 32);
  const zp: number[] = [];
  for (let n = 0; n < rows; n++) {
    for (let g = 0; g < groups; g++) {
      const zpBytes = p.weightZeroPoint;
      zp.push(zpBytes ? streamValue(zpBytes, (j) => j * groups + g, n, bits) - offset : 0);
    }
  }
  const groupOf: number[] = [];
  for (let k = 0; k < cols; k++) groupOf.push(p.weightGIdx ? int32At(p.weightGIdx, k) : Math.floor(k / groupSize));
  const q: number[] = [];
  const weight = new Float32Array(rows * cols);
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < cols; k++) {
      const value = streamValue(p.weightPacked, (j) => n * wordsPerRow + j, k, bits) - offset;
      const g = groupOf[k];
      q.push(value);
      weight[n * cols + k] = Math.fround(plainF16At(p.weightScale, n * groups + g) * (value - zp[n * groups + g]));
    }
  }
  return { weight, q, zp, groupOf };
}

/** Dequantise an int-quantized (int8 weight, one scale per output channel) module. */
export function plainDecodeCtInt8(p: PlainCtInt8Input): PlainCtDecoded {
  const { rows, cols } = p;
  const q: number[] = [];
  const weight = new Float32Array(rows * cols);
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < cols; k++) {
      const byte = p.weight[n * cols + k];
      const value = byte >= 128 ? byte - 256 : byte;
      q.push(value);
      weight[n * cols + k] = Math.fround(plainF16At(p.weightScale, n) * value);
    }
  }
  return { weight, q, zp: new Array<number>(rows).fill(0), groupOf: new Array<number>(cols).fill(0) };
}
