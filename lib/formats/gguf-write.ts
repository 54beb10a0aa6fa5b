/**
 * GGUF writer (docs/formats.md §6.4) and the spec of a llama-architecture GGUF (§6.3).
 *
 * File: `u32 magic "GGUF"` · `u32 version 3` · `u64 tensor_count` · `u64 kv_count` · KVs · tensor
 * infos · zero padding to ALIGNMENT · tensor data, each tensor followed by zero padding up to
 * ALIGNMENT (the last one too, §6.2). Offsets are relative to the data section: tensor 0 at 0,
 * each next one at `align_up(previous offset + previous byte size, ALIGNMENT)`. A row-major shape
 * `[A, B]` is written as `ne = [B, A]` (same bytes).
 *
 * Streaming: the header (KVs and infos) is built in memory, then tensors are encoded and written
 * one at a time in info order, so peak memory is the header plus one tensor (lazy `data`
 * producers are called only when their tensor is written). Block types go through the reference
 * encoders of ./ggml-blocks (bit-exact with llama.cpp's `quantize_row_*_ref`).
 *
 * Atomic: everything goes to `<file>.tmp-<hex>` in the same directory, is fsync'd, then renamed;
 * on any error the temp file is removed and an existing `<file>` is left as it was.
 *
 * Choices: the writer never picks a fallback type itself. A tensor whose `ne[0]` is not a multiple
 * of its block size is LOWBIT_INVALID_OPTION naming it; {@link buildLlamaGgufSpec} (the caller)
 * falls back to F16 for such tensors, as llama.cpp does, and records why.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { LowbitError, abortError, toLowbitError } from '../errors';
import { checkSignal, invalidOption, checkObject, checkOneOf } from '../config/validate';
import { safeReporter, type Progress } from '../config/run';
import {
  GGML_TYPES, GGUF_MAGIC, GGUF_DEFAULT_ALIGNMENT, GGUF_MAX_ARRAY_LENGTH, GGUF_MAX_STRING_BYTES, GGUF_VALUE_TYPES,
  firstNonFiniteGgml, llamaTensorNameToGguf, type GgufValueType,
  type GgufLlamaConfig,
} from './gguf';
import { encodeGgml, type GgmlEncodeType } from './ggml-blocks';
import type { Vocab } from './vocab';

/** Tensor types {@link writeGguf} writes (Q6_K from encoded blocks only: lowbit has no Q6_K encoder). */
export type GgufWriteType = GgmlEncodeType | 'Q4_K' | 'Q6_K';
const WRITE_TYPES: readonly GgufWriteType[] = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q4_K', 'Q6_K'];
const ENCODED_ONLY: readonly GgufWriteType[] = ['Q6_K'];

/**
 * The value of an ARRAY metadata entry: the element type and the elements. Numeric elements may
 * be a typed array or a plain array; 64-bit integer elements are bigint or safe integers.
 */
export interface GgufArraySpec {
  itemType: Exclude<GgufValueType, 'ARRAY'>;
  value: ArrayLike<unknown>;
}

/**
 * One metadata entry: key, value type (§6.1) and value. Scalars: numbers for 8–32-bit integers and
 * floats, bigint or a safe integer for UINT64/INT64, boolean for BOOL, string for STRING. ARRAY:
 * a {@link GgufArraySpec}, or a `string[]` (STRING elements), `boolean[]` (BOOL) or a typed array
 * (its element type: Float32Array → FLOAT32, Int32Array → INT32, BigUint64Array → UINT64, …).
 */
export type GgufMetadataEntry = [key: string, type: GgufValueType, value: unknown];

/** One tensor to write. */
export interface GgufTensorSpec {
  /** Unique, non-empty, < 64 UTF-8 bytes. */
  name: string;
  /** Stored type. Block types need `shape[shape.length − 1]` (= `ne[0]`) to be a multiple of 32. */
  type: GgufWriteType;
  /** Row-major dimensions, 1…4 positive integers (written reversed as `ne`). */
  shape: number[];
  /**
   * The values in row-major order (product of `shape` elements), or a producer (sync or async)
   * called once, when the tensor is written. A `Uint8Array` (or a producer of one) is the tensor
   * already encoded as `type` (exactly its byte size), written as it is: lowbit's GPTQ codes
   * map onto ggml blocks without a second rounding.
   */
  data: Float32Array | Uint8Array | (() => Float32Array | Uint8Array | Promise<Float32Array | Uint8Array>);
}

/** What {@link writeGguf} writes. */
export interface GgufWriteSpec {
  /** Metadata in file order. `general.alignment` must not appear here: use `alignment`. */
  metadata: GgufMetadataEntry[];
  /** Tensors in file order. */
  tensors: GgufTensorSpec[];
  /**
   * ALIGNMENT of the data section and of every tensor: a power of two ≥ 8. When given, it is
   * written as `general.alignment` (UINT32, first key); when absent the key is omitted and the
   * GGUF default 32 applies.
   * @default 32 (key omitted)
   */
  alignment?: number;
}

/** Options of {@link writeGguf}. */
export interface WriteGgufOptions {
  /** Cancels the write between tensors; nothing is left on disk. */
  signal?: AbortSignal;
  /** Progress in tensors written (phase 'write', module = the tensor). Latest wins. */
  onProgress?: (p: Progress) => void;
}

/** What {@link writeGguf} resolves to. */
export interface WriteGgufResult {
  /** Absolute path of the written file. */
  file: string;
  /** File size in bytes. */
  bytes: number;
}

const KEY_RE = /^[a-z0-9_]+(\.[a-z0-9_]+)*$/;
const VALUE_TYPE_ID = new Map<string, number>(GGUF_VALUE_TYPES.map((t, i) => [t, i]));

const INT_RANGES: Partial<Record<GgufValueType, [number, number]>> = {
  UINT8: [0, 0xff], INT8: [-0x80, 0x7f], UINT16: [0, 0xffff], INT16: [-0x8000, 0x7fff], UINT32: [0, 0xffffffff], INT32: [-0x80000000, 0x7fffffff],
};

/** Little-endian byte builder for the header. */
class Out {
  private _chunks: Buffer[] = [];
  private _cur = Buffer.alloc(1 << 16);
  private _pos = 0;
  length = 0;

  private _room(n: number): void {
    if (this._pos + n <= this._cur.length) return;
    this._chunks.push(this._cur.subarray(0, this._pos));
    this._cur = Buffer.alloc(Math.max(1 << 16, n));
    this._pos = 0;
  }
  private _adv(n: number): number {
    this._room(n);
    const p = this._pos;
    this._pos += n;
    this.length += n;
    return p;
  }
  // The position is taken before the buffer is named: _adv may start a new buffer, and
  // `this._cur.write…(v, this._adv(n))` would evaluate the old buffer first and write into it.
  private _at(n: number): [Buffer, number] {
    const p = this._adv(n);
    return [this._cur, p];
  }
  u8(v: number): void { const [b, p] = this._at(1); b[p] = v; }
  i8(v: number): void { const [b, p] = this._at(1); b.writeInt8(v, p); }
  u16(v: number): void { const [b, p] = this._at(2); b.writeUInt16LE(v, p); }
  i16(v: number): void { const [b, p] = this._at(2); b.writeInt16LE(v, p); }
  u32(v: number): void { const [b, p] = this._at(4); b.writeUInt32LE(v, p); }
  i32(v: number): void { const [b, p] = this._at(4); b.writeInt32LE(v, p); }
  f32(v: number): void { const [b, p] = this._at(4); b.writeFloatLE(v, p); }
  f64(v: number): void { const [b, p] = this._at(8); b.writeDoubleLE(v, p); }
  u64(v: bigint): void { const [b, p] = this._at(8); b.writeBigUInt64LE(v, p); }
  i64(v: bigint): void { const [b, p] = this._at(8); b.writeBigInt64LE(v, p); }
  bytes(b: Uint8Array): void {
    const p = this._adv(b.length);
    this._cur.set(b, p);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(BigInt(b.length));
    this.bytes(b);
  }
  zeros(n: number): void {
    this._adv(n); // fresh buffers are zero-filled
  }
  done(): Buffer {
    return Buffer.concat([...this._chunks, this._cur.subarray(0, this._pos)]);
  }
}

function typedItemType(v: unknown): Exclude<GgufValueType, 'ARRAY'> | null {
  if (v instanceof Uint8Array) return 'UINT8';
  if (v instanceof Int8Array) return 'INT8';
  if (v instanceof Uint16Array) return 'UINT16';
  if (v instanceof Int16Array) return 'INT16';
  if (v instanceof Uint32Array) return 'UINT32';
  if (v instanceof Int32Array) return 'INT32';
  if (v instanceof Float32Array) return 'FLOAT32';
  if (v instanceof Float64Array) return 'FLOAT64';
  if (v instanceof BigUint64Array) return 'UINT64';
  if (v instanceof BigInt64Array) return 'INT64';
  if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string')) return 'STRING';
  if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'boolean')) return 'BOOL';
  return null;
}

/** Validate and append one scalar value of type `t`. */
function putScalar(o: Out, t: Exclude<GgufValueType, 'ARRAY'>, v: unknown, what: string): void {
  const range = INT_RANGES[t];
  if (range) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range[0] || v > range[1]) throw invalidOption(what, `an integer in [${range[0]}, ${range[1]}] (${t})`, v);
    switch (t) {
      case 'UINT8': o.u8(v); return;
      case 'INT8': o.i8(v); return;
      case 'UINT16': o.u16(v); return;
      case 'INT16': o.i16(v); return;
      case 'UINT32': o.u32(v); return;
      default: o.i32(v); return;
    }
  }
  switch (t) {
    case 'FLOAT32':
    case 'FLOAT64':
      if (typeof v !== 'number') throw invalidOption(what, `a number (${t})`, v);
      if (t === 'FLOAT32') o.f32(v);
      else o.f64(v);
      return;
    case 'BOOL':
      if (typeof v !== 'boolean') throw invalidOption(what, 'a boolean (BOOL)', v);
      o.u8(v ? 1 : 0);
      return;
    case 'STRING': {
      if (typeof v !== 'string') throw invalidOption(what, 'a string (STRING)', v);
      if (Buffer.byteLength(v, 'utf8') > GGUF_MAX_STRING_BYTES) throw invalidOption(what, `a string of at most ${GGUF_MAX_STRING_BYTES} UTF-8 bytes`, `${v.slice(0, 20)}…`);
      o.str(v);
      return;
    }
    case 'UINT64':
    case 'INT64': {
      let b: bigint;
      if (typeof v === 'bigint') b = v;
      else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
      else throw invalidOption(what, `a bigint or safe integer (${t})`, v);
      const ok = t === 'UINT64' ? b >= 0n && b < 1n << 64n : b >= -(1n << 63n) && b < 1n << 63n;
      if (!ok) throw invalidOption(what, `a value in the ${t} range`, Number(b));
      if (t === 'UINT64') o.u64(b);
      else o.i64(b);
      return;
    }
    default:
      throw invalidOption(what, `a value type of ${GGUF_VALUE_TYPES.join(', ')}`, t);
  }
}

function putKv(o: Out, entry: unknown, i: number, seen: Set<string>): void {
  if (!Array.isArray(entry) || entry.length !== 3) throw invalidOption(`metadata[${i}]`, 'a [key, type, value] triple', entry);
  const [key, type, value] = entry as [unknown, unknown, unknown];
  if (typeof key !== 'string' || !KEY_RE.test(key) || key.length > 65535) {
    throw invalidOption(`metadata[${i}] key`, 'a non-empty ASCII key of dot-separated lower_snake_case segments (≤ 65535 bytes)', key);
  }
  if (seen.has(key)) throw invalidOption(`metadata key "${key}"`, 'unique keys', key);
  if (key === 'general.alignment') throw invalidOption('metadata key "general.alignment"', 'no general.alignment entry (pass spec.alignment instead)', key);
  seen.add(key);
  const tid = typeof type === 'string' ? VALUE_TYPE_ID.get(type) : undefined;
  if (tid === undefined) throw invalidOption(`${key} type`, `one of ${GGUF_VALUE_TYPES.join(', ')}`, type);
  o.str(key);
  o.u32(tid);
  const t = type as GgufValueType;
  if (t !== 'ARRAY') {
    putScalar(o, t, value, key);
    return;
  }
  let itemType: unknown;
  let items: ArrayLike<unknown>;
  const inferred = typedItemType(value);
  if (inferred) {
    itemType = inferred;
    items = value as ArrayLike<unknown>;
  } else if (typeof value === 'object' && value !== null && 'itemType' in value && 'value' in value) {
    itemType = (value as GgufArraySpec).itemType;
    items = (value as GgufArraySpec).value;
  } else {
    throw invalidOption(key, 'an ARRAY value: { itemType, value }, a typed array, a string[] or a boolean[]', value);
  }
  const iid = typeof itemType === 'string' ? VALUE_TYPE_ID.get(itemType) : undefined;
  if (iid === undefined || itemType === 'ARRAY') throw invalidOption(`${key} itemType`, 'a value type other than ARRAY (no nested arrays)', itemType);
  const itemsUnknown: unknown = items;
  if (itemsUnknown === null || typeof itemsUnknown !== 'object' || typeof (itemsUnknown as { length?: unknown }).length !== 'number') throw invalidOption(`${key} value`, 'an array', itemsUnknown);
  if (items.length > GGUF_MAX_ARRAY_LENGTH) throw invalidOption(`${key} value`, `at most ${GGUF_MAX_ARRAY_LENGTH} elements`, items);
  o.u32(iid);
  o.u64(BigInt(items.length));
  const it = itemType as Exclude<GgufValueType, 'ARRAY'>;
  for (let j = 0; j < items.length; j++) putScalar(o, it, items[j], `${key}[${j}]`);
}

interface PlannedTensor {
  spec: GgufTensorSpec;
  ne: number[];
  numel: number;
  nbytes: number;
  offset: number;
}

function planTensor(t: unknown, i: number, names: Set<string>): PlannedTensor {
  const spec = checkObject(`tensors[${i}]`, t as GgufTensorSpec | null, 'a { name, type, shape, data } object');
  const { name, type, shape, data } = spec;
  if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name, 'utf8') >= 64) {
    throw invalidOption(`tensors[${i}].name`, 'a non-empty name of fewer than 64 UTF-8 bytes', name);
  }
  if (names.has(name)) throw invalidOption(name, 'unique tensor names', name);
  names.add(name);
  if (!(WRITE_TYPES as readonly unknown[]).includes(type)) throw invalidOption(`${name}: type`, `one of ${WRITE_TYPES.map((x) => `"${x}"`).join(', ')}`, type);
  if (!Array.isArray(shape) || shape.length < 1 || shape.length > 4 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw invalidOption(`${name}: shape`, '1 to 4 positive integers (row-major)', shape);
  }
  if (!(data instanceof Float32Array) && !(data instanceof Uint8Array) && typeof data !== 'function') {
    throw invalidOption(`${name}: data`, 'a Float32Array, encoded bytes (Uint8Array), or a function returning one', data);
  }
  const ne = shape.slice().reverse();
  const numel = shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(numel)) throw invalidOption(`${name}: shape`, 'a shape whose element count is a safe integer', shape);
  const info = GGML_TYPES[type];
  if (ne[0] % info.blockSize !== 0) {
    throw invalidOption(`${name}: type`, `a type whose block size divides ne[0] = ${ne[0]} (the last dimension of shape [${shape.join(', ')}]); ${type} needs a multiple of ${info.blockSize} (choose a fallback such as F16 for this tensor)`, type);
  }
  if (data instanceof Float32Array && data.length !== numel) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${name}: data has ${data.length} elements but shape [${shape.join(', ')}] needs ${numel} (nothing written)`, { tensor: name });
  }
  const nbytes = (numel / info.blockSize) * info.typeSize;
  if (data instanceof Float32Array && ENCODED_ONLY.includes(type)) throw invalidOption(`${name}: data`, `encoded ${type} blocks (Uint8Array): lowbit writes ${type} from encoded blocks only`, 'Float32Array');
  if (data instanceof Uint8Array && data.byteLength !== nbytes) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${name}: ${data.byteLength} encoded bytes, but ${type} [${shape.join(', ')}] is ${nbytes} bytes (nothing written)`, { tensor: name });
  }
  return { spec, ne, numel, nbytes, offset: 0 };
}

const alignUp = (x: number, a: number): number => Math.ceil(x / a) * a;

async function writeAll(fh: fs.promises.FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const want = Math.min(data.byteLength - done, 1 << 30);
    const { bytesWritten } = await fh.write(data, done, want);
    done += bytesWritten;
  }
}

/**
 * Write a GGUF v3 file (docs/formats.md §6.4): header, KVs (every value type of §6.1, arrays of
 * scalars and strings), tensor infos, padding, then each tensor's data encoded as its type and
 * zero-padded to ALIGNMENT (the last one too).
 *
 * Everything is validated before the file is created: keys (§6.2 syntax, unique, no
 * `general.alignment` entry), value types and ranges, tensor names (unique, < 64 bytes), shapes (1–4
 * positive dims), types, `ne[0]` divisible by the block size, eager data lengths.
 *
 * The write is atomic (`<file>.tmp-<hex>`, fsync, rename; the temp file is removed on any error).
 * The parent directory is created when missing.
 *
 * Errors: LOWBIT_INVALID_OPTION (the option, key or tensor named, e.g. a Q8_0 tensor whose ne[0]
 * is not a multiple of 32); LOWBIT_SHAPE_MISMATCH (data of the wrong length, also from a producer);
 * LOWBIT_NUMERICAL (an F16 value or a block scale beyond the fp16 range, a non-finite value in a
 * block-quantised tensor); LOWBIT_IO naming the path; LOWBIT_ABORTED; an error thrown by a data
 * producer is rethrown unchanged. In every error case no file is left behind.
 */
export async function writeGguf(file: string, spec: GgufWriteSpec, options: WriteGgufOptions = {}): Promise<WriteGgufResult> {
  if (typeof file !== 'string' || file.length === 0) throw invalidOption('file', 'a path for the .gguf file', file);
  checkObject('spec', spec, 'a { metadata, tensors, alignment? } object');
  if (!Array.isArray(spec.metadata)) throw invalidOption('spec.metadata', 'an array of [key, type, value]', spec.metadata);
  if (!Array.isArray(spec.tensors)) throw invalidOption('spec.tensors', 'an array of tensors', spec.tensors);
  checkObject('options', options, 'an object');
  const signal = checkSignal(options.signal);
  const report = safeReporter(options.onProgress);
  const a = spec.alignment;
  if (a !== undefined && (typeof a !== 'number' || !Number.isSafeInteger(a) || a < 8 || a > 0xffffffff || (a & (a - 1)) !== 0)) {
    throw invalidOption('alignment', 'a power of two ≥ 8 (or absent for the default 32)', a);
  }
  const alignment = a ?? GGUF_DEFAULT_ALIGNMENT;

  // ---- plan: header bytes and offsets (§6.4) ----
  const o = new Out();
  o.u32(GGUF_MAGIC);
  o.u32(3);
  o.u64(BigInt(spec.tensors.length));
  o.u64(BigInt(spec.metadata.length + (a !== undefined ? 1 : 0)));
  const seen = new Set<string>();
  if (a !== undefined) {
    o.str('general.alignment');
    o.u32(GGUF_VALUE_TYPES.indexOf('UINT32'));
    o.u32(a);
  }
  spec.metadata.forEach((e, i) => {
    putKv(o, e, i, seen);
  });
  const names = new Set<string>();
  const planned = spec.tensors.map((t, i) => planTensor(t, i, names));
  let offset = 0;
  for (const p of planned) {
    p.offset = offset;
    offset = alignUp(offset + p.nbytes, alignment);
  }
  for (const p of planned) {
    o.str(p.spec.name);
    o.u32(p.ne.length);
    for (const d of p.ne) o.u64(BigInt(d));
    o.u32(GGML_TYPES[p.spec.type].id);
    o.u64(BigInt(p.offset));
  }
  o.zeros(alignUp(o.length, alignment) - o.length);
  const header = o.done();
  const total = header.length + offset;
  if (signal?.aborted) throw abortError('writeGguf');

  // ---- write ----
  const final = path.resolve(file);
  const tmp = `${final}.tmp-${randomBytes(6).toString('hex')}`;
  let fh: fs.promises.FileHandle | null = null;
  let created = false;
  let producerFailure: { error: unknown } | null = null;
  try {
    await fs.promises.mkdir(path.dirname(final), { recursive: true });
    fh = await fs.promises.open(tmp, 'wx');
    created = true;
    await writeAll(fh, header);
    let written = 0;
    for (const p of planned) {
      const { name, type, shape } = p.spec;
      if (signal?.aborted) throw abortError('writeGguf', `tensor "${name}"`);
      let x: unknown = p.spec.data;
      if (typeof x === 'function') {
        try {
          x = await (x as () => Float32Array | Uint8Array | Promise<Float32Array | Uint8Array>)();
        } catch (pe) {
          producerFailure = { error: pe };
          throw pe;
        }
        if (!(x instanceof Float32Array) && !(x instanceof Uint8Array)) throw invalidOption(`${name}: data producer result`, 'a Float32Array or encoded bytes', x);
        if (x instanceof Uint8Array && x.byteLength !== p.nbytes) {
          throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${name}: data producer returned ${x.byteLength} encoded bytes, but ${type} [${shape.join(', ')}] is ${p.nbytes} bytes (nothing written)`, { tensor: name });
        }
        if (x instanceof Float32Array && x.length !== p.numel) {
          throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${name}: data producer returned ${x.length} elements but shape [${shape.join(', ')}] needs ${p.numel} (nothing written)`, { tensor: name });
        }
      }
      if (!(x instanceof Uint8Array) && ENCODED_ONLY.includes(type)) throw invalidOption(`${name}: data producer result`, `encoded ${type} blocks (Uint8Array)`, 'Float32Array');
      // (the F16/BF16 conversion and the block encoders refuse non-finite values themselves)
      const bytes = x instanceof Uint8Array ? x : encodeGgml(type as GgmlEncodeType, x as Float32Array, name);
      if (bytes.byteLength !== p.nbytes) throw new LowbitError('LOWBIT_INTERNAL', `${name}: encoded ${bytes.byteLength} bytes, planned ${p.nbytes}`);
      // the last check of what is written, encoded or given as bytes: no NaN/Inf value or block scale
      const bad = firstNonFiniteGgml(type, bytes);
      if (bad) {
        const what = bad.block === null ? `non-finite value (${bad.value}) at flat index ${bad.index}` : `non-finite block scale (${bad.value}) in block ${bad.block}`;
        throw new LowbitError('LOWBIT_NUMERICAL', `${name}: ${what} of [${shape.join(', ')}] (${type}); refusing to write it (no file written)`, { tensor: name, index: bad.index });
      }
      await writeAll(fh, bytes);
      const pad = alignUp(p.nbytes, alignment) - p.nbytes; // offsets are aligned, so this aligns the absolute position too
      if (pad > 0) await writeAll(fh, new Uint8Array(pad));
      report({ phase: 'write', done: ++written, total: planned.length, module: name });
    }
    await fh.sync();
    const st = await fh.stat();
    await fh.close();
    fh = null;
    if (st.size !== total) throw new LowbitError('LOWBIT_INTERNAL', `${tmp}: wrote ${st.size} bytes, planned ${total}`);
    if (signal?.aborted) throw abortError('writeGguf');
    await fs.promises.rename(tmp, final);
    created = false;
    try {
      const d = await fs.promises.open(path.dirname(final), 'r');
      try {
        await d.sync(); // persist the rename; best effort (unsupported on some platforms)
      } finally {
        await d.close();
      }
    } catch {
      // best effort
    }
    return { file: final, bytes: total };
  } catch (e) {
    if (fh) await fh.close().catch(() => undefined);
    if (created) await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    const pf = producerFailure as { error: unknown } | null;
    if (pf && pf.error === e) throw e;
    if (e instanceof LowbitError) throw e;
    throw toLowbitError(e, created ? tmp : final);
  }
}

// ---------------------------------------------------------------------------------------------
// llama-architecture spec (§6.3)
// ---------------------------------------------------------------------------------------------

/** Hyper-parameters written as `llama.*` / `general.name` keys. */
/** The `llama.*` metadata of a model (the reader's {@link GgufLlamaConfig} without `headDim`, which GGUF derives), plus `general.name`. */
export type LlamaGgufConfig = Omit<GgufLlamaConfig, 'headDim'> & { name: string };

/** Options of {@link buildLlamaGgufSpec}. */
export interface LlamaGgufOptions {
  /**
   * Type of the embedding and the linear weights. Norms (and biases) are always F32. For a block
   * type, a tensor whose `ne[0]` (in_features) is not a multiple of 32 is stored as F16 instead and
   * listed in `fallbacks`.
   */
  type: 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q4_K';
  /**
   * RoPE row order of the given q/k weights: 'adjacent' (llama2.c, GGUF: written as they are) or
   * 'half' (Hugging Face rotate-half: rows permuted to adjacent-pair order per head, §3.3).
   */
  ropeOrder: 'adjacent' | 'half';
}

/**
 * A tensor given to {@link buildLlamaGgufSpec}: row-major values and shape (`[out, in]` for
 * linears), or a 2-D tensor already encoded as ggml blocks (`encoded`: its type and bytes, rows of
 * `in / 32` blocks), which is written in its own type whatever `opts.type` says.
 */
export interface LlamaTensorInput {
  /**
   * The values, or a producer of them called once, when the tensor is written: a streaming export
   * holds one tensor in f32 at a time instead of the whole model (its length is checked then).
   */
  data?: Float32Array | (() => Float32Array);
  /** Store `data` in this type instead of `opts.type` (e.g. F16 for what a GPTQ checkpoint left unquantized). */
  as?: 'F32' | 'F16' | 'BF16';
  encoded?: { type: 'Q8_0' | 'Q4_0' | 'Q4_1'; bytes: Uint8Array };
  shape: number[];
}

/** Permute whole rows of `rows × rowBytes` bytes from rotate-half to adjacent-pair order (§3.3). */
function halfToAdjacentByteRows(b: Uint8Array, heads: number, hd: number, rowBytes: number): Uint8Array {
  const out = new Uint8Array(b.byteLength);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd / 2; i++) {
      for (let t = 0; t < 2; t++) {
        const src = h * hd + t * (hd / 2) + i, dst = h * hd + 2 * i + t;
        out.set(b.subarray(src * rowBytes, (src + 1) * rowBytes), dst * rowBytes);
      }
    }
  }
  return out;
}

/** A spec for {@link writeGguf}, plus the tensors that fell back to another type and why. */
export interface LlamaGgufSpec extends GgufWriteSpec {
  fallbacks: { name: string; reason: string }[];
}

/** `LLAMA_FTYPE_*` of the requested type (§6.3 general.file_type). */
// Q4_K: llama.cpp's MOSTLY_Q4_K_S (14), the mix closest to all-Q4_K weights
const FILE_TYPES: Record<LlamaGgufOptions['type'], number> = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 7, Q4_K: 14, BF16: 32 };

/**
 * Permute the rows of a `(heads·hd, cols)` matrix (or a `heads·hd` bias, cols = 1) from
 * rotate-half to adjacent-pair order (§3.3): `gguf_row(h, 2i + t) = hf_row(h, t·hd/2 + i)`.
 */
export function halfToAdjacentRows(w: Float32Array, heads: number, hd: number, cols: number): Float32Array {
  if (w.length !== heads * hd * cols) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `halfToAdjacentRows: ${w.length} values for ${heads}×${hd} rows of ${cols}`);
  const out = new Float32Array(w.length);
  const half = hd / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let t = 0; t < 2; t++) {
        const dst = h * hd + 2 * i + t;
        const src = h * hd + t * half + i;
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

/** §8.4's token type of a piece (when the vocabulary carries none). */
function tokenTypeOf(id: number, piece: string, v: Vocab): number {
  if (id === 0) return 2;
  if (id === v.bos || id === v.eos) return 3;
  if (/^<0x[0-9A-F]{2}>$/.test(piece)) return 6;
  return 1;
}

/**
 * The {@link writeGguf} spec of a llama-architecture model (docs/formats.md §6.3): the `general.*`,
 * `llama.*` and `tokenizer.ggml.*` keys with their exact types, and the tensors under their GGUF
 * names in the order embedding, layers (attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
 * ffn_gate, ffn_up, ffn_down), output_norm, output.
 *
 * @param cfg hyper-parameters (positive integers; dim % nHeads = 0; nHeads % nKvHeads = 0; even
 *   head size).
 * @param vocab the vocabulary in llama2.c spelling (see {@link Vocab}); written as SentencePiece
 *   pieces (space → `▁`, BOS/EOS → `<s>`/`</s>`), scores as FLOAT32, token types from
 *   `vocab.tokenTypes` when present, else §8.4's rule (2 for id 0, 3 for BOS/EOS, 6 for `<0xXX>`,
 *   1 otherwise). Unknown id 0, `add_bos_token` true.
 * @param tensors HF-style names (§3.2) → row-major data and shape. `lm_head.weight` is optional:
 *   without it `output.weight` is omitted (tied; llama.cpp reuses the embedding). q/k/v/o biases
 *   are accepted (F32). Any other name, a missing tensor or a wrong shape is an error.
 * @param opts the weight type and the RoPE row order of q/k.
 *
 * Data are not copied: eager tensors are passed through, producers stay producers (called when
 * the tensor is written), permuted q/k are lazy producers.
 * Errors: LOWBIT_INVALID_OPTION (config, options, unknown names, vocabulary size),
 * LOWBIT_SHAPE_MISMATCH (a tensor's shape or length), LOWBIT_NOT_FOUND (a missing tensor).
 */
export function buildLlamaGgufSpec(cfg: LlamaGgufConfig, vocab: Vocab, tensors: Map<string, LlamaTensorInput>, opts: LlamaGgufOptions): LlamaGgufSpec {
  checkObject('cfg', cfg, 'a config object');
  for (const k of ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'contextLength'] as const) {
    const v = cfg[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > 0xffffffff) throw invalidOption(`cfg.${k}`, 'a positive integer (UINT32)', v);
  }
  for (const k of ['rmsEps', 'ropeTheta'] as const) {
    const v = cfg[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw invalidOption(`cfg.${k}`, 'a positive finite number', v);
  }
  if (typeof cfg.name !== 'string') throw invalidOption('cfg.name', 'a string', cfg.name);
  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize } = cfg;
  if (dim % nHeads !== 0) throw invalidOption('cfg.nHeads', `a divisor of dim ${dim}`, nHeads);
  if (nHeads % nKvHeads !== 0) throw invalidOption('cfg.nKvHeads', `a divisor of nHeads ${nHeads}`, nKvHeads);
  const hd = dim / nHeads;
  if (hd % 2 !== 0) throw invalidOption('cfg.nHeads', `a head count giving an even head size (dim ${dim} / nHeads = ${hd})`, nHeads);
  checkObject('opts', opts, 'a { type, ropeOrder } object');
  if (!Object.prototype.hasOwnProperty.call(FILE_TYPES, opts.type)) throw invalidOption('opts.type', 'one of "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K"', opts.type);
  checkOneOf('opts.ropeOrder', opts.ropeOrder, ['adjacent', 'half']);
  const vocabUnknown: unknown = vocab;
  if (typeof vocabUnknown !== 'object' || vocabUnknown === null || !Array.isArray(vocab.pieces) || !(vocab.scores instanceof Float32Array)) {
    throw invalidOption('vocab', 'a Vocab (pieces, scores, bos, eos)', vocab);
  }
  if (vocab.pieces.length !== vocabSize || vocab.scores.length !== vocabSize) {
    throw invalidOption('vocab', `${vocabSize} pieces and scores (cfg.vocabSize)`, vocab.pieces);
  }
  if (!(tensors instanceof Map)) throw invalidOption('tensors', 'a Map of HF-style names to { data, shape }', tensors);

  const qd = nHeads * hd;
  const kvd = nKvHeads * hd;
  const want = new Map<string, number[]>();
  want.set('model.embed_tokens.weight', [vocabSize, dim]);
  const layerParts: [string, number[]][] = [
    ['input_layernorm.weight', [dim]], ['self_attn.q_proj.weight', [qd, dim]], ['self_attn.k_proj.weight', [kvd, dim]],
    ['self_attn.v_proj.weight', [kvd, dim]], ['self_attn.o_proj.weight', [dim, qd]], ['post_attention_layernorm.weight', [dim]],
    ['mlp.gate_proj.weight', [hiddenDim, dim]], ['mlp.up_proj.weight', [hiddenDim, dim]], ['mlp.down_proj.weight', [dim, hiddenDim]],
  ];
  const biasParts: [string, number[]][] = [['self_attn.q_proj.bias', [qd]], ['self_attn.k_proj.bias', [kvd]], ['self_attn.v_proj.bias', [kvd]], ['self_attn.o_proj.bias', [dim]]];
  for (let i = 0; i < nLayers; i++) {
    for (const [p, s] of layerParts) want.set(`model.layers.${i}.${p}`, s);
    for (const [p, s] of biasParts) if (tensors.has(`model.layers.${i}.${p}`)) want.set(`model.layers.${i}.${p}`, s);
  }
  want.set('model.norm.weight', [dim]);
  if (tensors.has('lm_head.weight')) want.set('lm_head.weight', [vocabSize, dim]);
  for (const name of tensors.keys()) {
    if (!want.has(name)) {
      const why = llamaTensorNameToGguf(name) === null ? 'not a llama tensor name (§3.2)' : `outside this model's ${nLayers} layers / parts`;
      throw invalidOption(`tensors: "${name}"`, `only the llama tensors of §3.2 (${why})`, name);
    }
  }

  const out: GgufTensorSpec[] = [];
  const fallbacks: { name: string; reason: string }[] = [];
  let anyBlock = false;
  const blockType = opts.type === 'Q8_0' || opts.type === 'Q4_0' || opts.type === 'Q4_1' || opts.type === 'Q4_K';
  for (const [hfName, shape] of want) {
    const t = tensors.get(hfName);
    if (!t) throw new LowbitError('LOWBIT_NOT_FOUND', `buildLlamaGgufSpec: missing tensor ${hfName} [${shape.join(', ')}]`, { tensor: hfName });
    const enc = t.encoded;
    const entry: unknown = t;
    if (typeof entry !== 'object' || entry === null || !Array.isArray(t.shape) ||
        (enc === undefined ? !(t.data instanceof Float32Array || typeof t.data === 'function') : !(enc.bytes instanceof Uint8Array) || !['Q8_0', 'Q4_0', 'Q4_1'].includes(enc.type))) {
      throw invalidOption(`tensors: "${hfName}"`, 'a { data: Float32Array | () => Float32Array, shape } or { encoded: { type: Q8_0|Q4_0|Q4_1, bytes }, shape } entry', t);
    }
    if (t.shape.length !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
      throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${hfName}: expected shape [${shape.join(', ')}], got [${t.shape.join(', ')}]`, { tensor: hfName });
    }
    const numel = shape.reduce((a, b) => a * b, 1);
    const name = llamaTensorNameToGguf(hfName);
    if (name === null) throw new LowbitError('LOWBIT_INTERNAL', `${hfName}: no GGUF name (planned above as a llama tensor)`, { tensor: hfName });
    if (enc) {
      const info = GGML_TYPES[enc.type];
      if (shape.length !== 2 || shape[1] % info.blockSize !== 0 || enc.bytes.byteLength !== (numel / info.blockSize) * info.typeSize) {
        throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${hfName}: ${enc.bytes.byteLength} bytes of ${enc.type} do not hold shape [${shape.join(', ')}]`, { tensor: hfName });
      }
      anyBlock = true;
      let bytes: Uint8Array | (() => Uint8Array) = enc.bytes;
      if (opts.ropeOrder === 'half' && /\.self_attn\.[qk]_proj\.weight$/.test(hfName)) {
        const heads = hfName.includes('.q_proj.') ? nHeads : nKvHeads, src = enc.bytes;
        bytes = () => halfToAdjacentByteRows(src, heads, hd, (shape[1] / info.blockSize) * info.typeSize);
      }
      out.push({ name, type: enc.type, shape: shape.slice(), data: bytes });
      continue;
    }
    const checked = (v: Float32Array): Float32Array => {
      if (!(v instanceof Float32Array)) throw invalidOption(`tensors: "${hfName}": data producer result`, 'a Float32Array', v);
      if (v.length !== numel) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${hfName}: ${v.length} values for shape [${shape.join(', ')}] (${numel})`, { tensor: hfName });
      return v;
    };
    const given = t.data;
    if (given === undefined) throw invalidOption(`tensors: "${hfName}"`, 'a data array or producer', given);
    if (given instanceof Float32Array) checked(given);
    let type: GgufWriteType = t.as ?? opts.type;
    if (shape.length === 1) type = 'F32'; // norms and biases
    else if (blockType && shape[shape.length - 1] % 32 !== 0) {
      type = 'F16';
      fallbacks.push({ name, reason: `ne[0] = ${shape[shape.length - 1]} (in_features) is not a multiple of the ${opts.type} block size 32; stored as F16` });
    } else if (type === 'Q4_K' && shape[shape.length - 1] % 256 !== 0) {
      // llama.cpp falls back to Q5_0 here; lowbit has no Q5_0 encoder and takes the wider Q8_0
      type = 'Q8_0';
      fallbacks.push({ name, reason: `ne[0] = ${shape[shape.length - 1]} (in_features) is not a multiple of the Q4_K super-block size 256; stored as Q8_0` });
    }
    if (type === 'Q8_0' || type === 'Q4_0' || type === 'Q4_1' || type === 'Q4_K') anyBlock = true;
    let data: Float32Array | (() => Float32Array) = given instanceof Float32Array ? given : () => checked(given());
    if (opts.ropeOrder === 'half' && /\.self_attn\.[qk]_proj\.(weight|bias)$/.test(hfName)) {
      const heads = hfName.includes('.q_proj.') ? nHeads : nKvHeads;
      const cols = shape.length === 2 ? shape[1] : 1;
      const src = data;
      data = () => halfToAdjacentRows(typeof src === 'function' ? src() : src, heads, hd, cols);
    }
    out.push({ name, type, shape: shape.slice(), data });
  }

  const tokens = new Array<string>(vocabSize);
  for (let id = 0; id < vocabSize; id++) {
    const p = vocab.pieces[id];
    if (typeof p !== 'string') throw invalidOption(`vocab.pieces[${id}]`, 'a string', p);
    tokens[id] = id === vocab.bos ? '<s>' : id === vocab.eos ? '</s>' : p.replace(/ /g, '\u2581');
  }
  let tokenTypes: Int32Array;
  if (vocab.tokenTypes instanceof Int32Array && vocab.tokenTypes.length === vocabSize) tokenTypes = vocab.tokenTypes;
  else {
    tokenTypes = new Int32Array(vocabSize);
    for (let id = 0; id < vocabSize; id++) tokenTypes[id] = tokenTypeOf(id, tokens[id], vocab);
  }
  for (const [k, id] of [['bos', vocab.bos], ['eos', vocab.eos]] as const) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw invalidOption(`vocab.${k}`, `a token id in [0, ${vocabSize})`, id);
  }

  const metadata: GgufMetadataEntry[] = [
    ['general.architecture', 'STRING', 'llama'],
    ['general.name', 'STRING', cfg.name],
    ['general.file_type', 'UINT32', FILE_TYPES[opts.type]],
  ];
  if (anyBlock) metadata.push(['general.quantization_version', 'UINT32', 2]);
  metadata.push(
    ['llama.context_length', 'UINT32', cfg.contextLength],
    ['llama.embedding_length', 'UINT32', dim],
    ['llama.block_count', 'UINT32', nLayers],
    ['llama.feed_forward_length', 'UINT32', hiddenDim],
    ['llama.rope.dimension_count', 'UINT32', hd],
    ['llama.attention.head_count', 'UINT32', nHeads],
    ['llama.attention.head_count_kv', 'UINT32', nKvHeads],
    ['llama.attention.layer_norm_rms_epsilon', 'FLOAT32', cfg.rmsEps],
    ['llama.rope.freq_base', 'FLOAT32', cfg.ropeTheta],
    ['llama.vocab_size', 'UINT32', vocabSize],
    ['tokenizer.ggml.model', 'STRING', 'llama'],
    ['tokenizer.ggml.tokens', 'ARRAY', { itemType: 'STRING', value: tokens }],
    ['tokenizer.ggml.scores', 'ARRAY', { itemType: 'FLOAT32', value: vocab.scores }],
    ['tokenizer.ggml.token_type', 'ARRAY', { itemType: 'INT32', value: tokenTypes }],
    ['tokenizer.ggml.bos_token_id', 'UINT32', vocab.bos],
    ['tokenizer.ggml.eos_token_id', 'UINT32', vocab.eos],
    ['tokenizer.ggml.unknown_token_id', 'UINT32', Math.max(0, tokenTypes.indexOf(2))],
    ['tokenizer.ggml.add_bos_token', 'BOOL', true],
  );
  return { metadata, tensors: out, fallbacks };
}
