/**
 * Weight transforms (lib/pipeline/transform.ts), exact in full precision:
 * - rotate (RMSNorm gains folded, R1 on the residual, R2 per head on V/O, optional online R4 before
 *   down_proj): logits of tiny random models (Llama with an untied head, GQA; Qwen2 with q/k/v
 *   biases) and of the real stories260K equal the original's to 1e-4 of the largest logit — with
 *   lowbit's runtime only for R4, whose checkpoint records it (and is wrong without it: the check
 *   would see a missing online rotation);
 * - the rotated checkpoint is a standard one: norms all 1, an lm_head of its own, no lowbit section
 *   unless R4; activations on the residual stream lose their outlier channels (max/rms drops);
 * - smoothquant: logits equal the original's, and per-channel max |x| of the smoothed inputs is
 *   flatter by the expected factor (max|X|^(1−α)·max|W|^(1−α) equalized); with α searched per layer
 *   (tiny Llama and Qwen2 with planted outlier channels) still exact, and the block error the search
 *   reports for each α equals what the checkpoint smoothed at that α, quantized W8 RTN and run with
 *   quantized activations, gives for layer 0 (measured from the outside);
 * - through quantize(): RTN/GPTQ after a transform, the quant log's record; bad combinations are
 *   typed errors naming the option.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { applyTransforms, type TransformReport } from '../../lib/pipeline/transform';
import { lowbit } from '../helpers/cli';
import { quantize, transformModel } from '../../lib/pipeline/quantize';
import { loadModel } from '../../lib/runtime/model';
import { calibrate, calibrateNormalized } from '../../lib/runtime/calibrate';
import { openStreamingModel } from '../../lib/runtime/stream-model';
import { evaluate } from '../../lib/runtime/evaluate';
import { openSafetensors } from '../../lib/formats/safetensors';
import type { Transform } from '../../lib/config/transform';
import { Rng, testSeed } from '../helpers/rng';
import { maxRelError } from '../helpers/slow-forward';
import { randomTinyModel, writeHfDir, type TinyShape } from '../helpers/tiny-llama';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { rejectsCode } from '../helpers/errors';

const TINY: TinyShape = { dim: 48, hiddenDim: 88, nLayers: 2, nHeads: 6, nKvHeads: 2, headDim: 8, vocabSize: 40, seqLen: 64, rmsEps: 1e-5, ropeTheta: 10000, tied: false, biases: false };

describe('weight transforms: rotate, smoothquant', function () {
  this.timeout(300000);
  let dir: string;
  before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-tf-')); });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function logits(model: string, ids: number[], tokenizer?: string): Promise<Float32Array> {
    const m = await loadModel(model, tokenizer ? { tokenizer } : {});
    try {
      return await m.forward(ids, 0, ids.length);
    } finally {
      m.dispose();
    }
  }

  for (const [family, shape] of [['llama', TINY], ['qwen2', { ...TINY, biases: true, tied: true, hiddenDim: 96, nKvHeads: 3 }]] as [('llama' | 'qwen2'), TinyShape][]) {
    for (const t of [{ kind: 'rotate' }, { kind: 'rotate', heads: false }, { kind: 'rotate', down: true, seed: 7 }] as Transform[]) {
      it(`rotate is exact on a tiny ${family} model: ${JSON.stringify(t)}`, async () => {
        const seed = testSeed(family.length);
        const src = await writeHfDir(path.join(dir, `${family}-${seed}`), randomTinyModel(new Rng(seed), shape), { family });
        const out = path.join(dir, `${family}-rot-${Math.random().toString(36).slice(2)}`);
        await applyTransforms(src, out, [t]);
        const rng = new Rng(seed + 1);
        const ids = Array.from({ length: 40 }, () => rng.int(0, shape.vocabSize - 1));
        const a = await logits(src, ids), b = await logits(out, ids);
        assert.ok(maxRelError(b, a) < 1e-4, `[seed ${seed}] rotated vs original: ${maxRelError(b, a)}`);
        const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as { tie_word_embeddings: boolean; lowbit?: { rotateDown?: { seed: number } } };
        assert.equal(cfg.tie_word_embeddings, false);
        assert.equal(cfg.lowbit?.rotateDown?.seed, t.kind === 'rotate' && t.down ? 9 : undefined);
        const st = openSafetensors(out);
        try {
          assert.ok(st.has('lm_head.weight'));
          for (const n of st.names().filter((x) => x.endsWith('norm.weight'))) assert.ok(st.toFloat32(n).every((v) => v === 1), `${n} folded`);
        } finally {
          st.close();
        }
        if (t.kind === 'rotate' && t.down) {
          // the online rotation is what makes it exact: without it the outputs are wrong
          const cfg2 = { ...cfg, lowbit: {} };
          fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify(cfg2));
          const c = await logits(out, ids);
          assert.ok(maxRelError(c, a) > 1e-2, `without the online R4 the model should differ (${maxRelError(c, a)})`);
        }
      });
    }
  }

  for (const [family, shape] of [['llama', TINY], ['qwen2', { ...TINY, biases: true, tied: true, hiddenDim: 96, nKvHeads: 3 }]] as [('llama' | 'qwen2'), TinyShape][]) {
    it(`smoothquant α search on a tiny ${family} model: exact in f32; each α's block error is what its quantized checkpoint gives`, async () => {
      const seed = testSeed(7 + family.length);
      const rng = new Rng(seed);
      const model = randomTinyModel(rng, shape);
      // outlier channels on the residual stream (what SmoothQuant is for): scale a few embedding columns
      const embed = model.weights.get('model.embed_tokens.weight') ?? new Float32Array(0);
      for (let t = 0; t < shape.vocabSize; t++) for (const j of [3, 17, 40]) embed[t * shape.dim + j] *= 12;
      const src = await writeHfDir(path.join(dir, `sq-${family}-${seed}`), model, { family });
      const file = path.join(dir, `sq-${family}-${seed}.jsonl`);
      fs.writeFileSync(file, Array.from({ length: 3 }, () => JSON.stringify({ input_ids: Array.from({ length: 60 }, () => rng.int(0, shape.vocabSize - 1)) })).join('\n'));
      const calibration = { file, samples: 4, seqLen: 24, seed: 3 };
      const grid = [0.25, 0.5, 0.75];
      const out = path.join(dir, `sq-${family}-search`);
      const r = await transformModel(src, [{ kind: 'smoothquant', alpha: 'search', grid, actBits: 6 }], { out, calibration });
      const ids = Array.from({ length: 40 }, () => rng.int(0, shape.vocabSize - 1));
      const a = await logits(src, ids), b = await logits(out, ids);
      assert.ok(maxRelError(b, a) < 1e-4, `[seed ${seed}] smoothed vs original: ${maxRelError(b, a)}`);
      const search = r.report.smoothquant?.search;
      assert.ok(search, 'the search is reported');
      assert.deepEqual(search.grid, grid);
      assert.equal(search.actBits, 6);
      assert.deepEqual(search.weights, { bits: 8, groupSize: -1, sym: true });
      assert.equal(search.tokens, 4 * 24);
      assert.equal(search.layers.length, shape.nLayers);
      for (const x of search.layers) {
        assert.equal(x.errors.length, grid.length);
        assert.equal(x.alpha, grid[x.errors.indexOf(Math.min(...x.errors))]);
        assert.equal(x.errorAtHalf, x.errors[1]);
      }
      // Independently, for layer 0 (its input, the embedding, is the same in every model): write the
      // checkpoint smoothed at each α, quantize it W8 per channel RTN, run it with A6 activations,
      // and compare its layer-0 output with the original's on the same calibration windows.
      const tokens = Int32Array.from(fs.readFileSync(file, 'utf8').split('\n').flatMap((l) => (JSON.parse(l) as { input_ids: number[] }).input_ids));
      const layer0Out = async (m: Awaited<ReturnType<typeof loadModel>>) => {
        const xs: Float32Array[] = [], ys: Float32Array[] = [];
        await calibrateNormalized(m, {
          text: '', tokens, samples: 4, seqLen: 24, seed: 3, keepHessians: false, activationBudgetBytes: Infinity, signal: undefined, onProgress: undefined,
          onLayer: async (st, tools) => { await tools.forEachInput((x) => { (st.layer === 0 ? xs : ys).push(x); return Promise.resolve(); }); },
        });
        return { xs, ys };
      };
      const m0 = await loadModel(src);
      const ref = await layer0Out(m0);
      m0.dispose();
      for (let i = 0; i < grid.length; i++) {
        const og = path.join(dir, `sq-${family}-${i}`), oq = path.join(dir, `sq-${family}-${i}-w8`);
        await transformModel(src, [{ kind: 'smoothquant', alpha: grid[i] }], { out: og, calibration });
        await quantize(og, { method: 'rtn', bits: 8, groupSize: -1, sym: true, format: 'dequant' }, { out: oq });
        const mq = await loadModel(oq, { actQuant: { bits: 6 } });
        const got = await layer0Out(mq);
        mq.dispose();
        let err = 0, base = 0;
        for (let w = 0; w < ref.ys.length; w++) {
          for (let j = 0; j < ref.ys[w].length; j++) {
            err += (got.ys[w][j] - ref.ys[w][j]) ** 2;
            base += (ref.ys[w][j] - ref.xs[w][j]) ** 2;
          }
        }
        const e = err / base;
        assert.ok(Math.abs(e - search.layers[0].errors[i]) <= 1e-3 * e + 1e-9, `[seed ${seed}] α ${grid[i]}: the quantized checkpoint's layer-0 error ${e} vs the search's ${search.layers[0].errors[i]}`);
      }
    });
  }

  describe('on stories260K', function () {
    const fx = fixturesDir();
    before(function () {
      if (!fx) {
        console.log(`      (skipped: ${NO_FIXTURES})`);
        this.skip();
      }
    });
    const bin = () => path.join(fx ?? '', 'stories260K', 'stories260K.bin');
    const tok = () => path.join(fx ?? '', 'stories260K', 'tok512.bin');
    const text = (f: string) => fs.readFileSync(path.join(fx ?? '', 'text', f), 'utf8');

    it('rotate: the same logits and perplexity; the residual stream loses its outlier channels', async () => {
      const out = path.join(dir, 's-rot');
      const r = await transformModel(bin(), ['rotate'], { out, tokenizer: tok() });
      assert.deepEqual(r.report.rotations?.map((x) => x.n), [64, 8]);
      const ids = Array.from({ length: 120 }, (_, i) => ((i * 131) % 509) + 3);
      const a = await logits(bin(), ids, tok()), b = await logits(out, ids);
      assert.ok(maxRelError(b, a) < 1e-4, `rotated vs original: ${maxRelError(b, a)}`);
      const dev = text('tinystories-dev.txt');
      const m0 = await loadModel(bin(), { tokenizer: tok() }), m1 = await loadModel(out);
      try {
        const e0 = await evaluate(m0, { text: dev, ctx: 256, maxChunks: 4 }), e1 = await evaluate(m1, { text: dev, ctx: 256, maxChunks: 4 });
        assert.ok(Math.abs(e1.ppl - e0.ppl) / e0.ppl < 1e-4, `ppl ${e1.ppl} vs ${e0.ppl}`);
        // outliers: max over channels of max|x| against the mean |x| (the q/k/v input), before and after
        const calib = text('tinystories-calib.txt');
        const c0 = await calibrate(m0, { text: calib, samples: 4, seqLen: 128 }), c1 = await calibrate(m1, { text: calib, samples: 4, seqLen: 128 });
        const peak = (s: { maxAbs: Float32Array; meanAbs: Float32Array }) => Math.max(...s.maxAbs) / (s.meanAbs.reduce((x, y) => x + y, 0) / s.meanAbs.length);
        for (let l = 0; l < 5; l++) assert.ok(peak(c1.layers[l].attn) < peak(c0.layers[l].attn), `layer ${l}: ${peak(c1.layers[l].attn)} vs ${peak(c0.layers[l].attn)}`);
      } finally {
        m0.dispose();
        m1.dispose();
      }
    });

    it('smoothquant: the same logits; smoothed inputs are flatter', async () => {
      const out = path.join(dir, 's-sq');
      const calibration = { text: text('tinystories-calib.txt'), samples: 8, seqLen: 128 };
      const r = await transformModel(bin(), [{ kind: 'smoothquant', alpha: 0.5 }], { out, tokenizer: tok(), calibration });
      assert.equal(r.report.smoothquant?.alpha, 0.5);
      const ids = Array.from({ length: 120 }, (_, i) => ((i * 131) % 509) + 3);
      const a = await logits(bin(), ids, tok()), b = await logits(out, ids);
      assert.ok(maxRelError(b, a) < 1e-4, `smoothed vs original: ${maxRelError(b, a)}`);
      // α = 0.5 balances each channel: max|X'_j| = max|W'_j| = sqrt(max|X_j| · max|W_j|), measured on the same windows
      const m1 = await loadModel(out);
      const st = openSafetensors(out);
      try {
        const c1 = await calibrate(m1, calibration);
        const colMax = (names: string[], cols: number) => {
          const mx = new Float64Array(cols);
          for (const n of names) {
            const w = st.toFloat32(n);
            for (let i = 0; i < w.length; i++) mx[i % cols] = Math.max(mx[i % cols], Math.abs(w[i]));
          }
          return mx;
        };
        for (let l = 0; l < 5; l++) {
          const p = `model.layers.${l}`;
          const pairs: [string, Float32Array, Float64Array][] = [
            ['qkv', c1.layers[l].attn.maxAbs, colMax(['q_proj', 'k_proj', 'v_proj'].map((k) => `${p}.self_attn.${k}.weight`), 64)],
            ['gate_up', c1.layers[l].mlp.maxAbs, colMax(['gate_proj', 'up_proj'].map((k) => `${p}.mlp.${k}.weight`), 64)],
            ['down', c1.layers[l].down.maxAbs, colMax([`${p}.mlp.down_proj.weight`], 172)],
          ];
          for (const [k, x, w] of pairs) {
            for (let j = 0; j < x.length; j++) {
              if (x[j] === 0) continue;
              assert.ok(Math.abs(x[j] / w[j] - 1) < 1e-3, `layer ${l} ${k} channel ${j}: max|x'| ${x[j]} vs max|w'| ${w[j]}`);
            }
          }
        }
      } finally {
        st.close();
        m1.dispose();
      }
    });

    it('quantize after a transform: the method runs on the transformed model, the log says so', async () => {
      const out = path.join(dir, 's-rtn-rot');
      const r = await quantize(bin(), { method: 'rtn', bits: 4, groupSize: 32, transforms: ['rotate:down'] }, { out, tokenizer: tok() });
      assert.ok(r.quantizedModules > 0);
      const log = JSON.parse(fs.readFileSync(path.join(out, 'quant_log.json'), 'utf8')) as { transforms: { transforms: Transform[] } };
      assert.deepEqual(log.transforms.transforms, [{ kind: 'rotate', seed: 1, heads: true, down: true }]);
      const m = await loadModel(out);
      try {
        assert.equal(m.quantization.rotateDown, true);
        const dev = text('tinystories-dev.txt');
        const e = await evaluate(m, { text: dev, ctx: 256, maxChunks: 2 });
        assert.ok(e.ppl < 20, `ppl ${e.ppl}`);
      } finally {
        m.dispose();
      }
      assert.ok(!fs.readdirSync(dir).some((f) => f.includes('.transformed-')), 'the transformed staging directory is removed');
    });

    it('smoothquant:search: the recipe\'s quantization is what the search simulates; the CLI prints each layer\'s α', async () => {
      const out = path.join(dir, 's-sq-search');
      const calibration = { text: text('tinystories-calib.txt'), samples: 8, seqLen: 128 };
      await quantize(bin(), { recipe: { weights: { method: 'rtn', bits: 4, groupSize: 32, sym: false }, activations: { bits: 4 }, transforms: ['smoothquant:search'] }, format: 'dequant' }, { out, tokenizer: tok(), calibration });
      const log = JSON.parse(fs.readFileSync(path.join(out, 'quant_log.json'), 'utf8')) as { transforms: TransformReport };
      const search = log.transforms.smoothquant?.search;
      assert.ok(search, 'the search is in the quant log');
      assert.deepEqual(search.weights, { bits: 4, groupSize: 32, sym: false });
      assert.equal(search.actBits, 4);
      assert.equal(search.layers.length, 5);
      assert.deepEqual(search.keptModules, []);
      // the GPTQ layout keeps the 172-wide down_proj (and the 172-row gate/up) unquantized: so does the search
      const out2 = path.join(dir, 's-sq-search-gptq');
      await quantize(bin(), { recipe: { weights: { method: 'rtn', bits: 4, groupSize: 32 }, transforms: ['smoothquant:search'] } }, { out: out2, tokenizer: tok(), calibration });
      const log2 = JSON.parse(fs.readFileSync(path.join(out2, 'quant_log.json'), 'utf8')) as { transforms: TransformReport; modules: { module: string; storage: string }[] };
      const kept2 = log2.modules.filter((m) => m.storage === 'fp16').map((m) => `${m.module}.weight`).sort();
      assert.ok(kept2.length > 0);
      assert.deepEqual([...(log2.transforms.smoothquant?.search?.keptModules ?? [])].sort(), kept2);
      const calib = path.join(fx ?? '', 'text', 'tinystories-calib.txt');
      const r = lowbit('quantize', bin(), '--tokenizer', tok(), '--method', 'none', '--transform', 'smoothquant:search', '--calib', calib, '--calib-samples', '4', '--calib-seqlen', '64', '--out', path.join(dir, 's-sq-cli'));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /α searched per layer over 0\.1, 0\.2, .*0\.9 on 256 tokens \(W8 per channel RTN, A8 per token\)/);
      for (let l = 0; l < 5; l++) assert.match(r.stdout, new RegExp(`layer ${l}: α 0\\.\\d, block error \\d`));
    });

    it('rotate:down: the block-by-block calibration model rotates down_proj\'s input as the runtime does', async () => {
      const out = path.join(dir, 's-rotdown');
      await transformModel(bin(), ['rotate:down'], { out, tokenizer: tok() });
      const stream = openStreamingModel(out);
      const mem = await loadModel(out);
      try {
        assert.equal(stream.config.rotateDownSeed, 3);
        const opts = { text: text('tinystories-calib.txt'), samples: 2, seqLen: 64, seed: 0, keepHessians: false, activationBudgetBytes: Infinity, signal: undefined, onLayer: undefined, onProgress: undefined };
        const a = await calibrateNormalized(stream, opts), b = await calibrateNormalized(mem, opts);
        for (let l = 0; l < 5; l++) assert.ok(maxRelError(a.layers[l].down.maxAbs, b.layers[l].down.maxAbs) < 1e-5, `layer ${l} down input`);
      } finally {
        stream.dispose();
        mem.dispose();
      }
    });

    it('bad combinations are typed errors naming the option', async () => {
      const out = path.join(dir, 'bad');
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: ['rotate', 'smoothquant'] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /transforms: rotate folds the RMSNorm gains/);
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: ['smoothquant'] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /calibration: transform smoothquant needs calibration data/);
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: ['smoothquant:1.5'] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /alpha/);
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: [{ kind: 'smoothquant', alpha: 0 }] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /migration strength/);
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: ['spin'] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /transforms\[0\]/);
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: [{ kind: 'rotate', colour: 1 } as unknown as Transform] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /colour/);
      await rejectsCode(quantize(bin(), { method: 'rtn', format: 'gguf:q4_0', transforms: ['rotate:down'] }, { out: `${out}.gguf`, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /rotate:down needs lowbit's runtime/);
      await rejectsCode(transformModel(bin(), [], { out }), 'LOWBIT_INVALID_OPTION', /transforms/);
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: [{ kind: 'smoothquant', alpha: 0.5, grid: [0.5] }] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /transforms\[0\]\.grid: only the α search/);
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: [{ kind: 'smoothquant', alpha: 'search', grid: [0.5, 1] }] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /transforms\[0\]\.grid\[1\]/);
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: [{ kind: 'smoothquant', alpha: 'search', grid: [] }] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /transforms\[0\]\.grid/);
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: [{ kind: 'smoothquant', alpha: 'search', actBits: 16 }] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /transforms\[0\]\.actBits/);
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: [{ kind: 'smoothquant', alpha: 0.5, actBits: 8 }] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /actBits: only the α search/);
      await rejectsCode(quantize(bin(), { method: 'rtn', transforms: ['smoothquant:search:0.5'] }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /smoothquant\[:α \| :search\]/);
      await rejectsCode(transformModel(bin(), ['rotate'], { out, calibration: { text: 'x' } }), 'LOWBIT_INVALID_OPTION', /only transform smoothquant uses calibration/);
      assert.ok(!fs.existsSync(out), 'nothing written');
    });
  });
});
