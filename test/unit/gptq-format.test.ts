/**
 * GPTQ / AWQ-GEMM tensors and configs (docs/formats.md §4, §5, §9): the lib decoder against the
 * plain test decoder (test/helpers/gptq-decoder.ts) on the §9 vectors and on seeded random modules
 * packed by the tiny packer below, plus every §4.5 validation failure and config parsing.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LowbitError } from '../../lib/errors';
import { openSafetensors, writeSafetensors, type SafetensorsReader } from '../../lib/formats/safetensors';
import {
  awqLayoutProblem,
  convertZerosV1V2,
  decodeAwqModule,
  decodeGptqModule,
  gptqLayoutProblem,
  gptqQuantizationConfig,
  parseAwqConfig,
  parseGptqConfig,
  resolveGptqModuleConfig,
  type DecodedModule,
  type GptqConfig,
  type TensorByteSource,
} from '../../lib/formats/gptq';
import { plainDecodeAwq, plainDecodeGptq, type PlainDecoded } from '../helpers/gptq-decoder';
import { Rng } from '../helpers/rng';
import { must } from '../helpers/assert';

// ---------------------------------------------------------------------------------------------
// test plumbing

/** The tests' one seeded generator (test/helpers/rng.ts) as a function of no arguments, values in [0, 1). */
function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

interface Stored {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** An in-memory tensor container with the reader's has/info/bytes shape. */
class MemReader {
  readonly t = new Map<string, Stored>();
  add(name: string, dtype: string, shape: number[], bytes: Uint8Array): this {
    this.t.set(name, { dtype, shape, bytes });
    return this;
  }
  has(name: string): boolean {
    return this.t.has(name);
  }
  info(name: string): { dtype: string; shape: number[] } {
    const s = this.t.get(name);
    if (!s) throw new Error(`no tensor ${name}`);
    return { dtype: s.dtype, shape: s.shape };
  }
  bytes(name: string): Uint8Array {
    const s = this.t.get(name);
    if (!s) throw new Error(`no tensor ${name}`);
    return s.bytes;
  }
}

/** Little-endian bytes of int32 words (bit patterns; values ≥ 2^31 allowed). */
function i32Bytes(words: ArrayLike<number>): Uint8Array {
  const b = new Uint8Array(words.length * 4);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < words.length; i++) dv.setUint32(4 * i, words[i] >>> 0, true);
  return b;
}

/** Little-endian bytes of fp16 bit patterns. */
function f16Bytes(halves: ArrayLike<number>): Uint8Array {
  const b = new Uint8Array(halves.length * 2);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < halves.length; i++) dv.setUint16(2 * i, halves[i], true);
  return b;
}

/** The same bytes, as a view starting at an odd byte offset (exercises unaligned reads). */
function unaligned(b: Uint8Array): Uint8Array {
  const buf = new Uint8Array(b.length + 1);
  buf.set(b, 1);
  return buf.subarray(1);
}

function wordsOf(b: Uint8Array): number[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: number[] = [];
  for (let i = 0; i < b.byteLength / 4; i++) out.push(dv.getUint32(4 * i, true));
  return out;
}

function throwsLowbit(fn: () => unknown, code: string, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LowbitError, `expected a LowbitError, got ${String(e)}`);
    assert.equal(e.code, code, `code of: ${e.message}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
    return true;
  });
}

/** Bit-exact Float32Array comparison with the first mismatches in the message. */
function assertSameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: length`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  const bad: string[] = [];
  for (let i = 0; i < a.length && bad.length < 5; i++) if (ua[i] !== ub[i]) bad.push(`[${i}] ${a[i]} vs ${b[i]}`);
  assert.equal(bad.length, 0, `${what}: first mismatches ${bad.join(', ')}`);
}

function assertSameDecode(lib: DecodedModule, plain: PlainDecoded, what: string): void {
  assertSameBits(lib.weight, plain.weight, `${what} weight`);
  assert.deepEqual(Array.from(lib.codes), plain.codes, `${what} codes`);
  assert.deepEqual(Array.from(lib.zeros), plain.zeros, `${what} zeros`);
}

// ---------------------------------------------------------------------------------------------
// a tiny pure-TS packer (test side): value i of each run of 32 goes to bits [i·b, i·b + b)

function setValue(words: Uint32Array, runWords: number[], index: number, bits: number, value: number): void {
  for (let t = 0; t < bits; t++) {
    if (((value >> t) & 1) === 0) continue;
    const pos = index * bits + t;
    const w = runWords[Math.floor(pos / 32)];
    words[w] = (words[w] | (1 << pos % 32)) >>> 0;
  }
}

interface GptqParts {
  bits: number;
  rows: number; // out
  cols: number; // in
  groups: number;
  codes: number[]; // (rows, cols) row-major
  zeros: number[]; // true zeros (groups, rows)
  scales: number[]; // fp16 bit patterns (groups, rows)
  gIdx: number[]; // (cols)
  format: 'gptq' | 'gptq_v2';
}

interface Packed {
  qweight: Uint8Array;
  qzeros: Uint8Array;
  scales: Uint8Array;
  gIdx: Uint8Array;
}

function packGptq(p: GptqParts): Packed {
  const { bits, rows, cols, groups } = p;
  const qw = new Uint32Array(((cols * bits) / 32) * rows);
  for (let n = 0; n < rows; n++) {
    for (let k = 0; k < cols; k++) {
      const run = Math.floor(k / 32);
      const runWords = Array.from({ length: bits }, (_, j) => (run * bits + j) * rows + n);
      setValue(qw, runWords, k % 32, bits, p.codes[n * cols + k]);
    }
  }
  const zw = (rows * bits) / 32;
  const qz = new Uint32Array(groups * zw);
  for (let g = 0; g < groups; g++) {
    for (let n = 0; n < rows; n++) {
      const run = Math.floor(n / 32);
      const runWords = Array.from({ length: bits }, (_, j) => g * zw + run * bits + j);
      const z = p.zeros[g * rows + n];
      setValue(qz, runWords, n % 32, bits, p.format === 'gptq' ? z - 1 : z);
    }
  }
  return { qweight: i32Bytes(qw), qzeros: i32Bytes(qz), scales: f16Bytes(p.scales), gIdx: i32Bytes(p.gIdx) };
}

function addGptq(r: MemReader, prefix: string, pk: Packed, bits: number, rows: number, cols: number, groups: number): MemReader {
  return r
    .add(`${prefix}.qweight`, 'I32', [(cols * bits) / 32, rows], pk.qweight)
    .add(`${prefix}.qzeros`, 'I32', [groups, (rows * bits) / 32], pk.qzeros)
    .add(`${prefix}.scales`, 'F16', [groups, rows], pk.scales)
    .add(`${prefix}.g_idx`, 'I32', [cols], pk.gIdx);
}

function plainOf(pk: Packed, bits: number, rows: number, cols: number, groups: number, format: 'gptq' | 'gptq_v2'): PlainDecoded {
  return plainDecodeGptq({ ...pk, bits, rows, cols, groups, format });
}

function cfgOf(bits: number, groupSize: number, sym: boolean, format: 'gptq' | 'gptq_v2'): GptqConfig {
  return { bits, groupSize, sym, checkpointFormat: format, descAct: false, staticGroups: false, dynamic: null, lmHead: false, raw: {} };
}

const ONE = 0x3c00; // fp16 1.0
const P = 'model.layers.0.self_attn.q_proj';

// ---------------------------------------------------------------------------------------------

describe('GPTQ format: §9 test vectors', () => {
  /** A 32 × 32 module whose qweight is zero except the vector words in column `col`. */
  function vectorModule(bits: number, vectorWords: number[], col: number, zeroWord: number, format: 'gptq' | 'gptq_v2') {
    const rows = 32;
    const cols = 32;
    const qw = new Array<number>(bits * rows).fill(0);
    vectorWords.forEach((w, j) => (qw[j * rows + col] = w));
    const pk: Packed = {
      qweight: i32Bytes(qw),
      qzeros: i32Bytes(new Array<number>(bits).fill(zeroWord)),
      scales: f16Bytes(new Array<number>(rows).fill(ONE)),
      gIdx: i32Bytes(new Array<number>(cols).fill(0)),
    };
    const reader = addGptq(new MemReader(), P, pk, bits, rows, cols, 1);
    const lib = decodeGptqModule(reader, P, cfgOf(bits, -1, true, format));
    const plain = plainOf(pk, bits, rows, cols, 1, format);
    assertSameDecode(lib, plain, `${bits}-bit vector`);
    return { lib, rowCodes: Array.from(lib.codes.subarray(col * cols, col * cols + cols)) };
  }

  it('4-bit 0x87654321 = codes 1..8; sym zeros v1 0x77777777 and v2 0x88888888 both decode to 8', () => {
    for (const [zw, fmt] of [[0x77777777, 'gptq'], [0x88888888, 'gptq_v2']] as const) {
      const { lib, rowCodes } = vectorModule(4, [0x87654321, 0, 0, 0], 3, zw, fmt);
      assert.deepEqual(rowCodes.slice(0, 8), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.ok(rowCodes.slice(8).every((c) => c === 0));
      assert.ok(Array.from(lib.zeros).every((z) => z === 8));
      assert.deepEqual(Array.from(lib.weight.subarray(3 * 32, 3 * 32 + 8)), [-7, -6, -5, -4, -3, -2, -1, 0]);
      assert.equal(lib.weight[0], -8); // other columns: code 0 − zero 8
    }
    assert.equal(0x87654321 | 0, -2023406815);
    assert.equal(0x77777777 | 0, 2004318071);
  });

  it('2-bit 0xE4E4E4E4 = codes 0,1,2,3 repeated over 16 input channels', () => {
    const { lib, rowCodes } = vectorModule(2, [0xe4e4e4e4, 0], 0, 0x55555555, 'gptq');
    assert.deepEqual(rowCodes.slice(0, 16), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
    assert.ok(Array.from(lib.zeros).every((z) => z === 2));
  });

  it('8-bit 0xF0332211 = codes 0x11, 0x22, 0x33, 0xF0', () => {
    const { lib, rowCodes } = vectorModule(8, [0xf0332211, 0, 0, 0, 0, 0, 0, 0], 31, 0x7f7f7f7f, 'gptq');
    assert.deepEqual(rowCodes.slice(0, 4), [0x11, 0x22, 0x33, 0xf0]);
    assert.ok(Array.from(lib.zeros).every((z) => z === 128));
    assert.equal(lib.weight[31 * 32 + 3], 0xf0 - 128);
  });

  it('3-bit 0x88FAC688/0xC688FAC6/0xFAC688FA = codes i mod 8 (values 10 and 21 straddle words)', () => {
    const words = [0x88fac688, 0xc688fac6, 0xfac688fa];
    // sym 3-bit zeros: stored 3 (v1) in all 32 fields; the test packer makes the 3 words
    const zeroPk = packGptq({ bits: 3, rows: 32, cols: 32, groups: 1, codes: new Array<number>(1024).fill(0), zeros: new Array<number>(32).fill(4), scales: new Array<number>(32).fill(ONE), gIdx: new Array<number>(32).fill(0), format: 'gptq' });
    const zw = wordsOf(zeroPk.qzeros);
    const qw = new Array<number>(3 * 32).fill(0);
    words.forEach((w, j) => (qw[j * 32 + 7] = w));
    const pk: Packed = { qweight: i32Bytes(qw), qzeros: zeroPk.qzeros, scales: f16Bytes(new Array<number>(32).fill(ONE)), gIdx: i32Bytes(new Array<number>(32).fill(0)) };
    const reader = addGptq(new MemReader(), P, pk, 3, 32, 32, 1);
    const lib = decodeGptqModule(reader, P, cfgOf(3, -1, true, 'gptq'));
    assertSameDecode(lib, plainOf(pk, 3, 32, 32, 1, 'gptq'), '3-bit vector');
    assert.deepEqual(Array.from(lib.codes.subarray(7 * 32, 8 * 32)), Array.from({ length: 32 }, (_, i) => i % 8));
    assert.ok(Array.from(lib.zeros).every((z) => z === 4));
    assert.equal(zw.length, 3);
    // the test packer reproduces the vector words too
    const codes = new Array<number>(1024).fill(0);
    for (let k = 0; k < 32; k++) codes[k] = k % 8;
    const again = packGptq({ bits: 3, rows: 32, cols: 32, groups: 1, codes, zeros: new Array<number>(32).fill(4), scales: new Array<number>(32).fill(ONE), gIdx: new Array<number>(32).fill(0), format: 'gptq' });
    const w = wordsOf(again.qweight);
    assert.deepEqual([w[0], w[32], w[64]], words);
  });

  it('AWQ 0x86427531 = codes 1..8 for output channels 0..7 (qweight and qzeros)', () => {
    const rows = 16;
    const cols = 4;
    const qw = new Array<number>(cols * 2).fill(0);
    qw[0] = 0x86427531; // k = 0, channels 0..7
    qw[2 * 2 + 1] = 0x86427531; // k = 2, channels 8..15
    const pk = { qweight: i32Bytes(qw), qzeros: i32Bytes([0x86427531, 0]), scales: f16Bytes(new Array<number>(rows).fill(ONE)) };
    const reader = new MemReader()
      .add(`${P}.qweight`, 'I32', [cols, rows / 8], pk.qweight)
      .add(`${P}.qzeros`, 'I32', [1, rows / 8], pk.qzeros)
      .add(`${P}.scales`, 'F16', [1, rows], pk.scales);
    const lib = decodeAwqModule(reader, P, { groupSize: -1 });
    assertSameDecode(lib, plainDecodeAwq({ ...pk, rows, cols, groupSize: -1 }), 'AWQ vector');
    for (let n = 0; n < 8; n++) {
      assert.equal(lib.codes[n * cols + 0], n + 1);
      assert.equal(lib.codes[(8 + n) * cols + 2], n + 1);
      assert.equal(lib.zeros[n], n + 1);
      assert.equal(lib.zeros[8 + n], 0);
    }
    assert.equal(lib.weight[0], 0); // code 1 − zero 1
    assert.equal(0x86427531 | 0, -2042464975);
  });
});

describe('GPTQ format: random round trips (test packer → lib decoder == plain decoder)', () => {
  const rows = 64;
  const cols = 128;
  for (const bits of [2, 3, 4, 8]) {
    for (const g of [32, 64, -1]) {
      for (const [format, sym] of [['gptq', false], ['gptq_v2', false], ['gptq', true]] as const) {
        it(`bits ${bits}, group ${g}, ${format}${sym ? ', sym' : ''}, permuted g_idx`, () => {
          const seed = bits * 1000 + (g + 1) * 10 + (format === 'gptq' ? 0 : 1) + (sym ? 5 : 0);
          const r = rng(seed);
          const maxq = (1 << bits) - 1;
          const groups = g === -1 ? 1 : Math.ceil(cols / g);
          const gIdx = Array.from({ length: cols }, (_, k) => (g === -1 ? 0 : Math.floor(k / g)));
          for (let i = cols - 1; i > 0; i--) {
            const j = Math.floor(r() * (i + 1));
            [gIdx[i], gIdx[j]] = [gIdx[j], gIdx[i]];
          }
          const codes = Array.from({ length: rows * cols }, () => Math.floor(r() * (maxq + 1)));
          const zeros = Array.from({ length: groups * rows }, () =>
            sym ? 1 << (bits - 1) : format === 'gptq' ? 1 + Math.floor(r() * maxq) : Math.floor(r() * (maxq + 1)),
          );
          // random finite fp16 scales of either sign, exponents 5..24
          const scales = Array.from({ length: groups * rows }, () => (r() < 0.5 ? 0x8000 : 0) | ((5 + Math.floor(r() * 20)) << 10) | Math.floor(r() * 1024));
          const pk = packGptq({ bits, rows, cols, groups, codes, zeros, scales, gIdx, format });
          const odd = seed % 2 === 1;
          const used: Packed = odd
            ? { qweight: unaligned(pk.qweight), qzeros: unaligned(pk.qzeros), scales: unaligned(pk.scales), gIdx: unaligned(pk.gIdx) }
            : pk;
          const reader = addGptq(new MemReader(), P, used, bits, rows, cols, groups);
          const lib = decodeGptqModule(reader, P, cfgOf(bits, g, sym, format), { rows, cols });
          const plain = plainOf(pk, bits, rows, cols, groups, format);
          try {
            assertSameDecode(lib, plain, 'lib vs plain');
            assert.deepEqual(Array.from(lib.codes), codes);
            assert.deepEqual(Array.from(lib.zeros), zeros);
            assert.deepEqual(Array.from(lib.gIdx), gIdx);
            assert.equal(lib.rows, rows);
            assert.equal(lib.cols, cols);
          } catch (e) {
            (e as Error).message = `seed ${seed}: ${(e as Error).message}`;
            throw e;
          }
        });
      }
    }
  }

  it('AWQ random modules, groups 32 and -1', () => {
    for (const g of [32, -1]) {
      const seed = 77 + g;
      const r = rng(seed);
      const rows = 24;
      const cols = 64;
      const groups = g === -1 ? 1 : cols / g;
      const qw = Array.from({ length: cols * (rows / 8) }, () => Math.floor(r() * 2 ** 32));
      const qz = Array.from({ length: groups * (rows / 8) }, () => Math.floor(r() * 2 ** 32));
      const sc = Array.from({ length: groups * rows }, () => ((5 + Math.floor(r() * 20)) << 10) | Math.floor(r() * 1024));
      const pk = { qweight: i32Bytes(qw), qzeros: i32Bytes(qz), scales: f16Bytes(sc) };
      const reader = new MemReader()
        .add(`${P}.qweight`, 'I32', [cols, rows / 8], unaligned(pk.qweight))
        .add(`${P}.qzeros`, 'I32', [groups, rows / 8], pk.qzeros)
        .add(`${P}.scales`, 'F16', [groups, rows], pk.scales);
      const lib = decodeAwqModule(reader, P, { groupSize: g, bits: 4 });
      assertSameDecode(lib, plainDecodeAwq({ ...pk, rows, cols, groupSize: g }), `AWQ seed ${seed}`);
      assert.deepEqual(Array.from(lib.gIdx), Array.from({ length: cols }, (_, k) => (g === -1 ? 0 : Math.floor(k / g))));
    }
  });
});

describe('GPTQ format: §4.5 reader validation', () => {
  const bits = 4;
  const rows = 64;
  const cols = 64;
  const g = 32;
  const groups = 2;

  function valid(opts: { zeros?: number[]; gIdx?: number[] } = {}): Packed {
    const r = rng(5);
    return packGptq({
      bits,
      rows,
      cols,
      groups,
      codes: Array.from({ length: rows * cols }, () => Math.floor(r() * 16)),
      zeros: opts.zeros ?? Array.from({ length: groups * rows }, () => 1 + Math.floor(r() * 14)),
      scales: new Array<number>(groups * rows).fill(ONE),
      gIdx: opts.gIdx ?? Array.from({ length: cols }, (_, k) => Math.floor(k / g)),
      format: 'gptq_v2',
    });
  }
  const cfg = cfgOf(bits, g, false, 'gptq');

  it('accepts the valid module', () => {
    const reader = addGptq(new MemReader(), P, valid(), bits, rows, cols, groups);
    const d = decodeGptqModule(reader, P, cfg);
    assert.equal(d.rows, rows);
    assert.equal(d.scales.length, groups * rows);
  });

  for (const t of ['qweight', 'qzeros', 'scales', 'g_idx']) {
    it(`missing ${t} → LOWBIT_BAD_FORMAT naming the module and tensor`, () => {
      const reader = addGptq(new MemReader(), P, valid(), bits, rows, cols, groups);
      reader.t.delete(`${P}.${t}`);
      throwsLowbit(() => decodeGptqModule(reader, P, cfg), 'LOWBIT_BAD_FORMAT', P, `${P}.${t}`, 'missing');
    });
  }

  for (const [t, dtype] of [['qweight', 'F32'], ['qzeros', 'U32'], ['scales', 'BF16'], ['g_idx', 'I64']] as const) {
    it(`${t} with dtype ${dtype} → LOWBIT_BAD_FORMAT`, () => {
      const reader = addGptq(new MemReader(), P, valid(), bits, rows, cols, groups);
      const s = must(reader.t.get(`${P}.${t}`), `${P}.${t}`);
      s.dtype = dtype;
      throwsLowbit(() => decodeGptqModule(reader, P, cfg), 'LOWBIT_BAD_FORMAT', `${P}.${t}`, `dtype`, dtype);
    });
  }

  it('wrong shapes → LOWBIT_SHAPE_MISMATCH naming the tensor, expected vs got', () => {
    const cases: [string, number[], string][] = [
      ['qweight', [7, rows], '[8, 64]'],
      ['qweight', [8, rows, 1], '2-D'],
      ['qzeros', [groups, 7], '[2, 8]'],
      ['scales', [3, rows], '[2, 64]'], // G from scales disagrees with in / group_size
      ['qzeros', [3, 8], '[2, 8]'], // G of qzeros disagrees with scales
    ];
    for (const [t, shape, expected] of cases) {
      const reader = addGptq(new MemReader(), P, valid(), bits, rows, cols, groups);
      must(reader.t.get(`${P}.${t}`), `${P}.${t}`).shape = shape;
      throwsLowbit(() => decodeGptqModule(reader, P, cfg), 'LOWBIT_SHAPE_MISMATCH', `${P}.${t}`, expected, `[${shape.join(', ')}]`);
    }
    // g_idx with a length that cannot be packed
    const r2 = addGptq(new MemReader(), P, valid(), bits, rows, cols, groups);
    must(r2.t.get(`${P}.g_idx`), `${P}.g_idx`).shape = [65];
    throwsLowbit(() => decodeGptqModule(r2, P, cfg), 'LOWBIT_SHAPE_MISMATCH', P);
    // an explicit shape the tensors do not have
    const r3 = addGptq(new MemReader(), P, valid(), bits, rows, cols, groups);
    throwsLowbit(() => decodeGptqModule(r3, P, cfg, { rows: 96, cols: 64 }), 'LOWBIT_SHAPE_MISMATCH', `${P}.qweight`, '[8, 96]');
    // a group size that does not match the stored groups
    const r4 = addGptq(new MemReader(), P, valid(), bits, rows, cols, groups);
    throwsLowbit(() => decodeGptqModule(r4, P, cfgOf(bits, 16, false, 'gptq')), 'LOWBIT_SHAPE_MISMATCH', P, 'group_size 16');
  });

  it('byte length that disagrees with the shape → LOWBIT_BAD_FORMAT', () => {
    const reader = addGptq(new MemReader(), P, valid(), bits, rows, cols, groups);
    const s = must(reader.t.get(`${P}.scales`), `${P}.scales`);
    s.bytes = s.bytes.subarray(2);
    throwsLowbit(() => decodeGptqModule(reader, P, cfg), 'LOWBIT_BAD_FORMAT', `${P}.scales`, 'bytes');
  });

  it('g_idx out of [0, G) → LOWBIT_BAD_FORMAT naming the index', () => {
    for (const v of [groups, -1, 1000]) {
      const gIdx = Array.from({ length: cols }, (_, k) => Math.floor(k / g));
      gIdx[5] = v;
      const reader = addGptq(new MemReader(), P, valid({ gIdx }), bits, rows, cols, groups);
      throwsLowbit(() => decodeGptqModule(reader, P, cfg), 'LOWBIT_BAD_FORMAT', `${P}.g_idx`, `g_idx[5] = ${v}`, '[0, 2)');
    }
  });

  it('all-ones v1 qzeros field → LOWBIT_BAD_FORMAT naming module, group and output channel', () => {
    for (const b of [4, 3]) {
      const gs = 32;
      const zeros = new Array<number>(groups * rows).fill(3);
      zeros[1 * rows + 42] = 1 << b; // stored (v1) = 2^b − 1, all ones
      const pk = packGptq({ bits: b, rows, cols, groups, codes: new Array<number>(rows * cols).fill(0), zeros, scales: new Array<number>(groups * rows).fill(ONE), gIdx: Array.from({ length: cols }, (_, k) => Math.floor(k / gs)), format: 'gptq' });
      const reader = addGptq(new MemReader(), P, pk, b, rows, cols, groups);
      throwsLowbit(() => decodeGptqModule(reader, P, cfgOf(b, gs, false, 'gptq')), 'LOWBIT_BAD_FORMAT', `${P}.qzeros`, 'group 1, output channel 42', 'all-ones');
      // the same bits read as v2 are a legal zero 2^b − 1
      const d = decodeGptqModule(reader, P, cfgOf(b, gs, false, 'gptq_v2'));
      assert.equal(d.zeros[rows + 42], (1 << b) - 1);
    }
  });

  it('sym with a zero other than 2^(b−1) → LOWBIT_BAD_FORMAT naming module, group and channel', () => {
    const zeros = new Array<number>(groups * rows).fill(8);
    zeros[0 * rows + 17] = 7;
    const reader = addGptq(new MemReader(), P, valid({ zeros }), bits, rows, cols, groups);
    throwsLowbit(() => decodeGptqModule(reader, P, cfgOf(bits, g, true, 'gptq_v2')), 'LOWBIT_BAD_FORMAT', `${P}.qzeros`, 'group 0, output channel 17', 'must be 8, got 7');
    // read as v1 the same stored fields are 8 → zero 9, so every channel fails; the first is named
    const good = addGptq(new MemReader(), P, valid({ zeros: new Array<number>(groups * rows).fill(8) }), bits, rows, cols, groups);
    throwsLowbit(() => decodeGptqModule(good, P, cfgOf(bits, g, true, 'gptq')), 'LOWBIT_BAD_FORMAT', 'group 0, output channel 0', 'got 9');
    assert.equal(decodeGptqModule(good, P, cfgOf(bits, g, true, 'gptq_v2')).zeros[5], 8);
  });

  it('bad decoder arguments → LOWBIT_INVALID_OPTION', () => {
    const reader = addGptq(new MemReader(), P, valid(), bits, rows, cols, groups);
    throwsLowbit(() => decodeGptqModule(reader, P, cfgOf(5, g, false, 'gptq')), 'LOWBIT_INVALID_OPTION', 'bits');
    throwsLowbit(() => decodeGptqModule(reader, P, cfgOf(4, 0, false, 'gptq')), 'LOWBIT_INVALID_OPTION', 'groupSize');
    throwsLowbit(() => decodeGptqModule(reader, P, cfg, { rows: 0, cols: 64 }), 'LOWBIT_INVALID_OPTION', 'shape.rows');
  });

  it('AWQ validation: missing tensor, dtype, shapes, out % 8, in % g, bits', () => {
    const rowsA = 16;
    const colsA = 64;
    const make = () =>
      new MemReader()
        .add(`${P}.qweight`, 'I32', [colsA, 2], i32Bytes(new Array<number>(colsA * 2).fill(0)))
        .add(`${P}.qzeros`, 'I32', [2, 2], i32Bytes(new Array<number>(4).fill(0)))
        .add(`${P}.scales`, 'F16', [2, rowsA], f16Bytes(new Array<number>(2 * rowsA).fill(ONE)));
    assert.equal(decodeAwqModule(make(), P, { groupSize: 32 }).rows, rowsA);
    const m = make();
    m.t.delete(`${P}.qzeros`);
    throwsLowbit(() => decodeAwqModule(m, P, { groupSize: 32 }), 'LOWBIT_BAD_FORMAT', P, 'qzeros');
    const d = make();
    must(d.t.get(`${P}.scales`), `${P}.scales`).dtype = 'F32';
    throwsLowbit(() => decodeAwqModule(d, P, { groupSize: 32 }), 'LOWBIT_BAD_FORMAT', `${P}.scales`, 'F16');
    throwsLowbit(() => decodeAwqModule(make(), P, { groupSize: 16 }), 'LOWBIT_SHAPE_MISMATCH', `${P}.qzeros`, '[4, 2]');
    throwsLowbit(() => decodeAwqModule(make(), P, { groupSize: 48 }), 'LOWBIT_SHAPE_MISMATCH', P, 'does not divide');
    throwsLowbit(() => decodeAwqModule(make(), P, { groupSize: 32 }, { rows: 12, cols: 64 }), 'LOWBIT_SHAPE_MISMATCH', 'multiple of 8');
    throwsLowbit(() => decodeAwqModule(make(), P, { groupSize: 32, bits: 8 }), 'LOWBIT_UNSUPPORTED', P, 'bits 8');
  });
});

describe('GPTQ format: layout problems', () => {
  it('gptqLayoutProblem', () => {
    assert.equal(gptqLayoutProblem(4096, 4096, 4, 128), null);
    assert.equal(gptqLayoutProblem(11008, 4096, 3, -1), null);
    assert.match(must(gptqLayoutProblem(4096, 4095, 4, 128), 'a problem'), /in_features 4095 is not a multiple of 32/);
    assert.match(must(gptqLayoutProblem(100, 4096, 4, 128), 'a problem'), /out_features 100 is not a multiple of 32/);
    assert.match(must(gptqLayoutProblem(64, 64, 5, 32), 'a problem'), /bits 5/);
    assert.match(must(gptqLayoutProblem(64, 96, 4, 64), 'a problem'), /group size 64 does not divide in_features 96/);
    assert.match(must(gptqLayoutProblem(64, 96, 4, 0), 'a problem'), /group size 0/);
  });
  it('awqLayoutProblem', () => {
    assert.equal(awqLayoutProblem(24, 64, 4, 32), null);
    assert.equal(awqLayoutProblem(24, 63, 4, -1), null);
    assert.match(must(awqLayoutProblem(20, 64, 4, 32), 'a problem'), /multiple of 8/);
    assert.match(must(awqLayoutProblem(24, 64, 3, 32), 'a problem'), /bits 3/);
    assert.match(must(awqLayoutProblem(24, 64, 4, 48), 'a problem'), /does not divide/);
  });
});

describe('GPTQ format: configuration (§4.4)', () => {
  const base = {
    bits: 4,
    groupSize: 128,
    descAct: false,
    staticGroups: false,
    sym: true,
    dampPercent: 0.01,
    trueSequential: true,
    checkpointFormat: 'gptq' as const,
    version: '0.1.0',
  };

  it('gptqQuantizationConfig writes exactly the §4.4 object, in order', () => {
    const out = gptqQuantizationConfig(base);
    assert.equal(
      JSON.stringify(out),
      JSON.stringify({
        quant_method: 'gptq',
        checkpoint_format: 'gptq',
        bits: 4,
        group_size: 128,
        desc_act: false,
        static_groups: false,
        sym: true,
        true_sequential: true,
        damp_percent: 0.01,
        lm_head: false,
        pack_dtype: 'int32',
        model_name_or_path: null,
        model_file_base_name: 'model',
        meta: { quantizer: ['lowbit:0.1.0'] },
      }),
    );
    const dyn = gptqQuantizationConfig({ ...base, dynamic: { '-:.*down_proj': {} } });
    assert.deepEqual(Object.keys(dyn).slice(-1), ['dynamic']);
    assert.ok(!('dynamic' in out));
    const parsed = parseGptqConfig(JSON.parse(JSON.stringify(dyn)), 'quantize_config.json');
    assert.deepEqual(
      { ...parsed, raw: null },
      { bits: 4, groupSize: 128, descAct: false, staticGroups: false, sym: true, checkpointFormat: 'gptq', dynamic: { '-:.*down_proj': {} }, lmHead: false, raw: null },
    );
  });

  it('gptqQuantizationConfig rejects bad parameters with LOWBIT_INVALID_OPTION', () => {
    throwsLowbit(() => gptqQuantizationConfig({ ...base, bits: 5 }), 'LOWBIT_INVALID_OPTION', 'bits');
    throwsLowbit(() => gptqQuantizationConfig({ ...base, groupSize: -2 }), 'LOWBIT_INVALID_OPTION', 'groupSize');
    throwsLowbit(() => gptqQuantizationConfig({ ...base, dampPercent: 2 }), 'LOWBIT_INVALID_OPTION', 'dampPercent');
    throwsLowbit(() => gptqQuantizationConfig({ ...base, checkpointFormat: 'marlin' as 'gptq' }), 'LOWBIT_INVALID_OPTION', 'checkpointFormat');
  });

  it('parseGptqConfig: synonyms, defaults, unknown fields ignored', () => {
    const c = parseGptqConfig({ w_bit: 3, q_group_size: 64, method: 'gptq', format: 'gptq_v2', whatever: [1] }, 'f.json');
    assert.equal(c.bits, 3);
    assert.equal(c.groupSize, 64);
    assert.equal(c.checkpointFormat, 'gptq_v2');
    assert.equal(c.sym, true); // missing ⇒ true
    assert.equal(c.descAct, false);
    assert.equal(c.dynamic, null);
    const d = parseGptqConfig({ bits: 8, group_size: -1, desc_act: null, sym: false, is_marlin_format: false }, 'f.json');
    assert.equal(d.checkpointFormat, 'gptq'); // missing ⇒ gptq
    assert.equal(d.descAct, false);
    assert.equal(d.sym, false);
    // both names present and agreeing (what current GPTQModel writes)
    const e = parseGptqConfig({ bits: 4, w_bit: 4, group_size: 128, q_group_size: 128, quant_method: 'gptq', method: 'gptq', checkpoint_format: 'gptq', format: 'gptq' }, 'f.json');
    assert.equal(e.bits, 4);
  });

  it('parseGptqConfig: conflicts and rejections', () => {
    throwsLowbit(() => parseGptqConfig({ bits: 4, w_bit: 8, group_size: 128 }, 'cfg.json'), 'LOWBIT_BAD_FORMAT', 'cfg.json', 'bits', 'w_bit', 'disagree');
    throwsLowbit(() => parseGptqConfig({ bits: 4, group_size: 128, q_group_size: 64 }, 'cfg.json'), 'LOWBIT_BAD_FORMAT', 'group_size', 'q_group_size');
    throwsLowbit(() => parseGptqConfig({ bits: 4, group_size: 128, checkpoint_format: 'gptq', format: 'gptq_v2' }, 'cfg.json'), 'LOWBIT_BAD_FORMAT', 'checkpoint_format', 'format');
    for (const f of ['gptq_p', 'marlin', 'bitblas']) {
      throwsLowbit(() => parseGptqConfig({ bits: 4, group_size: 128, checkpoint_format: f }, 'cfg.json'), 'LOWBIT_UNSUPPORTED', 'cfg.json', f);
    }
    throwsLowbit(() => parseGptqConfig({ bits: 4, group_size: 128, is_marlin_format: true }, 'cfg.json'), 'LOWBIT_UNSUPPORTED', 'is_marlin_format');
    throwsLowbit(() => parseGptqConfig({ bits: 4, group_size: 128, quant_method: 'awq' }, 'cfg.json'), 'LOWBIT_UNSUPPORTED', 'quant_method');
    throwsLowbit(() => parseGptqConfig({ bits: 4, group_size: 128, pack_dtype: 'int16' }, 'cfg.json'), 'LOWBIT_UNSUPPORTED', 'pack_dtype');
    for (const b of [1, 5, 6, 16, '4']) {
      throwsLowbit(() => parseGptqConfig({ bits: b, group_size: 128 }, 'cfg.json'), 'LOWBIT_BAD_FORMAT', 'cfg.json', 'bits');
    }
    throwsLowbit(() => parseGptqConfig({ group_size: 128 }, 'cfg.json'), 'LOWBIT_BAD_FORMAT', 'bits', 'missing');
    throwsLowbit(() => parseGptqConfig({ bits: 4 }, 'cfg.json'), 'LOWBIT_BAD_FORMAT', 'group_size');
    throwsLowbit(() => parseGptqConfig({ bits: 4, group_size: 0 }, 'cfg.json'), 'LOWBIT_BAD_FORMAT', 'group_size');
    throwsLowbit(() => parseGptqConfig({ bits: 4, group_size: 128, sym: 'yes' }, 'cfg.json'), 'LOWBIT_BAD_FORMAT', 'sym');
    throwsLowbit(() => parseGptqConfig({ bits: 4, group_size: 128, dynamic: [] }, 'cfg.json'), 'LOWBIT_BAD_FORMAT', 'dynamic');
    throwsLowbit(() => parseGptqConfig([], 'cfg.json'), 'LOWBIT_BAD_FORMAT', 'cfg.json');
  });

  it('resolveGptqModuleConfig applies dynamic exclusions and overrides (first match, anchored)', () => {
    const cfg = parseGptqConfig(
      { bits: 4, group_size: 128, dynamic: { '-:.*\\.down_proj': {}, '+:model\\.layers\\.0\\.': { bits: 8, group_size: 32 }, 'layers\\.1\\.': { bits: 2 } } },
      'cfg.json',
    );
    assert.equal(resolveGptqModuleConfig(cfg, 'model.layers.0.mlp.down_proj'), null);
    const l0 = must(resolveGptqModuleConfig(cfg, 'model.layers.0.self_attn.q_proj'), 'layer 0 q_proj config');
    assert.equal(l0.bits, 8);
    assert.equal(l0.groupSize, 32);
    assert.equal(must(resolveGptqModuleConfig(cfg, 'model.layers.1.self_attn.q_proj'), 'layer 1 q_proj config').bits, 4); // not anchored at "layers"
    assert.equal(resolveGptqModuleConfig(cfg, 'model.layers.2.self_attn.q_proj'), cfg);
    const py = parseGptqConfig({ bits: 4, group_size: 128, dynamic: { '(?P<x>a)': {} } }, 'cfg.json');
    throwsLowbit(() => resolveGptqModuleConfig(py, 'a'), 'LOWBIT_UNSUPPORTED', 'dynamic', '(?P<x>a)');
  });

  it('parseAwqConfig (§5.4)', () => {
    const c = parseAwqConfig({ quant_method: 'awq', version: 'GEMM', w_bit: 4, q_group_size: 128, zero_point: true, modules_to_not_convert: null }, 'config.json');
    assert.equal(c.groupSize, 128);
    assert.equal(c.modulesToNotConvert, null);
    for (const v of ['gemv', 'gemv_fast', 'marlin']) {
      throwsLowbit(() => parseAwqConfig({ quant_method: 'awq', version: v, bits: 4, group_size: 128 }, 'config.json'), 'LOWBIT_UNSUPPORTED', v);
    }
    throwsLowbit(() => parseAwqConfig({ version: 'gemm', bits: 8, group_size: 128 }, 'config.json'), 'LOWBIT_UNSUPPORTED', 'bits');
    throwsLowbit(() => parseAwqConfig({ version: 'gemm', bits: 4, w_bit: 3, group_size: 128 }, 'config.json'), 'LOWBIT_BAD_FORMAT', 'w_bit');
    throwsLowbit(() => parseAwqConfig({ version: 'gemm', bits: 4, group_size: 128, zero_point: false }, 'config.json'), 'LOWBIT_UNSUPPORTED', 'zero_point');
  });
});

describe('GPTQ format: v1 ↔ v2 zero conversion (field by field)', () => {
  it('sym 4-bit: 0x77777777 ↔ 0x88888888', () => {
    const v2 = convertZerosV1V2(new Int32Array([0x77777777, 0x77777777, 0x77777777, 0x77777777]), 1, 32, 4, 'v1-to-v2');
    assert.deepEqual(Array.from(v2, (w) => w >>> 0), [0x88888888, 0x88888888, 0x88888888, 0x88888888]);
    const v1 = convertZerosV1V2(v2, 1, 32, 4, 'v2-to-v1');
    assert.deepEqual(Array.from(v1), [0x77777777, 0x77777777, 0x77777777, 0x77777777]);
  });

  it('4-bit: a field holding 15 next to other fields (the carry case)', () => {
    // v2 fields (low first) 15, 1, 15, 15, 2, 3, 4, 15 → v1 14, 0, 14, 14, 1, 2, 3, 14; neighbours untouched
    const v2 = new Int32Array([0xf432ff1f | 0, 0x11111111]);
    const v1 = convertZerosV1V2(v2, 1, 16, 4, 'v2-to-v1');
    assert.equal(v1[0] >>> 0, 0xe321ee0e);
    assert.equal(v1[1] >>> 0, 0);
    assert.deepEqual(Array.from(convertZerosV1V2(v1, 1, 16, 4, 'v1-to-v2')), Array.from(v2));
    // in v1 a 15 is the all-ones field: a whole-word + 0x11111111 would carry into the next field;
    // the conversion refuses and names the field instead
    throwsLowbit(
      () => convertZerosV1V2(new Int32Array([0x000000f3, 0]), 1, 16, 4, 'v1-to-v2', P),
      'LOWBIT_BAD_FORMAT',
      P,
      'group 0, output channel 1',
    );
    // v2 zero 0 cannot be stored in v1 (a whole-word − 0x11111111 would borrow)
    throwsLowbit(
      () => convertZerosV1V2(new Int32Array([0x00000000, 0x20000000]), 2, 8, 4, 'v2-to-v1', P),
      'LOWBIT_UNSUPPORTED',
      P,
      'group 0, output channel 0',
      'cannot be stored in gptq v1',
    );
  });

  it('3-bit: sym zeros and random zeros round-trip, checked by the plain decoder', () => {
    const rows = 64;
    const groups = 3;
    for (const seed of [1, 2, 3]) {
      const r = rng(seed);
      const zeros = Array.from({ length: groups * rows }, () => (seed === 1 ? 4 : 1 + Math.floor(r() * 7)));
      const parts = { bits: 3, rows, cols: 32, groups, codes: new Array<number>(rows * 32).fill(0), zeros, scales: new Array<number>(groups * rows).fill(ONE), gIdx: Array.from({ length: 32 }, (_, k) => k % groups) };
      const pv1 = packGptq({ ...parts, format: 'gptq' });
      const pv2 = packGptq({ ...parts, format: 'gptq_v2' });
      const w1 = Int32Array.from(wordsOf(pv1.qzeros), (w) => w | 0);
      const w2 = Int32Array.from(wordsOf(pv2.qzeros), (w) => w | 0);
      assert.deepEqual(Array.from(convertZerosV1V2(w1, groups, rows, 3, 'v1-to-v2')), Array.from(w2), `seed ${seed}`);
      assert.deepEqual(Array.from(convertZerosV1V2(w2, groups, rows, 3, 'v2-to-v1')), Array.from(w1), `seed ${seed}`);
      const conv = i32Bytes(convertZerosV1V2(w1, groups, rows, 3, 'v1-to-v2'));
      assert.deepEqual(plainDecodeGptq({ ...pv1, qzeros: conv, bits: 3, rows, cols: 32, groups, format: 'gptq_v2' }).zeros, zeros);
    }
    // a v2 zero 0 in field 21 (straddling w1/w2) cannot go to v1
    const zeros = new Array<number>(32).fill(5);
    zeros[21] = 0;
    const pk = packGptq({ bits: 3, rows: 32, cols: 32, groups: 1, codes: new Array<number>(1024).fill(0), zeros, scales: new Array<number>(32).fill(ONE), gIdx: new Array<number>(32).fill(0), format: 'gptq_v2' });
    throwsLowbit(() => convertZerosV1V2(Int32Array.from(wordsOf(pk.qzeros), (w) => w | 0), 1, 32, 3, 'v2-to-v1'), 'LOWBIT_UNSUPPORTED', 'output channel 21');
  });

  it('argument checks', () => {
    throwsLowbit(() => convertZerosV1V2(new Int32Array(3), 1, 32, 4, 'v1-to-v2'), 'LOWBIT_SHAPE_MISMATCH', 'got 3');
    throwsLowbit(() => convertZerosV1V2(new Int32Array(4), 1, 32, 5, 'v1-to-v2'), 'LOWBIT_INVALID_OPTION', 'bits');
    throwsLowbit(() => convertZerosV1V2(new Int32Array(4), 1, 30, 4, 'v1-to-v2'), 'LOWBIT_INVALID_OPTION', 'out');
    throwsLowbit(() => convertZerosV1V2(new Int32Array(4), 1, 32, 4, 'up' as 'v1-to-v2'), 'LOWBIT_INVALID_OPTION', 'direction');
  });
});

describe('GPTQ format: through a real safetensors file', () => {
  it('writeSafetensors → openSafetensors → decodeGptqModule equals the plain decoder', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-gptq-'));
    try {
      const r = rng(99);
      const bits = 3;
      const rows = 32;
      const cols = 64;
      const groups = 2;
      const gIdx = Array.from({ length: cols }, (_, k) => (k * 7) % groups);
      const pk = packGptq({
        bits,
        rows,
        cols,
        groups,
        codes: Array.from({ length: rows * cols }, () => Math.floor(r() * 8)),
        zeros: Array.from({ length: groups * rows }, () => 1 + Math.floor(r() * 7)),
        scales: Array.from({ length: groups * rows }, () => (12 << 10) | Math.floor(r() * 1024)),
        gIdx,
        format: 'gptq',
      });
      await writeSafetensors(dir, [
        { name: `${P}.qweight`, dtype: 'I32', shape: [(cols * bits) / 32, rows], data: pk.qweight },
        { name: `${P}.qzeros`, dtype: 'I32', shape: [groups, (rows * bits) / 32], data: pk.qzeros },
        { name: `${P}.scales`, dtype: 'F16', shape: [groups, rows], data: pk.scales },
        { name: `${P}.g_idx`, dtype: 'I32', shape: [cols], data: pk.gIdx },
      ]);
      const reader: SafetensorsReader = openSafetensors(dir);
      try {
        const source: TensorByteSource = reader; // the reader fits the structural type
        const lib = decodeGptqModule(source, P, parseGptqConfig({ bits, group_size: 32, sym: false, desc_act: true }, 'cfg'));
        assertSameDecode(lib, plainOf(pk, bits, rows, cols, groups, 'gptq'), 'safetensors round trip');
        assert.deepEqual(Array.from(lib.gIdx), gIdx);
      } finally {
        reader.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
