/**
 * A deliberately plain GPTQ / AWQ-GEMM decoder for tests, written from docs/formats.md §1, §4.3 and
 * §5.2 alone (it does not import lib/formats). It reads single bits out of the little-endian bytes,
 * so it is slow and obviously correct: use it on small tensors only.
 *
 *   W[n, k] = f32(scale[g, n]) · (code(k, n) − zero(g, n))      (n = output, k = input channel)
 *
 * GPTQ: every run of 32 consecutive values (input channels down a qweight column, output channels
 * along a qzeros row) occupies `bits` consecutive int32 words; value i of the run is bits
 * [i·bits, i·bits + bits) of those words read as one little-endian bit stream (word 0 bit 0 first).
 */

/** Raw tensors and parameters of one GPTQ module. Byte arrays are little-endian tensor data. */
export interface PlainGptqInput {
  /** I32 [cols·bits/32, rows]. */
  qweight: Uint8Array;
  /** I32 [groups, rows·bits/32]. */
  qzeros: Uint8Array;
  /** F16 [groups, rows]. */
  scales: Uint8Array;
  /** I32 [cols]. */
  gIdx: Uint8Array;
  bits: number;
  /** out_features. */
  rows: number;
  /** in_features. */
  cols: number;
  groups: number;
  /** "gptq" = stored zero + 1; "gptq_v2" = stored zero. */
  format: 'gptq' | 'gptq_v2';
}

/** Raw tensors and parameters of one AWQ GEMM module. */
export interface PlainAwqInput {
  /** I32 [cols, rows/8]. */
  qweight: Uint8Array;
  /** I32 [groups, rows/8]. */
  qzeros: Uint8Array;
  /** F16 [groups, rows]. */
  scales: Uint8Array;
  rows: number;
  cols: number;
  groupSize: number;
}

/** Decoded result, all (rows, cols) row-major except zeros (groups, rows). */
export interface PlainDecoded {
  weight: Float32Array;
  codes: number[];
  zeros: number[];
}

/** Bit `bit` (0 = least significant) of int32 word number `word` of little-endian `bytes`. */
function bitOfWord(bytes: Uint8Array, word: number, bit: number): number {
  const byte = bytes[word * 4 + Math.floor(bit / 8)];
  return Math.floor(byte / 2 ** (bit % 8)) % 2;
}

/** Value `index` of a run stored in the words `runWords` (in stream order). */
function runValue(bytes: Uint8Array, runWords: number[], index: number, bits: number): number {
  let value = 0;
  for (let t = 0; t < bits; t++) {
    const pos = index * bits + t;
    const word = runWords[Math.floor(pos / 32)];
    value += bitOfWord(bytes, word, pos % 32) * 2 ** t;
  }
  return value;
}

/** Signed little-endian int32 number `i` of `bytes`. */
function int32At(bytes: Uint8Array, i: number): number {
  const u = bytes[4 * i] + bytes[4 * i + 1] * 256 + bytes[4 * i + 2] * 65536 + bytes[4 * i + 3] * 16777216;
  return u >= 2 ** 31 ? u - 2 ** 32 : u;
}

/** Little-endian IEEE binary16 number `i` of `bytes`, as a JS number. */
export function plainF16At(bytes: Uint8Array, i: number): number {
  const h = bytes[2 * i] + bytes[2 * i + 1] * 256;
  const sign = h >= 32768 ? -1 : 1;
  const exponent = Math.floor(h / 1024) % 32;
  const fraction = h % 1024;
  if (exponent === 0) return sign * (fraction / 1024) * 2 ** -14;
  if (exponent === 31) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** Dequantise a GPTQ module (§4.3). */
export function plainDecodeGptq(p: PlainGptqInput): PlainDecoded {
  const { bits, rows, cols, groups } = p;
  const zeroWordsPerRow = (rows * bits) / 32;
  const zeros: number[] = [];
  for (let g = 0; g < groups; g++) {
    for (let n = 0; n < rows; n++) {
      const run = Math.floor(n / 32);
      const runWords: number[] = [];
      for (let j = 0; j < bits; j++) runWords.push(g * zeroWordsPerRow + run * bits + j);
      const stored = runValue(p.qzeros, runWords, n % 32, bits);
      zeros.push(p.format === 'gptq' ? stored + 1 : stored);
    }
  }
  const codes = new Array<number>(rows * cols);
  const weight = new Float32Array(rows * cols);
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < cols; k++) {
      const run = Math.floor(k / 32);
      const runWords: number[] = [];
      for (let j = 0; j < bits; j++) runWords.push((run * bits + j) * rows + n);
      const code = runValue(p.qweight, runWords, k % 32, bits);
      const g = int32At(p.gIdx, k);
      const scale = plainF16At(p.scales, g * rows + n);
      const zero = zeros[g * rows + n];
      codes[n * cols + k] = code;
      weight[n * cols + k] = Math.fround(scale * (code - zero));
    }
  }
  return { weight, codes, zeros };
}

/** Dequantise an AWQ GEMM module (§5.2, §5.3). */
export function plainDecodeAwq(p: PlainAwqInput): PlainDecoded {
  const ORDER = [0, 2, 4, 6, 1, 3, 5, 7]; // nibble i of a word holds output channel 8c + ORDER[i]
  const { rows, cols } = p;
  const g = p.groupSize === -1 ? cols : p.groupSize;
  const groups = cols / g;
  const wordsPerRow = rows / 8;
  const nibble = (bytes: Uint8Array, row: number, n: number): number => {
    const word = row * wordsPerRow + Math.floor(n / 8);
    const i = ORDER.indexOf(n % 8);
    return runValue(bytes, [word], i, 4);
  };
  const zeros: number[] = [];
  for (let grp = 0; grp < groups; grp++) for (let n = 0; n < rows; n++) zeros.push(nibble(p.qzeros, grp, n));
  const codes = new Array<number>(rows * cols);
  const weight = new Float32Array(rows * cols);
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < cols; k++) {
      const grp = Math.floor(k / g);
      const code = nibble(p.qweight, k, n);
      codes[n * cols + k] = code;
      weight[n * cols + k] = Math.fround(plainF16At(p.scales, grp * rows + n) * (code - zeros[grp * rows + n]));
    }
  }
  return { weight, codes, zeros };
}
