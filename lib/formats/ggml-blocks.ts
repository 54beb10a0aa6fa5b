/**
 * ggml block types (docs/formats.md §7): bit-exact reference encoders for Q8_0, Q4_0 and Q4_1, and
 * decoders for Q8_0, Q4_0, Q4_1, Q4_K and Q6_K.
 *
 * Layouts (blocks laid out consecutively along `ne[0]`; fp16 = IEEE binary16, little-endian):
 *   Q8_0  { fp16 d; i8 qs[32] }                        34 B / 32 values (8.5 bits/weight)
 *         value[i] = d · qs[i]
 *   Q4_0  { fp16 d; u8 qs[16] }                        18 B / 32 values (4.5 bits/weight)
 *         code[j] = qs[j] & 0x0F, code[j + 16] = qs[j] >> 4 (low nibble = first half of the block)
 *         value[i] = d · (code[i] − 8)
 *   Q4_1  { fp16 d; fp16 m; u8 qs[16] }                20 B / 32 values (5 bits/weight), nibbles as Q4_0
 *         value[i] = d · code[i] + m
 *   Q4_K  { fp16 d; fp16 dmin; u8 scales[12]; u8 qs[128] }   144 B / 256 values (4.5 bits/weight)
 *         value(v) = d · sc_j · code(v) − dmin · m_j,  j = v div 32 (6-bit sc/m packed, §7.4)
 *   Q6_K  { u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d }   210 B / 256 values (6.5625 bits/weight)
 *         value(v) = d · scales[v div 16] · (q(v) − 32)   (q bit positions §7.5)
 *
 * The encoders reproduce `quantize_row_q{8_0,4_0,4_1}_ref` of ggml-org/llama.cpp
 * (ggml/src/ggml-quants.c) bit for bit, following §7's rules: every arithmetic step is done in f32
 * (emulated with Math.fround after each operation), the inverse scale comes from the f32 `d` (not
 * the stored fp16), C casts to int truncate toward zero, C `roundf` rounds half away from zero,
 * and `d` (and Q4_1's `m`) are stored as fp16 with round-to-nearest-even. The decoders follow
 * ggml's `dequantize_row_*` operation order in f32, so they give the same f32 bits as ggml.
 *
 * Choices: a non-finite input value is LOWBIT_NUMERICAL naming the tensor and element (ggml's
 * result there is meaningless), and a stored fp16 scale that would overflow to ±inf (|d| or
 * |min| ≥ 65520) is LOWBIT_NUMERICAL too, as for F16 tensors (§1). Block sizes and byte sizes
 * come from {@link GGML_TYPES} in ./gguf (blockSize, typeSize), which is the one table of §7.
 */
import { LowbitError } from '../errors';
import { invalidOption } from '../config/validate';
import { f16BitsToF32, f32ToF16Bits, fromFloat32, toFloat32 } from './dtype';
import { GGML_TYPES } from './gguf';
import { ggmlEncodeNative } from '../native';

const fr = Math.fround;

/** Values per block of the 32-value types (QK4_0 = QK4_1 = QK8_0). */
export const QK = 32;
/** Values per block of the K-quant types (QK_K). */
export const QK_K = 256;

/** ggml types {@link encodeGgml} can produce. */
export type GgmlEncodeType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q4_K';
/** ggml types {@link decodeGgml} can read. */
export type GgmlDecodeType = GgmlEncodeType | 'Q6_K';

/** Block types among {@link GgmlEncodeType}. */
export const GGML_BLOCK_ENCODE_TYPES: readonly GgmlEncodeType[] = ['Q8_0', 'Q4_0', 'Q4_1', 'Q4_K'];

/**
 * Bytes of `n` values of ggml type `type` laid out along `ne[0]` (`n` must be a multiple of the
 * block size; LOWBIT_INVALID_OPTION otherwise).
 */
export function ggmlByteLength(type: GgmlDecodeType, n: number): number {
  const t = GGML_TYPES[type] as (typeof GGML_TYPES)[string] | undefined;
  if (!t) throw invalidOption('type', `one of ${Object.keys(GGML_TYPES).join(', ')}`, type);
  if (!Number.isSafeInteger(n) || n < 0 || n % t.blockSize !== 0) {
    throw invalidOption('n', `a non-negative multiple of the ${type} block size ${t.blockSize}`, n);
  }
  return (n / t.blockSize) * t.typeSize;
}

function checkInput(x: unknown, type: string): Float32Array {
  if (!(x instanceof Float32Array)) throw invalidOption('x', 'a Float32Array', x);
  if (x.length % QK !== 0) throw invalidOption('x', `a Float32Array whose length is a multiple of the ${type} block size ${QK}`, x);
  return x;
}

function nonFinite(name: string, type: string, i: number, v: number): LowbitError {
  return new LowbitError('LOWBIT_NUMERICAL', `${name}: element ${i} is ${v}; ${type} needs finite values`, { tensor: name, index: i, value: v });
}

/** Store an f32 scale as fp16 (nearest-even); overflow to ±inf is LOWBIT_NUMERICAL naming `name`. */
function putF16(out: Uint8Array, o: number, v: number, name: string, what: string): void {
  let h: number;
  try {
    h = f32ToF16Bits(v, name);
  } catch (e) {
    throw new LowbitError('LOWBIT_NUMERICAL', `${name}: block scale ${what} = ${v} is outside the fp16 range (|x| ≥ 65520 would be stored as ±inf); keep this tensor in F32/BF16`, { tensor: name, value: v }, { cause: e });
  }
  out[o] = h & 0xff;
  out[o + 1] = h >>> 8;
}

const getF16 = (b: Uint8Array, o: number): number => f16BitsToF32(b[o] | (b[o + 1] << 8));

/** C `roundf`: round half away from zero (exact for f32 inputs of the magnitudes used here). */
function roundf(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/**
 * Q8_0 reference encoder (§7.3): per block of 32, `d = max|x| / 127`, `id = d ≠ 0 ? 1/d : 0` (f32,
 * from the f32 `d`), `qs = roundf(x·id)`, `d` stored as fp16.
 *
 * @param x values, length a multiple of 32 (row-major; blocks run along the rows).
 * @param name tensor name used in error messages.
 * @returns `x.length / 32 · 34` bytes.
 */
export function encodeQ8_0(x: Float32Array, name = 'x'): Uint8Array {
  checkInput(x, 'Q8_0');
  const nb = x.length / QK;
  const out = new Uint8Array(nb * 34);
  for (let b = 0; b < nb; b++) {
    const xo = b * QK;
    const o = b * 34;
    let amax = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[xo + j];
      if (!Number.isFinite(v)) throw nonFinite(name, 'Q8_0', xo + j, v);
      const a = Math.abs(v);
      if (a > amax) amax = a;
    }
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    putF16(out, o, d, name, 'd');
    for (let j = 0; j < QK; j++) {
      out[o + 2 + j] = roundf(fr(x[xo + j] * id)) & 0xff; // int8 bit pattern
    }
  }
  return out;
}

/**
 * Q4_0 reference encoder (§7.1): `m` = the element of largest magnitude (sign kept, first on
 * ties), `d = m / −8`, `inv = d ≠ 0 ? 1/d : 0` (f32), `code = min(15, (int8_t)(x·inv + 8.5))`
 * (truncation toward zero), `d` stored as fp16. An all-zero block is `00 80` + sixteen `88`.
 *
 * @param x values, length a multiple of 32.
 * @param name tensor name used in error messages.
 * @returns `x.length / 32 · 18` bytes.
 */
export function encodeQ4_0(x: Float32Array, name = 'x'): Uint8Array {
  checkInput(x, 'Q4_0');
  const nb = x.length / QK;
  const out = new Uint8Array(nb * 18);
  for (let b = 0; b < nb; b++) {
    const xo = b * QK;
    const o = b * 18;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[xo + j];
      if (!Number.isFinite(v)) throw nonFinite(name, 'Q4_0', xo + j, v);
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8); // 0 / −8 = −0: an all-zero block stores d = −0.0 (bytes 00 80)
    const id = d !== 0 ? fr(1 / d) : 0;
    putF16(out, o, d, name, 'd');
    for (let j = 0; j < QK / 2; j++) {
      const x0 = fr(x[xo + j] * id);
      const x1 = fr(x[xo + QK / 2 + j] * id);
      const xi0 = Math.min(15, Math.trunc(fr(x0 + 8.5))) & 0xff;
      const xi1 = Math.min(15, Math.trunc(fr(x1 + 8.5))) & 0xff;
      out[o + 2 + j] = (xi0 | (xi1 << 4)) & 0xff;
    }
  }
  return out;
}

/**
 * Q4_1 reference encoder (§7.2): `d = (max − min)/15`, `inv = d ≠ 0 ? 1/d : 0` (f32),
 * `code = min(15, (int8_t)((x − min)·inv + 0.5))` with the f32 `min`; `d` and `m = min` stored as
 * fp16.
 *
 * @param x values, length a multiple of 32.
 * @param name tensor name used in error messages.
 * @returns `x.length / 32 · 20` bytes.
 */
export function encodeQ4_1(x: Float32Array, name = 'x'): Uint8Array {
  checkInput(x, 'Q4_1');
  const nb = x.length / QK;
  const out = new Uint8Array(nb * 20);
  for (let b = 0; b < nb; b++) {
    const xo = b * QK;
    const o = b * 20;
    let min = Infinity;
    let max = -Infinity;
    for (let j = 0; j < QK; j++) {
      const v = x[xo + j];
      if (!Number.isFinite(v)) throw nonFinite(name, 'Q4_1', xo + j, v);
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const d = fr(fr(max - min) / 15);
    const id = d !== 0 ? fr(1 / d) : 0;
    putF16(out, o, d, name, 'd');
    putF16(out, o + 2, min, name, 'm');
    for (let j = 0; j < QK / 2; j++) {
      const x0 = fr(fr(x[xo + j] - min) * id);
      const x1 = fr(fr(x[xo + QK / 2 + j] - min) * id);
      const xi0 = Math.min(15, Math.trunc(fr(x0 + 0.5))) & 0xff;
      const xi1 = Math.min(15, Math.trunc(fr(x1 + 0.5))) & 0xff;
      out[o + 4 + j] = (xi0 | (xi1 << 4)) & 0xff;
    }
  }
  return out;
}

function checkDecode(bytes: unknown, n: unknown, type: GgmlDecodeType): number {
  if (!(bytes instanceof Uint8Array)) throw invalidOption('bytes', 'a Uint8Array', bytes);
  const need = ggmlByteLength(type, n as number);
  if (bytes.byteLength !== need) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${type}: ${n as number} values need ${need} bytes, received ${bytes.byteLength}`);
  }
  return n as number;
}

/** Q8_0 decoder: `value[i] = d · qs[i]` (f32). `n` = number of values (a multiple of 32). */
export function decodeQ8_0(bytes: Uint8Array, n: number): Float32Array {
  checkDecode(bytes, n, 'Q8_0');
  const out = new Float32Array(n);
  for (let b = 0, o = 0; b < n / QK; b++, o += 34) {
    const d = getF16(bytes, o);
    for (let j = 0; j < QK; j++) out[b * QK + j] = d * ((bytes[o + 2 + j] << 24) >> 24);
  }
  return out;
}

/** Q4_0 decoder: `value[i] = d · (code[i] − 8)` (f32). `n` = number of values (a multiple of 32). */
export function decodeQ4_0(bytes: Uint8Array, n: number): Float32Array {
  checkDecode(bytes, n, 'Q4_0');
  const out = new Float32Array(n);
  for (let b = 0, o = 0; b < n / QK; b++, o += 18) {
    const d = getF16(bytes, o);
    const y = b * QK;
    for (let j = 0; j < QK / 2; j++) {
      const q = bytes[o + 2 + j];
      out[y + j] = ((q & 0x0f) - 8) * d;
      out[y + j + QK / 2] = ((q >> 4) - 8) * d;
    }
  }
  return out;
}

/** Q4_1 decoder: `value[i] = d · code[i] + m` (f32: the product is rounded, then the sum). */
export function decodeQ4_1(bytes: Uint8Array, n: number): Float32Array {
  checkDecode(bytes, n, 'Q4_1');
  const out = new Float32Array(n);
  for (let b = 0, o = 0; b < n / QK; b++, o += 20) {
    const d = getF16(bytes, o);
    const m = getF16(bytes, o + 2);
    const y = b * QK;
    for (let j = 0; j < QK / 2; j++) {
      const q = bytes[o + 4 + j];
      out[y + j] = fr((q & 0x0f) * d) + m;
      out[y + j + QK / 2] = fr((q >> 4) * d) + m;
    }
  }
  return out;
}

/**
 * The 6-bit scale and min of Q4_K sub-block `j` (0…7) from the 12 packed `scales` bytes starting
 * at `o` (§7.4, ggml's `get_scale_min_k4`).
 */
export function q4kScaleMin(scales: Uint8Array, j: number, o = 0): [sc: number, m: number] {
  if (j < 4) return [scales[o + j] & 63, scales[o + j + 4] & 63];
  return [(scales[o + j + 4] & 0x0f) | ((scales[o + j - 4] >> 6) << 4), (scales[o + j + 4] >> 4) | ((scales[o + j] >> 6) << 4)];
}

/** Pack eight 6-bit Q4_K scales and mins into the 12 `scales` bytes (§7.4 "Writing"). */
export function packQ4kScales(sc: ArrayLike<number>, m: ArrayLike<number>): Uint8Array {
  if (sc.length !== 8 || m.length !== 8) throw invalidOption('sc, m', 'eight scales and eight mins', sc);
  for (let j = 0; j < 8; j++) {
    if (!Number.isInteger(sc[j]) || sc[j] < 0 || sc[j] > 63) throw invalidOption(`sc[${j}]`, 'an integer in [0, 63]', sc[j]);
    if (!Number.isInteger(m[j]) || m[j] < 0 || m[j] > 63) throw invalidOption(`m[${j}]`, 'an integer in [0, 63]', m[j]);
  }
  const s = new Uint8Array(12);
  for (let j = 0; j < 4; j++) {
    s[j] = sc[j];
    s[j + 4] = m[j];
  }
  for (let j = 4; j < 8; j++) {
    s[j + 4] = (sc[j] & 15) | ((m[j] & 15) << 4);
    s[j - 4] |= (sc[j] >> 4) << 6;
    s[j] |= (m[j] >> 4) << 6;
  }
  return s;
}

/** ggml's `nearest_int`: round half to even in f32 (the 1.5·2²³ addition trick; |v| ≤ 4194303). */
function nearestInt(v: number): number {
  return fr(v + 12582912) - 12582912;
}

/**
 * ggml's `make_qkx2_quants` (weighted least squares over a grid of scales, min ≤ 0), in f32 as
 * written there: `n` values of `x` from `xo`, weights `w`, codes 0…nmax into `L` from `lo`.
 * Returns [scale, −min].
 */
function makeQkx2Quants(n: number, nmax: number, x: Float32Array, xo: number, w: Float32Array, L: Uint8Array, lo: number,
  rmin: number, rdelta: number, nstep: number): [number, number] {
  let min = x[xo], max = x[xo];
  let sumW = w[0], sumX = fr(sumW * x[xo]);
  for (let i = 1; i < n; i++) {
    const v = x[xo + i];
    if (v < min) min = v;
    if (v > max) max = v;
    sumW = fr(sumW + w[i]);
    sumX = fr(sumX + fr(w[i] * v));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    return [0, -min];
  }
  let iscale = fr(nmax / fr(max - min));
  let scale = fr(1 / iscale);
  let best = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * fr(x[xo + i] - min)))));
    L[lo + i] = l;
    const diff = fr(fr(fr(scale * l) + min) - x[xo + i]);
    best = fr(best + fr(w[i] * fr(diff * diff)));
  }
  const aux = new Uint8Array(n);
  for (let is = 0; is <= nstep; is++) {
    iscale = fr(fr(fr(rmin + fr(rdelta * is)) + nmax) / fr(max - min));  // min as updated by a better candidate, as in ggml
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * fr(x[xo + i] - min)))));
      aux[i] = l;
      const wl = fr(w[i] * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * x[xo + i]));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fr(sumXL / sumL2);
      }
      let mad = 0;
      for (let i = 0; i < n; i++) {
        const diff = fr(fr(fr(thisScale * aux[i]) + thisMin) - x[xo + i]);
        mad = fr(mad + fr(w[i] * fr(diff * diff)));
      }
      if (mad < best) {
        L.set(aux, lo);
        best = mad;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [scale, -min];
}

/**
 * Q4_K reference encoder (§7.4; ggml's `quantize_row_q4_K_ref`, in f32 without fused multiply-adds):
 * per sub-block of 32, weights `rms + |x|` and `make_qkx2_quants(32, 15, …, −1, 0.1, 20)` choose a
 * scale and a min; the eight of each are quantized to 6 bits against the super-block's largest
 * (`d = max_scale / 63`, `dmin = max_min / 63`, fp16), and the codes are recomputed with those
 * quantized scales: `code = nearest((x + dmin·m) / (d·sc))` clamped to 0…15.
 *
 * @param x values, length a multiple of 256.
 * @returns `x.length / 256 · 144` bytes.
 */
export function encodeQ4_K(x: Float32Array, name = 'x'): Uint8Array {
  if (!(x instanceof Float32Array)) throw invalidOption('x', 'a Float32Array', x);
  if (x.length % QK_K !== 0) throw invalidOption('x', `a Float32Array whose length is a multiple of the Q4_K block size ${QK_K}`, x);
  const nb = x.length / QK_K;
  const out = new Uint8Array(nb * 144);
  const L = new Uint8Array(QK_K), w = new Float32Array(32);
  const scales = new Float32Array(8), mins = new Float32Array(8);
  for (let b = 0; b < nb; b++) {
    const xo = b * QK_K, o = b * 144;
    for (let i = 0; i < QK_K; i++) if (!Number.isFinite(x[xo + i])) throw nonFinite(name, 'Q4_K', xo + i, x[xo + i]);
    let maxScale = 0, maxMin = 0;
    for (let j = 0; j < 8; j++) {
      let sumX2 = 0;
      for (let l = 0; l < 32; l++) sumX2 = fr(sumX2 + fr(x[xo + 32 * j + l] * x[xo + 32 * j + l]));
      const avX = fr(Math.sqrt(fr(sumX2 / 32)));
      for (let l = 0; l < 32; l++) w[l] = fr(avX + Math.abs(x[xo + 32 * j + l]));
      [scales[j], mins[j]] = makeQkx2Quants(32, 15, x, xo + 32 * j, w, L, 32 * j, -1, fr(0.1), 20);
      if (scales[j] > maxScale) maxScale = scales[j];
      if (mins[j] > maxMin) maxMin = mins[j];
    }
    const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
    const ls: number[] = [], lm: number[] = [];
    for (let j = 0; j < 8; j++) {
      ls.push(Math.min(63, nearestInt(fr(invScale * scales[j])) & 0xff));
      lm.push(Math.min(63, nearestInt(fr(invMin * mins[j])) & 0xff));
    }
    putF16(out, o, fr(maxScale / 63), name, 'd');
    putF16(out, o + 2, fr(maxMin / 63), name, 'dmin');
    out.set(packQ4kScales(ls, lm), o + 4);
    const d = getF16(out, o), dmin = getF16(out, o + 2);
    for (let j = 0; j < 8; j++) {
      const dj = fr(d * ls[j]);
      if (!dj) continue;  // the sub-block keeps make_qkx2_quants's codes (ggml's `if (!d) continue`)
      const mj = fr(dmin * lm[j]);
      for (let l = 0; l < 32; l++) L[32 * j + l] = Math.max(0, Math.min(15, nearestInt(fr(fr(x[xo + 32 * j + l] + mj) / dj))));
    }
    for (let c = 0; c < 4; c++) for (let l = 0; l < 32; l++) out[o + 16 + 32 * c + l] = L[64 * c + l] | (L[64 * c + l + 32] << 4);
  }
  return out;
}

/**
 * Q4_K decoder (§7.4): `value(v) = d·sc_j·code(v) − dmin·m_j`, in ggml's f32 order
 * (`d1 = d·sc`, `m1 = dmin·m`, `y = d1·code − m1`). `n` = number of values (a multiple of 256).
 */
export function decodeQ4_K(bytes: Uint8Array, n: number): Float32Array {
  checkDecode(bytes, n, 'Q4_K');
  const out = new Float32Array(n);
  for (let b = 0, o = 0; b < n / QK_K; b++, o += 144) {
    const d = getF16(bytes, o);
    const dmin = getF16(bytes, o + 2);
    const so = o + 4;
    const qo = o + 16;
    let y = b * QK_K;
    for (let c = 0; c < 4; c++) {
      const [sc1, m1] = q4kScaleMin(bytes, 2 * c, so);
      const [sc2, m2] = q4kScaleMin(bytes, 2 * c + 1, so);
      const d1 = fr(d * sc1), mm1 = fr(dmin * m1);
      const d2 = fr(d * sc2), mm2 = fr(dmin * m2);
      const q = qo + 32 * c;
      for (let l = 0; l < 32; l++) out[y + l] = fr(d1 * (bytes[q + l] & 0x0f)) - mm1;
      for (let l = 0; l < 32; l++) out[y + 32 + l] = fr(d2 * (bytes[q + l] >> 4)) - mm2;
      y += 64;
    }
  }
  return out;
}

/**
 * Q6_K decoder (§7.5): `value(v) = d · scales[v div 16] · (q(v) − 32)` in ggml's f32 order
 * (`(d·scale)·q`). `n` = number of values (a multiple of 256).
 */
export function decodeQ6_K(bytes: Uint8Array, n: number): Float32Array {
  checkDecode(bytes, n, 'Q6_K');
  const out = new Float32Array(n);
  for (let b = 0, o = 0; b < n / QK_K; b++, o += 210) {
    const d = getF16(bytes, o + 208);
    for (let h = 0; h < 2; h++) {
      const ql = o + 64 * h;
      const qh = o + 128 + 32 * h;
      const sc = o + 192 + 8 * h;
      const y = b * QK_K + 128 * h;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const hb = bytes[qh + l];
        const q1 = ((bytes[ql + l] & 0x0f) | (((hb >> 0) & 3) << 4)) - 32;
        const q2 = ((bytes[ql + l + 32] & 0x0f) | (((hb >> 2) & 3) << 4)) - 32;
        const q3 = ((bytes[ql + l] >> 4) | (((hb >> 4) & 3) << 4)) - 32;
        const q4 = ((bytes[ql + l + 32] >> 4) | (((hb >> 6) & 3) << 4)) - 32;
        const s = (i: number): number => (bytes[sc + is + i] << 24) >> 24;
        out[y + l] = fr(d * s(0)) * q1;
        out[y + l + 32] = fr(d * s(2)) * q2;
        out[y + l + 64] = fr(d * s(4)) * q3;
        out[y + l + 96] = fr(d * s(6)) * q4;
      }
    }
  }
  return out;
}

/** Values from which encodeGgml uses the native encoders. */
const NATIVE_MIN = 4096;

/**
 * Encode f32 values as ggml type `type` (little-endian bytes along `ne[0]`): F32 (copy), F16
 * (nearest-even; |x| ≥ 65520 is LOWBIT_NUMERICAL naming `name`), BF16, or a block type
 * (`x.length` a multiple of its block: 32, or 256 for Q4_K) with the same bytes as the reference encoders above: natively and
 * multi-threaded from 4096 values when the addon is loaded, else by the references themselves.
 */
export function encodeGgml(type: GgmlEncodeType, x: Float32Array, name = 'x'): Uint8Array {
  switch (type) {
    case 'F32':
    case 'F16':
    case 'BF16':
      return fromFloat32(x, type, name);
    case 'Q8_0':
    case 'Q4_0':
    case 'Q4_1':
    case 'Q4_K': {
      // the native encoders (same bytes, multi-threaded) for tensors worth a native call; the
      // reference below for small ones, without the addon, and to name a bad value
      const t = GGML_TYPES[type];
      if (!(x instanceof Float32Array) || x.length % t.blockSize !== 0) {
        throw invalidOption('x', `a Float32Array whose length is a multiple of the ${type} block size ${t.blockSize}`, x);
      }
      if (x.length >= NATIVE_MIN) {
        const out = new Uint8Array((x.length / t.blockSize) * t.typeSize);
        if (ggmlEncodeNative(type, x, out)) return out;
      }
      return type === 'Q8_0' ? encodeQ8_0(x, name) : type === 'Q4_0' ? encodeQ4_0(x, name) : type === 'Q4_1' ? encodeQ4_1(x, name) : encodeQ4_K(x, name);
    }
    default:
      throw invalidOption('type', 'one of "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K"', type);
  }
}

/** Decode `n` values of ggml type `type` from `bytes` into f32 (F32, F16, BF16 and every block type of §7). */
export function decodeGgml(type: GgmlDecodeType, bytes: Uint8Array, n: number): Float32Array {
  switch (type) {
    case 'F32':
    case 'F16':
    case 'BF16': {
      checkDecode(bytes, n, type);
      return toFloat32(bytes, type);
    }
    case 'Q8_0':
      return decodeQ8_0(bytes, n);
    case 'Q4_0':
      return decodeQ4_0(bytes, n);
    case 'Q4_1':
      return decodeQ4_1(bytes, n);
    case 'Q4_K':
      return decodeQ4_K(bytes, n);
    case 'Q6_K':
      return decodeQ6_K(bytes, n);
    default:
      throw invalidOption('type', `one of ${Object.keys(GGML_TYPES).join(', ')}`, type);
  }
}
