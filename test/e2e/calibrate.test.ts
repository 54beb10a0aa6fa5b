/** Calibration on the real stories260K: statistics match an independent recomputation; errors. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadModel, type LanguageModel } from '../../lib/runtime/model';
import { calibrate } from '../../lib/runtime/calibrate';
import { readLlama2cModel } from '../../lib/formats/llama2c';
import { isLowbitError } from '../../lib/errors';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { must } from '../helpers/assert';

describe('calibration (stories260K)', function () {
  let m: LanguageModel;
  let text: string;
  let dir: string;
  before(async function (this: Mocha.Context) {
    const fx = fixturesDir();
    if (!fx) {
      console.log(`      ${NO_FIXTURES}`);
      this.skip();
    }
    dir = fx;
    m = await loadModel(path.join(dir, 'stories260K', 'stories260K.bin'), { tokenizer: path.join(dir, 'stories260K', 'tok512.bin') });
    text = fs.readFileSync(path.join(dir, 'text', 'tinystories-calib.txt'), 'utf8');
  });
  after(function () {
    (m as LanguageModel | undefined)?.dispose(); // unassigned when before() skipped
  });

  it('layer 0 attention-input Hessian, mean|x| and max|x| equal a float64 recomputation (rel < 1e-5)', async function () {
    const r = await calibrate(m, { text, samples: 8, seqLen: 128, seed: 3, keepHessians: true });
    assert.equal(r.layers.length, 5);
    assert.equal(r.tokens, 1024);
    assert.equal(r.windows.length, 8);
    assert.match(r.textSha256, /^[0-9a-f]{64}$/);
    const w = readLlama2cModel(path.join(dir, 'stories260K', 'stories260K.bin'));
    const norm = must(w.tensors.get('model.layers.0.input_layernorm.weight'), 'input_layernorm');
    const E = must(w.tensors.get('model.embed_tokens.weight'), 'embed_tokens');
    const ids = must(m.tokenizer, 'tokenizer').encode(text, { bos: false });
    const dim = 64;
    const H = new Float64Array(dim * dim), sa = new Float64Array(dim), ma = new Float64Array(dim);
    for (const s of r.windows) for (let t = 0; t < 128; t++) {
      const x = E.subarray(ids[s + t] * dim, (ids[s + t] + 1) * dim);
      let ss = 0;
      for (const v of x) ss += v * v;
      const sc = 1 / Math.sqrt(ss / dim + 1e-5);
      const xn = Array.from(x, (v, i) => norm[i] * v * sc);
      for (let i = 0; i < dim; i++) {
        sa[i] += Math.abs(xn[i]);
        ma[i] = Math.max(ma[i], Math.abs(xn[i]));
        for (let j = 0; j < dim; j++) H[i * dim + j] += xn[i] * xn[j];
      }
    }
    const L = r.layers[0].attn;
    const hessian = must(L.hessian, 'layer 0 attention-input Hessian (keepHessians)');
    let maxd = 0, maxv = 0;
    for (let i = 0; i < H.length; i++) {
      maxd = Math.max(maxd, Math.abs((2 / 1024) * H[i] - hessian[i]));
      maxv = Math.max(maxv, Math.abs((2 / 1024) * H[i]));
    }
    assert.ok(maxd / maxv < 1e-5, `H rel err ${maxd / maxv}`);
    for (let i = 0; i < dim; i++) {
      assert.ok(Math.abs(L.meanAbs[i] - sa[i] / 1024) <= 1e-5 * (sa[i] / 1024));
      assert.ok(Math.abs(L.maxAbs[i] - ma[i]) <= 1e-6 * ma[i]);
    }
    assert.equal(r.layers[4].down.inFeatures, 172);
    assert.ok(r.layers[4].down.meanAbs.every((v) => v > 0 && Number.isFinite(v)));
  });

  it('same seed, same windows and statistics; onLayer sees every layer in order', async function () {
    const seen: number[] = [];
    const a = await calibrate(m, { text, samples: 4, seqLen: 64, seed: 9, onLayer: (s) => { seen.push(s.layer); } });
    const b = await calibrate(m, { text, samples: 4, seqLen: 64, seed: 9 });
    assert.deepEqual(a.windows, b.windows);
    assert.deepEqual(seen, [0, 1, 2, 3, 4]);
    assert.deepEqual(Array.from(a.layers[3].mlp.meanAbs), Array.from(b.layers[3].mlp.meanAbs));
  });

  it('text shorter than one window → LOWBIT_INVALID_OPTION; abort → LOWBIT_ABORTED', async function () {
    await assert.rejects(calibrate(m, { text: 'Once upon a time.', samples: 2, seqLen: 64 }), (e: unknown) => isLowbitError(e, 'LOWBIT_INVALID_OPTION') && /shorter than one calibration window/.test((e as Error).message));
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(calibrate(m, { text, samples: 2, seqLen: 64, signal: ac.signal }), (e: unknown) => isLowbitError(e, 'LOWBIT_ABORTED'));
  });
});
