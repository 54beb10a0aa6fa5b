/**
 * formats/gguf: the stories260K GGUF (metadata, config, vocabulary vs tok512.bin, tensors),
 * hand-made files for every reader rule of docs/formats.md §6.5, and a seeded fuzz of the header:
 * every mutation either loads or throws a LowbitError, never a RangeError/TypeError or a hang.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  readGguf, ggufLlamaConfig, ggufVocab, ggufLlamaTensorName, llamaTensorNameToGguf, ggmlTypeName, type GgufFile,
} from '../../lib/formats/gguf';
import { readLlama2cTokenizer } from '../../lib/formats/llama2c';
import { Tokenizer } from '../../lib/runtime/tokenizer';
import { f32ToBf16Bits, f32ToF16Bits } from '../../lib/formats/dtype';
import { LowbitError, type ErrorCode } from '../../lib/errors';
import * as native from '../../lib/native';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { Rng } from '../helpers/rng';
import { isCode } from '../helpers/errors';
import { must } from '../helpers/assert';

// ---- a tiny GGUF builder (little-endian) ----------------------------------------------------

const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; };
const u64 = (v: number | bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v))); return b; };
const i64 = (v: number | bigint) => { const b = Buffer.alloc(8); b.writeBigInt64LE(BigInt(v)); return b; };
const f32 = (v: number) => { const b = Buffer.alloc(4); b.writeFloatLE(v); return b; };
const str = (s: string) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([u64(b.length), b]); };

const T = { UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12 };

const kvU32 = (k: string, v: number) => Buffer.concat([str(k), u32(T.UINT32), u32(v)]);
const kvU64 = (k: string, v: number) => Buffer.concat([str(k), u32(T.UINT64), u64(v)]);
const kvF32 = (k: string, v: number) => Buffer.concat([str(k), u32(T.FLOAT32), f32(v)]);
const kvStr = (k: string, v: string) => Buffer.concat([str(k), u32(T.STRING), str(v)]);
const kvBool = (k: string, v: number) => Buffer.concat([str(k), u32(T.BOOL), Buffer.of(v)]);
const kvArrStr = (k: string, vs: string[]) => Buffer.concat([str(k), u32(T.ARRAY), u32(T.STRING), u64(vs.length), ...vs.map(str)]);
const kvArrF32 = (k: string, vs: number[]) => Buffer.concat([str(k), u32(T.ARRAY), u32(T.FLOAT32), u64(vs.length), ...vs.map(f32)]);
const kvArrI32 = (k: string, vs: number[]) => Buffer.concat([str(k), u32(T.ARRAY), u32(T.INT32), u64(vs.length), ...vs.map((v) => { const b = Buffer.alloc(4); b.writeInt32LE(v); return b; })]);

interface TensorSpec { name: string; ne: (number | bigint)[]; type: number; data: Buffer; offset?: bigint }

function info(t: TensorSpec, offset: bigint): Buffer {
  return Buffer.concat([str(t.name), u32(t.ne.length), ...t.ne.map(i64), u32(t.type), u64(t.offset ?? offset)]);
}

const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;

interface BuildOptions {
  magic?: Buffer;
  version?: Buffer | number;
  kvs?: Buffer[];
  tensors?: TensorSpec[];
  tensorCount?: bigint;
  kvCount?: bigint;
  alignment?: number;
  /** Leave out the padding after the last tensor. */
  noTrailingPad?: boolean;
}

function build(o: BuildOptions = {}): Buffer {
  const kvs = o.kvs ?? [];
  const tensors = o.tensors ?? [];
  const align = o.alignment ?? 32;
  const infos: Buffer[] = [];
  const data: Buffer[] = [];
  let off = 0;
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i];
    infos.push(info(t, BigInt(off)));
    const end = off + t.data.length;
    const padded = i === tensors.length - 1 && o.noTrailingPad ? end : alignUp(end, align);
    data.push(t.data, Buffer.alloc(padded - end));
    off = padded;
  }
  const version = typeof o.version === 'number' || o.version === undefined ? u32(o.version ?? 3) : o.version;
  const head = Buffer.concat([
    o.magic ?? Buffer.from('GGUF'), version, u64(o.tensorCount ?? BigInt(tensors.length)), u64(o.kvCount ?? BigInt(kvs.length)), ...kvs, ...infos,
  ]);
  const pad = tensors.length > 0 ? Buffer.alloc(alignUp(head.length, align) - head.length) : Buffer.alloc(0);
  return Buffer.concat([head, pad, ...data]);
}

const f32Data = (vals: number[]) => Buffer.from(new Float32Array(vals).buffer);

// ---- tests ------------------------------------------------------------------------------------

describe('formats/gguf', () => {
  let tmp: string;
  let n = 0;
  const write = (b: Buffer, name = 'x.gguf') => {
    const d = path.join(tmp, `case-${n++}`);
    fs.mkdirSync(d);
    const f = path.join(d, name);
    fs.writeFileSync(f, b);
    return f;
  };

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-gguf-'));
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('stories260K.gguf', () => {
    let dir: string;
    let g: GgufFile;

    before(function () {
      const f = fixturesDir();
      if (!f) {
        console.log(`      (skipped: ${NO_FIXTURES})`);
        this.skip();
      }
      dir = path.join(f, 'stories260K');
      g = readGguf(path.join(dir, 'stories260K.gguf'));
    });
    after(() => { (g as GgufFile | undefined)?.close(); }); // unassigned when before() skipped

    it('has the README metadata: v3, 48 F32 tensors, context 2048, rope dimension 8', () => {
      assert.equal(g.version, 3);
      assert.equal(g.alignment, 32);
      assert.equal(g.dataOffset % 32, 0);
      assert.equal(g.tensors.length, 48);
      assert.ok(g.tensors.every((t) => t.typeName === 'F32' && t.type === 0));
      assert.deepEqual(g.metadata.get('llama.context_length'), { type: 'UINT32', value: 2048 });
      assert.deepEqual(g.metadata.get('llama.rope.dimension_count'), { type: 'UINT32', value: 8 });
      assert.deepEqual(g.metadata.get('general.architecture'), { type: 'STRING', value: 'llama' });
      const toks = must(g.metadata.get('tokenizer.ggml.tokens'), 'tokenizer.ggml.tokens');
      assert.equal(toks.type, 'ARRAY');
      assert.equal(toks.itemType, 'STRING');
      assert.equal(toks.value.length, 512);
      const emb = g.tensor('token_embd.weight');
      assert.deepEqual(emb.ne, [64, 512]);
      assert.deepEqual(emb.shape, [512, 64]);
      assert.equal(emb.byteLength, 512 * 64 * 4);
      assert.equal(g.tensors[0].offset, g.dataOffset);
      const last = g.tensors[g.tensors.length - 1];
      assert.ok(last.offset + last.byteLength <= g.fileSize);
    });

    it('ggufLlamaConfig', () => {
      const c = ggufLlamaConfig(g);
      assert.deepEqual({ ...c, rmsEps: Math.fround(c.rmsEps) }, {
        dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, contextLength: 2048,
        rmsEps: Math.fround(1e-5), ropeTheta: 10000, headDim: 8,
      });
    });

    it('vocabulary equals tok512.bin after ▁ → space (all pieces and all 512 scores)', () => {
      const v = ggufVocab(g);
      const ref = readLlama2cTokenizer(path.join(dir, 'tok512.bin'), 512);
      assert.equal(v.pieces.length, 512);
      assert.equal(v.bos, 1);
      assert.equal(v.eos, 2);
      for (const id of [0, 1, 2, 3, 35, 258, 259, 260, 403, 410, 511]) assert.equal(v.pieces[id], ref.pieces[id], `piece ${id}`);
      for (let i = 0; i < 512; i++) {
        assert.deepEqual(v.pieceBytes[i], ref.pieceBytes[i], `piece ${i}`);
        assert.ok(Object.is(v.scores[i], ref.scores[i]), `score ${i}: ${v.scores[i]} vs ${ref.scores[i]}`);
      }
      assert.equal(v.maxTokenLength, ref.maxTokenLength);
      const tokenTypes = must(v.tokenTypes, 'tokenTypes');
      assert.equal(tokenTypes[0], 2);
      assert.equal(tokenTypes[1], 3);
      assert.equal(tokenTypes[3], 6);
    });

    it('maps every tensor name to the HF-style names and back', () => {
      const names = g.tensors.map((t) => ggufLlamaTensorName(t.name));
      assert.ok(names.every((x) => x !== null), String(g.tensors.map((t) => t.name).filter((x) => ggufLlamaTensorName(x) === null)));
      assert.equal(new Set(names).size, 48);
      assert.ok(names.includes('lm_head.weight'));
      assert.ok(names.includes('model.layers.4.mlp.down_proj.weight'));
      for (const t of g.tensors) assert.equal(llamaTensorNameToGguf(must(ggufLlamaTensorName(t.name), t.name)), t.name);
      assert.equal(ggufLlamaTensorName('blk.3.attn_q.weight'), 'model.layers.3.self_attn.q_proj.weight');
      assert.equal(ggufLlamaTensorName('blk.0.ffn_gate.weight'), 'model.layers.0.mlp.gate_proj.weight');
      assert.equal(ggufLlamaTensorName('rope_freqs.weight'), null);
      assert.equal(ggufLlamaTensorName('blk.01.attn_q.weight'), null);
    });

    it('tensorF32 is a zero-copy view (with the addon) of the right length', () => {
      const t = g.tensorF32('blk.0.attn_q.weight');
      assert.equal(t.length, 64 * 64);
      if (native.hasAddon()) assert.equal(t.buffer.byteLength, 64 * 64 * 4);
      const b = g.bytes('blk.0.attn_q.weight');
      assert.deepEqual(new Uint8Array(t.buffer, t.byteOffset, t.byteLength), b);
      assert.throws(() => g.tensor('nope'), isCode('LOWBIT_NOT_FOUND', 'nope'));
    });

    it('Tokenizer.fromGguf works', () => {
      const tok = Tokenizer.fromGguf(g);
      assert.deepEqual(tok.encode('Once upon a time'), [403, 407, 261, 378]);
    });

    it('fuzz: 300 seeded mutations of the first 4 KB (and the tensor infos) load or throw a LowbitError', function () {
      this.timeout(120_000);
      const seed = 4242;
      const rng = new Rng(seed);
      const orig = fs.readFileSync(path.join(dir, 'stories260K.gguf'));
      const fields = headerFields(orig);
      const work = path.join(tmp, 'fuzz.gguf');
      fs.writeFileSync(work, orig);
      const fd = fs.openSync(work, 'r+');
      const HEAD = 4096;
      const huge = [0xffffffffffffffffn, 1n << 63n, 1n << 62n, 1n << 40n, (1n << 30n) + 1n, 1n << 31n, BigInt(orig.length), BigInt(orig.length) + 1n];
      let loaded = 0;
      let rejected = 0;
      try {
        for (let k = 0; k < 300; k++) {
          const kind = rng.int(0, 6);
          let file = work;
          let desc: string;
          let region: [number, number] = [0, HEAD];
          const m = Buffer.from(orig.subarray(0, fields.infosEnd));
          if (kind === 0) {
            const flips = rng.int(1, 8);
            const at: number[] = [];
            for (let i = 0; i < flips; i++) {
              const p = rng.int(0, HEAD - 1);
              m[p] = rng.next() < 0.5 ? m[p] ^ (1 << rng.int(0, 7)) : rng.int(0, 255);
              at.push(p);
            }
            desc = `byte changes at ${at.join(',')}`;
          } else if (kind === 1) {
            const len = rng.int(0, HEAD);
            file = path.join(tmp, 'fuzz-trunc.gguf');
            fs.writeFileSync(file, orig.subarray(0, len));
            desc = `truncated to ${len}`;
          } else if (kind === 2 || kind === 3) {
            // a string length or array count (kind 2: in the first 4 KB; kind 3: anywhere in the header)
            const pool = kind === 2 ? fields.lengths.filter((p) => p < HEAD - 8) : fields.lengths;
            const p = pool[rng.int(0, pool.length - 1)];
            const v = rng.next() < 0.7 ? huge[rng.int(0, huge.length - 1)] : BigInt(rng.int(0, 2 ** 31));
            m.writeBigUInt64LE(v, p);
            region = [0, fields.infosEnd];
            desc = `u64 at ${p} := ${v}`;
          } else if (kind === 4) {
            const p = fields.types[rng.int(0, fields.types.length - 1)];
            const v = rng.next() < 0.5 ? rng.int(0, 15) : rng.int(0, 0xffffffff);
            m.writeUInt32LE(v, p);
            region = [0, fields.infosEnd];
            desc = `u32 type at ${p} := ${v}`;
          } else if (kind === 5) {
            const p = rng.int(0, HEAD - 8);
            m.writeBigUInt64LE(huge[rng.int(0, huge.length - 1)], p);
            desc = `u64 at random offset ${p}`;
          } else {
            // string contents only (keys, values, token pieces): the file stays parseable, so the
            // metadata consumers (config, vocabulary, tokenizer) see odd but well-framed input
            const pool = fields.strings.filter(([a, len]) => len > 0 && a + len <= HEAD);
            const at: number[] = [];
            for (let i = rng.int(1, 3); i > 0; i--) {
              const [a, len] = pool[rng.int(0, pool.length - 1)];
              const q = a + rng.int(0, len - 1);
              m[q] = rng.next() < 0.3 ? 0xff : rng.int(0, 255);
              at.push(q);
            }
            desc = `string bytes at ${at.join(',')}`;
          }
          if (file === work) fs.writeSync(fd, m, region[0], region[1] - region[0], region[0]);
          try {
            const g2 = readGguf(file);
            try {
              try { ggufLlamaConfig(g2); } catch (e) { if (!(e instanceof LowbitError)) throw e; }
              try { Tokenizer.fromGguf(g2).encode('Once upon a time'); } catch (e) { if (!(e instanceof LowbitError)) throw e; }
              if (g2.tensors.length > 0) {
                try { g2.tensorF32(g2.tensors[0].name); } catch (e) { if (!(e instanceof LowbitError)) throw e; }
              }
            } finally {
              g2.close();
            }
            loaded++;
          } catch (e) {
            if (!(e instanceof LowbitError)) {
              assert.fail(`[seed ${seed}] mutation ${k} (${desc}) threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
            }
            assert.ok(e.message.includes(file), `[seed ${seed}] mutation ${k} (${desc}): message does not name the file: ${e.message}`);
            rejected++;
          }
          if (file === work) fs.writeSync(fd, orig, region[0], region[1] - region[0], region[0]); // restore
        }
      } finally {
        fs.closeSync(fd);
      }
      assert.equal(loaded + rejected, 300);
      console.log(`      fuzz: ${loaded} loaded, ${rejected} rejected`);
      assert.ok(rejected > 50, `only ${rejected} of 300 mutations were rejected`);
    });
  });

  describe('reader rules (hand-made files)', () => {
    const ok = () => ({
      kvs: [kvStr('general.architecture', 'llama'), kvU32('llama.context_length', 16)],
      tensors: [
        { name: 'a', ne: [3, 2], type: 0, data: f32Data([1, 2, 3, 4, 5, 6]) },
        { name: 'b', ne: [5], type: 0, data: f32Data([7, 8, 9, 10, 11]) },
      ] as TensorSpec[],
    });

    it('reads a valid file: metadata, shapes, offsets, F32/F16/BF16 values', () => {
      const h16 = Buffer.alloc(8);
      const b16 = Buffer.alloc(8);
      [0.5, -2, 65504, 1 / 3].forEach((v, i) => {
        h16.writeUInt16LE(f32ToF16Bits(v), 2 * i);
        b16.writeUInt16LE(f32ToBf16Bits(v), 2 * i);
      });
      const q40 = Buffer.alloc(18 * 2);
      const f = write(build({
        kvs: [...ok().kvs, kvBool('x.flag', 7), kvArrI32('x.ints', [-1, 2]), kvU64('x.big', 5)],
        tensors: [...ok().tensors,
          { name: 'h', ne: [4], type: 1, data: h16 },
          { name: 'bf', ne: [2, 2], type: 30, data: b16 },
          { name: 'q', ne: [32, 2], type: 2, data: q40 },
          { name: 'scalar', ne: [], type: 0, data: f32Data([42]) }],
      }));
      const g = readGguf(f);
      try {
        assert.equal(g.version, 3);
        assert.deepEqual(g.metadata.get('x.flag'), { type: 'BOOL', value: true }); // any nonzero byte is true
        assert.deepEqual(g.metadata.get('x.big'), { type: 'UINT64', value: 5n });
        const ints = must(g.metadata.get('x.ints'), 'x.ints');
        assert.ok(ints.type === 'ARRAY' && ints.value instanceof Int32Array && ints.value[0] === -1);
        assert.deepEqual(g.tensors.map((t) => t.name), ['a', 'b', 'h', 'bf', 'q', 'scalar']);
        const a = g.tensor('a');
        assert.deepEqual(a.shape, [2, 3]);
        assert.deepEqual(a.ne, [3, 2]);
        assert.equal(a.offset, g.dataOffset);
        assert.equal(g.tensor('b').offset, g.dataOffset + 32);
        assert.deepEqual([...g.tensorF32('a')], [1, 2, 3, 4, 5, 6]);
        assert.deepEqual([...g.tensorF32('b')], [7, 8, 9, 10, 11]);
        assert.deepEqual([...g.tensorF32('h')], [0.5, -2, 65504, Math.fround(0.333251953125)]);
        assert.deepEqual([...g.tensorF32('bf')].slice(0, 3), [0.5, -2, 65536]);
        assert.equal(g.tensor('q').byteLength, 36);
        assert.equal(g.bytes('q').length, 36);
        assert.throws(() => g.tensorF32('q'), isCode('LOWBIT_UNSUPPORTED', '"q"', 'Q4_0'));
        const s = g.tensor('scalar');
        assert.deepEqual(s.shape, []);
        assert.equal(s.numel, 1);
        assert.deepEqual([...g.tensorF32('scalar')], [42]);
      } finally {
        g.close();
      }
      assert.throws(() => g.bytes('a'), isCode('LOWBIT_DISPOSED'));
    });

    it('accepts a missing padding after the last tensor, and a tensor-less file ending after its KVs', () => {
      const g = readGguf(write(build({ ...ok(), noTrailingPad: true })));
      assert.deepEqual([...g.tensorF32('b')], [7, 8, 9, 10, 11]);
      g.close();
      const g0 = readGguf(write(build({ kvs: ok().kvs })));
      assert.equal(g0.tensors.length, 0);
      g0.close();
    });

    it('honours general.alignment (a power of two, UINT32)', () => {
      const o = ok();
      const g = readGguf(write(build({ kvs: [...o.kvs, kvU32('general.alignment', 64)], tensors: o.tensors, alignment: 64 })));
      assert.equal(g.alignment, 64);
      assert.equal(g.dataOffset % 64, 0);
      assert.equal(g.tensor('b').offset, g.dataOffset + 64);
      g.close();
      const g1 = readGguf(write(build({ kvs: [...o.kvs, kvU32('general.alignment', 1)], tensors: o.tensors, alignment: 1 })));
      assert.equal(g1.tensor('b').offset, g1.dataOffset + 24);
      g1.close();
    });

    const cases: [string, () => Buffer, ErrorCode, string[]][] = [
      ['bad magic', () => build({ ...ok(), magic: Buffer.from('GGUG') }), 'LOWBIT_BAD_FORMAT', ['magic']],
      ['version 1', () => build({ ...ok(), version: 1 }), 'LOWBIT_UNSUPPORTED', ['version 1']],
      ['version 4', () => build({ ...ok(), version: 4 }), 'LOWBIT_BAD_FORMAT', ['version 4']],
      ['version 0', () => build({ ...ok(), version: 0 }), 'LOWBIT_BAD_FORMAT', ['version 0']],
      ['big-endian version', () => build({ ...ok(), version: Buffer.of(0, 0, 0, 3) }), 'LOWBIT_UNSUPPORTED', ['big-endian']],
      ['file shorter than 8 bytes', () => Buffer.from('GGUF'), 'LOWBIT_BAD_FORMAT', ['too short']],
      ['lying kv_count (huge)', () => build({ ...ok(), kvCount: 1n << 60n }), 'LOWBIT_BAD_FORMAT', ['kv_count']],
      ['lying kv_count (one more)', () => build({ ...ok(), kvCount: 3n }), 'LOWBIT_BAD_FORMAT', []],
      ['lying tensor_count (huge)', () => build({ ...ok(), tensorCount: 0xffffffffffffffffn }), 'LOWBIT_BAD_FORMAT', ['tensor_count']],
      ['lying tensor_count (one more)', () => build({ ...ok(), tensorCount: 3n }), 'LOWBIT_BAD_FORMAT', []],
      ['nested array', () => build({ kvs: [Buffer.concat([str('x.nested'), u32(T.ARRAY), u32(T.ARRAY), u64(1), u32(T.UINT8), u64(1), Buffer.of(1)])] }), 'LOWBIT_BAD_FORMAT', ['x.nested', 'nested']],
      ['duplicate key', () => build({ kvs: [kvU32('x.a', 1), kvU32('x.a', 2)] }), 'LOWBIT_BAD_FORMAT', ['duplicate key "x.a"']],
      ['empty key', () => build({ kvs: [kvU32('', 1)] }), 'LOWBIT_BAD_FORMAT', ['empty key']],
      ['unknown value type', () => build({ kvs: [Buffer.concat([str('x.t'), u32(13), u32(0)])] }), 'LOWBIT_BAD_FORMAT', ['x.t', 'value type 13']],
      ['unknown array element type', () => build({ kvs: [Buffer.concat([str('x.t'), u32(T.ARRAY), u32(99), u64(0)])] }), 'LOWBIT_BAD_FORMAT', ['x.t', 'value type 99']],
      ['string longer than 1 GiB', () => build({ kvs: [Buffer.concat([str('x.s'), u32(T.STRING), u64((1n << 30n) + 1n), Buffer.from('abc')])] }), 'LOWBIT_BAD_FORMAT', ['x.s', '1 GiB']],
      ['string past the end of the file', () => build({ kvs: [Buffer.concat([str('x.s'), u32(T.STRING), u64(1000), Buffer.from('abc')])] }), 'LOWBIT_BAD_FORMAT', ['x.s']],
      ['array longer than 2^30', () => build({ kvs: [Buffer.concat([str('x.a'), u32(T.ARRAY), u32(T.UINT8), u64((1n << 30n) + 1n)])] }), 'LOWBIT_BAD_FORMAT', ['x.a', 'limit']],
      ['array count beyond the file', () => build({ kvs: [Buffer.concat([str('x.a'), u32(T.ARRAY), u32(T.STRING), u64(1n << 29n)])] }), 'LOWBIT_BAD_FORMAT', ['x.a']],
      ['alignment not a power of two', () => build({ ...ok(), kvs: [kvU32('general.alignment', 48)] }), 'LOWBIT_BAD_FORMAT', ['general.alignment', '48']],
      ['alignment zero', () => build({ ...ok(), kvs: [kvU32('general.alignment', 0)] }), 'LOWBIT_BAD_FORMAT', ['general.alignment']],
      ['alignment of type UINT64', () => build({ ...ok(), kvs: [kvU64('general.alignment', 32)] }), 'LOWBIT_BAD_FORMAT', ['general.alignment', 'UINT32']],
      ['duplicate tensor name', () => build({ tensors: [ok().tensors[0], { ...ok().tensors[0] }] }), 'LOWBIT_BAD_FORMAT', ['duplicate tensor name "a"']],
      ['n_dims 5', () => build({ tensors: [{ name: 'a', ne: [1, 1, 1, 1, 1], type: 0, data: f32Data([1]) }] }), 'LOWBIT_BAD_FORMAT', ['"a"', 'n_dims 5']],
      ['negative ne', () => build({ tensors: [{ name: 'a', ne: [-4], type: 0, data: f32Data([]) }] }), 'LOWBIT_BAD_FORMAT', ['"a"', 'negative']],
      ['unknown tensor type', () => build({ tensors: [{ name: 'a', ne: [4], type: 99, data: f32Data([1, 2, 3, 4]) }] }), 'LOWBIT_BAD_FORMAT', ['"a"', 'unknown ggml type 99']],
      ['removed tensor type 4', () => build({ tensors: [{ name: 'a', ne: [32], type: 4, data: Buffer.alloc(20) }] }), 'LOWBIT_BAD_FORMAT', ['"a"', 'ggml type 4']],
      ['known but unsupported tensor type', () => build({ tensors: [{ name: 'a', ne: [256], type: 13, data: Buffer.alloc(176) }] }), 'LOWBIT_UNSUPPORTED', ['"a"', 'Q5_K']],
      ['ne[0] not a multiple of the block size', () => build({ tensors: [{ name: 'q', ne: [16, 2], type: 2, data: Buffer.alloc(18) }] }), 'LOWBIT_BAD_FORMAT', ['"q"', 'block size 32']],
      ['0-d block tensor', () => build({ tensors: [{ name: 'q', ne: [], type: 8, data: Buffer.alloc(34) }] }), 'LOWBIT_BAD_FORMAT', ['"q"', 'block size']],
      ['first tensor offset not 0', () => build({ tensors: [{ ...ok().tensors[0], offset: 32n }] }), 'LOWBIT_BAD_FORMAT', ['"a"', 'offset 32']],
      ['second tensor offset unaligned', () => build({ tensors: [ok().tensors[0], { ...ok().tensors[1], offset: 24n }] }), 'LOWBIT_BAD_FORMAT', ['"b"', 'expected 32']],
      ['tensor offset out of range', () => build({ tensors: [ok().tensors[0], { ...ok().tensors[1], offset: 1n << 40n }] }), 'LOWBIT_BAD_FORMAT', ['"b"']],
      ['tensor data past the end of the file', () => build({ ...ok() }).subarray(0, -40), 'LOWBIT_BAD_FORMAT', ['"b"', 'past the end']],
      ['huge tensor', () => build({ tensors: [{ name: 'a', ne: [1n << 40n, 1n << 20n], type: 0, data: f32Data([1]) }] }), 'LOWBIT_BAD_FORMAT', ['"a"']],
      ['truncated inside the tensor infos', () => build({ ...ok() }).subarray(0, 120), 'LOWBIT_BAD_FORMAT', ['truncated']],
    ];
    for (const [what, make, code, frags] of cases) {
      it(`${what} → ${code}`, () => {
        const f = write(make());
        assert.throws(() => readGguf(f), isCode(code, f, ...frags));
      });
    }

    it('missing file → LOWBIT_NOT_FOUND; bad argument → LOWBIT_INVALID_OPTION', () => {
      assert.throws(() => readGguf(path.join(tmp, 'nope.gguf')), isCode('LOWBIT_NOT_FOUND', 'nope.gguf'));
      assert.throws(() => readGguf(''), isCode('LOWBIT_INVALID_OPTION'));
    });

    it('ggufLlamaConfig: missing key, wrong type, other architecture', () => {
      const base = [kvStr('general.architecture', 'llama'), kvU32('llama.embedding_length', 64), kvU32('llama.feed_forward_length', 172),
        kvU32('llama.block_count', 2), kvU32('llama.attention.head_count', 8), kvU32('llama.context_length', 128),
        kvF32('llama.attention.layer_norm_rms_epsilon', 1e-5), kvArrStr('tokenizer.ggml.tokens', ['a', 'b', 'c'])];
      const c = ggufLlamaConfig(readGguf(write(build({ kvs: base }))));
      assert.equal(c.nKvHeads, 8);
      assert.equal(c.vocabSize, 3);
      assert.equal(c.ropeTheta, 10000);
      assert.equal(c.headDim, 8);
      assert.throws(() => ggufLlamaConfig(readGguf(write(build({ kvs: base.filter((_, i) => i !== 3) })))), isCode('LOWBIT_BAD_FORMAT', 'llama.block_count'));
      assert.throws(() => ggufLlamaConfig(readGguf(write(build({ kvs: [...base.slice(0, 5), kvU64('llama.context_length', 128), ...base.slice(6)] })))),
        isCode('LOWBIT_BAD_FORMAT', 'llama.context_length', 'UINT32', 'UINT64'));
      assert.throws(() => ggufLlamaConfig(readGguf(write(build({ kvs: [kvStr('general.architecture', 'gpt2'), ...base.slice(1)] })))), isCode('LOWBIT_UNSUPPORTED', 'gpt2'));
      assert.throws(() => ggufLlamaConfig(readGguf(write(build({ kvs: base.slice(1) })))), isCode('LOWBIT_BAD_FORMAT', 'general.architecture'));
    });

    it('ggufVocab: ▁ → space, BOS/EOS as llama2.c spells them; bad arrays rejected', () => {
      const toks = ['<unk>', '<s>', '</s>', '▁a', 'b▁c'];
      const g = readGguf(write(build({ kvs: [kvArrStr('tokenizer.ggml.tokens', toks), kvArrF32('tokenizer.ggml.scores', [0, 0, 0, -1, -2])] })));
      const v = ggufVocab(g);
      assert.deepEqual(v.pieces, ['<unk>', '\n<s>\n', '\n</s>\n', ' a', 'b c']);
      assert.equal(v.maxTokenLength, 6);
      assert.throws(() => ggufVocab(readGguf(write(build({ kvs: [kvArrStr('tokenizer.ggml.tokens', toks), kvArrF32('tokenizer.ggml.scores', [0])] })))),
        isCode('LOWBIT_BAD_FORMAT', 'tokenizer.ggml.scores'));
      assert.throws(() => ggufVocab(readGguf(write(build({ kvs: [kvStr('tokenizer.ggml.model', 'gpt2'), kvArrStr('tokenizer.ggml.tokens', toks)] })))),
        isCode('LOWBIT_UNSUPPORTED', 'gpt2'));
      assert.throws(() => ggufVocab(readGguf(write(build({ kvs: [] })))), isCode('LOWBIT_BAD_FORMAT', 'tokenizer.ggml.tokens'));
      assert.throws(() => ggufVocab(readGguf(write(build({ kvs: [kvArrStr('tokenizer.ggml.tokens', toks), kvU32('tokenizer.ggml.bos_token_id', 9)] })))),
        isCode('LOWBIT_BAD_FORMAT', 'bos_token_id'));
    });

    it('ggmlTypeName', () => {
      assert.equal(ggmlTypeName(14), 'Q6_K');
      assert.equal(ggmlTypeName(13), 'Q5_K');
      assert.equal(ggmlTypeName(99), 'type 99');
    });
  });
});

/**
 * Byte positions of the u64 string lengths / array counts, the u32 value types and the string
 * contents in a GGUF header (for the fuzz test), and where the tensor infos end.
 */
function headerFields(b: Buffer): { lengths: number[]; types: number[]; strings: [number, number][]; infosEnd: number } {
  const lengths: number[] = [8, 16];
  const strings: [number, number][] = [];
  const types: number[] = [];
  let p = 24;
  const sizes: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skipStr = () => {
    lengths.push(p);
    const n = Number(b.readBigUInt64LE(p));
    strings.push([p + 8, n]);
    p += 8 + n;
  };
  const nt = Number(b.readBigUInt64LE(8));
  const nkv = Number(b.readBigUInt64LE(16));
  for (let i = 0; i < nkv; i++) {
    skipStr();
    types.push(p);
    const t = b.readUInt32LE(p);
    p += 4;
    if (t === 8) skipStr();
    else if (t === 9) {
      types.push(p);
      const et = b.readUInt32LE(p);
      p += 4;
      lengths.push(p);
      const c = Number(b.readBigUInt64LE(p));
      p += 8;
      if (et === 8) for (let j = 0; j < c; j++) skipStr();
      else p += c * sizes[et];
    } else p += sizes[t];
  }
  for (let i = 0; i < nt; i++) {
    skipStr();
    const nd = b.readUInt32LE(p);
    types.push(p);
    p += 4;
    for (let d = 0; d < nd; d++) {
      lengths.push(p);
      p += 8;
    }
    types.push(p);
    p += 4;
    lengths.push(p); // offset
    p += 8;
  }
  return { lengths, types, strings, infosEnd: p };
}
