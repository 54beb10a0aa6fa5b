/**
 * A GGUF file taken apart for mutation (docs/formats.md §6): the header as a list of KVs (raw value
 * bytes) and tensor infos, the data section as bytes, and a writer that puts them back together and
 * records where every structural field (counts, lengths, type ids, dims, offsets) landed, so a
 * mutation can make exactly one of them lie.
 *
 * This reads only files the fuzzer wrote itself from valid seeds, so it assumes a well-formed file.
 */
import { concat } from './json-mutate';

/** GGUF value type ids (§6.1). */
export const VT = { UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12 } as const;
const SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** ggml type sizes: id → [block size, bytes per block]. */
export const GGML: Record<number, [number, number]> = { 0: [1, 4], 1: [1, 2], 2: [32, 18], 3: [32, 20], 8: [32, 34], 12: [256, 144], 14: [256, 210], 30: [1, 2] };

export interface GgufKv {
  key: Uint8Array;
  type: number;
  /** The value's bytes after its type id. */
  value: Uint8Array;
}

export interface GgufTi {
  name: Uint8Array;
  ne: bigint[];
  type: number;
  offset: bigint;
}

export interface GgufDoc {
  magic: number;
  version: number;
  kvs: GgufKv[];
  tis: GgufTi[];
  alignment: number;
  /** The data section (from the aligned end of the header to the end of the file). */
  data: Uint8Array;
}

/** One structural field of a written file. */
export interface Field {
  role: 'magic' | 'version' | 'tensor_count' | 'kv_count' | 'key length' | 'value type' | 'string length' | 'array item type' | 'array length' | 'n_dims' | 'ne' | 'ggml type' | 'offset';
  at: number;
  size: 4 | 8;
  label: string;
}

const u64 = (b: Uint8Array, at: number) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).readBigUInt64LE(at);
const u32 = (b: Uint8Array, at: number) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).readUInt32LE(at);

/** Walk one value of type `type` at `at`; returns its end; records its length fields. */
function walkValue(b: Uint8Array, at: number, type: number, fields: Field[] | null, label: string): number {
  if (type === VT.STRING) {
    fields?.push({ role: 'string length', at, size: 8, label });
    return at + 8 + Number(u64(b, at));
  }
  if (type === VT.ARRAY) {
    const item = u32(b, at);
    const n = Number(u64(b, at + 4));
    fields?.push({ role: 'array item type', at, size: 4, label }, { role: 'array length', at: at + 4, size: 8, label });
    let p = at + 12;
    if (item === VT.STRING) {
      for (let i = 0; i < n; i++) p = walkValue(b, p, VT.STRING, i < 4 || i === n - 1 ? fields : null, `${label}[${i}]`);
      return p;
    }
    return p + n * SIZES[item];
  }
  return at + SIZES[type];
}

const align = (x: number, a: number) => Math.ceil(x / a) * a;

/** Take a (valid) GGUF file apart. */
export function parseGguf(b: Uint8Array): GgufDoc {
  const magic = u32(b, 0), version = u32(b, 4);
  const nt = Number(u64(b, 8)), nkv = Number(u64(b, 16));
  let p = 24;
  const kvs: GgufKv[] = [];
  let alignment = 32;
  for (let i = 0; i < nkv; i++) {
    const kl = Number(u64(b, p));
    const key = b.slice(p + 8, p + 8 + kl);
    p += 8 + kl;
    const type = u32(b, p);
    p += 4;
    const end = walkValue(b, p, type, null, '');
    kvs.push({ key, type, value: b.slice(p, end) });
    if (Buffer.from(key).toString() === 'general.alignment') alignment = u32(b, p);
    p = end;
  }
  const tis: GgufTi[] = [];
  for (let i = 0; i < nt; i++) {
    const nl = Number(u64(b, p));
    const name = b.slice(p + 8, p + 8 + nl);
    p += 8 + nl;
    const nd = u32(b, p);
    p += 4;
    const ne: bigint[] = [];
    for (let d = 0; d < nd; d++, p += 8) ne.push(u64(b, p));
    const type = u32(b, p);
    const offset = u64(b, p + 4);
    p += 12;
    tis.push({ name, ne, type, offset });
  }
  return { magic, version, kvs, tis, alignment, data: b.slice(align(p, alignment)) };
}

/** Little-endian writer that records fields. */
class W {
  parts: Uint8Array[] = [];
  len = 0;
  fields: Field[] = [];
  put(b: Uint8Array): void {
    this.parts.push(b);
    this.len += b.length;
  }
  u32(v: number, role?: Field['role'], label = ''): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    if (role) this.fields.push({ role, at: this.len, size: 4, label });
    this.put(b);
  }
  u64(v: bigint, role?: Field['role'], label = ''): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, v));
    if (role) this.fields.push({ role, at: this.len, size: 8, label });
    this.put(b);
  }
}

/** Put a document back together; `fields` lists where each structural field is. */
export function writeGgufDoc(doc: GgufDoc): { bytes: Uint8Array; fields: Field[]; dataStart: number } {
  const w = new W();
  w.u32(doc.magic, 'magic', 'magic');
  w.u32(doc.version, 'version', 'version');
  w.u64(BigInt(doc.tis.length), 'tensor_count', 'tensor_count');
  w.u64(BigInt(doc.kvs.length), 'kv_count', 'kv_count');
  for (const kv of doc.kvs) {
    const label = `key "${Buffer.from(kv.key).toString()}"`;
    w.u64(BigInt(kv.key.length), 'key length', label);
    w.put(kv.key);
    w.u32(kv.type, 'value type', label);
    const at = w.len;
    w.put(kv.value);
    const sub: Field[] = [];
    try {
      walkValue(kv.value, 0, kv.type, sub, label);
    } catch {
      // a value already made inconsistent by an earlier mutation: no fields inside it
    }
    for (const f of sub) w.fields.push({ ...f, at: f.at + at });
  }
  for (const t of doc.tis) {
    const label = `tensor "${Buffer.from(t.name).toString()}"`;
    w.u64(BigInt(t.name.length), 'string length', `${label} name`);
    w.put(t.name);
    w.u32(t.ne.length, 'n_dims', label);
    t.ne.forEach((v, d) => w.u64(v, 'ne', `${label} ne[${d}]`));
    w.u32(t.type, 'ggml type', label);
    w.u64(t.offset, 'offset', label);
  }
  const dataStart = align(w.len, doc.alignment > 0 && doc.alignment < 1 << 20 ? doc.alignment : 32);
  w.put(new Uint8Array(dataStart - w.len));
  w.put(doc.data);
  return { bytes: concat(...w.parts), fields: w.fields, dataStart };
}

/** Byte size of a tensor info's data (0 for an unknown type). */
export function tensorBytes(t: GgufTi): number {
  const g = GGML[t.type] as [number, number] | undefined;
  if (!g) return 0;
  const numel = t.ne.reduce((a, b) => a * Number(b), 1);
  return (numel / g[0]) * g[1];
}

/** A scalar value's bytes. */
export function scalarBytes(type: number, v: number | bigint | boolean): Uint8Array {
  const b = Buffer.alloc(SIZES[type]);
  switch (type) {
    case VT.UINT8: b.writeUInt8(Number(v) & 0xff); break;
    case VT.INT8: b.writeInt8(((Number(v) + 128) & 0xff) - 128); break;
    case VT.UINT16: b.writeUInt16LE(Number(v) & 0xffff); break;
    case VT.INT16: b.writeInt16LE(((Number(v) + 32768) & 0xffff) - 32768); break;
    case VT.UINT32: b.writeUInt32LE(Number(BigInt.asUintN(32, BigInt(Math.trunc(Number(v)))))); break;
    case VT.INT32: b.writeInt32LE(Number(BigInt.asIntN(32, BigInt(Math.trunc(Number(v)))))); break;
    case VT.FLOAT32: b.writeFloatLE(Number(v)); break;
    case VT.BOOL: b.writeUInt8(v === true ? 1 : Number(v) & 0xff); break;
    case VT.UINT64: b.writeBigUInt64LE(BigInt.asUintN(64, typeof v === 'bigint' ? v : BigInt(Math.trunc(Number(v))))); break;
    case VT.INT64: b.writeBigInt64LE(BigInt.asIntN(64, typeof v === 'bigint' ? v : BigInt(Math.trunc(Number(v))))); break;
    default: b.writeDoubleLE(Number(v));
  }
  return b;
}

/** A STRING value's bytes (u64 length + bytes). */
export function stringBytes(s: Uint8Array): Uint8Array {
  const l = Buffer.alloc(8);
  l.writeBigUInt64LE(BigInt(s.length));
  return concat(l, s);
}

/** An ARRAY value's bytes from an item type and raw item bytes. */
export function arrayBytes(item: number, count: number, items: Uint8Array): Uint8Array {
  const h = Buffer.alloc(12);
  h.writeUInt32LE(item, 0);
  h.writeBigUInt64LE(BigInt(count), 4);
  return concat(h, items);
}

/** The key of a KV as text. */
export function keyOf(kv: GgufKv): string {
  return Buffer.from(kv.key).toString('utf8');
}
