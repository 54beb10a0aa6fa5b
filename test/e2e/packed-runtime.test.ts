/**
 * The runtime runs 4-bit GPTQ checkpoints straight from their packed words (no dequantized copy):
 * logits and perplexity equal those of the same checkpoint dequantized at load, within the int4
 * kernel's stated float bound (here: relative 1e-4 on logits, 1e-5 on perplexity), for v1 and v2
 * zeros, symmetric and asymmetric, and act-order g_idx (stories260K attention layers, GPTQ).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize } from '../../lib/pipeline/quantize';
import { writeSyntheticModel } from '../../lib/synthetic';
import { loadModel } from '../../lib/runtime/model';
import { evaluate } from '../../lib/runtime/evaluate';
import { readLlama2cModel } from '../../lib/formats/llama2c';
import { writeHfFromLlama2c } from '../../lib/formats/convert';
import { fixturesDir } from '../helpers/fixtures';

function maxRel(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / m;
}

describe('runtime on packed int4 GPTQ weights', function () {
  let root: string;
  before(function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-packed-'));
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  for (const [format, sym] of [['gptq', true], ['gptq', false], ['gptq-v2', false]] as const) {
    it(`RTN ${format} ${sym ? 'sym' : 'asym'} g32: packed logits == dequantized-at-load logits`, async function () {
      const src = await writeSyntheticModel(path.join(root, `m-${format}-${sym}`), {
        shape: { hiddenSize: 128, intermediateSize: 256, layers: 2, heads: 4, kvHeads: 2, vocabSize: 96, maxPositions: 64 }, dtype: 'F16', seed: 5 });
      const out = path.join(root, `q-${format}-${sym}`);
      await quantize(src, { method: 'rtn', bits: 4, groupSize: 32, sym, format }, { out });
      const a = await loadModel(out), b = await loadModel(out, { packed: false });
      try {
        const toks = Int32Array.from({ length: 40 }, (_, i) => (i * 37) % 96);
        const la = await a.forward(toks, 0, 40), lb = await b.forward(toks, 0, 40);
        assert.ok(maxRel(la, lb) < 1e-4, `prefill rel ${maxRel(la, lb)}`);
        const da = await a.forward(Int32Array.of(3), 40, 1), db = await b.forward(Int32Array.of(3), 40, 1);
        assert.ok(maxRel(da, db) < 1e-4, `decode rel ${maxRel(da, db)}`);
      } finally {
        a.dispose();
        b.dispose();
      }
    });
  }

  it('GPTQ with act-order (stories260K attention layers): packed perplexity == dequantized', async function () {
    const fx = fixturesDir();
    if (!fx) this.skip();
    const hf = await writeHfFromLlama2c(readLlama2cModel(path.join(fx!, 'stories260K', 'stories260K.bin')), path.join(root, 'hf'), 'F32');
    const tok = path.join(fx!, 'stories260K', 'tok512.bin');
    const out = path.join(root, 'g');
    await quantize(hf, { method: 'gptq', bits: 4, groupSize: 32, sym: false, actOrder: true, exclude: ['mlp.'] },
      { out, calibration: { file: path.join(fx!, 'text', 'tinystories-calib.txt'), samples: 8, seqLen: 256, tokenizer: tok } });
    const text = fs.readFileSync(path.join(fx!, 'text', 'tinystories-dev.txt'), 'utf8');
    const a = await loadModel(out, { tokenizer: tok }), b = await loadModel(out, { tokenizer: tok, packed: false });
    try {
      const pa = (await evaluate(a, { text, ctx: 512, maxChunks: 2 })).ppl, pb = (await evaluate(b, { text, ctx: 512, maxChunks: 2 })).ppl;
      assert.ok(Math.abs(pa - pb) <= 1e-5 * pb, `packed ${pa} vs dequantized ${pb}`);
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});
