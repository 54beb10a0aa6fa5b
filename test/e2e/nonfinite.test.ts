/**
 * A NaN or Inf in any tensor stops a quantize run or a GGUF export with LOWBIT_NUMERICAL naming the
 * tensor, and leaves no output — for tensors that are quantized (checked by the native quantizer)
 * and for those passed through unquantized (embeddings, norms, the head, biases), which used to be
 * copied unread.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize, exportGguf } from '../../lib/index';
import { writeSyntheticModel } from '../../lib/runtime/synthetic';
import { readLlama2cModel } from '../../lib/formats/llama2c';
import { writeHfFromLlama2c } from '../../lib/formats/convert';
import { firstNonFinite } from '../../lib/formats/dtype';
import { rejectsCode } from '../helpers/errors';
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

describe('non-finite values in any tensor stop quantize and GGUF export (no output)', function () {
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
      await rejectsCode(exportGguf(dir, out, { type }), 'LOWBIT_NUMERICAL', 'non-finite');
      assert.ok(!fs.existsSync(out));
      const q = path.join(root, `q-${type}.gguf`);
      await rejectsCode(quantize(dir, { method: 'rtn', format: type === 'F32' ? 'gguf:f32' : 'gguf:q4_0' }, { out: q }), 'LOWBIT_NUMERICAL', 'non-finite');
      assert.ok(!fs.existsSync(q));
    }
  });
});
