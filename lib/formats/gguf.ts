/**
 * GGUF reader (docs/formats.md §6, block types §7).
 *
 * Layout: `u32 magic "GGUF"` · `u32 version` · `u64 tensor_count` · `u64 kv_count` · KVs · tensor
 * infos · zero padding to ALIGNMENT · tensor data. A string is `u64 length` + UTF-8 bytes. A tensor
 * info is `string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset`; `ne[0]` is the
 * innermost (contiguous) dimension, so `shape` (row-major) is `ne` reversed and a linear weight
 * `[out, in]` has `ne = [in, out]` with identical bytes.
 *
 * Opening reads the header with plain fs reads through a small window (never the tensor data) and
 * validates every rule of §6.5, so a malformed file fails at open with LOWBIT_BAD_FORMAT naming the
 * file and the key/tensor. Every length and count is bounded by the bytes left in the file before
 * anything is allocated, so a lying header cannot make the reader allocate or loop beyond the file
 * size. Tensor data is mapped lazily (native mmap, zero copy) on the first data access, or read with
 * fs when mapping is unavailable.
 *
 * Choices: a big-endian GGUF (§6.6), version 1 and ggml types that ggml defines but lowbit does not
 * handle are LOWBIT_UNSUPPORTED (valid files lowbit cannot read); everything else is
 * LOWBIT_BAD_FORMAT. The padding after the last tensor may be missing (lenient, §6.5).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, toLowbitError, badFormat } from '../errors';
import { openForRead, readFully } from './io';
import { invalidOption } from '../config/validate';
import { openMapping, type NativeMapping } from '../native';
import { HOST_LITTLE_ENDIAN, f16BitsToF32, firstNonFinite, toFloat32 } from './dtype';
import type { Vocab } from './vocab';

/** `'G','G','U','F'` read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;
/** ALIGNMENT when `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** Longest string a reader accepts (1 GiB). */
export const GGUF_MAX_STRING_BYTES = 2 ** 30;
/** Most elements an array may have. */
export const GGUF_MAX_ARRAY_LENGTH = 2 ** 30;
/** Most tensor infos a header may declare (the largest real models have a few thousand). */
export const GGUF_MAX_TENSORS = 1_000_000;
/** Most metadata KVs a header may declare (real files have a few dozen; a vocabulary is one KV). */
export const GGUF_MAX_KVS = 1_000_000;
/** Largest size key of a llama GGUF (dims, heads, layers, context): the runtime indexes with 32-bit integers. */
export const GGUF_MAX_LLAMA_SIZE = 2 ** 31 - 1;

/** GGUF metadata value types, by id (§6.1). */
export const GGUF_VALUE_TYPES = [
  'UINT8', 'INT8', 'UINT16', 'INT16', 'UINT32', 'INT32', 'FLOAT32', 'BOOL', 'STRING', 'ARRAY', 'UINT64', 'INT64', 'FLOAT64',
] as const;

/** A GGUF metadata value type name. */
export type GgufValueType = (typeof GGUF_VALUE_TYPES)[number];

/** Fixed byte size per scalar value type (STRING and ARRAY are variable). */
const VALUE_SIZES: Partial<Record<GgufValueType, number>> = {
  UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, UINT32: 4, INT32: 4, FLOAT32: 4, BOOL: 1, UINT64: 8, INT64: 8, FLOAT64: 8,
};

/** A scalar metadata value: 64-bit integers as bigint, BOOL as boolean, STRING as decoded UTF-8. */
export type GgufScalar = number | bigint | boolean | string;

/** The elements of an ARRAY value: a typed array for numeric element types. */
export type GgufArrayValues =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array
  | BigUint64Array | BigInt64Array | Float64Array | boolean[] | string[];

/** One metadata value. */
export type GgufValue =
  | { type: Exclude<GgufValueType, 'ARRAY'>; value: GgufScalar }
  | { type: 'ARRAY'; itemType: Exclude<GgufValueType, 'ARRAY'>; value: GgufArrayValues };

/** A ggml tensor type lowbit reads (§7). */
export interface GgmlTypeInfo {
  id: number;
  name: string;
  /** Values per block. */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
  /**
   * Byte offsets, inside each block, of its fp16 scale fields (d, and m / dmin where the type has
   * one): a NaN or Inf there is the only way a block type can decode to a non-finite value, so
   * these are what the reader's NaN/Inf check scans. Empty for the plain float types.
   */
  scaleOffsets: readonly number[];
}

/** The ggml types of §7, by name. */
export const GGML_TYPES: Readonly<Record<string, GgmlTypeInfo>> = Object.freeze({
  F32: { id: 0, name: 'F32', blockSize: 1, typeSize: 4, scaleOffsets: [] },
  F16: { id: 1, name: 'F16', blockSize: 1, typeSize: 2, scaleOffsets: [] },
  Q4_0: { id: 2, name: 'Q4_0', blockSize: 32, typeSize: 18, scaleOffsets: [0] },
  Q4_1: { id: 3, name: 'Q4_1', blockSize: 32, typeSize: 20, scaleOffsets: [0, 2] },
  Q8_0: { id: 8, name: 'Q8_0', blockSize: 32, typeSize: 34, scaleOffsets: [0] },
  Q4_K: { id: 12, name: 'Q4_K', blockSize: 256, typeSize: 144, scaleOffsets: [0, 2] },
  Q6_K: { id: 14, name: 'Q6_K', blockSize: 256, typeSize: 210, scaleOffsets: [208] },
  BF16: { id: 30, name: 'BF16', blockSize: 1, typeSize: 2, scaleOffsets: [] },
});

const TYPE_BY_ID = new Map<number, GgmlTypeInfo>(Object.values(GGML_TYPES).map((t) => [t.id, t]));

/** ggml types that exist but lowbit does not read (a file using them is LOWBIT_UNSUPPORTED). */
const UNSUPPORTED_TYPES: Readonly<Record<number, string>> = {
  6: 'Q5_0', 7: 'Q5_1', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 13: 'Q5_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS',
  18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32',
  27: 'I64', 28: 'F64', 29: 'IQ1_M', 34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};

/**
 * The first non-finite value in `bytes` of ggml type `typeName`: for F32/F16/BF16 its flat index;
 * for a block type the first block whose fp16 scale (or minimum) is NaN/Inf — every element of
 * that block decodes to a non-finite value — as the index of its first element. null when all
 * finite (and for types without {@link GgmlTypeInfo.scaleOffsets}).
 */
export function firstNonFiniteGgml(typeName: string, bytes: Uint8Array): { index: number; block: number | null; value: string } | null {
  if (typeName === 'F32' || typeName === 'F16' || typeName === 'BF16') {
    const i = firstNonFinite(bytes, typeName);
    if (i < 0) return null;
    const size = typeName === 'F32' ? 4 : 2;
    return { index: i, block: null, value: String(toFloat32(bytes.subarray(i * size, (i + 1) * size), typeName)[0]) };
  }
  const ti = GGML_TYPES[typeName] as GgmlTypeInfo | undefined;
  if (!ti || ti.scaleOffsets.length === 0) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blocks = Math.floor(bytes.byteLength / ti.typeSize);
  for (let k = 0; k < blocks; k++) {
    for (const o of ti.scaleOffsets) {
      const h = dv.getUint16(k * ti.typeSize + o, true);
      if ((h & 0x7c00) === 0x7c00) return { index: k * ti.blockSize, block: k, value: String(f16BitsToF32(h)) };
    }
  }
  return null;
}

/** Name of a ggml type id (`"type 99"` when unknown). */
export function ggmlTypeName(id: number): string {
  return TYPE_BY_ID.get(id)?.name ?? (id in UNSUPPORTED_TYPES ? UNSUPPORTED_TYPES[id] : `type ${id}`);
}

/** Where one tensor's bytes are. */
export interface GgufTensorInfo {
  name: string;
  /** ggml type id (§7). */
  type: number;
  /** ggml type name, e.g. `"F32"`, `"Q4_K"`. */
  typeName: string;
  /** Dimensions as stored: `ne[0]` innermost; `[]` for n_dims = 0 (one element). */
  ne: number[];
  /** Row-major dimensions: `ne` reversed. */
  shape: number[];
  /** Number of elements (product of `ne`). */
  numel: number;
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
}

/** An opened, validated GGUF file. */
export interface GgufFile {
  /** Absolute path. */
  readonly file: string;
  readonly fileSize: number;
  /** 2 or 3. */
  readonly version: number;
  /** ALIGNMENT (§6.2). */
  readonly alignment: number;
  /** Absolute offset of the data section. */
  readonly dataOffset: number;
  /** Metadata in file order. */
  readonly metadata: Map<string, GgufValue>;
  /** Tensor infos in file order. */
  readonly tensors: GgufTensorInfo[];
  has(name: string): boolean;
  /** The info of a tensor; an unknown name is LOWBIT_NOT_FOUND. */
  tensor(name: string): GgufTensorInfo;
  /**
   * The tensor's raw bytes: a zero-copy view of the mapped file when the addon is available
   * (copy-on-write; valid after close()), else a fresh buffer.
   */
  bytes(name: string): Uint8Array;
  /**
   * The tensor as f32 values in row-major `shape` order: a zero-copy view for F32 data at a
   * 4-aligned offset, else converted (F16, BF16). Block-quantised types are LOWBIT_UNSUPPORTED.
   */
  tensorF32(name: string): Float32Array;
  /** Release the mapping and file handle; later data access is LOWBIT_DISPOSED. Idempotent. */
  close(): void;
}

// ---------------------------------------------------------------------------------------------
// Header reading
// ---------------------------------------------------------------------------------------------

function unsupported(file: string, msg: string, details?: Record<string, unknown>): LowbitError {
  return new LowbitError('LOWBIT_UNSUPPORTED', `${file}: ${msg}`, { file, ...details });
}

/** Header read window: headers are read in 64 KiB pieces (never far into the tensor data). */
const WINDOW = 1 << 16;

/** Sequential little-endian reads of the header through a window; bounds-checked against the file size. */
class HeaderCursor {
  pos = 0;
  private _buf: Buffer = Buffer.alloc(0);
  private _start = 0;
  private _end = 0;

  constructor(private readonly fd: number, private readonly file: string, readonly size: number) {}

  get left(): number {
    return this.size - this.pos;
  }

  /** Make [pos, pos + n) readable from the window; returns the window offset of pos. */
  private _need(n: number, what: string): number {
    if (n > this.size - this.pos) {
      throw badFormat(this.file, `${what}: needs ${n} bytes at offset ${this.pos} but the file ends at ${this.size} (truncated, or a lying length/count)`);
    }
    if (this.pos < this._start || this.pos + n > this._end) {
      const len = Math.min(this.size - this.pos, Math.max(n, WINDOW));
      if (this._buf.length < len) this._buf = Buffer.allocUnsafe(len);
      readFully(this.fd, this._buf.subarray(0, len), this.pos, this.file);
      this._start = this.pos;
      this._end = this.pos + len;
    }
    const at = this.pos - this._start;
    this.pos += n;
    return at;
  }

  u8(what: string): number { const a = this._need(1, what); return this._buf[a]; }
  i8(what: string): number { const a = this._need(1, what); return this._buf.readInt8(a); }
  u16(what: string): number { const a = this._need(2, what); return this._buf.readUInt16LE(a); }
  i16(what: string): number { const a = this._need(2, what); return this._buf.readInt16LE(a); }
  u32(what: string): number { const a = this._need(4, what); return this._buf.readUInt32LE(a); }
  i32(what: string): number { const a = this._need(4, what); return this._buf.readInt32LE(a); }
  f32(what: string): number { const a = this._need(4, what); return this._buf.readFloatLE(a); }
  f64(what: string): number { const a = this._need(8, what); return this._buf.readDoubleLE(a); }
  u64(what: string): bigint { const a = this._need(8, what); return this._buf.readBigUInt64LE(a); }
  i64(what: string): bigint { const a = this._need(8, what); return this._buf.readBigInt64LE(a); }

  /** `n` bytes copied into a fresh, aligned buffer. */
  copy(n: number, what: string): Uint8Array {
    const out = new Uint8Array(n);
    let done = 0;
    while (done < n) {
      // Chunks of the window size, so a large array never needs a window as large as itself.
      const k = Math.min(n - done, WINDOW);
      const a = this._need(k, what);
      out.set(this._buf.subarray(a, a + k), done);
      done += k;
    }
    return out;
  }

  str(what: string): string {
    const n = this.u64(`${what} (string length)`);
    if (n > BigInt(GGUF_MAX_STRING_BYTES)) {
      throw badFormat(this.file, `${what}: string length ${n} exceeds the limit of ${GGUF_MAX_STRING_BYTES} bytes (1 GiB)`);
    }
    const len = Number(n);
    if (len > this.left) {
      throw badFormat(this.file, `${what}: string of ${len} bytes at offset ${this.pos} extends past the end of the file (${this.size} bytes)`);
    }
    if (len <= WINDOW) {
      const a = this._need(len, what);
      return this._buf.toString('utf8', a, a + len);
    }
    return Buffer.from(this.copy(len, what)).toString('utf8');
  }
}

function valueTypeOf(file: string, id: number, what: string): Exclude<GgufValueType, 'ARRAY'> | 'ARRAY' {
  const t = GGUF_VALUE_TYPES[id] as GgufValueType | undefined;
  if (t === undefined) throw badFormat(file, `${what}: unknown value type ${id} (expected 0…12)`);
  return t;
}

function readScalar(c: HeaderCursor, t: Exclude<GgufValueType, 'ARRAY'>, what: string): GgufScalar {
  switch (t) {
    case 'UINT8': return c.u8(what);
    case 'INT8': return c.i8(what);
    case 'UINT16': return c.u16(what);
    case 'INT16': return c.i16(what);
    case 'UINT32': return c.u32(what);
    case 'INT32': return c.i32(what);
    case 'FLOAT32': return c.f32(what);
    case 'BOOL': return c.u8(what) !== 0; // any nonzero byte is true, as the reference reads it
    case 'STRING': return c.str(what);
    case 'UINT64': return c.u64(what);
    case 'INT64': return c.i64(what);
    case 'FLOAT64': return c.f64(what);
  }
}

function readArray(c: HeaderCursor, file: string, what: string): GgufValue {
  const itemId = c.u32(`${what} (array element type)`);
  const item = valueTypeOf(file, itemId, `${what} (array element type)`);
  if (item === 'ARRAY') throw badFormat(file, `${what}: nested arrays are not allowed (element type ARRAY)`);
  const count64 = c.u64(`${what} (array length)`);
  if (count64 > BigInt(GGUF_MAX_ARRAY_LENGTH)) {
    throw badFormat(file, `${what}: array length ${count64} exceeds the limit of ${GGUF_MAX_ARRAY_LENGTH} elements`);
  }
  const count = Number(count64);
  const minSize = VALUE_SIZES[item] ?? 8; // a string needs at least its 8-byte length
  if (count * minSize > c.left) {
    throw badFormat(file, `${what}: array of ${count} ${item} needs at least ${count * minSize} bytes but only ${c.left} remain in the file`);
  }
  if (item === 'STRING') {
    const v: string[] = new Array<string>(count);
    for (let i = 0; i < count; i++) v[i] = c.str(`${what}[${i}]`);
    return { type: 'ARRAY', itemType: item, value: v };
  }
  if (item === 'BOOL') {
    const raw = c.copy(count, what);
    const v: boolean[] = new Array<boolean>(count);
    for (let i = 0; i < count; i++) v[i] = raw[i] !== 0;
    return { type: 'ARRAY', itemType: item, value: v };
  }
  const size = VALUE_SIZES[item];
  if (size === undefined) throw badFormat(file, `${what}: arrays of ${item} have no fixed item size`);
  const raw = c.copy(count * size, what);
  if (!HOST_LITTLE_ENDIAN && size > 1) {
    for (let i = 0; i < raw.length; i += size) raw.subarray(i, i + size).reverse();
  }
  const buf = raw.buffer;
  let value: GgufArrayValues;
  switch (item) {
    case 'UINT8': value = new Uint8Array(buf, 0, count); break;
    case 'INT8': value = new Int8Array(buf, 0, count); break;
    case 'UINT16': value = new Uint16Array(buf, 0, count); break;
    case 'INT16': value = new Int16Array(buf, 0, count); break;
    case 'UINT32': value = new Uint32Array(buf, 0, count); break;
    case 'INT32': value = new Int32Array(buf, 0, count); break;
    case 'FLOAT32': value = new Float32Array(buf, 0, count); break;
    case 'UINT64': value = new BigUint64Array(buf, 0, count); break;
    case 'INT64': value = new BigInt64Array(buf, 0, count); break;
    case 'FLOAT64': value = new Float64Array(buf, 0, count); break;
  }
  return { type: 'ARRAY', itemType: item, value };
}

function alignUp(x: bigint, a: bigint): bigint {
  return ((x + a - 1n) / a) * a;
}

interface ParsedHeader {
  version: number;
  alignment: number;
  dataOffset: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
}

function parseHeader(c: HeaderCursor, file: string): ParsedHeader {
  if (c.size < 8) throw badFormat(file, `file is ${c.size} bytes, too short for a GGUF header (magic + version)`);
  const magic = c.u32('magic');
  if (magic !== GGUF_MAGIC) {
    const hex = [0, 8, 16, 24].map((s) => ((magic >>> s) & 0xff).toString(16).padStart(2, '0')).join(' ');
    throw badFormat(file, `bad magic: expected "GGUF" (47 47 55 46), found ${hex}`);
  }
  const version = c.u32('version');
  if ((version & 0xffff) === 0 && version !== 0) {
    throw unsupported(file, `big-endian GGUF not supported (version field reads 0x${version.toString(16).padStart(8, '0')})`);
  }
  if (version === 1) throw unsupported(file, 'GGUF version 1 is not supported (expected version 2 or 3)');
  if (version !== 2 && version !== 3) throw badFormat(file, `unknown GGUF version ${version} (expected 2 or 3)`);

  const tensorCount64 = c.u64('tensor_count');
  const kvCount64 = c.u64('kv_count');
  // Smallest possible KV: key length (8) + 1 key byte + value type (4) + 1 value byte. Smallest
  // tensor info: name length (8) + n_dims (4) + type (4) + offset (8).
  const left = BigInt(c.left);
  if (kvCount64 * 14n > left) {
    throw badFormat(file, `kv_count ${kvCount64} cannot fit in the ${left} bytes after the header (at least 14 bytes each)`, { key: 'kv_count' });
  }
  if (tensorCount64 * 24n + kvCount64 * 14n > left) {
    throw badFormat(file, `tensor_count ${tensorCount64} cannot fit in the ${left} bytes after the header with ${kvCount64} KVs (at least 24 bytes per tensor info)`, { key: 'tensor_count' });
  }
  // sane limits on top of the file-size bound above (a 100 MB file could otherwise declare 7 M KVs)
  if (kvCount64 > BigInt(GGUF_MAX_KVS)) throw badFormat(file, `kv_count ${kvCount64} exceeds the limit of ${GGUF_MAX_KVS} KVs`, { key: 'kv_count' });
  if (tensorCount64 > BigInt(GGUF_MAX_TENSORS)) throw badFormat(file, `tensor_count ${tensorCount64} exceeds the limit of ${GGUF_MAX_TENSORS} tensors`, { key: 'tensor_count' });
  const kvCount = Number(kvCount64);
  const tensorCount = Number(tensorCount64);

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.str(`KV ${i} key`);
    if (key.length === 0) throw badFormat(file, `KV ${i}: empty key`, { key });
    if (metadata.has(key)) throw badFormat(file, `duplicate key "${key}" (KV ${i})`, { key });
    const what = `key "${key}"`;
    const t = valueTypeOf(file, c.u32(`${what} (value type)`), what);
    const v: GgufValue = t === 'ARRAY' ? readArray(c, file, what) : { type: t, value: readScalar(c, t, what) };
    metadata.set(key, v);
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al) {
    if (al.type !== 'UINT32') throw badFormat(file, `key "general.alignment": expected type UINT32, found ${al.type}`, { key: 'general.alignment' });
    const a = al.value as number;
    if (a === 0 || (a & (a - 1)) !== 0) throw badFormat(file, `key "general.alignment": expected a power of two, found ${a}`, { key: 'general.alignment' });
    alignment = a;
  }
  const align = BigInt(alignment);

  const tensors: GgufTensorInfo[] = [];
  const rel: bigint[] = [];
  const names = new Set<string>();
  let expected = 0n;
  for (let i = 0; i < tensorCount; i++) {
    const name = c.str(`tensor info ${i} name`);
    const t = `tensor "${name}"`;
    if (names.has(name)) throw badFormat(file, `duplicate tensor name "${name}" (tensor info ${i})`, { tensor: name });
    names.add(name);
    const nDims = c.u32(`${t} n_dims`);
    if (nDims > 4) throw badFormat(file, `${t}: n_dims ${nDims} is out of range (expected 0…4)`, { tensor: name });
    const ne: bigint[] = [];
    for (let d = 0; d < nDims; d++) {
      const v = c.i64(`${t} ne[${d}]`);
      if (v < 0n) throw badFormat(file, `${t}: ne[${d}] = ${v} is negative`, { tensor: name });
      // shapes are numbers: a dimension past 2^53 (possible in a valid file only beside a 0) cannot be one
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw unsupported(file, `${t}: ne[${d}] = ${v} exceeds 2^53 − 1, the largest dimension lowbit represents`, { tensor: name });
      ne.push(v);
    }
    const typeId = c.u32(`${t} type`);
    const ti = TYPE_BY_ID.get(typeId);
    if (!ti) {
      const known = UNSUPPORTED_TYPES[typeId];
      if (known) {
        throw unsupported(file, `${t}: ggml type ${known} (${typeId}) is not supported by lowbit (supported: ${Object.keys(GGML_TYPES).join(', ')})`, { tensor: name });
      }
      throw badFormat(file, `${t}: unknown ggml type ${typeId}`, { tensor: name });
    }
    const offset = c.u64(`${t} offset`);
    const ne0 = nDims > 0 ? ne[0] : 1n;
    if (ne0 % BigInt(ti.blockSize) !== 0n) {
      throw badFormat(file, `${t}: ne[0] = ${ne0} is not a multiple of the ${ti.name} block size ${ti.blockSize}`, { tensor: name });
    }
    let nbytes = (ne0 / BigInt(ti.blockSize)) * BigInt(ti.typeSize);
    let numel = ne0;
    for (let d = 1; d < nDims; d++) {
      nbytes *= ne[d];
      numel *= ne[d];
    }
    if (offset !== expected) {
      throw badFormat(file, `${t}: data offset ${offset} is not where the previous tensors end (expected ${expected}: tensors follow each other in info order, each aligned to ${alignment})`, { tensor: name });
    }
    if (nbytes > BigInt(c.size)) {
      throw badFormat(file, `${t}: ${ti.name} [${ne.join(', ')}] needs ${nbytes} bytes, more than the whole file (${c.size} bytes)`, { tensor: name });
    }
    expected = alignUp(offset + nbytes, align);
    const neN = ne.map(Number);
    tensors.push({
      name, type: typeId, typeName: ti.name, ne: neN, shape: neN.slice().reverse(), numel: Number(numel), offset: 0, byteLength: Number(nbytes),
    });
    rel.push(offset);
  }

  const dataStart = alignUp(BigInt(c.pos), align);
  const size = BigInt(c.size);
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i];
    const begin = dataStart + rel[i];
    const end = begin + BigInt(t.byteLength);
    if (end > size) {
      throw badFormat(file, `tensor "${t.name}": data [${begin}, ${end}) extends past the end of the file (${c.size} bytes; the data section starts at ${dataStart})`, { tensor: t.name });
    }
    t.offset = Number(begin);
  }
  for (const t of tensors) {
    Object.freeze(t.ne);
    Object.freeze(t.shape);
    Object.freeze(t);
  }
  return { version, alignment, dataOffset: Number(dataStart), metadata, tensors };
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

class Gguf implements GgufFile {
  readonly file: string;
  readonly fileSize: number;
  readonly version: number;
  readonly alignment: number;
  readonly dataOffset: number;
  readonly metadata: Map<string, GgufValue>;
  readonly tensors: GgufTensorInfo[];
  private readonly _byName: Map<string, GgufTensorInfo>;
  private _map: NativeMapping | null | undefined = undefined;
  private _fd: number | null = null;
  private _closed = false;
  /** tensors whose data was checked for NaN/Inf */
  private readonly _checked = new Set<string>();

  /** @internal */
  constructor(file: string, fileSize: number, h: ParsedHeader) {
    this.file = file;
    this.fileSize = fileSize;
    this.version = h.version;
    this.alignment = h.alignment;
    this.dataOffset = h.dataOffset;
    this.metadata = h.metadata;
    this.tensors = h.tensors;
    this._byName = new Map(h.tensors.map((t) => [t.name, t]));
  }

  has(name: string): boolean {
    return this._byName.has(name);
  }

  tensor(name: string): GgufTensorInfo {
    const t = this._byName.get(name);
    if (!t) throw new LowbitError('LOWBIT_NOT_FOUND', `${this.file}: no tensor "${name}" (the file has ${this.tensors.length} tensors)`, { file: this.file, tensor: name });
    return t;
  }

  private _check(): void {
    if (this._closed) throw new LowbitError('LOWBIT_DISPOSED', `${this.file}: GGUF reader used after close()`, { file: this.file });
  }

  bytes(name: string): Uint8Array {
    this._check();
    const t = this.tensor(name);
    const b = this._read(name, t);
    if (!this._checked.has(name)) {
      this._checkFinite(t, b);
      this._checked.add(name);
    }
    return b;
  }

  /**
   * LOWBIT_NUMERICAL naming the file, the tensor and the first element index when a float tensor
   * holds a NaN/Inf, or a block type's fp16 scale does (every element of that block decodes to it).
   */
  private _checkFinite(t: GgufTensorInfo, b: Uint8Array): void {
    const bad = firstNonFiniteGgml(t.typeName, b);
    if (!bad) return;
    const what = bad.block === null ? `holds ${bad.value} at flat index ${bad.index}` : `has a block scale of ${bad.value} in block ${bad.block} (elements from flat index ${bad.index})`;
    throw new LowbitError('LOWBIT_NUMERICAL',
      `${this.file}: tensor "${t.name}" (${t.typeName}) ${what} of [${t.shape.join(', ')}]; a checkpoint with a NaN or Inf weight is refused (repair or re-export the source)`,
      { file: this.file, tensor: t.name, index: bad.index, value: bad.value });
  }

  private _read(name: string, t: GgufTensorInfo): Uint8Array {
    if (t.byteLength === 0) return new Uint8Array(0);
    if (this._map === undefined) {
      try {
        this._map = openMapping(this.file);
      } catch {
        this._map = null; // a failed mmap: read with fs instead
      }
    }
    if (this._map) {
      try {
        const ab = this._map.view(t.offset, t.byteLength);
        if (ab.byteLength === t.byteLength) return new Uint8Array(ab);
      } catch {
        // fall back to a plain read below
      }
    }
    if (this._fd === null) this._fd = openForRead(this.file);
    const buf = new Uint8Array(t.byteLength);
    try {
      readFully(this._fd, buf, t.offset, this.file);
    } catch (e) {
      throw toLowbitError(e, `${this.file}: tensor "${name}"`);
    }
    return buf;
  }

  tensorF32(name: string): Float32Array {
    const t = this.tensor(name);
    if (t.typeName !== 'F32' && t.typeName !== 'F16' && t.typeName !== 'BF16') {
      throw new LowbitError('LOWBIT_UNSUPPORTED', `${this.file}: tensor "${name}" has type ${t.typeName}; decoding it to f32 is not supported yet (only F32, F16, BF16)`, { file: this.file, tensor: name });
    }
    const b = this.bytes(name);
    if (t.typeName === 'F32' && HOST_LITTLE_ENDIAN && b.byteOffset % 4 === 0) {
      return new Float32Array(b.buffer, b.byteOffset, t.numel);
    }
    return toFloat32(b, t.typeName);
  }

  close(): void {
    if (this._closed) return;
    this._closed = true;
    try {
      this._map?.close();
    } catch {
      // views handed out keep the mapping alive natively
    }
    if (this._fd !== null) {
      try {
        fs.closeSync(this._fd);
      } catch {
        // already closed
      }
    }
    this._map = null;
    this._fd = null;
  }
}

/**
 * Open a GGUF file: read and validate its header (docs/formats.md §6.5). Tensor data is not read
 * until asked for.
 *
 * Errors: LOWBIT_NOT_FOUND (no file), LOWBIT_BAD_FORMAT (any violation, naming the file and the
 * key/tensor), LOWBIT_UNSUPPORTED (big-endian, version 1, ggml types outside §7).
 */
export function readGguf(file: string): GgufFile {
  if (typeof file !== 'string' || file.length === 0) throw invalidOption('file', 'a path to a .gguf file', file);
  const abs = path.resolve(file);
  const fd = openForRead(abs);
  try {
    let size: number;
    try {
      const st = fs.fstatSync(fd);
      if (st.isDirectory()) throw new LowbitError('LOWBIT_IO', `${abs}: is a directory, expected a .gguf file`, { file: abs });
      size = st.size;
    } catch (e) {
      throw toLowbitError(e, abs);
    }
    const h = parseHeader(new HeaderCursor(fd, abs, size), abs);
    return new Gguf(abs, size, h);
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // the header was read (or an error is already propagating)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// llama-architecture helpers
// ---------------------------------------------------------------------------------------------

/** Model hyper-parameters from a llama GGUF's `llama.*` keys. */
export interface GgufLlamaConfig {
  /** `llama.embedding_length`. */
  dim: number;
  /** `llama.feed_forward_length`. */
  hiddenDim: number;
  /** `llama.block_count`. */
  nLayers: number;
  /** `llama.attention.head_count`. */
  nHeads: number;
  /** `llama.attention.head_count_kv` (defaults to nHeads when absent, as llama.cpp does). */
  nKvHeads: number;
  /** `llama.vocab_size`, else the length of `tokenizer.ggml.tokens`, else token_embd's rows. */
  vocabSize: number;
  /** `llama.context_length`. */
  contextLength: number;
  /** `llama.attention.layer_norm_rms_epsilon`. */
  rmsEps: number;
  /** `llama.rope.freq_base` (10000 when absent). */
  ropeTheta: number;
  /** dim / nHeads (`llama.rope.dimension_count` must equal it when present). */
  headDim: number;
}

function metaOf(g: GgufFile, key: string, type: GgufValueType, required: true): GgufValue;
function metaOf(g: GgufFile, key: string, type: GgufValueType, required: false): GgufValue | undefined;
function metaOf(g: GgufFile, key: string, type: GgufValueType, required: boolean): GgufValue | undefined {
  const v = g.metadata.get(key);
  if (!v) {
    if (required) throw badFormat(g.file, `missing key "${key}" (${type})`, { key });
    return undefined;
  }
  if (v.type !== type) throw badFormat(g.file, `key "${key}": expected type ${type}, found ${v.type}`, { key });
  return v;
}

function positiveU32(g: GgufFile, key: string): number {
  const v = metaOf(g, key, 'UINT32', true).value as number;
  if (v <= 0) throw badFormat(g.file, `key "${key}": expected a positive value, found ${v}`, { key });
  if (v > GGUF_MAX_LLAMA_SIZE) throw badFormat(g.file, `key "${key}": expected at most ${GGUF_MAX_LLAMA_SIZE} (2^31 − 1), found ${v}`, { key });
  return v;
}

/** Hyper-parameters of a llama-architecture GGUF (key types as §6.3 lists them, strictly). */
export function ggufLlamaConfig(g: GgufFile): GgufLlamaConfig {
  const arch = metaOf(g, 'general.architecture', 'STRING', true).value as string;
  if (arch !== 'llama') throw unsupported(g.file, `general.architecture is "${arch}"; only "llama" is supported`, { key: 'general.architecture' });
  const dim = positiveU32(g, 'llama.embedding_length');
  const hiddenDim = positiveU32(g, 'llama.feed_forward_length');
  const nLayers = positiveU32(g, 'llama.block_count');
  const nHeads = positiveU32(g, 'llama.attention.head_count');
  const nKvHeads = metaOf(g, 'llama.attention.head_count_kv', 'UINT32', false) ? positiveU32(g, 'llama.attention.head_count_kv') : nHeads;
  const contextLength = positiveU32(g, 'llama.context_length');
  const rmsEps = metaOf(g, 'llama.attention.layer_norm_rms_epsilon', 'FLOAT32', true).value as number;
  const ropeTheta = (metaOf(g, 'llama.rope.freq_base', 'FLOAT32', false)?.value as number | undefined) ?? 10000;
  if (dim % nHeads !== 0) throw badFormat(g.file, `llama.embedding_length ${dim} is not divisible by llama.attention.head_count ${nHeads}`, { key: 'llama.attention.head_count' });
  if (nHeads % nKvHeads !== 0) throw badFormat(g.file, `llama.attention.head_count ${nHeads} is not divisible by llama.attention.head_count_kv ${nKvHeads}`, { key: 'llama.attention.head_count_kv' });
  const headDim = dim / nHeads;
  const rope = metaOf(g, 'llama.rope.dimension_count', 'UINT32', false);
  if (rope && rope.value !== headDim) {
    throw unsupported(g.file, `llama.rope.dimension_count ${String(rope.value)} differs from the head size ${headDim} (partial rotary embeddings are not supported)`, { key: 'llama.rope.dimension_count' });
  }
  let vocabSize: number;
  const vs = metaOf(g, 'llama.vocab_size', 'UINT32', false);
  const toks = g.metadata.get('tokenizer.ggml.tokens');
  if (vs) vocabSize = positiveU32(g, 'llama.vocab_size');
  else if (toks && toks.type === 'ARRAY') vocabSize = toks.value.length;
  else if (g.has('token_embd.weight') && g.tensor('token_embd.weight').ne.length === 2) vocabSize = g.tensor('token_embd.weight').ne[1];
  else throw badFormat(g.file, 'cannot tell the vocabulary size: no "llama.vocab_size", "tokenizer.ggml.tokens" or 2-D token_embd.weight', { key: 'llama.vocab_size' });
  return { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, contextLength, rmsEps, ropeTheta, headDim };
}

/**
 * The vocabulary of a GGUF (`tokenizer.ggml.model` "llama", i.e. SentencePiece with scores),
 * converted the way llama2.c's exporter writes tokenizer.bin: `▁` → space; the BOS piece becomes
 * `"\n<s>\n"` and the EOS piece `"\n</s>\n"`. Ids and scores are unchanged, so the same text
 * encodes to the same ids as with the tokenizer.bin of the same vocabulary.
 */
export function ggufVocab(g: GgufFile): Vocab {
  const model = metaOf(g, 'tokenizer.ggml.model', 'STRING', false);
  if (model && model.value !== 'llama') {
    throw unsupported(g.file, `tokenizer.ggml.model is "${String(model.value)}"; only "llama" (SentencePiece) vocabularies are supported`, { key: 'tokenizer.ggml.model' });
  }
  const tv = metaOf(g, 'tokenizer.ggml.tokens', 'ARRAY', true);
  if (tv.type !== 'ARRAY' || tv.itemType !== 'STRING') throw badFormat(g.file, 'key "tokenizer.ggml.tokens": expected an ARRAY of STRING', { key: 'tokenizer.ggml.tokens' });
  const tokens = tv.value as string[];
  const n = tokens.length;
  if (n === 0) throw badFormat(g.file, 'key "tokenizer.ggml.tokens": empty vocabulary', { key: 'tokenizer.ggml.tokens' });
  let scores: Float32Array;
  const sv = metaOf(g, 'tokenizer.ggml.scores', 'ARRAY', false);
  if (sv) {
    if (sv.type !== 'ARRAY' || sv.itemType !== 'FLOAT32') throw badFormat(g.file, 'key "tokenizer.ggml.scores": expected an ARRAY of FLOAT32', { key: 'tokenizer.ggml.scores' });
    if (sv.value.length !== n) throw badFormat(g.file, `key "tokenizer.ggml.scores": ${sv.value.length} scores for ${n} tokens`, { key: 'tokenizer.ggml.scores' });
    scores = (sv.value as Float32Array).slice();
  } else scores = new Float32Array(n);
  let tokenTypes: Int32Array | undefined;
  const ttv = metaOf(g, 'tokenizer.ggml.token_type', 'ARRAY', false);
  if (ttv) {
    if (ttv.type !== 'ARRAY' || ttv.itemType !== 'INT32') throw badFormat(g.file, 'key "tokenizer.ggml.token_type": expected an ARRAY of INT32', { key: 'tokenizer.ggml.token_type' });
    if (ttv.value.length !== n) throw badFormat(g.file, `key "tokenizer.ggml.token_type": ${ttv.value.length} types for ${n} tokens`, { key: 'tokenizer.ggml.token_type' });
    tokenTypes = (ttv.value as Int32Array).slice();
  }
  const idKey = (key: string, dflt: number): number => {
    const v = metaOf(g, key, 'UINT32', false);
    if (!v) return dflt;
    const id = v.value as number;
    if (id >= n) throw badFormat(g.file, `key "${key}": id ${id} is outside the vocabulary (${n} tokens)`, { key });
    return id;
  };
  const bos = idKey('tokenizer.ggml.bos_token_id', Math.min(1, n - 1));
  const eos = idKey('tokenizer.ggml.eos_token_id', Math.min(2, n - 1));
  const pieces = new Array<string>(n);
  const pieceBytes = new Array<Uint8Array>(n);
  let maxTokenLength = 0;
  for (let i = 0; i < n; i++) {
    let p = tokens[i].replace(/\u2581/g, ' ');
    if (i === bos) p = '\n<s>\n';
    else if (i === eos) p = '\n</s>\n';
    pieces[i] = p;
    const b = new Uint8Array(Buffer.from(p, 'utf8'));
    pieceBytes[i] = b;
    if (b.length > maxTokenLength) maxTokenLength = b.length;
  }
  const v: Vocab = { pieces, pieceBytes, scores, bos, eos, maxTokenLength };
  if (tokenTypes) v.tokenTypes = tokenTypes;
  return v;
}

const LAYER_NAMES: Readonly<Record<string, string>> = {
  attn_norm: 'input_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  ffn_norm: 'post_attention_layernorm',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};
const GLOBAL_NAMES: Readonly<Record<string, string>> = {
  'token_embd.weight': 'model.embed_tokens.weight',
  'output_norm.weight': 'model.norm.weight',
  'output.weight': 'lm_head.weight',
};

/**
 * The HF-style name (docs/formats.md §3.2) of a llama GGUF tensor (§6.3), or null for a name
 * outside the table (e.g. `rope_freqs.weight`). Only the name changes: the row-major matrix of a
 * tensor with `ne = [in, out]` is `[out, in]` with the same bytes, and q/k rows stay in
 * adjacent-pair RoPE order (no permutation).
 */
export function ggufLlamaTensorName(name: string): string | null {
  const g = GLOBAL_NAMES[name];
  if (g) return g;
  const m = /^blk\.(0|[1-9][0-9]*)\.([a-z_]+)\.(weight|bias)$/.exec(name);
  if (!m) return null;
  const part = LAYER_NAMES[m[2]];
  return part ? `model.layers.${m[1]}.${part}.${m[3]}` : null;
}

/** The inverse of {@link ggufLlamaTensorName}: the GGUF name of an HF-style llama tensor, or null. */
export function llamaTensorNameToGguf(name: string): string | null {
  for (const [k, v] of Object.entries(GLOBAL_NAMES)) if (v === name) return k;
  const m = /^model\.layers\.(0|[1-9][0-9]*)\.([a-z_]+(?:\.[a-z_]+)?)\.(weight|bias)$/.exec(name);
  if (!m) return null;
  for (const [k, v] of Object.entries(LAYER_NAMES)) if (v === m[2]) return `blk.${m[1]}.${k}.${m[3]}`;
  return null;
}
