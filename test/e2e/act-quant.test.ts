/**
 * Activation quantization in the runtime (native/runtime/llama.cpp act_input → kernels/rtquant.h):
 * - a tiny random model's logits with 8- and 4-bit inputs, per token (dynamic) and per tensor
 *   (static scales), on all inputs or some, follow a float64 forward that fake-quantizes the same
 *   inputs in TS (test/helpers/slow-forward.ts `act` hook). As for the KV cache, a value within
 *   rounding noise of a code boundary may take the neighbouring code in one and not the other (f32
 *   here, float64 there), which moves a few logits of the later positions: so the bound is on the mean
 *   |logit difference|, a quarter of the mean distance to the unquantized logits (measured over 31
 *   seeds: ≤ 3e-5 of it without such a flip, 0.04 with one; wrong inputs, a wrong scale or a missing
 *   quantization land as far from the simulation as from f32);
 * - the report: packed int8 layers take 8-bit dynamic inputs through the integer-dot kernel (no fake
 *   quantization in front), everything else is fake-quantized, and `model.quantization` counts both.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel } from '../../lib/runtime/model';
import { quantize } from '../../lib/pipeline/quantize';
import { ACT_INPUTS, type ActInput, type ActQuantOptions } from '../../lib/config/runtime-quant';
import { Rng, testSeed } from '../helpers/rng';
import { slowForward, meanAbsDiff } from '../helpers/slow-forward';
import { randomTinyModel, slowConfig, toRotateHalf, writeHfDir, type TinyShape } from '../helpers/tiny-llama';
import { must } from '../helpers/assert';

const SHAPE: TinyShape = { dim: 64, hiddenDim: 128, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, vocabSize: 48, seqLen: 64, rmsEps: 1e-5, ropeTheta: 10000, tied: false, biases: false };
const halfEven = (v: number): number => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));

/** Symmetric fake quantization of one token's input, as the runtime's description says (f32 arithmetic). */
function fakeQuant(x: Float64Array, bits: number, scale: number | null): Float64Array {
  const qmax = 2 ** (bits - 1) - 1;
  const xf = Float32Array.from(x);
  let s: number;
  if (scale !== null) s = Math.fround(scale);
  else {
    let amax = 0;
    for (const v of xf) amax = Math.max(amax, Math.abs(v));
    s = Math.fround(amax / qmax);
  }
  if (!(s > 0)) return Float64Array.from(xf);
  return Float64Array.from(xf, (v) => Math.fround(Math.min(Math.max(halfEven(Math.fround(v / s)), -qmax), qmax) * s));
}

describe('activation quantization (runtime)', function () {
  this.timeout(300000);
  let dir: string;
  let hf: string;
  let weights: Map<string, Float32Array>;
  let tokens: number[];
  let f32: Float64Array;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-act-'));
    const seed = testSeed(7);
    const model = randomTinyModel(new Rng(seed), SHAPE);
    hf = await writeHfDir(path.join(dir, 'hf'), model);
    weights = toRotateHalf(model);
    const rng = new Rng(seed + 3);
    tokens = Array.from({ length: 30 }, () => rng.int(0, SHAPE.vocabSize - 1));
    f32 = slowForward(slowConfig(SHAPE, 'half'), weights, tokens);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const CASES: { bits: number; scheme: 'dynamic' | 'static'; inputs?: ActInput[] }[] = [
    { bits: 8, scheme: 'dynamic' }, { bits: 4, scheme: 'dynamic' }, { bits: 4, scheme: 'dynamic', inputs: ['o', 'down'] }, { bits: 6, scheme: 'dynamic', inputs: ['qkv'] },
    { bits: 8, scheme: 'static' }, { bits: 4, scheme: 'static', inputs: ['gate_up'] },
  ];
  for (const c of CASES) {
    it(`follows a plain fake-quantized forward: ${JSON.stringify(c)}`, async () => {
      const inputs = c.inputs ?? [...ACT_INPUTS];
      const rng = new Rng(testSeed(c.bits));
      const scales = c.scheme === 'static' ? Float32Array.from({ length: SHAPE.nLayers * 4 }, () => 0.02 + 0.1 * rng.next()) : null;
      const opts: ActQuantOptions = { bits: c.bits, scheme: c.scheme, ...(c.inputs ? { inputs: c.inputs } : {}), ...(scales ? { scales } : {}) };
      const m = await loadModel(hf, { actQuant: opts });
      try {
        const got = await m.forward(tokens, 0, tokens.length);
        const want = slowForward(slowConfig(SHAPE, 'half'), weights, tokens, {
          act: (input, layer, x) => (inputs.includes(input) ? fakeQuant(x, c.bits, scales ? scales[layer * 4 + ACT_INPUTS.indexOf(input)] : null) : x),
        });
        const errQ = meanAbsDiff(got, want), errF = meanAbsDiff(got, f32);
        assert.ok(errQ < errF / 4, `mean |logit difference| vs the simulation ${errQ}, vs f32 ${errF}`);
        const r = must(m.quantization.activations, 'report');
        assert.equal(r.fake, SHAPE.nLayers * inputs.length);
        assert.equal(r.kernel, 0);
      } finally {
        m.dispose();
      }
    });
  }

  it('packed int8 layers take 8-bit dynamic inputs through the integer-dot kernel', async () => {
    const out = path.join(dir, 'gptq');
    await quantize(hf, { method: 'rtn', bits: 4, groupSize: 32, format: 'gptq' }, { out });
    const k8 = await loadModel(out, { actQuant: { bits: 8 } });
    const none = await loadModel(out);
    try {
      assert.deepEqual({ kernel: k8.quantization.activations?.kernel, fake: k8.quantization.activations?.fake }, { kernel: 8, fake: 0 });
      // the kernel already quantizes its input to int8 per block: the logits are those of the plain load
      assert.deepEqual(await k8.forward(tokens, 0, tokens.length), await none.forward(tokens, 0, tokens.length));
    } finally {
      k8.dispose();
      none.dispose();
    }
    const a4 = await loadModel(out, { actQuant: { bits: 4 } });
    assert.deepEqual({ kernel: a4.quantization.activations?.kernel, fake: a4.quantization.activations?.fake }, { kernel: 0, fake: 8 });
    a4.dispose();
  });
});
