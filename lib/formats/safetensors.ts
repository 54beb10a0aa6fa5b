/**
 * safetensors reader and writer (docs/formats.md §2), single files and sharded directories.
 *
 * Layout: `u64 N` (little-endian) · `N` bytes of UTF-8 JSON header · tensor data. Each header key
 * maps a tensor name to `{dtype, shape, data_offsets: [BEGIN, END]}`, offsets relative to the
 * first data byte, END exclusive; the optional `__metadata__` maps strings to strings.
 *
 * Reader: opening reads only the 8-byte length and the header of each file (never the data), and
 * validates every rule of §2.3, so a malformed file fails at open with LOWBIT_BAD_FORMAT naming the
 * file and the tensor/key. Data is read per tensor on demand: a zero-copy view of a native mmap of
 * the file when the addon is available, otherwise `fs.readSync` into a fresh buffer.
 *
 * Writer: headers are computed from dtype/shape alone, then tensor bytes are streamed in file order
 * (lazy producers are called one at a time and their bytes dropped after writing), so memory stays
 * bounded by the largest tensor. Every file goes to `<name>.tmp-<hex>` first, is fsync'd, and all
 * are renamed only after the whole write succeeded; on failure every temp file is removed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { LowbitError, abortError, toLowbitError, badFormat, formatBytes } from '../errors';
import { openForRead, readFully } from './io';
import { jsonDepth, MAX_JSON_DEPTH } from './json';
import { checkObject, checkSignal, invalidOption } from '../config/validate';
import { openMapping, type NativeMapping } from '../native';
import { DTYPES, DTYPE_SIZES, UNSUPPORTED_DTYPES, assertFiniteTensor, firstNonFinite, isDtype, numelOf, toFloat32 as bytesToFloat32, type Dtype } from './dtype';

export type { Dtype } from './dtype';

/** Largest header a reader accepts, in bytes (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Default shard size limit of {@link writeSafetensors}: 5 GiB. */
export const DEFAULT_MAX_SHARD_BYTES = 5 * 1024 ** 3;

/** Where one tensor's bytes are. */
export interface TensorInfo {
  name: string;
  dtype: Dtype;
  /** Dimensions, row-major; `[]` for a 0-rank tensor (one element). */
  shape: number[];
  /** Absolute path of the file holding the tensor. */
  file: string;
  /** Absolute byte offset of the data in `file`. */
  offset: number;
  byteLength: number;
}

/** The parsed, validated header of one safetensors file. */
export interface SafetensorsHeader {
  /** Absolute path of the file. */
  file: string;
  fileSize: number;
  /** `N`, the JSON header length in bytes (including padding). */
  headerLength: number;
  /** `8 + N`: where tensor data starts in the file. */
  dataOffset: number;
  /** `__metadata__` (empty object when absent). */
  metadata: Record<string, string>;
  /** Tensors in header order, with absolute offsets. */
  tensors: TensorInfo[];
}

/** A read-only view of a safetensors file or sharded checkpoint. */
export interface SafetensorsReader {
  /** Absolute paths of the files read (one, or the shards in name order). */
  readonly files: string[];
  /** `__metadata__` of the files merged; for a key present in several shards the first wins. */
  readonly metadata: Record<string, string>;
  /** Tensor names: per file in header order, files in {@link files} order. */
  names(): string[];
  has(name: string): boolean;
  /** Where a tensor is; an unknown name is LOWBIT_NOT_FOUND. */
  info(name: string): TensorInfo;
  /**
   * The tensor's raw little-endian bytes: a zero-copy view of the mapped file when the native
   * addon is available (valid even after `close()`; do not write to it), else a fresh buffer.
   */
  bytes(name: string): Uint8Array;
  /** The tensor decoded to f32 (see `toFloat32` in formats/dtype for per-dtype rules). */
  toFloat32(name: string, out?: Float32Array): Float32Array;
  /** Sum of every tensor's byte length. */
  totalBytes(): number;
  /**
   * Hint that a tensor's bytes are no longer needed: its mapped pages leave the resident set
   * (views stay valid and re-read the file if touched). Streaming pipelines call it per tensor so
   * RSS stays far below the checkpoint size. A no-op without the addon.
   */
  release(name: string): void;
  /** Release file handles and mappings; any later call is LOWBIT_DISPOSED. Idempotent. */
  close(): void;
}

/** One tensor to write. */
export interface TensorEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  /**
   * The little-endian bytes, exactly `numel · size(dtype)` long, or a function producing them.
   * Producers are called once each, one at a time, in file order, and their result is dropped as
   * soon as it is written: use them to stream a model larger than memory.
   */
  data: Uint8Array | (() => Uint8Array | Promise<Uint8Array>);
}

/** Options of {@link writeSafetensors}. */
export interface WriteSafetensorsOptions {
  /**
   * Extra `__metadata__` entries (string values). `"format": "pt"` is always written first; a
   * `format` entry here must be `"pt"`.
   */
  metadata?: Record<string, string>;
  /**
   * Largest sum of tensor bytes per file. When the total exceeds it the checkpoint is sharded at
   * tensor boundaries (a tensor larger than the limit gets a shard of its own).
   * @default 5 GiB (5 · 2^30)
   */
  maxShardBytes?: number;
  /**
   * Base of the file names: `<base>.safetensors`, or `<base>-00001-of-0000K.safetensors` plus
   * `<base>.safetensors.index.json` when sharded.
   * @default "model"
   */
  baseName?: string;
  /** Abort between tensors; the promise rejects with LOWBIT_ABORTED and nothing is written. */
  signal?: AbortSignal;
  /**
   * Write F32/F16/BF16 tensors holding NaN or ±Inf. By default such a tensor stops the write with
   * LOWBIT_NUMERICAL naming it and its first bad index (nothing written): lowbit's readers refuse
   * those checkpoints, so lowbit never makes one unless asked (test fixtures, forensic copies).
   * @default false
   */
  allowNonFinite?: boolean;
}

/** What {@link writeSafetensors} wrote. */
export interface WriteSafetensorsResult {
  /** Absolute paths of the safetensors files, in shard order. */
  files: string[];
  /** Sum of all tensor byte lengths (the index's `total_size`). */
  totalBytes: number;
  /** Absolute path of the index file, or null for a single file. */
  index: string | null;
}

// ---------------------------------------------------------------------------------------------
// Header parsing and validation
// ---------------------------------------------------------------------------------------------

function describeJson(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `${JSON.stringify(v).slice(0, 80)} (array)`;
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `${JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v)} (string)`;
  return `${JSON.stringify(v)} (${typeof v})`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `N bytes`, with the binary-unit size beside it from 1 KiB up. */
function bytesAndUnits(n: number): string {
  return n < 1024 ? `${n} bytes` : `${n} bytes (${formatBytes(n, 1)})`;
}

/**
 * Scan JSON text that `JSON.parse` already accepted, returning the top-level keys in file order and
 * the first duplicate key of any object (JSON.parse silently keeps the last of duplicates).
 */
function scanKeys(text: string): { topKeys: string[]; duplicate: { key: string; parent: string | null } | null } {
  interface Frame { obj: boolean; keys: Set<string> | null; expectKey: boolean; key: string | null }
  const stack: Frame[] = [];
  const topKeys: string[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      const top = stack[stack.length - 1];
      if (stack.length > 0 && top.keys && top.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) {
          const parent = stack.length >= 2 ? stack[stack.length - 2].key : null;
          return { topKeys, duplicate: { key, parent } };
        }
        top.keys.add(key);
        top.key = key;
        top.expectKey = false;
        if (stack.length === 1) topKeys.push(key);
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push({ obj: true, keys: new Set(), expectKey: true, key: null });
    } else if (c === 0x5b /* [ */) {
      stack.push({ obj: false, keys: null, expectKey: false, key: null });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      if (stack.length > 0 && stack[stack.length - 1].obj) stack[stack.length - 1].expectKey = true;
    }
  }
  return { topKeys, duplicate: null };
}

/** Parse and validate the header text of `file` (§2.3). `dataSize` = file size − 8 − N. */
function parseHeader(file: string, raw: Uint8Array, dataSize: number, dataOffset: number): { metadata: Record<string, string>; tensors: TensorInfo[] } {
  if (raw.length === 0 || raw[0] !== 0x7b) {
    const found = raw.length === 0 ? 'an empty header' : `byte 0x${raw[0].toString(16).padStart(2, '0')}`;
    throw badFormat(file, `header must be a JSON object starting with '{', found ${found}`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    throw badFormat(file, `header (${raw.length} bytes) is not valid UTF-8`);
  }
  const { depth, at } = jsonDepth(text);
  if (depth > MAX_JSON_DEPTH) throw badFormat(file, `header JSON is nested more than ${MAX_JSON_DEPTH} levels deep (at offset ${at}); lowbit reads at most ${MAX_JSON_DEPTH}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw badFormat(file, `header is not valid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(parsed)) throw badFormat(file, `header must be a JSON object, found ${describeJson(parsed)}`);
  const { topKeys, duplicate } = scanKeys(text);
  if (duplicate) {
    if (duplicate.parent === null) {
      throw badFormat(file, duplicate.key === '__metadata__' ? 'duplicate key "__metadata__"' : `duplicate tensor name "${duplicate.key}"`, { tensor: duplicate.key });
    }
    throw badFormat(file, `"${duplicate.parent}": duplicate key "${duplicate.key}"`, { tensor: duplicate.parent });
  }

  let metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const name of topKeys) {
    const v = parsed[name];
    if (name === '__metadata__') {
      if (!isPlainObject(v)) throw badFormat(file, `"__metadata__" must be an object of strings, found ${describeJson(v)}`, { key: name });
      const entries: [string, string][] = [];
      for (const [k, mv] of Object.entries(v)) {
        if (typeof mv !== 'string') {
          throw badFormat(file, `__metadata__ "${k}": expected a string value, found ${describeJson(mv)}`, { key: k });
        }
        entries.push([k, mv]);
      }
      metadata = Object.fromEntries(entries); // fromEntries defines own properties, even "__proto__"
      continue;
    }
    const t = `tensor "${name}"`;
    if (!isPlainObject(v)) throw badFormat(file, `${t}: expected an object {dtype, shape, data_offsets}, found ${describeJson(v)}`, { tensor: name });
    const dtype = v.dtype;
    if (!isDtype(dtype)) {
      if (typeof dtype === 'string' && UNSUPPORTED_DTYPES.includes(dtype)) {
        throw new LowbitError('LOWBIT_UNSUPPORTED', `${file}: ${t}: dtype ${dtype} is valid safetensors but not supported by lowbit (supported: ${DTYPES.join(', ')})`, { file, tensor: name });
      }
      throw badFormat(file, `${t}: unknown dtype ${describeJson(dtype)} (expected one of ${DTYPES.join(', ')})`, { tensor: name });
    }
    const shape = v.shape;
    if (!Array.isArray(shape)) throw badFormat(file, `${t}: shape must be an array of non-negative integers, found ${describeJson(shape)}`, { tensor: name });
    for (let d = 0; d < shape.length; d++) {
      const s = shape[d] as unknown;
      if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0) {
        throw badFormat(file, `${t}: shape[${d}] must be a non-negative integer, found ${describeJson(s)}`, { tensor: name });
      }
    }
    const offs = v.data_offsets;
    if (
      !Array.isArray(offs) || offs.length !== 2 ||
      !offs.every((o: unknown) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)
    ) {
      throw badFormat(file, `${t}: data_offsets must be two non-negative integers [BEGIN, END], found ${describeJson(offs)}`, { tensor: name });
    }
    const [begin, end] = offs as [number, number];
    if (end < begin) throw badFormat(file, `${t}: data_offsets [${begin}, ${end}] end before they begin`, { tensor: name });
    const numel = numelOf(shape as number[]);
    const need = numel * DTYPE_SIZES[dtype];
    if (!Number.isSafeInteger(need)) throw badFormat(file, `${t}: ${dtype} [${shape.join(', ')}] is too large`, { tensor: name });
    if (end - begin !== need) {
      throw badFormat(file, `${t}: data_offsets [${begin}, ${end}] cover ${end - begin} bytes but ${dtype} [${shape.join(', ')}] needs ${need}`, { tensor: name });
    }
    if (end > dataSize) {
      throw badFormat(file, `${t}: data_offsets [${begin}, ${end}] extend past the end of the data section (${dataSize} bytes)`, { tensor: name });
    }
    tensors.push(Object.freeze({
      name, dtype, shape: Object.freeze((shape as number[]).slice()) as number[], file, offset: dataOffset + begin, byteLength: need,
    }));
  }

  // Sorted by BEGIN (then END, so zero-size tensors come first), the tensors must tile the data
  // section exactly: no holes, no overlap, no trailing bytes.
  const order = tensors.slice().sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
  let expected = 0;
  let prev: TensorInfo | null = null;
  for (const ti of order) {
    const begin = ti.offset - dataOffset;
    if (begin > expected) {
      const after = prev ? `after tensor "${prev.name}" ends at ${expected}` : 'at the start of the data section';
      throw badFormat(file, `tensor "${ti.name}": data_offsets begin at ${begin}, leaving a hole of ${begin - expected} bytes ${after}`, { tensor: ti.name });
    }
    if (begin < expected) {
      throw badFormat(file, `tensor "${ti.name}": data_offsets [${begin}, ${begin + ti.byteLength}] overlap tensor "${prev?.name ?? '(none)'}" which ends at ${expected}`, { tensor: ti.name });
    }
    expected = begin + ti.byteLength;
    prev = ti;
  }
  if (expected !== dataSize) {
    const last = prev ? `the last tensor "${prev.name}" ends at ${expected}` : 'there are no tensors';
    throw badFormat(file, `${dataSize - expected} trailing bytes: ${last} but the data section has ${dataSize} bytes`, prev ? { tensor: prev.name } : undefined);
  }
  return { metadata, tensors };
}

/**
 * Read and validate the header of one safetensors file (reads the 8-byte length and the JSON
 * header only). Throws LOWBIT_NOT_FOUND for a missing file and LOWBIT_BAD_FORMAT (message starting
 * with the path and naming the tensor/key) for any violation of docs/formats.md §2.3.
 */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  if (typeof file !== 'string' || file.length === 0) throw invalidOption('file', 'a path to a .safetensors file', file);
  const abs = path.resolve(file);
  const fd = openForRead(abs);
  try {
    let fileSize: number;
    try {
      const st = fs.fstatSync(fd);
      if (st.isDirectory()) throw new LowbitError('LOWBIT_IO', `${abs}: is a directory, expected a .safetensors file`, { file: abs });
      fileSize = st.size;
    } catch (e) {
      throw toLowbitError(e, abs);
    }
    if (fileSize < 8) throw badFormat(abs, `file is ${fileSize} bytes, too short for the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    readFully(fd, lenBuf, 0, abs);
    const n64 = lenBuf.readBigUInt64LE(0);
    if (n64 > BigInt(MAX_HEADER_BYTES)) {
      throw badFormat(abs, `header length ${n64} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
    }
    const n = Number(n64);
    if (8 + n > fileSize) {
      throw badFormat(abs, `header length ${n} exceeds the file size: 8 + ${n} > ${bytesAndUnits(fileSize)} (truncated file?)`);
    }
    const raw = Buffer.allocUnsafe(n);
    readFully(fd, raw, 8, abs);
    const { metadata, tensors } = parseHeader(abs, raw, fileSize - 8 - n, 8 + n);
    return { file: abs, fileSize, headerLength: n, dataOffset: 8 + n, metadata, tensors };
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // nothing useful to do: the header was read (or an error is already propagating)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

function loadIndex(indexPath: string): { names: string[]; weightMap: Record<string, unknown> } {
  let text: string;
  try {
    // the index is a JSON object of names: held to the header's size limit, checked before reading
    const size = fs.statSync(indexPath).size;
    if (size > MAX_HEADER_BYTES) throw badFormat(indexPath, `index of ${size} bytes exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
    text = fs.readFileSync(indexPath, 'utf8');
  } catch (e) {
    if (e instanceof LowbitError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new LowbitError('LOWBIT_NOT_FOUND', `${indexPath}: no such file`, { file: indexPath });
    throw toLowbitError(e, indexPath);
  }
  const { depth, at } = jsonDepth(text);
  if (depth > MAX_JSON_DEPTH) throw badFormat(indexPath, `index JSON is nested more than ${MAX_JSON_DEPTH} levels deep (at offset ${at}); lowbit reads at most ${MAX_JSON_DEPTH}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw badFormat(indexPath, `index is not valid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(parsed)) throw badFormat(indexPath, `index must be a JSON object, found ${describeJson(parsed)}`);
  const wm = parsed.weight_map;
  if (!isPlainObject(wm)) throw badFormat(indexPath, `"weight_map" must be an object mapping tensor names to file names, found ${describeJson(wm)}`, { key: 'weight_map' });
  const { duplicate } = scanKeys(text);
  if (duplicate && duplicate.parent === 'weight_map') {
    throw badFormat(indexPath, `weight_map: tensor "${duplicate.key}" is listed twice`, { tensor: duplicate.key });
  }
  return { names: Object.keys(wm), weightMap: wm };
}

class Reader implements SafetensorsReader {
  readonly files: string[];
  readonly metadata: Record<string, string>;
  private readonly _where: string;
  /** tensors whose bytes were scanned for NaN/Inf */
  private readonly _checked = new Set<string>();
  private readonly _tensors: Map<string, TensorInfo>;
  private readonly _maps = new Map<string, NativeMapping | null>();
  private readonly _fds = new Map<string, number>();
  private _closed = false;

  /** @internal */
  constructor(where: string, headers: SafetensorsHeader[]) {
    this._where = where;
    this.files = headers.map((h) => h.file);
    this._tensors = new Map();
    const meta: [string, string][] = [];
    const seenMeta = new Set<string>();
    for (const h of headers) {
      for (const t of h.tensors) this._tensors.set(t.name, t);
      for (const [k, v] of Object.entries(h.metadata)) {
        if (!seenMeta.has(k)) {
          seenMeta.add(k);
          meta.push([k, v]);
        }
      }
    }
    this.metadata = Object.freeze(Object.fromEntries(meta));
  }

  private _check(): void {
    if (this._closed) throw new LowbitError('LOWBIT_DISPOSED', `${this._where}: safetensors reader used after close()`);
  }

  names(): string[] {
    this._check();
    return [...this._tensors.keys()];
  }

  has(name: string): boolean {
    this._check();
    return this._tensors.has(name);
  }

  info(name: string): TensorInfo {
    this._check();
    const t = this._tensors.get(name);
    if (!t) throw new LowbitError('LOWBIT_NOT_FOUND', `${this._where}: no tensor "${name}" (the checkpoint has ${this._tensors.size} tensors)`, { tensor: name, file: this._where });
    return t;
  }

  private _mapping(file: string): NativeMapping | null {
    const known = this._maps.get(file);
    if (known !== undefined) return known;
    let m: NativeMapping | null;
    try {
      m = openMapping(file);
    } catch {
      m = null; // a broken addon or a failed mmap: read with fs instead
    }
    this._maps.set(file, m);
    return m;
  }

  private _fd(file: string): number {
    let fd = this._fds.get(file);
    if (fd === undefined) {
      fd = openForRead(file);
      this._fds.set(file, fd);
    }
    return fd;
  }

  bytes(name: string): Uint8Array {
    const t = this.info(name);
    const b = this._read(name, t);
    // every float tensor handed out is scanned once for NaN/Inf (LOWBIT_NUMERICAL naming the file,
    // tensor and index): on a mapping the scan is the pass that pages the tensor in
    if (!this._checked.has(name)) {
      assertFiniteTensor(b, t.dtype, t.file, name, t.shape);
      this._checked.add(name);
    }
    return b;
  }

  private _read(name: string, t: TensorInfo): Uint8Array {
    if (t.byteLength === 0) return new Uint8Array(0);
    const m = this._mapping(t.file);
    if (m) {
      try {
        const ab = m.view(t.offset, t.byteLength);
        if (ab.byteLength === t.byteLength) return new Uint8Array(ab);
      } catch {
        // fall back to a plain read below
      }
    }
    const buf = new Uint8Array(t.byteLength);
    try {
      readFully(this._fd(t.file), buf, t.offset, t.file);
    } catch (e) {
      throw toLowbitError(e, `${t.file}: tensor "${name}"`);
    }
    return buf;
  }

  toFloat32(name: string, out?: Float32Array): Float32Array {
    const t = this.info(name);
    return bytesToFloat32(this.bytes(name), t.dtype, out);
  }

  release(name: string): void {
    const t = this.info(name);
    const m = this._maps.get(t.file);
    if (m && t.byteLength > 0) {
      try {
        m.release(t.offset, t.byteLength);
      } catch {
        // only a hint
      }
    }
  }

  totalBytes(): number {
    this._check();
    let s = 0;
    for (const t of this._tensors.values()) s += t.byteLength;
    return s;
  }

  close(): void {
    if (this._closed) return;
    this._closed = true;
    for (const m of this._maps.values()) {
      try {
        m?.close();
      } catch {
        // views already handed out keep the mapping alive natively; nothing else to release
      }
    }
    for (const fd of this._fds.values()) {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
    }
    this._maps.clear();
    this._fds.clear();
  }
}

function openSharded(indexPath: string): Reader {
  const dir = path.dirname(indexPath);
  const { names, weightMap: wm } = loadIndex(indexPath);
  const want = new Map<string, string>(); // tensor → shard file name
  const shardNames = new Set<string>();
  for (const name of names) {
    const f = wm[name];
    if (typeof f !== 'string' || f.length === 0 || f !== path.basename(f) || f === '.' || f === '..' || f.includes('\\')) {
      throw badFormat(indexPath, `weight_map "${name}": expected a file name in the same directory, found ${describeJson(f)}`, { tensor: name });
    }
    want.set(name, f);
    shardNames.add(f);
  }
  const shards = [...shardNames].sort();
  const headers: SafetensorsHeader[] = [];
  for (const s of shards) {
    const p = path.join(dir, s);
    if (!fs.existsSync(p)) {
      const user = [...want].find(([, f]) => f === s)?.[0] ?? '(unknown)';
      throw new LowbitError('LOWBIT_NOT_FOUND', `${indexPath}: shard "${s}" (holding tensor "${user}" and maybe others) does not exist`, { file: p, tensor: user });
    }
    headers.push(readSafetensorsHeader(p));
  }
  const owner = new Map<string, string>(); // tensor → shard it was found in
  for (const h of headers) {
    const shard = path.basename(h.file);
    for (const t of h.tensors) {
      const first = owner.get(t.name);
      if (first !== undefined) {
        throw badFormat(h.file, `tensor "${t.name}" is also stored in shard "${first}"`, { tensor: t.name });
      }
      owner.set(t.name, shard);
      const listed = want.get(t.name);
      if (listed === undefined) {
        throw badFormat(h.file, `tensor "${t.name}" is not listed in the index ${path.basename(indexPath)}`, { tensor: t.name });
      }
      if (listed !== shard) {
        throw badFormat(h.file, `tensor "${t.name}" is stored here but the index maps it to "${listed}"`, { tensor: t.name });
      }
    }
  }
  for (const [name, f] of want) {
    if (!owner.has(name)) {
      throw badFormat(indexPath, `tensor "${name}" is mapped to shard "${f}" but that file does not contain it`, { tensor: name, file: path.join(dir, f) });
    }
  }
  return new Reader(indexPath, headers);
}

/**
 * Open a safetensors checkpoint for reading. Reads and validates only the headers (milliseconds,
 * small memory, whatever the checkpoint size); tensor data is read on demand.
 *
 * @param p a `.safetensors` file, a `*.safetensors.index.json` file, or a directory holding
 *   `model.safetensors` (preferred, as Hugging Face does) or `model.safetensors.index.json`.
 *   A sharded index is checked against its shards: every shard exists (else LOWBIT_NOT_FOUND),
 *   every listed tensor is in the shard named, no shard holds unlisted tensors, and no tensor is in
 *   two shards (else LOWBIT_BAD_FORMAT).
 */
export function openSafetensors(p: string): SafetensorsReader {
  if (typeof p !== 'string' || p.length === 0) throw invalidOption('path', 'a path to a .safetensors file or a model directory', p);
  const abs = path.resolve(p);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new LowbitError('LOWBIT_NOT_FOUND', `${abs}: no such file or directory`, { file: abs }, { cause: e });
    throw toLowbitError(e, abs);
  }
  if (st.isDirectory()) {
    const single = path.join(abs, 'model.safetensors');
    if (fs.existsSync(single)) return new Reader(single, [readSafetensorsHeader(single)]);
    const index = path.join(abs, 'model.safetensors.index.json');
    if (fs.existsSync(index)) return openSharded(index);
    throw new LowbitError('LOWBIT_NOT_FOUND', `${abs}: directory holds neither model.safetensors nor model.safetensors.index.json`, { file: abs });
  }
  if (abs.endsWith('.index.json')) return openSharded(abs);
  return new Reader(abs, [readSafetensorsHeader(abs)]);
}

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

interface Planned {
  entry: TensorEntry;
  size: number;
  byteLength: number;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function validateEntries(tensors: unknown): Planned[] {
  if (!Array.isArray(tensors)) throw invalidOption('tensors', 'an array of {name, dtype, shape, data}', tensors);
  const seen = new Set<string>();
  const out: Planned[] = [];
  tensors.forEach((e: unknown, i: number) => {
    const at = `tensors[${i}]`;
    if (!isPlainObject(e)) throw invalidOption(at, 'an object {name, dtype, shape, data}', e);
    const { name, dtype, shape, data } = e;
    if (typeof name !== 'string' || name.length === 0 || name === '__metadata__' || LONE_SURROGATE.test(name)) {
      throw invalidOption(`${at}.name`, 'a non-empty, well-formed string other than "__metadata__"', name);
    }
    if (seen.has(name)) throw invalidOption(`${at}.name`, 'a name not used by another tensor', name);
    seen.add(name);
    if (!isDtype(dtype)) throw invalidOption(`${name}: dtype`, `one of ${DTYPES.join(', ')}`, dtype);
    if (!Array.isArray(shape)) throw invalidOption(`${name}: shape`, 'an array of non-negative integers', shape);
    shape.forEach((d: unknown, k: number) => {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) throw invalidOption(`${name}: shape[${k}]`, 'a non-negative integer', d);
    });
    const size = DTYPE_SIZES[dtype];
    const byteLength = numelOf(shape as number[]) * size;
    if (!Number.isSafeInteger(byteLength)) throw invalidOption(`${name}: shape`, 'a shape whose byte size is a safe integer', shape);
    if (data instanceof Uint8Array) {
      if (data.byteLength !== byteLength) {
        throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${name}: data has ${data.byteLength} bytes but ${dtype} [${shape.join(', ')}] needs ${byteLength}`, { tensor: name });
      }
    } else if (typeof data !== 'function') {
      throw invalidOption(`${name}: data`, 'a Uint8Array or a function returning one', data);
    }
    out.push({ entry: e as unknown as TensorEntry, size, byteLength });
  });
  return out;
}

function validateMetadata(metadata: unknown): [string, string][] {
  const entries: [string, string][] = [['format', 'pt']];
  if (metadata === undefined) return entries;
  if (!isPlainObject(metadata)) throw invalidOption('metadata', 'an object of string values', metadata);
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw invalidOption(`metadata.${k}`, 'a string', v);
    if (k === 'format') {
      if (v !== 'pt') throw invalidOption('metadata.format', '"pt" (safetensors loaders require it)', v);
      continue;
    }
    entries.push([k, v]);
  }
  return entries;
}

/** The JSON header text of one file (compact, keys in the given order; built by hand so that
 * integer-like tensor names keep their place, which a JS object would not guarantee). */
function headerText(meta: [string, string][], tensors: Planned[]): string {
  const parts = [`"__metadata__":{${meta.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`];
  let off = 0;
  for (const t of tensors) {
    const { name, dtype, shape } = t.entry;
    parts.push(`${JSON.stringify(name)}:{"dtype":${JSON.stringify(dtype)},"shape":[${shape.join(',')}],"data_offsets":[${off},${off + t.byteLength}]}`);
    off += t.byteLength;
  }
  return `{${parts.join(',')}}`;
}

/** 8-byte length + header padded with spaces so that 8 + N is a multiple of 8. */
function headerBytes(text: string): Uint8Array {
  const json = Buffer.from(text, 'utf8');
  const n = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + n, 0x20);
  out.writeBigUInt64LE(BigInt(n), 0);
  json.copy(out, 8);
  return out;
}

function indexText(totalSize: number, shards: { file: string; tensors: Planned[] }[]): string {
  const map: [string, string][] = [];
  for (const s of shards) for (const t of s.tensors) map.push([t.entry.name, s.file]);
  map.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const lines = map.map(([k, f]) => `    ${JSON.stringify(k)}: ${JSON.stringify(f)}`);
  return `{\n  "metadata": {\n    "total_size": ${totalSize}\n  },\n  "weight_map": {\n${lines.join(',\n')}\n  }\n}\n`;
}

async function writeAll(fh: fs.promises.FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const want = Math.min(data.byteLength - done, 1 << 30); // below the 2 GiB limit of one write
    const { bytesWritten } = await fh.write(data, done, want);
    done += bytesWritten;
  }
}

/**
 * Compare names with their digit runs read as numbers ("layers.2." before "layers.10."); ties
 * (equal numbers spelled differently, "01" and "1") fall back to code-unit order, so the order is
 * total and deterministic.
 */
export function naturalCompare(a: string, b: string): number {
  const re = /(\d+)|(\D+)/g;
  const pa = a.match(re) ?? [], pb = b.match(re) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i], y = pb[i];
    const dx = x.charCodeAt(0) >= 48 && x.charCodeAt(0) <= 57, dy = y.charCodeAt(0) >= 48 && y.charCodeAt(0) <= 57;
    if (dx && dy) {
      const nx = x.replace(/^0+(?=\d)/, ''), ny = y.replace(/^0+(?=\d)/, '');
      if (nx.length !== ny.length) return nx.length - ny.length;
      if (nx !== ny) return nx < ny ? -1 : 1;
    } else if (x !== y) {
      return x < y ? -1 : 1;
    }
  }
  if (pa.length !== pb.length) return pa.length - pb.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Write tensors as a safetensors checkpoint in directory `target` (created if missing), following
 * docs/formats.md §2.2: `"format": "pt"` metadata, tensors back-to-back by descending element size
 * then name, compact JSON padded so the data starts 8-aligned.
 *
 * The write is atomic: each file is written to `<name>.tmp-<hex>`, fsync'd, and all are renamed only
 * after every file was written; on any error every temp file is removed and no final name is
 * created. After a successful write, stale files of the other layout with the same base name
 * (`<base>.safetensors`, `<base>-NNNNN-of-NNNNN.safetensors`, the index) are removed, as Hugging
 * Face's save_pretrained does, so a reader never picks up an old checkpoint.
 *
 * Errors: LOWBIT_INVALID_OPTION for bad entries/options (duplicate names, unknown dtype, bad
 * shape, non-string metadata); LOWBIT_SHAPE_MISMATCH when data (or a producer's result) has the
 * wrong byte length; LOWBIT_IO naming the path for file-system failures; LOWBIT_ABORTED when
 * `signal` fires; an error thrown by a producer is rethrown unchanged.
 */
export async function writeSafetensors(target: string, tensors: TensorEntry[], opts: WriteSafetensorsOptions = {}): Promise<WriteSafetensorsResult> {
  if (typeof target !== 'string' || target.length === 0) throw invalidOption('target', 'a directory path', target);
  if (Array.isArray(checkObject('options', opts, 'an object'))) throw invalidOption('options', 'an object', opts);
  const planned = validateEntries(tensors);
  const meta = validateMetadata(opts.metadata);
  const maxShard = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (typeof maxShard !== 'number' || !Number.isSafeInteger(maxShard) || maxShard < 1) throw invalidOption('maxShardBytes', 'a positive integer', maxShard);
  const base = opts.baseName ?? 'model';
  const allowNonFinite = opts.allowNonFinite ?? false;
  if (typeof allowNonFinite !== 'boolean') throw invalidOption('allowNonFinite', 'a boolean', allowNonFinite);
  if (typeof base !== 'string' || base.length === 0 || base === '.' || base === '..' || /[/\\]/.test(base)) {
    throw invalidOption('baseName', 'a non-empty file name without path separators', base);
  }
  const signal = checkSignal(opts.signal);
  if (signal?.aborted) throw abortError('writeSafetensors');

  // Descending element size keeps every tensor naturally aligned (data starts 8-aligned).
  // Names in natural order (layer 2 before layer 10), so that a streaming producer is asked for
  // its layers in the order it makes them (GPTQ runs one decoder block at a time).
  planned.sort((a, b) => b.size - a.size || naturalCompare(a.entry.name, b.entry.name));
  const totalBytes = planned.reduce((s, t) => s + t.byteLength, 0);

  const groups: Planned[][] = [];
  let cur: Planned[] = [];
  let curBytes = 0;
  for (const t of planned) {
    if (cur.length > 0 && curBytes + t.byteLength > maxShard) {
      groups.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(t);
    curBytes += t.byteLength;
  }
  if (cur.length > 0 || groups.length === 0) groups.push(cur);
  const k = groups.length;
  const pad5 = (i: number) => String(i).padStart(5, '0');
  const shards = groups.map((g, i) => ({ file: k === 1 ? `${base}.safetensors` : `${base}-${pad5(i + 1)}-of-${pad5(k)}.safetensors`, tensors: g }));

  const dir = path.resolve(target);
  try {
    await fs.promises.mkdir(dir, { recursive: true });
  } catch (e) {
    throw toLowbitError(e, dir);
  }

  const temps: { tmp: string; final: string }[] = [];
  const tmpName = (final: string) => `${final}.tmp-${randomBytes(6).toString('hex')}`;
  let fh: fs.promises.FileHandle | null = null;
  let current = dir;
  let producerFailure: { error: unknown } | null = null;
  try {
    const writeFile = async (final: string, body: (h: fs.promises.FileHandle) => Promise<void>) => {
      const tmp = tmpName(final);
      current = tmp;
      fh = await fs.promises.open(tmp, 'wx');
      temps.push({ tmp, final });
      await body(fh);
      await fh.sync();
      await fh.close();
      fh = null;
    };
    for (const s of shards) {
      await writeFile(path.join(dir, s.file), async (h) => {
        await writeAll(h, headerBytes(headerText(meta, s.tensors)));
        for (const t of s.tensors) {
          if (signal?.aborted) throw abortError('writeSafetensors', `tensor "${t.entry.name}"`);
          const { name, dtype, shape, data } = t.entry;
          let bytes: unknown = data;
          if (typeof data === 'function') {
            try {
              bytes = await data();
            } catch (pe) {
              producerFailure = { error: pe };
              throw pe;
            }
            if (!(bytes instanceof Uint8Array)) throw invalidOption(`${name}: data producer result`, 'a Uint8Array', bytes);
            if (bytes.byteLength !== t.byteLength) {
              throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${name}: data producer returned ${bytes.byteLength} bytes but ${dtype} [${shape.join(', ')}] needs ${t.byteLength} (nothing written)`, { tensor: name });
            }
          }
          // the last check of what lowbit writes: a NaN or Inf never reaches a checkpoint
          const bad = allowNonFinite ? -1 : firstNonFinite(bytes as Uint8Array, dtype);
          if (bad >= 0) {
            throw new LowbitError('LOWBIT_NUMERICAL', `${name}: non-finite value (NaN or Inf) at flat index ${bad} of [${shape.join(', ')}] (${dtype}); refusing to write it (nothing written)`, { tensor: name, index: bad });
          }
          await writeAll(h, bytes as Uint8Array);
        }
      });
    }
    let index: string | null = null;
    if (k > 1) {
      index = path.join(dir, `${base}.safetensors.index.json`);
      const text = indexText(totalBytes, shards);
      await writeFile(index, async (h) => writeAll(h, Buffer.from(text, 'utf8')));
    }
    if (signal?.aborted) throw abortError('writeSafetensors');
    // Shards first, index last: a reader that sees the index sees complete shards.
    for (const t of temps) {
      current = t.final;
      await fs.promises.rename(t.tmp, t.final);
    }
    temps.length = 0;
    try {
      const d = await fs.promises.open(dir, 'r');
      try {
        await d.sync(); // persist the renames; unsupported on some platforms, hence best effort
      } finally {
        await d.close();
      }
    } catch {
      // best effort
    }
    // The write has succeeded; removing stale files of the other layout is best effort.
    const keep = new Set(shards.map((s) => s.file));
    if (index) keep.add(path.basename(index));
    const stale = new RegExp(`^${escapeRegExp(base)}(\\.safetensors|\\.safetensors\\.index\\.json|-\\d{5}-of-\\d{5}\\.safetensors)$`);
    try {
      for (const f of await fs.promises.readdir(dir)) {
        if (stale.test(f) && !keep.has(f)) await fs.promises.rm(path.join(dir, f), { force: true });
      }
    } catch {
      // leave them: the new files are complete and correctly named
    }
    return { files: shards.map((s) => path.join(dir, s.file)), totalBytes, index };
  } catch (e) {
    const open = fh as fs.promises.FileHandle | null;
    if (open) await open.close().catch(() => undefined);
    await Promise.all(temps.map((t) => fs.promises.rm(t.tmp, { force: true }).catch(() => undefined)));
    const pf = producerFailure as { error: unknown } | null;
    if (pf && pf.error === e) throw e; // a producer's own error, unchanged
    if (e instanceof LowbitError) throw e;
    throw toLowbitError(e, current);
  }
}
