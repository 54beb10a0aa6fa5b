/**
 * formats/gguf-write: write → readGguf (which validates every §6.5 rule, offsets included) →
 * identical metadata and tensors; the alignment/padding rules of §6.2/§6.4 checked on the bytes;
 * validation and atomicity (an error mid-write leaves no file); buildLlamaGgufSpec on a synthetic
 * model (rotate-half → adjacent q/k rows, fallbacks) and on stories260K, re-exported from its
 * llama2.c .bin and compared with the fixture's llama.cpp GGUF, then run by lowbit's runtime.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeGguf, buildLlamaGgufSpec, halfToAdjacentRows, type GgufWriteSpec, type GgufTensorSpec, type LlamaGgufConfig } from '../../lib/formats/gguf-write';
import { readGguf, ggufLlamaConfig, ggufVocab, GGML_TYPES, type GgufFile, type GgufValue } from '../../lib/formats/gguf';
import { encodeGgml, decodeGgml, type GgmlDecodeType } from '../../lib/formats/ggml-blocks';
import { readLlama2cModel, readLlama2cTokenizer } from '../../lib/formats/llama2c';
import { adjacentToHalf } from '../../lib/formats/convert';
import { fromFloat32, toFloat32 } from '../../lib/formats/dtype';
import { loadModel } from '../../lib/runtime/model';
import type { Vocab } from '../../lib/runtime/tokenizer';
import { isLowbitError, type ErrorCode } from '../../lib/errors';
import { fixturesDir, NO_FIXTURES, readExpected, type ExpectedGeneration } from '../helpers/fixtures';
import { must } from '../helpers/assert';
import { Rng } from '../helpers/rng';
import { isCode } from '../helpers/errors';

const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;

/** The decoded f32 values of any tensor (tensorF32 covers only F32/F16/BF16). */
function valuesOf(g: GgufFile, name: string): Float32Array {
  const t = g.tensor(name);
  return decodeGgml(t.typeName as GgmlDecodeType, g.bytes(name), t.numel);
}

/** Structural checks of §6.2/§6.4 on a written file, beyond what the reader validates. */
function checkLayout(file: string, g: GgufFile): void {
  const buf = fs.readFileSync(file);
  assert.equal(buf.subarray(0, 8).toString('hex'), '4747554603000000'); // §9 "GGUF header start"
  assert.equal(g.dataOffset % g.alignment, 0);
  let end = g.dataOffset;
  for (const t of g.tensors) {
    assert.equal(t.offset, end, `${t.name}: offset`);
    assert.equal((t.offset - g.dataOffset) % g.alignment, 0);
    for (let i = t.offset + t.byteLength; i < alignUp(t.offset + t.byteLength, g.alignment); i++) assert.equal(buf[i], 0, `${t.name}: padding byte ${i}`);
    end = alignUp(t.offset + t.byteLength, g.alignment);
  }
  assert.equal(g.fileSize, end, 'the data section ends with the padded last tensor');
}

function listDir(d: string): string[] {
  return fs.existsSync(d) ? fs.readdirSync(d).sort() : [];
}

describe('formats/gguf-write', () => {
  let tmp: string;
  let n = 0;
  const fresh = () => path.join(tmp, `case-${n++}`, 'm.gguf');

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-gguf-write-'));
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('writeGguf', () => {
    const rng = new Rng(31);
    const w = rng.weights(3, 64); // ne = [64, 3]
    const v = Float32Array.from({ length: 5 }, () => rng.normal());

    it('round-trips every value type (scalars and arrays) in order, and every tensor type', async () => {
      const metadata: GgufWriteSpec['metadata'] = [
        ['t.u8', 'UINT8', 255], ['t.i8', 'INT8', -128], ['t.u16', 'UINT16', 65535], ['t.i16', 'INT16', -32768],
        ['t.u32', 'UINT32', 4294967295], ['t.i32', 'INT32', -2147483648], ['t.f32', 'FLOAT32', 0.1], ['t.bool', 'BOOL', true],
        ['t.bool_false', 'BOOL', false], ['t.str', 'STRING', 'héllo ▁world'], ['t.empty_str', 'STRING', ''],
        ['t.u64', 'UINT64', 2n ** 64n - 1n], ['t.i64', 'INT64', -(2n ** 63n)], ['t.i64_num', 'INT64', -5], ['t.f64', 'FLOAT64', Math.PI],
        ['t.arr_str', 'ARRAY', ['a', '', '▁b', '<0x0A>']], ['t.arr_f32', 'ARRAY', { itemType: 'FLOAT32', value: [1.5, -2, 0.1] }],
        ['t.arr_i32', 'ARRAY', Int32Array.of(-1, 2, 3)], ['t.arr_u8', 'ARRAY', Uint8Array.of(1, 2, 255)],
        ['t.arr_i8', 'ARRAY', { itemType: 'INT8', value: [-1, 1] }], ['t.arr_u16', 'ARRAY', Uint16Array.of(7)],
        ['t.arr_i16', 'ARRAY', Int16Array.of(-7)], ['t.arr_u32', 'ARRAY', Uint32Array.of(4294967295)],
        ['t.arr_u64', 'ARRAY', BigUint64Array.of(1n, 2n ** 63n)], ['t.arr_i64', 'ARRAY', { itemType: 'INT64', value: [-1n, 3] }],
        ['t.arr_f64', 'ARRAY', Float64Array.of(1e300)], ['t.arr_bool', 'ARRAY', [true, false, true]],
        ['t.arr_empty', 'ARRAY', { itemType: 'UINT32', value: [] }],
      ];
      const types = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1'] as const;
      const tensors: GgufTensorSpec[] = types.map((t) => ({ name: `w.${t}`, type: t, shape: [3, 64], data: w }));
      tensors.push({ name: 'v', type: 'F32', shape: [5], data: () => v });
      tensors.push({ name: 'cube', type: 'F16', shape: [2, 1, 3, 2], data: Float32Array.from({ length: 12 }, (_, i) => i / 4) });
      const file = fresh();
      const r = await writeGguf(file, { metadata, tensors });
      assert.equal(r.file, path.resolve(file));
      assert.equal(r.bytes, fs.statSync(file).size);
      const g = readGguf(file);
      try {
        checkLayout(file, g);
        assert.equal(g.version, 3);
        assert.equal(g.alignment, 32);
        assert.ok(!g.metadata.has('general.alignment'), 'default alignment: the key is omitted');
        assert.deepEqual([...g.metadata.keys()], metadata.map((m) => m[0]));
        const m = (k: string) => g.metadata.get(k) as GgufValue;
        assert.deepEqual(m('t.u8'), { type: 'UINT8', value: 255 });
        assert.deepEqual(m('t.i8'), { type: 'INT8', value: -128 });
        assert.deepEqual(m('t.u16'), { type: 'UINT16', value: 65535 });
        assert.deepEqual(m('t.i16'), { type: 'INT16', value: -32768 });
        assert.deepEqual(m('t.u32'), { type: 'UINT32', value: 4294967295 });
        assert.deepEqual(m('t.i32'), { type: 'INT32', value: -2147483648 });
        assert.deepEqual(m('t.f32'), { type: 'FLOAT32', value: Math.fround(0.1) });
        assert.deepEqual(m('t.bool'), { type: 'BOOL', value: true });
        assert.deepEqual(m('t.bool_false'), { type: 'BOOL', value: false });
        assert.deepEqual(m('t.str'), { type: 'STRING', value: 'héllo ▁world' });
        assert.deepEqual(m('t.empty_str'), { type: 'STRING', value: '' });
        assert.deepEqual(m('t.u64'), { type: 'UINT64', value: 2n ** 64n - 1n });
        assert.deepEqual(m('t.i64'), { type: 'INT64', value: -(2n ** 63n) });
        assert.deepEqual(m('t.i64_num'), { type: 'INT64', value: -5n });
        assert.deepEqual(m('t.f64'), { type: 'FLOAT64', value: Math.PI });
        const arr = (k: string) => { const x = m(k); assert.equal(x.type, 'ARRAY'); return x; };
        assert.deepEqual([arr('t.arr_str').itemType, arr('t.arr_str').value], ['STRING', ['a', '', '▁b', '<0x0A>']]);
        assert.deepEqual([arr('t.arr_f32').itemType, Array.from(arr('t.arr_f32').value as Float32Array)], ['FLOAT32', [1.5, -2, Math.fround(0.1)]]);
        assert.deepEqual([arr('t.arr_i32').itemType, Array.from(arr('t.arr_i32').value as Int32Array)], ['INT32', [-1, 2, 3]]);
        assert.deepEqual([arr('t.arr_u8').itemType, Array.from(arr('t.arr_u8').value as Uint8Array)], ['UINT8', [1, 2, 255]]);
        assert.deepEqual([arr('t.arr_i8').itemType, Array.from(arr('t.arr_i8').value as Int8Array)], ['INT8', [-1, 1]]);
        assert.deepEqual([arr('t.arr_u16').itemType, Array.from(arr('t.arr_u16').value as Uint16Array)], ['UINT16', [7]]);
        assert.deepEqual([arr('t.arr_i16').itemType, Array.from(arr('t.arr_i16').value as Int16Array)], ['INT16', [-7]]);
        assert.deepEqual([arr('t.arr_u32').itemType, Array.from(arr('t.arr_u32').value as Uint32Array)], ['UINT32', [4294967295]]);
        assert.deepEqual([arr('t.arr_u64').itemType, Array.from(arr('t.arr_u64').value as BigUint64Array)], ['UINT64', [1n, 2n ** 63n]]);
        assert.deepEqual([arr('t.arr_i64').itemType, Array.from(arr('t.arr_i64').value as BigInt64Array)], ['INT64', [-1n, 3n]]);
        assert.deepEqual([arr('t.arr_f64').itemType, Array.from(arr('t.arr_f64').value as Float64Array)], ['FLOAT64', [1e300]]);
        assert.deepEqual([arr('t.arr_bool').itemType, arr('t.arr_bool').value], ['BOOL', [true, false, true]]);
        assert.deepEqual([arr('t.arr_empty').itemType, arr('t.arr_empty').value.length], ['UINT32', 0]);

        assert.deepEqual(g.tensors.map((t) => t.name), tensors.map((t) => t.name));
        for (const t of types) {
          const info = g.tensor(`w.${t}`);
          assert.deepEqual([info.typeName, info.ne, info.shape], [t, [64, 3], [3, 64]]);
          // stored bytes are exactly the encoder's (F32/F16/BF16 bit-exact conversions; blocks the reference encoders)
          assert.deepEqual(Buffer.from(g.bytes(`w.${t}`)), Buffer.from(encodeGgml(t, w, `w.${t}`)));
        }
        assert.deepEqual(g.tensorF32('w.F32'), w);
        assert.deepEqual(g.tensorF32('w.F16'), toFloat32(fromFloat32(w, 'F16', 'w'), 'F16'));
        assert.deepEqual(g.tensorF32('w.BF16'), toFloat32(fromFloat32(w, 'BF16', 'w'), 'BF16'));
        for (const t of ['Q8_0', 'Q4_0', 'Q4_1'] as const) assert.deepEqual(valuesOf(g, `w.${t}`), decodeGgml(t, encodeGgml(t, w), w.length));
        assert.deepEqual(g.tensorF32('v'), v);
        assert.deepEqual([...g.tensor('cube').ne], [2, 3, 1, 2]);
        assert.deepEqual(Array.from(g.tensorF32('cube')), Array.from({ length: 12 }, (_, i) => i / 4));
      } finally {
        g.close();
      }
    });

    for (const alignment of [8, 32, 64, 4096]) {
      it(`alignment ${alignment}: general.alignment UINT32 first, data and every tensor aligned, padding after the last tensor`, async () => {
        const file = fresh();
        const tensors: GgufTensorSpec[] = [
          { name: 'a', type: 'F32', shape: [5], data: v }, // 20 bytes: padding follows
          { name: 'b', type: 'Q4_0', shape: [3, 64], data: w }, // 108 bytes
          { name: 'c', type: 'F16', shape: [3], data: v.subarray(0, 3) }, // 6 bytes, last: still padded
        ];
        await writeGguf(file, { metadata: [['general.name', 'STRING', 'x']], tensors, alignment });
        const g = readGguf(file);
        try {
          assert.equal(g.alignment, alignment);
          assert.deepEqual([...g.metadata.entries()][0], ['general.alignment', { type: 'UINT32', value: alignment }]);
          checkLayout(file, g);
          const rel = g.tensors.map((t) => t.offset - g.dataOffset);
          assert.deepEqual(rel, [0, alignUp(20, alignment), alignUp(alignUp(20, alignment) + 108, alignment)]);
        } finally {
          g.close();
        }
      });
    }

    it('headers larger than the 64 KiB header chunks (a 32000-token vocabulary) round-trip exactly', async () => {
      // regression: every field that crossed a chunk boundary used to be written into the old chunk
      const file = fresh();
      const pieces = Array.from({ length: 32000 }, (_, i) => `▁tok${i}${'x'.repeat(i % 13)}`);
      const scores = Float32Array.from({ length: 32000 }, (_, i) => -i / 7);
      const types = Int32Array.from({ length: 32000 }, (_, i) => 1 + (i % 3));
      await writeGguf(file, { metadata: [['tokenizer.ggml.tokens', 'ARRAY', pieces], ['tokenizer.ggml.scores', 'ARRAY', scores], ['tokenizer.ggml.token_type', 'ARRAY', types], ['t.after', 'UINT64', 1n << 40n]], tensors: [] });
      const g = readGguf(file);
      try {
        assert.deepEqual((g.metadata.get('tokenizer.ggml.tokens') as { value: string[] }).value, pieces);
        assert.deepEqual(Array.from((g.metadata.get('tokenizer.ggml.scores') as { value: ArrayLike<number> }).value), Array.from(scores));
        assert.deepEqual(Array.from((g.metadata.get('tokenizer.ggml.token_type') as { value: ArrayLike<number> }).value), Array.from(types));
        assert.equal(must(g.metadata.get('t.after'), 't.after').value, 1n << 40n);
      } finally {
        g.close();
      }
    });

    it('a file without tensors is still padded to ALIGNMENT; no metadata at all is fine', async () => {
      const file = fresh();
      const r = await writeGguf(file, { metadata: [], tensors: [] });
      assert.equal(r.bytes, 32);
      assert.equal(fs.readFileSync(file).toString('hex'), `4747554603000000${'00'.repeat(16)}${'00'.repeat(8)}`);
      const g = readGguf(file);
      assert.equal(g.tensors.length, 0);
      g.close();
    });

    it('validates the spec before creating anything', async () => {
      const bad: [Partial<GgufWriteSpec>, ErrorCode, ...string[]][] = [
        [{ alignment: 4 }, 'LOWBIT_INVALID_OPTION', 'alignment'],
        [{ alignment: 48 }, 'LOWBIT_INVALID_OPTION', 'alignment'],
        [{ alignment: 0 }, 'LOWBIT_INVALID_OPTION', 'alignment'],
        [{ metadata: [['general.alignment', 'UINT32', 64]] }, 'LOWBIT_INVALID_OPTION', 'general.alignment'],
        [{ metadata: [['a.b', 'UINT32', 1], ['a.b', 'UINT32', 2]] }, 'LOWBIT_INVALID_OPTION', 'unique'],
        [{ metadata: [['Bad.Key', 'UINT32', 1]] }, 'LOWBIT_INVALID_OPTION', 'lower_snake_case'],
        [{ metadata: [['a..b', 'UINT32', 1]] }, 'LOWBIT_INVALID_OPTION', 'key'],
        [{ metadata: [['a', 'UINT8', 256]] }, 'LOWBIT_INVALID_OPTION', 'a: expected an integer in [0, 255]'],
        [{ metadata: [['a', 'UINT32', -1]] }, 'LOWBIT_INVALID_OPTION', 'a: expected'],
        [{ metadata: [['a', 'UINT32', 1.5]] }, 'LOWBIT_INVALID_OPTION', 'a: expected'],
        [{ metadata: [['a', 'UINT64', -1n]] }, 'LOWBIT_INVALID_OPTION', 'UINT64 range'],
        [{ metadata: [['a', 'FLOAT32', '1']] }, 'LOWBIT_INVALID_OPTION', 'a number'],
        [{ metadata: [['a', 'BOOL', 1]] }, 'LOWBIT_INVALID_OPTION', 'a boolean'],
        [{ metadata: [['a', 'STRING', 5]] }, 'LOWBIT_INVALID_OPTION', 'a string'],
        [{ metadata: [['a', 'NOPE' as never, 5]] }, 'LOWBIT_INVALID_OPTION', 'a type'],
        [{ metadata: [['a', 'ARRAY', [1, 2]]] }, 'LOWBIT_INVALID_OPTION', 'itemType'],
        [{ metadata: [['a', 'ARRAY', { itemType: 'ARRAY', value: [] }]] }, 'LOWBIT_INVALID_OPTION', 'nested'],
        [{ metadata: [['a', 'ARRAY', { itemType: 'INT8', value: [1, 200] }]] }, 'LOWBIT_INVALID_OPTION', 'a[1]'],
        [{ tensors: [{ name: 'q', type: 'Q8_0', shape: [2, 48], data: new Float32Array(96) }] }, 'LOWBIT_INVALID_OPTION', 'q: type', 'ne[0] = 48', 'multiple of 32'],
        [{ tensors: [{ name: 'q', type: 'Q4_1', shape: [40], data: new Float32Array(40) }] }, 'LOWBIT_INVALID_OPTION', 'q: type', 'ne[0] = 40'],
        [{ tensors: [{ name: 'q', type: 'Q2_K' as never, shape: [256], data: new Float32Array(256) }] }, 'LOWBIT_INVALID_OPTION', 'q: type'],
        [{ tensors: [{ name: 'q', type: 'Q6_K', shape: [256], data: new Float32Array(256) }] }, 'LOWBIT_INVALID_OPTION', 'q: data', 'encoded Q6_K blocks'],
        [{ tensors: [{ name: 'q', type: 'Q6_K', shape: [256], data: new Uint8Array(200) }] }, 'LOWBIT_SHAPE_MISMATCH', '200 encoded bytes', '210 bytes'],
        [{ tensors: [{ name: 'x', type: 'F32', shape: [2], data: new Float32Array(2) }, { name: 'x', type: 'F32', shape: [2], data: new Float32Array(2) }] }, 'LOWBIT_INVALID_OPTION', 'unique tensor names'],
        [{ tensors: [{ name: 'n'.repeat(64), type: 'F32', shape: [2], data: new Float32Array(2) }] }, 'LOWBIT_INVALID_OPTION', 'fewer than 64'],
        [{ tensors: [{ name: 'x', type: 'F32', shape: [1, 1, 1, 1, 1], data: new Float32Array(1) }] }, 'LOWBIT_INVALID_OPTION', 'x: shape'],
        [{ tensors: [{ name: 'x', type: 'F32', shape: [0], data: new Float32Array(0) }] }, 'LOWBIT_INVALID_OPTION', 'x: shape'],
        [{ tensors: [{ name: 'x', type: 'F32', shape: [3], data: new Float32Array(2) }] }, 'LOWBIT_SHAPE_MISMATCH', 'x: data has 2 elements', 'needs 3'],
      ];
      for (const [patch, code, ...frags] of bad) {
        const file = fresh();
        await assert.rejects(writeGguf(file, { metadata: [], tensors: [], ...patch }), isCode(code, ...frags), JSON.stringify(patch, (_k, x: unknown) => (typeof x === 'bigint' ? String(x) : x)));
        assert.deepEqual(listDir(path.dirname(file)), []);
      }
      await assert.rejects(writeGguf('', { metadata: [], tensors: [] }), isCode('LOWBIT_INVALID_OPTION', 'file'));
    });

    describe('atomicity: an error mid-write leaves no file', () => {
      const spec = (third: GgufTensorSpec): GgufWriteSpec => ({
        metadata: [['general.name', 'STRING', 'x']],
        tensors: [{ name: 'a', type: 'Q8_0', shape: [3, 64], data: w }, { name: 'b', type: 'F32', shape: [5], data: () => v }, third],
      });

      it('a producer that throws: its own error, unchanged; no final file and no temp file', async () => {
        const file = fresh();
        const boom = new Error('producer failed');
        await assert.rejects(writeGguf(file, spec({ name: 'c', type: 'F32', shape: [2], data: () => { throw boom; } })), (e) => e === boom);
        assert.deepEqual(listDir(path.dirname(file)), []);
      });

      it('an F16 overflow in the last tensor: LOWBIT_NUMERICAL naming it, nothing left', async () => {
        const file = fresh();
        await assert.rejects(writeGguf(file, spec({ name: 'c', type: 'F16', shape: [2], data: Float32Array.of(1, 70000) })), isCode('LOWBIT_NUMERICAL', 'c: element 1'));
        assert.deepEqual(listDir(path.dirname(file)), []);
      });

      it('a producer returning the wrong length: LOWBIT_SHAPE_MISMATCH; an existing file is kept as it was', async () => {
        const file = fresh();
        await writeGguf(file, { metadata: [], tensors: [] });
        const before = fs.readFileSync(file);
        await assert.rejects(writeGguf(file, spec({ name: 'c', type: 'F32', shape: [2], data: () => new Float32Array(3) })), isCode('LOWBIT_SHAPE_MISMATCH', 'c: data producer returned 3'));
        assert.deepEqual(listDir(path.dirname(file)), ['m.gguf']);
        assert.deepEqual(fs.readFileSync(file), before);
      });

      it('an abort signal stops the write between tensors and leaves nothing', async () => {
        const file = fresh();
        const ac = new AbortController();
        const s = spec({ name: 'c', type: 'F32', shape: [2], data: new Float32Array(2) });
        s.tensors[1].data = () => { ac.abort(); return v; };
        await assert.rejects(writeGguf(file, s, { signal: ac.signal }), isCode('LOWBIT_ABORTED', 'tensor "c"'));
        assert.deepEqual(listDir(path.dirname(file)), []);
      });

      it('a path that cannot be created is LOWBIT_IO naming it', async () => {
        const file = fresh();
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(path.join(path.dirname(file), 'blocker'), 'x');
        await assert.rejects(writeGguf(path.join(path.dirname(file), 'blocker', 'm.gguf'), { metadata: [], tensors: [] }), isCode('LOWBIT_IO', 'blocker'));
      });
    });
  });

  describe('buildLlamaGgufSpec', () => {
    // a tiny llama: dim 64, 4 heads (hd 16), 2 kv heads, ffn 80 (not a multiple of 32), 2 layers, vocab 8
    const cfg: LlamaGgufConfig = { dim: 64, hiddenDim: 80, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 8, contextLength: 128, rmsEps: 1e-5, ropeTheta: 10000, name: 'tiny' };
    const vocab: Vocab = {
      pieces: ['<unk>', '\n<s>\n', '\n</s>\n', '<0x0A>', ' ', ' the', 'a b', '<0x41>'],
      pieceBytes: [], scores: Float32Array.of(0, 0, 0, 0, -1, -2, -3, -4), bos: 1, eos: 2, maxTokenLength: 6,
    };
    const rng = new Rng(41);
    const hf = new Map<string, { data: Float32Array; shape: number[] }>();
    const add = (name: string, shape: number[]) => hf.set(name, { data: rng.weights(shape.length === 2 ? shape[0] : 1, shape[shape.length - 1]), shape });
    add('model.embed_tokens.weight', [8, 64]);
    for (let i = 0; i < 2; i++) {
      const p = `model.layers.${i}`;
      add(`${p}.input_layernorm.weight`, [64]); add(`${p}.self_attn.q_proj.weight`, [64, 64]); add(`${p}.self_attn.k_proj.weight`, [32, 64]);
      add(`${p}.self_attn.v_proj.weight`, [32, 64]); add(`${p}.self_attn.o_proj.weight`, [64, 64]); add(`${p}.post_attention_layernorm.weight`, [64]);
      add(`${p}.mlp.gate_proj.weight`, [80, 64]); add(`${p}.mlp.up_proj.weight`, [80, 64]); add(`${p}.mlp.down_proj.weight`, [64, 80]);
    }
    add('model.norm.weight', [64]);

    it('metadata keys of §6.3 with their exact types; tokens in SentencePiece spelling; token types by §8.4', async () => {
      const spec = buildLlamaGgufSpec(cfg, vocab, hf, { type: 'Q4_0', ropeOrder: 'adjacent' });
      const file = fresh();
      await writeGguf(file, spec);
      const g = readGguf(file);
      try {
        const types: Record<string, string> = {
          'general.architecture': 'STRING', 'general.name': 'STRING', 'general.file_type': 'UINT32', 'general.quantization_version': 'UINT32',
          'llama.context_length': 'UINT32', 'llama.embedding_length': 'UINT32', 'llama.block_count': 'UINT32', 'llama.feed_forward_length': 'UINT32',
          'llama.attention.head_count': 'UINT32', 'llama.attention.head_count_kv': 'UINT32', 'llama.attention.layer_norm_rms_epsilon': 'FLOAT32',
          'llama.rope.dimension_count': 'UINT32', 'llama.rope.freq_base': 'FLOAT32', 'llama.vocab_size': 'UINT32', 'tokenizer.ggml.model': 'STRING',
          'tokenizer.ggml.bos_token_id': 'UINT32', 'tokenizer.ggml.eos_token_id': 'UINT32', 'tokenizer.ggml.unknown_token_id': 'UINT32', 'tokenizer.ggml.add_bos_token': 'BOOL',
        };
        for (const [k, t] of Object.entries(types)) assert.equal(g.metadata.get(k)?.type, t, k);
        const val = (k: string) => must(g.metadata.get(k), k).value;
        assert.equal(val('general.file_type'), 2);
        assert.equal(val('general.quantization_version'), 2);
        assert.equal(val('llama.rope.dimension_count'), 16);
        assert.equal(val('llama.attention.layer_norm_rms_epsilon'), Math.fround(1e-5));
        const arr = (k: string) => g.metadata.get(k) as Extract<GgufValue, { type: 'ARRAY' }>;
        assert.equal(arr('tokenizer.ggml.tokens').itemType, 'STRING');
        assert.deepEqual(arr('tokenizer.ggml.tokens').value, ['<unk>', '<s>', '</s>', '<0x0A>', '▁', '▁the', 'a▁b', '<0x41>']);
        assert.equal(arr('tokenizer.ggml.scores').itemType, 'FLOAT32');
        assert.deepEqual(Array.from(arr('tokenizer.ggml.scores').value as Float32Array), [0, 0, 0, 0, -1, -2, -3, -4]);
        assert.equal(arr('tokenizer.ggml.token_type').itemType, 'INT32');
        assert.deepEqual(Array.from(arr('tokenizer.ggml.token_type').value as Int32Array), [2, 3, 3, 6, 1, 1, 1, 6]);
        // readable back as the same llama config and vocabulary
        const c = ggufLlamaConfig(g);
        assert.deepEqual([c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.vocabSize, c.contextLength, c.headDim], [64, 80, 2, 4, 2, 8, 128, 16]);
        assert.deepEqual(ggufVocab(g).pieces, vocab.pieces);
        // tensors: names of §6.3, norms F32, no output.weight (tied), ffn_down falls back to F16
        assert.ok(!g.has('output.weight'));
        assert.equal(g.tensors.length, 1 + 2 * 9 + 1);
        assert.equal(g.tensor('blk.1.attn_norm.weight').typeName, 'F32');
        assert.equal(g.tensor('output_norm.weight').typeName, 'F32');
        assert.equal(g.tensor('token_embd.weight').typeName, 'Q4_0');
        assert.deepEqual([...g.tensor('blk.0.attn_k.weight').ne], [64, 32]);
        assert.equal(g.tensor('blk.0.ffn_gate.weight').typeName, 'Q4_0');
        assert.equal(g.tensor('blk.0.ffn_down.weight').typeName, 'F16');
        assert.deepEqual(spec.fallbacks.map((f) => f.name), ['blk.0.ffn_down.weight', 'blk.1.ffn_down.weight']);
        assert.match(spec.fallbacks[0].reason, /ne\[0\] = 80 .*not a multiple of the Q4_0 block size 32/);
      } finally {
        g.close();
      }
    });

    it("ropeOrder 'half' permutes q (nHeads) and k (nKvHeads) rows back to adjacent pairs", async () => {
      const half = new Map(hf);
      for (const [name, t] of hf) {
        if (/q_proj\.weight$/.test(name)) half.set(name, { data: adjacentToHalf(t.data, 4, 16, 64), shape: t.shape });
        if (/k_proj\.weight$/.test(name)) half.set(name, { data: adjacentToHalf(t.data, 2, 16, 64), shape: t.shape });
      }
      const a = fresh(), b = fresh();
      await writeGguf(a, buildLlamaGgufSpec(cfg, vocab, hf, { type: 'F32', ropeOrder: 'adjacent' }));
      await writeGguf(b, buildLlamaGgufSpec(cfg, vocab, half, { type: 'F32', ropeOrder: 'half' }));
      assert.deepEqual(fs.readFileSync(a), fs.readFileSync(b));
      assert.notDeepEqual(must(half.get('model.layers.0.self_attn.q_proj.weight'), 'half q_proj').data, must(hf.get('model.layers.0.self_attn.q_proj.weight'), 'hf q_proj').data);
      // §3.3 on one explicit row: gguf_row(h, 2i + t) = hf_row(h, t·hd/2 + i); h = 1, i = 3, t = 1 → row 16+7 from row 16+8+3
      const hq = must(half.get('model.layers.0.self_attn.q_proj.weight'), 'half q_proj').data;
      const adj = halfToAdjacentRows(hq, 4, 16, 64);
      assert.deepEqual(adj.subarray(23 * 64, 24 * 64), hq.subarray(27 * 64, 28 * 64));
    });

    it('producers instead of arrays (streaming export): called once each, when written; the same bytes; a wrong length is LOWBIT_SHAPE_MISMATCH, nothing left', async () => {
      for (const ropeOrder of ['adjacent', 'half'] as const) {
        const calls = new Map<string, number>();
        const lazy = new Map<string, { data: () => Float32Array; shape: number[] }>();
        for (const [name, t] of hf) lazy.set(name, { data: () => { calls.set(name, (calls.get(name) ?? 0) + 1); return t.data; }, shape: t.shape });
        const a = fresh(), b = fresh();
        const spec = buildLlamaGgufSpec(cfg, vocab, lazy, { type: 'Q4_0', ropeOrder });
        assert.equal(calls.size, 0, 'nothing produced while building the spec');
        await writeGguf(b, spec);
        await writeGguf(a, buildLlamaGgufSpec(cfg, vocab, hf, { type: 'Q4_0', ropeOrder }));
        assert.deepEqual(fs.readFileSync(b), fs.readFileSync(a), ropeOrder);
        assert.deepEqual([...calls.values()].every((c) => c === 1), true, `each producer once (${ropeOrder})`);
        assert.equal(calls.size, hf.size);
      }
      const short = new Map<string, { data: Float32Array | (() => Float32Array); shape: number[] }>(hf);
      short.set('model.layers.1.mlp.up_proj.weight', { data: () => new Float32Array(80 * 64 - 1), shape: [80, 64] });
      const file = fresh();
      await assert.rejects(writeGguf(file, buildLlamaGgufSpec(cfg, vocab, short, { type: 'Q4_0', ropeOrder: 'adjacent' })),
        (e: unknown) => isLowbitError(e, 'LOWBIT_SHAPE_MISMATCH') && /up_proj.*5119 values/.test((e as Error).message));
      assert.ok(!fs.existsSync(file));
    });

    it('writes lm_head as output.weight; file types of §6.3; no quantization_version without block tensors', () => {
      const withHead = new Map(hf).set('lm_head.weight', { data: rng.weights(8, 64), shape: [8, 64] });
      const ft = (t: 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0' | 'Q4_1') => buildLlamaGgufSpec(cfg, vocab, withHead, { type: t, ropeOrder: 'adjacent' });
      const key = (s: GgufWriteSpec, k: string) => s.metadata.find((m) => m[0] === k)?.[2];
      assert.deepEqual(['F32', 'F16', 'Q4_0', 'Q4_1', 'Q8_0', 'BF16'].map((t) => key(ft(t as never), 'general.file_type')), [0, 1, 2, 3, 7, 32]);
      assert.equal(key(ft('F16'), 'general.quantization_version'), undefined);
      assert.equal(key(ft('Q8_0'), 'general.quantization_version'), 2);
      assert.equal(must(ft('F16').tensors.at(-1), 'last tensor').name, 'output.weight');
      assert.deepEqual(ft('F16').fallbacks, []);
    });

    it('rejects unknown names, missing tensors, wrong shapes, bad config and options', () => {
      const build = (t: Map<string, { data: Float32Array; shape: number[] }>, c: Partial<LlamaGgufConfig> = {}, o: object = {}) =>
        () => buildLlamaGgufSpec({ ...cfg, ...c }, vocab, t, { type: 'F16', ropeOrder: 'adjacent', ...o });
      assert.throws(build(new Map(hf).set('model.layers.0.mlp.foo.weight', { data: new Float32Array(1), shape: [1] })), isCode('LOWBIT_INVALID_OPTION', 'model.layers.0.mlp.foo.weight'));
      assert.throws(build(new Map(hf).set('model.layers.5.mlp.up_proj.weight', { data: new Float32Array(1), shape: [1] })), isCode('LOWBIT_INVALID_OPTION', 'model.layers.5'));
      const missing = new Map(hf);
      missing.delete('model.layers.1.mlp.up_proj.weight');
      assert.throws(build(missing), isCode('LOWBIT_NOT_FOUND', 'model.layers.1.mlp.up_proj.weight'));
      assert.throws(build(new Map(hf).set('model.norm.weight', { data: new Float32Array(63), shape: [63] })), isCode('LOWBIT_SHAPE_MISMATCH', 'model.norm.weight', '[64]'));
      assert.throws(build(hf, { nKvHeads: 3 }), isCode('LOWBIT_INVALID_OPTION', 'cfg.nKvHeads'));
      assert.throws(build(hf, { dim: 0 }), isCode('LOWBIT_INVALID_OPTION', 'cfg.dim'));
      assert.throws(build(hf, { vocabSize: 9 }), isCode('LOWBIT_INVALID_OPTION', 'vocab'));
      assert.throws(build(hf, {}, { type: 'Q6_K' }), isCode('LOWBIT_INVALID_OPTION', 'opts.type'));
      assert.throws(build(hf, {}, { ropeOrder: 'neox' }), isCode('LOWBIT_INVALID_OPTION', 'opts.ropeOrder'));
    });
  });

  describe('stories260K: llama2.c .bin → GGUF', function () {
    let dir: string;
    let fixture: GgufFile;
    let cfg: LlamaGgufConfig;
    let vocab: Vocab;
    let tensors: Map<string, { data: Float32Array; shape: number[] }>;
    let expected: ExpectedGeneration;

    before(function () {
      const F = fixturesDir();
      if (!F) {
        console.log(`      skipped: ${NO_FIXTURES}`);
        this.skip();
      }
      dir = path.join(F, 'stories260K');
      const m = readLlama2cModel(path.join(dir, 'stories260K.bin'));
      const c = m.config;
      cfg = { dim: c.dim, hiddenDim: c.hiddenDim, nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads, vocabSize: c.vocabSize,
        contextLength: c.seqLen, rmsEps: 1e-5, ropeTheta: 10000, name: 'stories260K' };
      vocab = readLlama2cTokenizer(path.join(dir, 'tok512.bin'), c.vocabSize);
      tensors = new Map([...m.tensors].map(([k, t]) => [k, { data: t, shape: must(m.shapes.get(k), `shape of ${k}`) }]));
      fixture = readGguf(path.join(dir, 'stories260K.gguf'));
      expected = readExpected(dir).generate[0];
    });
    after(() => { (fixture as GgufFile | undefined)?.close(); }); // unassigned when before() skipped

    it("F32: tensors and vocabulary equal the fixture's llama.cpp GGUF; §6.3 keys typed; lowbit's runtime reproduces run.c's greedy text", async () => {
      const spec = buildLlamaGgufSpec(cfg, vocab, tensors, { type: 'F32', ropeOrder: 'adjacent' });
      assert.deepEqual(spec.fallbacks, []);
      const file = path.join(tmp, 'stories260K-f32.gguf');
      await writeGguf(file, spec);
      const g = readGguf(file);
      try {
        checkLayout(file, g);
        // every tensor of the fixture, except output.weight (a stored copy of the embedding; ours is tied)
        const ours = g.tensors.map((t) => t.name).sort();
        const theirs = fixture.tensors.map((t) => t.name).filter((x) => x !== 'output.weight').sort();
        assert.deepEqual(ours, theirs);
        for (const t of g.tensors) {
          const f = fixture.tensor(t.name);
          assert.equal(t.typeName, 'F32');
          assert.deepEqual([...t.ne], [...f.ne], t.name);
          assert.deepEqual(Buffer.from(g.bytes(t.name)), Buffer.from(fixture.bytes(t.name)), t.name);
        }
        assert.deepEqual(Buffer.from(fixture.bytes('output.weight')), Buffer.from(g.bytes('token_embd.weight')));
        // vocabulary arrays identical to llama.cpp's conversion
        for (const k of ['tokenizer.ggml.tokens', 'tokenizer.ggml.scores', 'tokenizer.ggml.token_type', 'tokenizer.ggml.model',
          'tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id', 'tokenizer.ggml.unknown_token_id', 'general.architecture',
          'llama.embedding_length', 'llama.feed_forward_length', 'llama.block_count', 'llama.attention.head_count',
          'llama.attention.head_count_kv', 'llama.rope.dimension_count', 'llama.attention.layer_norm_rms_epsilon']) {
          assert.deepEqual(g.metadata.get(k), fixture.metadata.get(k), k);
        }
        assert.deepEqual(g.metadata.get('llama.context_length'), { type: 'UINT32', value: 512 });
        assert.deepEqual(g.metadata.get('general.file_type'), { type: 'UINT32', value: 0 });
        assert.deepEqual(g.metadata.get('llama.rope.freq_base'), { type: 'FLOAT32', value: 10000 });
      } finally {
        g.close();
      }
      const model = await loadModel(file);
      try {
        const r = await model.generate({ steps: 200, temperature: 0 });
        assert.equal(r.text, expected.expected_text);
        assert.deepEqual(r.ids, expected.expected_ids);
      } finally {
        model.dispose();
      }
    });

    it('Q8_0: ffn_down (ne[0] = 172) falls back to F16; every tensor decodes within its bound', async () => {
      const spec = buildLlamaGgufSpec(cfg, vocab, tensors, { type: 'Q8_0', ropeOrder: 'adjacent' });
      assert.deepEqual(spec.fallbacks.map((f) => f.name), [0, 1, 2, 3, 4].map((i) => `blk.${i}.ffn_down.weight`));
      const file = path.join(tmp, 'stories260K-q8_0.gguf');
      const r = await writeGguf(file, spec);
      const g = readGguf(file);
      try {
        checkLayout(file, g);
        assert.ok(r.bytes < fs.statSync(path.join(dir, 'stories260K.gguf')).size / 2);
        assert.deepEqual(g.metadata.get('general.file_type'), { type: 'UINT32', value: 7 });
        assert.deepEqual(g.metadata.get('general.quantization_version'), { type: 'UINT32', value: 2 });
        let worst = 0;
        for (const t of g.tensors) {
          const x = fixture.tensorF32(t.name);
          const y = valuesOf(g, t.name);
          assert.equal(y.length, x.length);
          const bs = GGML_TYPES[t.typeName].blockSize;
          for (let b = 0; b < x.length / bs; b++) {
            let amax = 0;
            for (let j = 0; j < bs; j++) amax = Math.max(amax, Math.abs(x[b * bs + j]));
            for (let j = 0; j < bs; j++) {
              const i = b * bs + j;
              const err = Math.abs(x[i] - y[i]);
              // Q8_0: d/2 + 127·|fp16(d) − d| ≤ d·(1/2 + 127·2^-11) with d = amax/127 (normal fp16 d here);
              // F16 (fallback): half an fp16 ulp, ≤ |x|·2^-11 (+2^-25 subnormal); F32 (norms): exact.
              const bound = t.typeName === 'Q8_0' ? (amax / 127) * (0.5 + 127 * 2 ** -11) + 2 ** -20 * amax
                : t.typeName === 'F16' ? Math.abs(x[i]) * 2 ** -11 + 2 ** -25 : 0;
              assert.ok(err <= bound, `${t.name}[${i}] (${t.typeName}): |${x[i]} − ${y[i]}| > ${bound}`);
              if (t.typeName === 'Q8_0' && amax > 0) worst = Math.max(worst, err / (amax / 127));
            }
          }
        }
        assert.ok(worst > 0.4 && worst <= 0.5 + 127 * 2 ** -11, `worst Q8_0 error ${worst} steps`);
        // the same bytes as encoding each tensor directly
        assert.deepEqual(Buffer.from(g.bytes('blk.2.attn_q.weight')), Buffer.from(encodeGgml('Q8_0', fixture.tensorF32('blk.2.attn_q.weight'))));
      } finally {
        g.close();
      }
    });
  });
});
