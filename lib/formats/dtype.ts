/**
 * safetensors element types, and plain reference conversions between f32, fp16 and bf16.
 *
 * Conversions (docs/formats.md §1):
 *   f16 → f32 and bf16 → f32 are exact (every fp16/bf16 value is an f32 value); NaN payloads kept.
 *   f32 → f16: round to nearest-even; finite |x| ≥ 65520 overflows. lowbit reports that as
 *     LOWBIT_NUMERICAL naming the tensor, unless `saturate` is set (then ±65504 is stored).
 *   f32 → bf16: `bf16 = (u + 0x7fff + ((u >> 16) & 1)) >> 16` on the f32 bit pattern `u`;
 *     a NaN becomes `(u >> 16) | 0x40` (forced quiet).
 *
 * Everything here works on bit patterns with integer arithmetic, never `Math.round` (which rounds
 * ties up, not to even). File data is little-endian; on a big-endian host the bulk helpers swap.
 * The bulk `toFloat32` tries the native SIMD converter first for F32/F16/BF16 and falls back to
 * the loops below when the addon is absent (or throws), so results never depend on the addon.
 */
import { LowbitError } from '../errors';
import { checkOneOf, invalidOption } from '../config/validate';
import { convertToF32Sync, firstNonFiniteNative } from '../native';

/** Element size in bytes of every safetensors dtype lowbit knows. */
export const DTYPE_SIZES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
  /** 8-bit float (e4m3fn); lowbit reads and writes it only as raw bytes. */
  F8_E4M3: 1,
  /** 8-bit float (e5m2); lowbit reads and writes it only as raw bytes. */
  F8_E5M2: 1,
} as const;

/** A safetensors dtype string, e.g. `'F16'`. */
export type Dtype = keyof typeof DTYPE_SIZES;

/** Every known dtype, in the order of {@link DTYPE_SIZES}. */
export const DTYPES = Object.keys(DTYPE_SIZES) as Dtype[];

/**
 * Dtypes that exist in the safetensors specification but that lowbit does not handle (sub-byte
 * floats, complex, exotic fp8 variants). A file using one is reported as LOWBIT_UNSUPPORTED rather
 * than as a malformed file.
 */
export const UNSUPPORTED_DTYPES: readonly string[] = ['F8_E8M0', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ', 'C64', 'F4', 'F6_E2M3', 'F6_E3M2'];

/** Dtypes {@link fromFloat32} can produce. */
export type FloatDtype = 'F32' | 'F16' | 'BF16';

/** True when `d` is a dtype string lowbit knows. */
export function isDtype(d: unknown): d is Dtype {
  return typeof d === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, d);
}

/** Bytes per element of `d`. */
export function dtypeSize(d: Dtype): number {
  return DTYPE_SIZES[d];
}

/**
 * Number of elements of `shape` (1 for a 0-rank tensor). Returns NaN when the product is not a
 * safe integer (callers turn that into their own error).
 */
export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return NaN;
  }
  return n;
}

/** Bytes of a tensor of `dtype` and `shape`; NaN when not a safe integer. */
export function byteLengthOf(dtype: Dtype, shape: readonly number[]): number {
  const b = numelOf(shape) * DTYPE_SIZES[dtype];
  return Number.isSafeInteger(b) ? b : NaN;
}

/** Host byte order; file data is always little-endian. @internal */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// Scalar reference conversions (bit patterns in, bit patterns or numbers out)
// ---------------------------------------------------------------------------------------------

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** f32 bit pattern of `x` (after rounding `x` to f32). */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0];
}

/** The f32 value with bit pattern `u` (NaN payloads may not survive a JS number on every engine). */
export function f32FromBits(u: number): number {
  scratchU32[0] = u;
  return scratchF32[0];
}

/** fp16 bit pattern → f32 bit pattern (exact; subnormals normalized, NaN payload kept). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf / NaN
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // normal: rebias 15 → 127
  if (mant === 0) return sign >>> 0; // ±0
  // Subnormal m·2^-24: shift the leading 1 up to bit 10, lowering the exponent once per shift.
  let e = 1;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | ((e + 112) << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

/** fp16 bit pattern → its value. */
export function f16BitsToF32(h: number): number {
  return f32FromBits(f16BitsToF32Bits(h & 0xffff));
}

/** bf16 bit pattern → its value (the upper half of an f32). */
export function bf16BitsToF32(b: number): number {
  return f32FromBits(((b & 0xffff) << 16) >>> 0);
}

/** f32 bits of 65520, the smallest magnitude that rounds to fp16 infinity. */
const F16_OVERFLOW_BITS = 0x477ff000;

/**
 * f32 bit pattern → fp16 bit pattern, round to nearest-even, overflow to ±inf (what torch and
 * ggml do). Callers that must not overflow silently check `|x| ≥ 65520` first.
 */
function f32BitsToF16BitsRaw(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >>> 13) & 0x3ff); // NaN, quiet bit forced
  if (a >= F16_OVERFLOW_BITS) return sign | 0x7c00; // ±inf (incl. overflow)
  if (a >= 0x38800000) {
    // Normal fp16 (|x| ≥ 2^-14): rebias the exponent, keep 10 mantissa bits, round the 13 dropped.
    let h = (((a >>> 23) - 112) << 10) | ((a >>> 13) & 0x3ff);
    const rem = a & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // a carry into the exponent is right
    return sign | h;
  }
  // |x| ≤ 2^-25 rounds to ±0 (2^-25 itself is a tie between 0 and 2^-24, and 0 is even).
  if (a <= 0x33000000) return sign;
  // Subnormal fp16: the value in units of 2^-24 is mant·2^(e-126); shift by 126-e ∈ [14, 24].
  const e = a >>> 23;
  const mant = (a & 0x7fffff) | 0x800000;
  const shift = 126 - e;
  let h = mant >>> shift;
  const rem = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && (h & 1) === 1)) h++; // 0x3ff + 1 = 0x400 is the smallest normal
  return sign | h;
}

/** Options of the f32 → fp16 conversions. */
export interface F16Options {
  /**
   * Store ±65504 (the largest finite fp16) for finite values with |x| ≥ 65520 instead of failing.
   * @default false
   */
  saturate?: boolean;
}

function f16OverflowError(name: string, value: number, index?: number): LowbitError {
  const where = index === undefined ? '' : ` element ${index}`;
  return new LowbitError(
    'LOWBIT_NUMERICAL',
    `${name}:${where} value ${value} is outside the fp16 range (finite |x| ≥ 65520 would become ±inf); ` +
      'keep this tensor in F32/BF16 or pass { saturate: true } to store ±65504',
    { tensor: name, index, value },
  );
}

/**
 * f32 → fp16 bit pattern, round to nearest-even (`x` is first rounded to f32).
 * A finite `x` with |x| ≥ 65520 throws LOWBIT_NUMERICAL naming `name`, unless `opts.saturate`
 * (then `0x7bff`/`0xfbff`, ±65504). ±inf stays ±inf; NaN becomes a quiet NaN.
 */
export function f32ToF16Bits(x: number, name = 'value', opts: F16Options = {}): number {
  const u = f32Bits(x);
  const a = u & 0x7fffffff;
  // Test the double too: a finite double beyond the f32 range becomes inf in f32 and is overflow.
  if (Number.isFinite(x) && a >= F16_OVERFLOW_BITS) {
    if (!opts.saturate) throw f16OverflowError(name, x);
    return ((u >>> 16) & 0x8000) | 0x7bff;
  }
  return f32BitsToF16BitsRaw(u);
}

/** f32 bit pattern → bf16 bit pattern (docs/formats.md §1: nearest-even; NaN forced quiet). */
export function f32BitsToBf16Bits(u: number): number {
  u >>>= 0;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  // u + 0x8000 ≤ 0xff808000 for every non-NaN u, so this never wraps past 2^32.
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f32 → bf16 bit pattern (`x` is first rounded to f32). Never throws: overflow gives ±inf. */
export function f32ToBf16Bits(x: number): number {
  return f32BitsToBf16Bits(f32Bits(x));
}

// ---------------------------------------------------------------------------------------------
// Bulk conversions
// ---------------------------------------------------------------------------------------------

let f16Table: Uint32Array | null = null;

/** 65536-entry fp16 → f32-bits table (256 KiB), built on first use: one load per element. */
function f16ToF32Table(): Uint32Array {
  if (!f16Table) {
    const t = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = f16BitsToF32Bits(h);
    f16Table = t;
  }
  return f16Table;
}

function swapInPlace(b: Uint8Array, size: number): void {
  for (let i = 0; i + size <= b.length; i += size) {
    for (let j = 0, k = size - 1; j < k; j++, k--) {
      const t = b[i + j];
      b[i + j] = b[i + k];
      b[i + k] = t;
    }
  }
}

/**
 * Little-endian file bytes as something a host-order typed array of element `size` can view:
 * the input itself when aligned on a little-endian host, else an aligned (and swapped) copy.
 */
function hostOrder(bytes: Uint8Array, size: number): Uint8Array {
  if (size === 1) return bytes;
  let b = bytes;
  if (b.byteOffset % size !== 0 || !HOST_LITTLE_ENDIAN) b = bytes.slice(); // slice() starts at offset 0
  if (!HOST_LITTLE_ENDIAN) swapInPlace(b, size);
  return b;
}

/**
 * Decode `bytes` (little-endian elements of `dtype`) into f32 values.
 *
 * @param bytes raw tensor data; any `byteOffset` (unaligned views are copied first).
 * @param dtype element type. Integer types convert by value (I64/U64 go through `Number`, so
 *   magnitudes above 2^53 may round twice); BOOL gives 0/1; F64 rounds to nearest f32.
 *   F8_E4M3/F8_E5M2 are not decoded (LOWBIT_UNSUPPORTED).
 * @param out optional destination of exactly `bytes.byteLength / size` elements.
 * @returns `out`, or a new Float32Array.
 */
export function toFloat32(bytes: Uint8Array, dtype: Dtype, out?: Float32Array): Float32Array {
  if (!(bytes instanceof Uint8Array)) throw invalidOption('bytes', 'a Uint8Array', bytes);
  if (!isDtype(dtype)) throw invalidOption('dtype', `one of ${DTYPES.join(', ')}`, dtype);
  const size = DTYPE_SIZES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw invalidOption('bytes', `a byte length divisible by ${size} (the size of ${dtype})`, bytes);
  }
  const n = bytes.byteLength / size;
  if (out === undefined) out = new Float32Array(n);
  else if (!(out instanceof Float32Array) || out.length !== n) throw invalidOption('out', `a Float32Array of length ${n}`, out);
  if (n === 0) return out;

  if (dtype === 'F32' || dtype === 'F16' || dtype === 'BF16') {
    try {
      if (convertToF32Sync(bytes, dtype, out)) return out;
    } catch {
      // A broken or partial addon must not change results: fall through to the reference loops.
    }
  }

  const b = hostOrder(bytes, size);
  const buf = b.buffer;
  const off = b.byteOffset;
  switch (dtype) {
    case 'F32':
      out.set(new Float32Array(buf, off, n));
      break;
    case 'F16': {
      const src = new Uint16Array(buf, off, n);
      const dst = new Uint32Array(out.buffer, out.byteOffset, n); // write bit patterns: exact, NaN payloads kept
      const t = f16ToF32Table();
      for (let i = 0; i < n; i++) dst[i] = t[src[i]];
      break;
    }
    case 'BF16': {
      const src = new Uint16Array(buf, off, n);
      const dst = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) dst[i] = src[i] << 16;
      break;
    }
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = b[i] !== 0 ? 1 : 0;
      break;
    case 'U8':
      out.set(b);
      break;
    case 'I8':
      out.set(new Int8Array(buf, off, n));
      break;
    case 'I16':
      out.set(new Int16Array(buf, off, n));
      break;
    case 'U16':
      out.set(new Uint16Array(buf, off, n));
      break;
    case 'I32':
      out.set(new Int32Array(buf, off, n));
      break;
    case 'U32':
      out.set(new Uint32Array(buf, off, n));
      break;
    case 'F64':
      out.set(new Float64Array(buf, off, n));
      break;
    case 'I64': {
      const src = new BigInt64Array(buf, off, n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]);
      break;
    }
    case 'U64': {
      const src = new BigUint64Array(buf, off, n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]);
      break;
    }
    case 'F8_E4M3':
    case 'F8_E5M2':
      throw new LowbitError('LOWBIT_UNSUPPORTED', `toFloat32: ${dtype} tensors are read only as raw bytes; decoding them to f32 is not supported`);
    default: {
      const never: never = dtype;
      throw new LowbitError('LOWBIT_INTERNAL', `toFloat32: unhandled dtype ${String(never)}`);
    }
  }
  return out;
}

/**
 * Encode f32 values as little-endian bytes of `dtype` (a new buffer).
 *
 * @param f32 the values.
 * @param dtype `'F32'` (a byte copy), `'F16'` (nearest-even) or `'BF16'` (nearest-even, NaN quiet).
 * @param name the tensor name, used in the overflow error.
 * @param opts `saturate`: for F16, store ±65504 for finite |x| ≥ 65520 instead of throwing
 *   LOWBIT_NUMERICAL (which names `name`, the first offending element and its value).
 */
export function fromFloat32(f32: Float32Array, dtype: FloatDtype, name: string, opts: F16Options = {}): Uint8Array {
  if (!(f32 instanceof Float32Array)) throw invalidOption('f32', 'a Float32Array', f32);
  checkOneOf('dtype', dtype, ['F32', 'F16', 'BF16']);
  const n = f32.length;
  let out: Uint8Array;
  if (dtype === 'F32') {
    out = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength).slice();
    if (!HOST_LITTLE_ENDIAN) swapInPlace(out, 4);
    return out;
  }
  // A Float32Array is always 4-aligned, so its bits can be read in place.
  const src = new Uint32Array(f32.buffer, f32.byteOffset, n);
  const dst = new Uint16Array(n);
  if (dtype === 'BF16') {
    for (let i = 0; i < n; i++) dst[i] = f32BitsToBf16Bits(src[i]);
  } else {
    const saturate = opts.saturate === true;
    for (let i = 0; i < n; i++) {
      const u = src[i];
      const a = u & 0x7fffffff;
      if (a >= F16_OVERFLOW_BITS && a < 0x7f800000) {
        if (!saturate) throw f16OverflowError(name, f32[i], i);
        dst[i] = ((u >>> 16) & 0x8000) | 0x7bff;
      } else {
        dst[i] = f32BitsToF16BitsRaw(u);
      }
    }
  }
  out = new Uint8Array(dst.buffer);
  if (!HOST_LITTLE_ENDIAN) swapInPlace(out, 2);
  return out;
}

/**
 * The index of the first NaN or ±Inf among `bytes` read as `dtype` (F32, F16, BF16: an exponent of
 * all ones), or -1. Integer dtypes have none. Reads the bits (no conversion): the native vector scan
 * (AVX-512 / AVX2 / NEON, split over the thread pool) for tensors of 4,096 elements or more, else
 * (or without the addon) {@link firstNonFiniteRef}.
 */
export function firstNonFinite(bytes: Uint8Array, dtype: string): number {
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') return -1;
  if (bytes.byteLength >= 4096 * DTYPE_SIZES[dtype]) {
    try {
      const r = firstNonFiniteNative(HOST_LITTLE_ENDIAN ? bytes : hostOrder(bytes, DTYPE_SIZES[dtype]), dtype);
      if (r !== null) return r;
    } catch {
      // a broken or partial addon must not change results: the reference loop below
    }
  }
  return firstNonFiniteRef(bytes, dtype);
}

/**
 * Throw LOWBIT_NUMERICAL when `bytes` (a tensor read from `file`) holds a NaN or ±Inf: the message
 * and `details` name the file, the tensor, the first flat index and the value found.
 */
export function assertFiniteTensor(bytes: Uint8Array, dtype: string, file: string, tensor: string, shape: readonly number[]): void {
  const i = firstNonFinite(bytes, dtype);
  if (i < 0) return;
  const size = DTYPE_SIZES[dtype as FloatDtype];
  const v = toFloat32(bytes.subarray(i * size, (i + 1) * size), dtype as FloatDtype)[0];
  throw new LowbitError('LOWBIT_NUMERICAL',
    `${file}: ${tensor}: non-finite weight (${String(v)}) at [${multiIndex(i, shape).join(', ')}] (flat index ${i} of [${shape.join(', ')}], ${dtype}); a checkpoint with a NaN or Inf weight is refused (repair or re-export the source)`,
    { file, tensor, index: i, value: String(v) });
}

/** Row-major coordinates of flat index `i` in `shape` (`[i]` for a 0- or 1-dimensional shape). */
export function multiIndex(i: number, shape: readonly number[]): number[] {
  if (shape.length <= 1) return [i];
  const out = new Array<number>(shape.length);
  let r = i;
  for (let d = shape.length - 1; d >= 0; d--) {
    out[d] = r % shape[d];
    r = Math.floor(r / shape[d]);
  }
  return out;
}

/** The plain reference of {@link firstNonFinite}: one scalar loop over the bit patterns. */
export function firstNonFiniteRef(bytes: Uint8Array, dtype: string): number {
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') return -1;
  const a = hostOrder(bytes, DTYPE_SIZES[dtype]); // host order, aligned (copied only when it is not)
  if (dtype === 'F32') {
    const u = new Uint32Array(a.buffer, a.byteOffset, a.byteLength >>> 2);
    for (let i = 0; i < u.length; i++) if ((u[i] & 0x7f800000) === 0x7f800000) return i;
    return -1;
  }
  const mask = dtype === 'F16' ? 0x7c00 : 0x7f80;
  const u = new Uint16Array(a.buffer, a.byteOffset, a.byteLength >>> 1);
  for (let i = 0; i < u.length; i++) if ((u[i] & mask) === mask) return i;
  return -1;
}
