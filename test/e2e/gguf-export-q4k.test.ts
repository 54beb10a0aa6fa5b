/**
 * GGUF export as Q4_K (`--format gguf:q4_k`): ggml's Q4_K reference quantizer (native, the same bytes as
 * the TypeScript reference, test/native/ggml-encode), tensors whose rows the 256-value super-blocks
 * cannot hold fall back to Q8_0 and are named; lowbit's runtime loads the file through its
 * two-level-scale kernels, and the model is closer to the unquantized one than the same export as
 * Q4_0 (KL divergence and top-1 agreement on real text, both against the F32 export).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSyntheticModel, SYNTHETIC_PRESETS } from '../../lib/runtime/synthetic';
import { exportGguf } from '../../lib/pipeline/gguf-export';
import { readGguf } from '../../lib/formats/gguf';
import { loadModel } from '../../lib/runtime/model';
import { evaluate } from '../../lib/runtime/evaluate';
import { packageRoot } from '../../lib/native';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { must } from '../helpers/assert';

/** What `lowbit quantize --format gguf:… --json` prints (the fields read here). */
interface GgufExportJson {
  type: string;
  fallbacks: { name: string }[];
  conversions: { how: string }[];
}

describe('GGUF export as Q4_K', function () {
  this.timeout(300000);
  let fx: string, root: string, model: string, tok: string;
  before(async function (this: Mocha.Context) {
    const d = fixturesDir();
    if (!d) {
      console.log(`      ${NO_FIXTURES}`);
      this.skip();
    }
    fx = d;
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-q4k-'));
    // the demo shape (hidden 256, FFN 768: every linear fits 256-value super-blocks) with the
    // stories260K vocabulary (512 pieces)
    model = await writeSyntheticModel(path.join(root, 'hf'), { shape: { ...SYNTHETIC_PRESETS.demo, vocabSize: 512, intermediateSize: 768 }, dtype: 'F16' });
    tok = path.join(fx, 'stories260K', 'tok512.bin');
  });
  after(function () {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('every linear is Q4_K; the file loads and runs; KL to F32 below Q4_0\'s, top-1 agreement above it', async function () {
    const f32 = path.join(root, 'f32.gguf'), q4k = path.join(root, 'q4k.gguf'), q40 = path.join(root, 'q40.gguf');
    await exportGguf(model, f32, { type: 'F32', tokenizer: tok });
    await exportGguf(model, q40, { type: 'Q4_0', tokenizer: tok });
    const r = spawnSync(process.execPath, [path.join(packageRoot(), 'bin', 'lowbit.js'), 'quantize', model, '--format', 'gguf:q4_k', '--tokenizer', tok, '--out', q4k, '--json'],
      { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as GgufExportJson;
    assert.equal(j.type, 'Q4_K');
    assert.deepEqual(j.fallbacks, []);
    const g = readGguf(q4k);
    try {
      assert.equal(must(g.metadata.get('general.file_type'), 'general.file_type').value, 14);
      for (const t of g.tensors) assert.equal(t.typeName, t.ne.length === 1 ? 'F32' : 'Q4_K', t.name);
    } finally {
      g.close();
    }
    const text = fs.readFileSync(path.join(fx, 'text', 'tinystories-dev.txt'), 'utf8');
    const ref = await loadModel(f32), a = await loadModel(q4k), b = await loadModel(q40);
    try {
      const ek = await evaluate(a, { text, ctx: 128, maxChunks: 6, reference: ref });
      const e0 = await evaluate(b, { text, ctx: 128, maxChunks: 6, reference: ref });
      const klK = must(ek.kl, 'Q4_K KL'), kl0 = must(e0.kl, 'Q4_0 KL');
      assert.ok(klK > 0 && klK < kl0, `KL Q4_K ${String(ek.kl)} vs Q4_0 ${String(e0.kl)}`);
      assert.ok(must(ek.top1, 'Q4_K top-1') >= must(e0.top1, 'Q4_0 top-1'), `top-1 Q4_K ${String(ek.top1)} vs Q4_0 ${String(e0.top1)}`);
    } finally {
      ref.dispose();
      a.dispose();
      b.dispose();
    }
  });

  it('rows the super-blocks cannot hold fall back to Q8_0, named in the result', async function () {
    const odd = await writeSyntheticModel(path.join(root, 'odd'), { shape: { ...SYNTHETIC_PRESETS.demo, vocabSize: 512, intermediateSize: 288 }, dtype: 'F16' });
    const out = path.join(root, 'odd.gguf');
    const res = await exportGguf(odd, out, { type: 'Q4_K', tokenizer: tok });
    assert.ok(res.fallbacks.length > 0 && res.fallbacks.every((f) => /ffn_down/.test(f.name) && /not a multiple of the Q4_K super-block size 256; stored as Q8_0/.test(f.reason)),
      JSON.stringify(res.fallbacks));
    const g = readGguf(out);
    try {
      assert.equal(g.tensor('blk.0.ffn_down.weight').typeName, 'Q8_0');
      assert.equal(g.tensor('blk.0.ffn_up.weight').typeName, 'Q4_K');
    } finally {
      g.close();
    }
    const m = await loadModel(out);
    try {
      const gen = await m.generate({ prompt: 'Once upon a time', steps: 8, temperature: 0 });
      assert.ok(gen.ids.length > 0);
    } finally {
      m.dispose();
    }
  });
});
