/**
 * A NaN or Inf in any tensor of any input format (HF safetensors F16/F32/BF16, llama2.c .bin, GGUF
 * F32 and GGUF block types through their scales) stops quantize, GGUF export and model loading
 * (eval, generate) with LOWBIT_NUMERICAL naming the file and the tensor, and leaves no output: the
 * readers scan every tensor they hand out. The writers check what they write (safetensors, GGUF
 * including pre-encoded blocks) as the last step before the rename.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize, exportGguf, loadModel, readGguf, writeSafetensors, writeGguf } from '../../lib/index';
import { writeSyntheticModel } from '../../lib/runtime/synthetic';
import { readLlama2cModel } from '../../lib/formats/llama2c';
import { writeByteTokenizer } from '../helpers/tiny-llama';
import { writeHfFromLlama2c } from '../../lib/formats/convert';
import { firstNonFinite } from '../../lib/formats/dtype';
import { rejectsCode, throwsCode } from '../helpers/errors';
import { fixturesDir } from '../helpers/fixtures';

/** Overwrite element `index` of tensor `name` in a single-file safetensors model with a non-finite value. */
function plant(dir: string, name: string, index: number, value: 'nan' | 'inf'): void {
  const file = path.join(dir, 'model.safetensors');
  const fd = fs.openSync(file, 'r+');
  try {
    const len = Buffer.alloc(8);
    fs.readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const head = Buffer.alloc(n);
    fs.readSync(fd, head, 0, n, 8);
    const info = (JSON.parse(head.toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>)[name];
    assert.ok(info, `${name} in ${file}`);
    const size = info.dtype === 'F32' ? 4 : 2;
    const bytes = Buffer.alloc(size);
    if (info.dtype === 'F32') bytes.writeFloatLE(value === 'nan' ? NaN : Infinity, 0);
    else if (info.dtype === 'F16') bytes.writeUInt16LE(value === 'nan' ? 0x7e00 : 0x7c00, 0);
    else bytes.writeUInt16LE(value === 'nan' ? 0x7fc0 : 0x7f80, 0);
    fs.writeSync(fd, bytes, 0, size, 8 + n + info.data_offsets[0] + index * size);
  } finally {
    fs.closeSync(fd);
  }
}

/** Write `value` (NaN or Inf, as f32) at byte `offset` of `file`. */
function plantF32At(file: string, offset: number, value: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(4);
    b.writeFloatLE(value, 0);
    fs.writeSync(fd, b, 0, 4, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** A llama2.c tokenizer.bin of the model's vocabulary size (byte pieces), beside its config.json. */
function syntheticTokenizer(dir: string): string {
  return writeByteTokenizer(dir, (JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { vocab_size: number }).vocab_size);
}

describe('non-finite values in any tensor stop quantize, GGUF export and loading (no output)', function () {
  this.timeout(120000);
  let root: string;
  before(function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-nonfinite-'));
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('firstNonFinite reads F32, F16 and BF16 bit patterns (NaN, ±Inf; not the largest finite values)', function () {
    const f32 = new Float32Array([1, -3.4e38, 2, NaN]);
    assert.equal(firstNonFinite(new Uint8Array(f32.buffer), 'F32'), 3);
    assert.equal(firstNonFinite(new Uint8Array(new Float32Array([-Infinity]).buffer), 'F32'), 0);
    assert.equal(firstNonFinite(new Uint8Array(new Uint16Array([0x7bff, 0xfbff, 0xfc00]).buffer), 'F16'), 2);
    assert.equal(firstNonFinite(new Uint8Array(new Uint16Array([0x7f7f, 0x7fc1]).buffer), 'BF16'), 1);
    assert.equal(firstNonFinite(new Uint8Array(new Uint16Array([0x7bff, 0x3c00]).buffer), 'F16'), -1);
    assert.equal(firstNonFinite(new Uint8Array(new Uint16Array([0x7f7f, 0x3c00]).buffer), 'BF16'), -1);
    // a view at an odd offset is read correctly too
    const odd = new Uint8Array(9);
    new DataView(odd.buffer).setFloat32(1 + 4, NaN, true);
    assert.equal(firstNonFinite(odd.subarray(1), 'F32'), 1);
  });

  for (const dtype of ['F16', 'F32', 'BF16'] as const) {
    for (const [tensor, value] of [
      ['model.embed_tokens.weight', 'nan'], ['model.layers.1.input_layernorm.weight', 'inf'], ['model.layers.0.post_attention_layernorm.weight', 'nan'],
      ['model.norm.weight', 'inf'], ['lm_head.weight', 'nan'], ['model.layers.0.self_attn.q_proj.weight', 'nan'],
    ] as const) {
      it(`${dtype}: ${value} in ${tensor} → LOWBIT_NUMERICAL naming it (gptq and dequant formats), nothing written`, async function () {
        const dir = await writeSyntheticModel(path.join(root, `${dtype}-${tensor}`), { shape: 'tiny', dtype, seed: 5 });
        plant(dir, tensor, 7, value);
        for (const format of ['gptq', 'dequant'] as const) {
          const out = path.join(root, `out-${dtype}-${tensor}-${format}`);
          await rejectsCode(quantize(dir, { method: 'rtn', format, groupSize: 32 }, { out }), 'LOWBIT_NUMERICAL', tensor);
          assert.ok(!fs.existsSync(out), `${out} written`);
          assert.deepEqual(fs.readdirSync(root).filter((f) => f.includes('.tmp-') || f.includes('.source-')), []);
        }
        // loading it to run or evaluate, and exporting it to GGUF, fail the same way
        await rejectsCode(loadModel(dir), 'LOWBIT_NUMERICAL', tensor);
        const g = path.join(root, `x-${dtype}-${tensor}.gguf`);
        await rejectsCode(exportGguf(dir, g, { type: 'Q8_0', tokenizer: syntheticTokenizer(dir) }), 'LOWBIT_NUMERICAL', tensor);
        assert.ok(!fs.existsSync(g));
      });
    }
  }

  it('GGUF export (F32 and Q4_0) of a model with a NaN in a norm → LOWBIT_NUMERICAL naming it, no file', async function () {
    const f = fixturesDir();
    if (!f) this.skip();
    const dir = path.join(root, 'stories-hf');
    await writeHfFromLlama2c(readLlama2cModel(path.join(f, 'stories260K', 'stories260K.bin')), dir, 'F32');
    fs.copyFileSync(path.join(f, 'stories260K', 'tok512.bin'), path.join(dir, 'tokenizer.bin'));
    plant(dir, 'model.layers.2.input_layernorm.weight', 3, 'nan');
    for (const type of ['F32', 'Q4_0'] as const) {
      const out = path.join(root, `x-${type}.gguf`);
      await rejectsCode(exportGguf(dir, out, { type }), 'LOWBIT_NUMERICAL', 'model.layers.2.input_layernorm.weight');
      assert.ok(!fs.existsSync(out));
      const q = path.join(root, `q-${type}.gguf`);
      await rejectsCode(quantize(dir, { method: 'rtn', format: type === 'F32' ? 'gguf:f32' : 'gguf:q4_0' }, { out: q }), 'LOWBIT_NUMERICAL', 'model.layers.2.input_layernorm.weight');
      assert.ok(!fs.existsSync(q));
    }
  });

  describe('llama2.c and GGUF sources (stories260K)', function () {
    let f: string;
    before(function () {
      const d = fixturesDir();
      if (!d) this.skip();
      f = d;
    });

    for (const [tensor, value] of [
      ['model.embed_tokens.weight', NaN], ['model.layers.1.input_layernorm.weight', Infinity], ['model.norm.weight', -Infinity],
      ['model.layers.0.mlp.down_proj.weight', NaN], ['model.layers.4.self_attn.v_proj.weight', NaN],
    ] as const) {
      it(`llama2.c .bin: ${String(value)} in ${tensor} → quantize, GGUF export and load fail naming it`, async function () {
        const dir = fs.mkdtempSync(path.join(root, 'l2c-'));
        const bin = path.join(dir, 'model.bin');
        fs.copyFileSync(path.join(f, 'stories260K', 'stories260K.bin'), bin);
        fs.copyFileSync(path.join(f, 'stories260K', 'tok512.bin'), path.join(dir, 'tokenizer.bin'));
        const t = readLlama2cModel(bin).tensors.get(tensor);
        assert.ok(t, tensor);
        // the reader maps (or reads) the whole file from offset 0, so a tensor's byteOffset is its file offset
        plantF32At(bin, t.byteOffset + 4 * 11, value);
        throwsCode(() => readLlama2cModel(bin), 'LOWBIT_NUMERICAL', tensor);
        const out = path.join(dir, 'q');
        await rejectsCode(quantize(bin, { method: 'rtn', format: 'gptq', groupSize: 32 }, { out }), 'LOWBIT_NUMERICAL', tensor);
        assert.ok(!fs.existsSync(out));
        await rejectsCode(exportGguf(bin, path.join(dir, 'x.gguf'), { type: 'F32' }), 'LOWBIT_NUMERICAL', tensor);
        assert.ok(!fs.existsSync(path.join(dir, 'x.gguf')));
        await rejectsCode(loadModel(bin), 'LOWBIT_NUMERICAL', tensor);
        assert.deepEqual(fs.readdirSync(dir).sort(), ['model.bin', 'tokenizer.bin']);
      });
    }

    for (const [tensor, value] of [['token_embd.weight', NaN], ['output_norm.weight', Infinity], ['blk.2.attn_q.weight', NaN], ['blk.0.ffn_norm.weight', -Infinity]] as const) {
      it(`GGUF F32: ${String(value)} in ${tensor} → quantize and load fail naming it`, async function () {
        const dir = fs.mkdtempSync(path.join(root, 'gguf-'));
        const file = path.join(dir, 'model.gguf');
        fs.copyFileSync(path.join(f, 'stories260K', 'stories260K.gguf'), file);
        const g = readGguf(file);
        const off = g.tensor(tensor).offset;
        g.close();
        plantF32At(file, off + 4 * 5, value);
        await rejectsCode(loadModel(file), 'LOWBIT_NUMERICAL', tensor);
        const out = path.join(dir, 'q');
        await rejectsCode(quantize(file, { method: 'rtn', format: 'gptq', groupSize: 32 }, { out }), 'LOWBIT_NUMERICAL', tensor);
        assert.ok(!fs.existsSync(out));
        assert.deepEqual(fs.readdirSync(dir), ['model.gguf']);
      });
    }

    it('GGUF Q4_0 / Q8_0 / Q4_1: a NaN or Inf block scale → load and requantize fail naming the tensor and block', async function () {
      const hf = path.join(root, 'stories-hf-blocks');
      await writeHfFromLlama2c(readLlama2cModel(path.join(f, 'stories260K', 'stories260K.bin')), hf, 'F32');
      fs.copyFileSync(path.join(f, 'stories260K', 'tok512.bin'), path.join(hf, 'tokenizer.bin'));
      for (const [type, blockBytes, bad] of [['Q4_0', 18, 0x7e00], ['Q8_0', 34, 0x7c00], ['Q4_1', 20, 0xfc00]] as const) {
        const file = path.join(root, `blocks-${type}.gguf`);
        await exportGguf(hf, file, { type, overwrite: true });
        const g = readGguf(file);
        const t = g.tensor('blk.1.ffn_up.weight');
        assert.equal(t.typeName, type);
        g.close();
        const fd = fs.openSync(file, 'r+');
        const b = Buffer.alloc(2);
        b.writeUInt16LE(bad, 0);
        fs.writeSync(fd, b, 0, 2, t.offset + 3 * blockBytes); // the scale d of block 3
        fs.closeSync(fd);
        await rejectsCode(loadModel(file), 'LOWBIT_NUMERICAL', 'blk.1.ffn_up.weight');
        await rejectsCode(loadModel(file), 'LOWBIT_NUMERICAL', 'block 3');
        const out = path.join(root, `blocks-${type}-q`);
        await rejectsCode(quantize(file, { method: 'rtn', format: 'gptq', groupSize: 32 }, { out, allowRequantize: true }), 'LOWBIT_NUMERICAL', 'blk.1.ffn_up.weight');
        assert.ok(!fs.existsSync(out));
      }
    });
  });

  it('the writers refuse a NaN or Inf given to them (safetensors bytes, GGUF pre-encoded blocks): nothing written', async function () {
    const dir = path.join(root, 'writers');
    const f16 = new Uint8Array(new Uint16Array([0x3c00, 0x7c00, 0]).buffer);
    await rejectsCode(writeSafetensors(dir, [{ name: 'w', dtype: 'F16', shape: [3], data: f16 }]), 'LOWBIT_NUMERICAL', 'flat index 1');
    assert.deepEqual(fs.existsSync(dir) ? fs.readdirSync(dir) : [], []);
    const q40 = new Uint8Array(18 * 2);
    new DataView(q40.buffer).setUint16(18, 0x7e00, true); // block 1's scale is NaN
    const g = path.join(root, 'writers.gguf');
    await rejectsCode(writeGguf(g, { metadata: [['general.architecture', 'STRING', 'llama']], tensors: [{ name: 'w', type: 'Q4_0', shape: [2, 32], data: q40 }] }),
      'LOWBIT_NUMERICAL', 'block 1');
    assert.ok(!fs.existsSync(g));
  });
});
