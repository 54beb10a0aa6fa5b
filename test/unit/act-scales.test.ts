/**
 * measureActScales: the static activation scales of a tiny random model equal max |x| / qmax (or a
 * percentile of the per-channel maxima / qmax), per layer and input in ACT_INPUTS order, with |x|
 * recorded independently: the float64 plain forward (test/helpers/slow-forward.ts, `hooks.act`)
 * over the same calibration windows. Bound: 1e-4 relative — the runtime computes in f32 (a
 * two-layer chain of f32 GEMMs and norms is ~1e-6 off float64); a wrong input order, qmax, layer
 * or window lands orders of magnitude further.
 * Also: several texts = one text joined with a blank line; the scales load as actQuant 'static';
 * bad options are typed errors naming the option.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel, type LanguageModel } from '../../lib/runtime/model';
import { calibrate } from '../../lib/runtime/calibrate';
import { measureActScales, type MeasureActScalesOptions } from '../../lib/runtime/act-scales';
import { ACT_INPUTS, type ActInput } from '../../lib/config/runtime-quant';
import { Rng, testSeed } from '../helpers/rng';
import { slowForward } from '../helpers/slow-forward';
import { randomTinyModel, slowConfig, toRotateHalf, writeHfDir, writeTinyTokenizer, type TinyModel, type TinyShape } from '../helpers/tiny-llama';
import { rejectsCode } from '../helpers/errors';

const SHAPE: TinyShape = { dim: 32, hiddenDim: 48, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 8, vocabSize: 40, seqLen: 64, rmsEps: 1e-5, ropeTheta: 10000, tied: false, biases: false };
const WORDS = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'then', 'ran', 'into', 'sun', 'tree', 'she', 'saw', 'big', 'red'];

/** Per layer and input, max |x| of each channel over `windows` (token id lists), from the float64 forward. */
function channelMaxima(model: TinyModel, windows: number[][]): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  for (const w of windows) {
    slowForward(slowConfig(SHAPE, 'half'), toRotateHalf(model), w, {
      act: (input, layer, x) => {
        const key = `${layer}.${input}`;
        const m = out.get(key) ?? new Float64Array(x.length);
        for (let c = 0; c < x.length; c++) m[c] = Math.max(m[c], Math.abs(x[c]));
        out.set(key, m);
        return x;
      },
    });
  }
  return out;
}

/** The p-th percentile, linear between sorted neighbours (numpy's default), written out again here. */
function percentile(values: Float64Array, p: number): number {
  const s = Array.from(values).sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const i = Math.floor(pos);
  return i + 1 < s.length ? s[i] * (1 - (pos - i)) + s[i + 1] * (pos - i) : s[i];
}

function assertScales(got: Float32Array, expect: (layer: number, input: ActInput) => number, what: string): void {
  assert.equal(got.length, SHAPE.nLayers * ACT_INPUTS.length, `${what}: length`);
  for (let l = 0; l < SHAPE.nLayers; l++) {
    ACT_INPUTS.forEach((input, j) => {
      const g = got[l * ACT_INPUTS.length + j], e = expect(l, input);
      assert.ok(Math.abs(g - e) <= 1e-4 * Math.abs(e), `${what}: layer ${l} ${input}: ${g}, expected ${e} (rel ${Math.abs(g - e) / e})`);
    });
  }
}

describe('measureActScales (static activation scales from calibration text)', function () {
  this.timeout(300000);
  let dir: string;
  let model: TinyModel;
  let lm: LanguageModel;
  let text: string;
  let ids: number[];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-act-scales-'));
    const seed = testSeed(41);
    model = randomTinyModel(new Rng(seed), SHAPE);
    const hf = await writeHfDir(path.join(dir, 'hf'), model);
    const tok = path.join(dir, 'tokenizer.bin');
    writeTinyTokenizer(tok);
    const rng = new Rng(seed + 1);
    text = Array.from({ length: 60 }, () => WORDS[rng.int(0, WORDS.length - 1)]).join(' ') + '.';
    lm = await loadModel(hf, { tokenizer: tok });
    ids = Array.from(lm.tokenizer?.encode(text, { bos: false }) ?? []);
    assert.ok(ids.length > 60, `the calibration text has ${ids.length} tokens`);
  });
  after(() => {
    lm.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('equals max |x| / (2^(bits−1) − 1) over the calibration windows, per layer and input (8 and 4 bits)', async () => {
    const opts = { samples: 3, seqLen: 16, seed: 5 };
    // the windows the calibration driver samples (the same sampler, the same seed)
    const cal = await calibrate(lm, { text, ...opts });
    const windows = cal.windows.map((w) => ids.slice(w, w + opts.seqLen));
    assert.ok(new Set(cal.windows).size > 1, `windows ${cal.windows.join(', ')} are not distinct`);
    const maxima = channelMaxima(model, windows);
    const max = (l: number, input: ActInput) => Math.max(...(maxima.get(`${l}.${input}`) ?? [NaN]));
    for (const bits of [8, 4]) {
      const scales = await measureActScales(lm, text, { bits, ...opts });
      assertScales(scales, (l, input) => max(l, input) / (2 ** (bits - 1) - 1), `${bits} bits`);
    }
    // one window is not all of them: the maxima differ, so the test sees which windows ran
    const one = channelMaxima(model, windows.slice(0, 1));
    assert.ok(ACT_INPUTS.some((input) => Math.max(...(one.get(`0.${input}`) ?? [])) < max(0, input)), 'the first window alone has the same maxima as all three');
  });

  it('with percentile: that percentile of the per-channel maxima / qmax', async () => {
    const opts = { samples: 2, seqLen: 24, seed: 1 };
    const cal = await calibrate(lm, { text, ...opts });
    const maxima = channelMaxima(model, cal.windows.map((w) => ids.slice(w, w + opts.seqLen)));
    const scales = await measureActScales(lm, text, { bits: 8, percentile: 90, ...opts });
    assertScales(scales, (l, input) => percentile(maxima.get(`${l}.${input}`) ?? new Float64Array(0), 90) / 127, 'percentile 90');
    const full = await measureActScales(lm, text, { bits: 8, percentile: 100, ...opts });
    assertScales(full, (l, input) => Math.max(...(maxima.get(`${l}.${input}`) ?? [NaN])) / 127, 'percentile 100');
    for (let i = 0; i < scales.length; i++) assert.ok(scales[i] <= full[i], `scale ${i}: p90 ${scales[i]} > max ${full[i]}`);
  });

  it('reads several texts as one, joined with a blank line; the scales load as a static actQuant', async () => {
    const half = Math.floor(text.length / 2);
    const a = text.slice(0, half), b = text.slice(half);
    const opts: MeasureActScalesOptions = { bits: 8, samples: 4, seqLen: 20 };
    const joined = await measureActScales(lm, `${a}\n\n${b}`, opts);
    const parts = await measureActScales(lm, [a, b], opts);
    assert.deepEqual(Array.from(parts), Array.from(joined));
    const q = await loadModel(path.join(dir, 'hf'), { tokenizer: path.join(dir, 'tokenizer.bin'), actQuant: { bits: 8, scheme: 'static', scales: joined } });
    try {
      assert.equal(q.quantization.activations?.scheme, 'static');
      assert.equal(q.quantization.activations.fake, SHAPE.nLayers * ACT_INPUTS.length);
    } finally {
      q.dispose();
    }
  });

  it('bad options are typed errors naming the option', async () => {
    await rejectsCode(measureActScales(lm, text, { bits: 9 }), 'LOWBIT_INVALID_OPTION', 'bits: expected an integer in [2, 8]');
    await rejectsCode(measureActScales(lm, text, { bits: 8, percentile: 0 }), 'LOWBIT_INVALID_OPTION', 'percentile');
    await rejectsCode(measureActScales(lm, text, { bits: 8, percentile: 101 }), 'LOWBIT_INVALID_OPTION', 'percentile: expected a number in [0, 100]');
    await rejectsCode(measureActScales(lm, text, { bits: 8, samples: 0 }), 'LOWBIT_INVALID_OPTION', 'samples');
    await rejectsCode(measureActScales(lm, text, { bits: 8, seqLen: 1 }), 'LOWBIT_INVALID_OPTION', 'seqLen');
    await rejectsCode(measureActScales(lm, text, { bits: 8, sample: 3 } as unknown as MeasureActScalesOptions), 'LOWBIT_INVALID_OPTION', 'unknown option "sample"');
    await rejectsCode(measureActScales(lm, [], { bits: 8 }), 'LOWBIT_INVALID_OPTION', 'text: expected a string or a non-empty array of strings');
    await rejectsCode(measureActScales(lm, 'the cat', { bits: 8, seqLen: 16 }), 'LOWBIT_INVALID_OPTION', 'shorter than one calibration window');
    await rejectsCode(measureActScales(lm, text, null as unknown as MeasureActScalesOptions), 'LOWBIT_INVALID_OPTION', 'options');
    const ac = new AbortController();
    ac.abort();
    await rejectsCode(measureActScales(lm, text, { bits: 8, samples: 2, seqLen: 16, signal: ac.signal }), 'LOWBIT_ABORTED', 'aborted by signal');
  });
});
