/**
 * The llama.cpp world reads what lowbit writes: stories260K exported to GGUF by lowbit (F16, Q8_0,
 * Q4_0), loaded by node-llama-cpp (llama.cpp's CPU build) and by lowbit's runtime. Same greedy
 * continuation (every token for F16/Q8_0; for Q4_0 llama.cpp also quantizes activations to 8 bits
 * inside its q4_0 products, so only the opening is required to agree) and the same perplexity on
 * the first two dev windows (0.5%; Q4_0 3%); and a demo-shaped model as Q4_K, whose next-token
 * distributions must agree (KL, top-1). Runs when node-llama-cpp is installed
 * (`npm run test:peer` installs it without saving); skips with the reason otherwise.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { exportGguf } from '../../lib/pipeline/gguf-export';
import { transformModel } from '../../lib/pipeline/quantize';
import { loadModel } from '../../lib/runtime/model';
import { evaluate } from '../../lib/runtime/evaluate';
import { packageRoot } from '../../lib/native';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { writeLlamaTokenizerJson } from '../helpers/hf-tokenizer';
import { writeSyntheticModel, SYNTHETIC_PRESETS } from '../../lib/runtime/synthetic';
import { readLlama2cTokenizer } from '../../lib/formats/llama2c';
import { readGguf, ggufVocab } from '../../lib/formats/gguf';
import { Tokenizer } from '../../lib/runtime/tokenizer';
import { must } from '../helpers/assert';

// node-llama-cpp is ESM-only: keep a real dynamic import through the CommonJS build.
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- with "module": "commonjs" tsc turns import() into require(), which cannot load an ESM-only package
const importEsm = new Function('s', 'return import(s)') as (s: string) => Promise<Record<string, unknown>>;

type Llama = { loadModel(o: object): Promise<LModel>; dispose(): Promise<void> };
type LModel = { createContext(o: object): Promise<Ctx>; dispose(): Promise<void>; tokens: { bos: number } };
type Seq = { evaluate(t: number[], o: object): AsyncIterable<number>; controlledEvaluate(t: unknown[]): Promise<{ next?: { logits?: Map<number, number> } }[]> };
type Ctx = { getSequence(): Seq; dispose(): Promise<void> };

/** Perplexity of llama.cpp's raw logits over the first `windows` windows of 512 (BOS + 511 tokens of `ids`). */
async function llamaCppPerplexity(model: LModel, ids: number[], windows: number): Promise<number> {
  let nll = 0, n = 0;
  for (let c = 0; c < windows; c++) {
    const win = [1, ...ids.slice(c * 511, (c + 1) * 511)];
    const ctx2 = await model.createContext({ contextSize: 512, threads: 1 });
    const res = await ctx2.getSequence().controlledEvaluate(win.map((t) => [t, { generateNext: { logits: true } }]));
    for (let j = 0; j < 511; j++) {
      const logits = must(res[j].next?.logits, `llama.cpp logits at ${j}`);
      let max = -Infinity;
      for (const v of logits.values()) max = Math.max(max, v);
      let sum = 0;
      for (const v of logits.values()) sum += Math.exp(v - max);
      nll -= must(logits.get(win[j + 1]), `llama.cpp logit of ${win[j + 1]}`) - max - Math.log(sum);
      n++;
    }
    await ctx2.dispose();
  }
  return Math.exp(nll / n);
}

describe('node-llama-cpp reads lowbit GGUF files', function () {
  let nlc: Record<string, unknown>;
  let fx: string, root: string;
  before(async function (this: Mocha.Context) {
    const d = fixturesDir();
    if (!d) {
      console.log(`      ${NO_FIXTURES}`);
      this.skip();
    }
    try {
      const entry = require.resolve('node-llama-cpp', { paths: [packageRoot()] });
      nlc = await importEsm(entry.startsWith('/') ? `file://${entry}` : entry);
    } catch (e) {
      console.log(`      node-llama-cpp not installed (npm run test:peer installs it): ${(e as Error).message.split('\n')[0]}`);
      this.skip();
    }
    fx = d;
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-peer-'));
  });
  after(function () {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  for (const [type, agreeTokens, pplTol] of [['F16', 199, 0.005], ['Q8_0', 199, 0.005], ['Q4_0', 20, 0.03]] as const) {
    it(`${type}: same greedy tokens (${agreeTokens === 199 ? 'all 199' : `first ${agreeTokens}`}) and perplexity within ${pplTol * 100}%`, async function () {
      const file = path.join(root, `s-${type}.gguf`);
      await exportGguf(path.join(fx, 'stories260K', 'stories260K.bin'), file, { type, tokenizer: path.join(fx, 'stories260K', 'tok512.bin') });
      const ours = await loadModel(file);
      const llama = await (nlc.getLlama as (o: object) => Promise<Llama>)({ gpu: false, build: 'never', skipDownload: true });
      const model = await llama.loadModel({ modelPath: file });
      try {
        // greedy, empty prompt: lowbit's run.c semantics give BOS + 199 tokens for 200 steps
        const g = await ours.generate({ prompt: '', steps: 200, temperature: 0 });
        const ctx = await model.createContext({ contextSize: 512, threads: 1 });
        const seq = ctx.getSequence();
        const theirs: number[] = [];
        for await (const t of seq.evaluate([model.tokens.bos], { temperature: 0 })) {
          theirs.push(t);
          if (theirs.length >= g.ids.length - 1) break;
        }
        await ctx.dispose();
        assert.deepEqual(theirs.slice(0, agreeTokens), g.ids.slice(1, 1 + agreeTokens));
        // perplexity on the first two windows, from llama.cpp's raw logits
        const text = fs.readFileSync(path.join(fx, 'text', 'tinystories-dev.txt'), 'utf8');
        const pplTheirs = await llamaCppPerplexity(model, must(ours.tokenizer, 'tokenizer').encode(text, { bos: false }), 2);
        const pplOurs = (await evaluate(ours, { text, ctx: 512, maxChunks: 2 })).ppl;
        assert.ok(Math.abs(pplTheirs - pplOurs) <= pplTol * pplOurs, `node-llama-cpp ppl ${pplTheirs} vs lowbit ${pplOurs}`);
      } finally {
        ours.dispose();
        await model.dispose();
        await llama.dispose();
      }
    });
  }

  it('a rotated model (QuaRot-style R1 + R2, folded: a standard checkpoint) exported as F32 gives the original\'s perplexity in llama.cpp', async function () {
    const rot = path.join(root, 'rotated');
    await transformModel(path.join(fx, 'stories260K', 'stories260K.bin'), ['rotate'], { out: rot, tokenizer: path.join(fx, 'stories260K', 'tok512.bin') });
    const file = path.join(root, 'rotated-f32.gguf');
    await exportGguf(rot, file, { type: 'F32', tokenizer: path.join(fx, 'stories260K', 'tok512.bin') });
    const original = await loadModel(path.join(fx, 'stories260K', 'stories260K.bin'), { tokenizer: path.join(fx, 'stories260K', 'tok512.bin') });
    const llama = await (nlc.getLlama as (o: object) => Promise<Llama>)({ gpu: false, build: 'never', skipDownload: true });
    const model = await llama.loadModel({ modelPath: file });
    try {
      const text = fs.readFileSync(path.join(fx, 'text', 'tinystories-dev.txt'), 'utf8');
      const pplTheirs = await llamaCppPerplexity(model, must(original.tokenizer, 'tokenizer').encode(text, { bos: false }), 2);
      const pplOriginal = (await evaluate(original, { text, ctx: 512, maxChunks: 2 })).ppl;
      console.log(`      llama.cpp ppl of the rotated F32 GGUF ${pplTheirs.toFixed(5)}, lowbit's of the original ${pplOriginal.toFixed(5)}`);
      assert.ok(Math.abs(pplTheirs - pplOriginal) <= 1e-3 * pplOriginal, `node-llama-cpp on the rotated F32 GGUF: ppl ${pplTheirs}; the original in lowbit: ${pplOriginal}`);
    } finally {
      original.dispose();
      await model.dispose();
      await llama.dispose();
    }
  });

  it('Q4_K (a demo-shaped model: every linear in 256-value super-blocks): llama.cpp and lowbit give the same next-token distributions (KL < 0.005 nats; top-1 ≥ 85%: random weights give flat distributions, and each quantizes activations its own way)', async function () {
    const dir = await writeSyntheticModel(path.join(root, 'demo'), { shape: { ...SYNTHETIC_PRESETS.demo, vocabSize: 512 }, dtype: 'F16' });
    const file = path.join(root, 'demo-q4k.gguf');
    const tok = path.join(fx, 'stories260K', 'tok512.bin');
    await exportGguf(dir, file, { type: 'Q4_K', tokenizer: tok });
    const ours = await loadModel(file);
    type LModel = { createContext(o: object): Promise<{ getSequence(): { controlledEvaluate(t: unknown[]): Promise<{ next?: { logits?: Map<number, number> } }[]> }; dispose(): Promise<void> }>; dispose(): Promise<void> };
    const llama = await (nlc.getLlama as (o: object) => Promise<{ loadModel(o: object): Promise<LModel>; dispose(): Promise<void> }>)({ gpu: false, build: 'never', skipDownload: true });
    const model = await llama.loadModel({ modelPath: file });
    try {
      const text = fs.readFileSync(path.join(fx, 'text', 'tinystories-dev.txt'), 'utf8');
      const win = [1, ...must(ours.tokenizer, 'tokenizer').encode(text, { bos: false }).slice(0, 255)];
      const ctx = await model.createContext({ contextSize: 256, threads: 1 });
      const res = await ctx.getSequence().controlledEvaluate(win.map((t) => [t, { generateNext: { logits: true } }]));
      await ctx.dispose();
      const mine = await ours.forward(Int32Array.from(win), 0, win.length);
      const V = 512;
      let kl = 0, agree = 0;
      for (let j = 0; j < win.length; j++) {
        const theirs = must(res[j].next?.logits, `llama.cpp logits at ${j}`);
        const p = new Float64Array(V), q = new Float64Array(V);
        for (const [id, v] of theirs) p[id] = v;
        for (let i = 0; i < V; i++) q[i] = mine[j * V + i];
        const lse = (a: Float64Array) => { let m = -Infinity; for (const v of a) m = Math.max(m, v); let z = 0; for (const v of a) z += Math.exp(v - m); return m + Math.log(z); };
        const lp = lse(p), lq = lse(q);
        let k = 0, ap = 0, aq = 0;
        for (let i = 0; i < V; i++) {
          k += Math.exp(p[i] - lp) * ((p[i] - lp) - (q[i] - lq));
          if (p[i] > p[ap]) ap = i;
          if (q[i] > q[aq]) aq = i;
        }
        kl += k;
        if (ap === aq) agree++;
      }
      kl /= win.length;
      assert.ok(kl < 0.005 && agree / win.length >= 0.85, `KL ${kl}, top-1 ${agree}/${win.length}`);
    } finally {
      ours.dispose();
      await model.dispose();
      await llama.dispose();
    }
  });

  it('a vocabulary written from tokenizer.json (the Llama 2 vocabulary, converted as Hugging Face does): llama.cpp tokenizes the dev text as lowbit does', async function () {
    const dir = await writeSyntheticModel(path.join(root, 'hf32k'), { shape: { ...SYNTHETIC_PRESETS.tiny, vocabSize: 32000 }, dtype: 'F16' });
    writeLlamaTokenizerJson(dir, readLlama2cTokenizer(path.join(fx, 'llama2-tokenizer', 'tokenizer.bin'), 32000));
    const file = path.join(root, 'hf32k.gguf');
    await exportGguf(dir, file, { type: 'Q8_0' });
    const g = readGguf(file);
    const ours = new Tokenizer(ggufVocab(g));
    g.close();
    type LModel = { tokenize(text: string): number[]; dispose(): Promise<void> };
    const llama = await (nlc.getLlama as (o: object) => Promise<{ loadModel(o: object): Promise<LModel>; dispose(): Promise<void> }>)({ gpu: false, build: 'never', skipDownload: true });
    const model = await llama.loadModel({ modelPath: file });
    try {
      const text = fs.readFileSync(path.join(fx, 'text', 'tinystories-dev.txt'), 'utf8').slice(0, 30000);
      for (const t of [text, 'naïve café — “quotes” ½ 日本語のテキスト 🙂🚀', '  two  spaces  ']) {
        const theirs = Array.from(model.tokenize(t)).filter((id, i) => !(i === 0 && id === 1));
        assert.deepEqual(theirs, ours.encode(t, { bos: false }), JSON.stringify(t.slice(0, 40)));
      }
    } finally {
      await model.dispose();
      await llama.dispose();
    }
  });
});
