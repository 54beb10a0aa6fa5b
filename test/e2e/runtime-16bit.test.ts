/**
 * 16-bit weights in the runtime (issue 18): an F16 or BF16 Hugging Face checkpoint runs with its
 * linear layers, embedding and head kept 16-bit (views of the mapped file), and gives the same
 * logits, bit for bit, as the same model converted to f32 at load (`f32Weights`), in prefill and
 * decoding, through generate and evaluate. A checkpoint mixing F16 and BF16 keeps the first dtype
 * 16-bit and converts the other; the in-place weight access GPTQ uses is refused on 16-bit weights.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel, evaluate, writeSyntheticModel } from '../../lib/index';
import { openSafetensors, writeSafetensors, type TensorEntry } from '../../lib/formats/safetensors';
import { fromFloat32 } from '../../lib/formats/dtype';
import { writeByteTokenizer } from '../helpers/tiny-llama';

function same(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

describe('runtime: 16-bit weights stay 16-bit, logits identical to f32', function () {
  this.timeout(300000);
  let root: string;
  let tok: string;
  before(function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-w16-'));
    tok = writeByteTokenizer(root, 2048);
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  for (const dtype of ['F16', 'BF16'] as const) {
    it(`${dtype}: prefill, decoding, generate and evaluate give the bytes of the f32-converted model`, async function () {
      const dir = await writeSyntheticModel(path.join(root, dtype), { shape: 'demo', dtype, seed: 7 });
      const a = await loadModel(dir, { tokenizer: tok, maxContext: 128 });
      const b = await loadModel(dir, { tokenizer: tok, maxContext: 128, f32Weights: true });
      try {
        assert.equal(a.weightDtype, dtype);
        assert.equal(b.weightDtype, 'F32');
        // prefill lengths around the GEMV (1), small-batch (9–64) and blocked (> 64) paths
        for (const n of [1, 5, 9, 33, 64, 65, 100]) {
          const ids = Int32Array.from({ length: n }, (_, i) => (i * 131 + n) % 2048);
          assert.ok(same(await a.forward(ids, 0, n), await b.forward(ids, 0, n)), `prefill of ${n}`);
          assert.ok(same(await a.forward(Int32Array.of(3), n, 1), await b.forward(Int32Array.of(3), n, 1)), `decoding after ${n}`);
        }
        const ga = await a.generate({ prompt: 'Once', steps: 40, temperature: 0.8, seed: 3 });
        const gb = await b.generate({ prompt: 'Once', steps: 40, temperature: 0.8, seed: 3 });
        assert.deepEqual(ga.ids, gb.ids);
        const text = 'The little dog ran to the park and played with a red ball all day long. '.repeat(6);
        const ea = await evaluate(a, { text, ctx: 64 }), eb = await evaluate(b, { text, ctx: 64 });
        assert.equal(ea.nll, eb.nll);
        assert.throws(() => a._linearWeight(0, 'q'), /16-bit/);
        assert.ok(b._linearWeight(0, 'q') instanceof Float32Array);
      } finally {
        a.dispose();
        b.dispose();
      }
    });
  }

  it('a checkpoint mixing F16 and BF16: the first dtype stays 16-bit, the other converts, logits unchanged', async function () {
    const src = await writeSyntheticModel(path.join(root, 'mix-src'), { shape: 'demo', dtype: 'F16', seed: 8 });
    const mix = path.join(root, 'mix');
    fs.mkdirSync(mix);
    for (const f of fs.readdirSync(src)) if (!f.endsWith('.safetensors')) fs.copyFileSync(path.join(src, f), path.join(mix, f));
    const st = openSafetensors(src);
    const entries: TensorEntry[] = st.names().map((name) => {
      const info = st.info(name);
      const toBf16 = name === 'model.layers.1.mlp.up_proj.weight' || name === 'lm_head.weight';
      return { name, dtype: toBf16 ? 'BF16' : info.dtype, shape: info.shape, data: () => (toBf16 ? fromFloat32(st.toFloat32(name), 'BF16', name) : st.bytes(name)) };
    });
    await writeSafetensors(mix, entries);
    st.close();
    const a = await loadModel(mix, { tokenizer: tok, maxContext: 64 });
    const b = await loadModel(mix, { tokenizer: tok, maxContext: 64, f32Weights: true });
    try {
      assert.equal(a.weightDtype, 'F16');
      assert.ok(a._linearWeight(1, 'up') instanceof Float32Array, 'the BF16 tensor was converted');
      const ids = Int32Array.from({ length: 20 }, (_, i) => i * 17);
      assert.ok(same(await a.forward(ids, 0, 20), await b.forward(ids, 0, 20)));
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('f32Weights must be a boolean', async function () {
    await assert.rejects(loadModel(path.join(root, 'F16'), { f32Weights: 'yes' as unknown as boolean }), (e: Error & { code?: string }) => e.code === 'LOWBIT_INVALID_OPTION' && /f32Weights/.test(e.message));
  });
});
