/**
 * The training engine end to end (native/train/model.h through lib/train/):
 * - a whole two-block model's gradients (every tensor: embedding, norms, q/k/v/o with GQA, biases,
 *   gate/up/down, a tied or untied head) against float64 finite differences of the loss computed
 *   by the test's own plain forward (test/helpers/slow-forward.ts), for cross-entropy and for KL
 *   to a teacher, batch of 2; the loss itself against the plain forward's; fast against reference;
 * - training a tiny model on a learnable token stream drives the loss down, bit-identically twice;
 * - a run stopped after a checkpoint and resumed from it ends with the same bits as one that was not;
 * - quantization-aware training: with fake-quantized weights the loss and every gradient equal the
 *   plain model's at the quantized weights (the straight-through estimator, exactly); with weights,
 *   activations and the KV cache quantized the trainer's logits are the runtime's on the checkpoint
 *   holding those quantized weights, loaded with the same activation and KV settings.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createTrainerHandle } from '../../lib/ops/train';
import { quantizeTensor } from '../../lib/ops/quantize';
import { normalizeQuantizer } from '../../lib/config/quant';
import { loadModel } from '../../lib/runtime/model';
import { openSafetensors, writeSafetensors } from '../../lib/formats/safetensors';
import { meanAbsDiff } from '../helpers/slow-forward';
import { ParamSet, trainShape, type TrainArch } from '../../lib/train/params';
import { Trainer } from '../../lib/train/trainer';
import { Rng, testSeed } from '../helpers/rng';
import { slowForward } from '../helpers/slow-forward';
import { randomTinyModel, writeHfDir, type TinyShape } from '../helpers/tiny-llama';

const SHAPE: TinyShape = { dim: 24, hiddenDim: 40, nLayers: 2, nHeads: 6, nKvHeads: 2, headDim: 4, vocabSize: 29, seqLen: 64, rmsEps: 1e-5, ropeTheta: 10000, tied: false, biases: false };

function archOf(s: TinyShape): TrainArch {
  return { dim: s.dim, hiddenDim: s.hiddenDim, nLayers: s.nLayers, nHeads: s.nHeads, nKvHeads: s.nKvHeads, headDim: s.headDim, vocabSize: s.vocabSize, rmsEps: s.rmsEps, ropeTheta: s.ropeTheta, rope: 'adjacent', tied: s.tied, biases: s.biases };
}

/** log-softmax of row t (float64). */
function logSoftmax(z: Float64Array, t: number, V: number): Float64Array {
  const row = z.subarray(t * V, (t + 1) * V);
  let mx = -Infinity;
  for (const x of row) mx = Math.max(mx, x);
  let s = 0;
  for (const x of row) s += Math.exp(x - mx);
  const lse = mx + Math.log(s);
  return row.map((x) => x - lse);
}

describe('training engine: whole-model gradients, training, resume', function () {
  this.timeout(300000);

  for (const [label, shape] of [['Llama, GQA 6/2, untied head', SHAPE], ['Qwen2-type: q/k/v biases, tied head, GQA 6/3', { ...SHAPE, biases: true, tied: true, nKvHeads: 3 }]] as [string, TinyShape][]) {
    it(`${label}: every tensor's gradient equals float64 finite differences (cross-entropy and KL, batch 2)`, async () => {
      const seed = testSeed(label.length), rng = new Rng(seed);
      const model = randomTinyModel(rng, shape);
      const arch = archOf(shape);
      const params = ParamSet.from(arch, (n) => model.weights.get(n) ?? null);
      const B = 2, T = 7, V = shape.vocabSize;
      const tokens = Int32Array.from({ length: B * T }, () => rng.int(0, V - 1));
      const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 5 === 3 ? -1 : rng.int(0, V - 1)));
      const teacher = Float32Array.from({ length: B * T * V }, () => 2 * rng.normal());
      const cfg = { ...shape, rope: 'adjacent' as const };
      const weights = () => new Map(params.entries.map((e) => [e.name, params.view(e.name)]));
      // the loss in float64 from the plain forward
      const lossOf = (kind: 'ce' | 'kl'): number => {
        let s = 0;
        for (let b = 0; b < B; b++) {
          const z = slowForward(cfg, weights(), tokens.subarray(b * T, (b + 1) * T));
          for (let t = 0; t < T; t++) {
            const ls = logSoftmax(z, t, V), i = b * T + t;
            if (kind === 'ce') { if (targets[i] >= 0) s -= ls[targets[i]]; continue; }
            const lt = logSoftmax(Float64Array.from(teacher.subarray(i * V, (i + 1) * V)), 0, V);
            for (let j = 0; j < V; j++) s += Math.exp(lt[j]) * (lt[j] - ls[j]);
          }
        }
        return s;
      };
      for (const kind of ['ce', 'kl'] as const) {
        const grads = { ref: params.zerosLike(), fast: params.zerosLike() };
        const losses: Record<string, number> = {};
        for (const mode of ['ref', 'fast'] as const) {
          const h = createTrainerHandle(trainShape(arch), params.nativeTensors(), grads[mode].nativeTensors());
          try {
            losses[mode] = await h.run({ tokens, batch: B, seqLen: T, ...(kind === 'ce' ? { targets } : { teacher }), scale: 1 }, { mode });
          } finally {
            h.dispose();
          }
        }
        const L0 = lossOf(kind);
        assert.ok(Math.abs(losses.ref - L0) < 1e-4 * Math.abs(L0), `[seed ${seed}] ${kind} loss ${losses.ref} vs the plain forward's ${L0}`);
        assert.ok(Math.abs(losses.fast - losses.ref) < 1e-5 * Math.abs(L0), `[seed ${seed}] fast loss`);
        let worstFast = 0, gmax = 0;
        for (let i = 0; i < params.size; i++) { worstFast = Math.max(worstFast, Math.abs(grads.fast.data[i] - grads.ref.data[i])); gmax = Math.max(gmax, Math.abs(grads.ref.data[i])); }
        assert.ok(worstFast < 1e-4 * gmax, `[seed ${seed}] ${kind}: fast gradients vs reference ${worstFast} (max ${gmax})`);
        for (const e of params.entries) {
          const w = params.view(e.name), g = grads.ref.view(e.name);
          const idx = Array.from({ length: Math.min(e.size, kind === 'ce' ? 5 : 2) }, () => rng.int(0, e.size - 1));
          for (const i of idx) {
            const w0 = w[i], h = 1e-3 * Math.max(1, Math.abs(w0));
            w[i] = w0 + h;
            const up = w[i] - w0, Lp = lossOf(kind);
            w[i] = w0 - h;
            const dn = w0 - w[i], Lm = lossOf(kind);
            w[i] = w0;
            const want = (Lp - Lm) / (up + dn);
            assert.ok(Math.abs(g[i] - want) <= 2e-3 * Math.max(Math.abs(want), 1e-2 * gmax), `[seed ${seed}] ${kind} ${e.name}[${i}]: ${g[i]} vs finite differences ${want}`);
          }
        }
      }
    });
  }

  const LIN = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

  /** The block linears of `p` replaced by their RTN-quantized values (lowbit's quantizer, as a checkpoint holds them). */
  async function quantizedCopy(p: ParamSet, q: { bits: number; groupSize: number; sym: boolean }): Promise<ParamSet> {
    const out = new ParamSet(p.arch, p.data.slice());
    for (const e of p.entries) {
      if (!LIN.some((l) => e.name.endsWith(`${l}.weight`))) continue;
      const r = await quantizeTensor(p.view(e.name), [e.shape[0], e.shape[1]], { ...q, dequantize: true });
      out.view(e.name).set(r.dequantized ?? new Float32Array(0));
    }
    return out;
  }

  it('QAT, weights: the loss and every gradient are the plain model\'s at the quantized weights (straight-through)', async () => {
    const seed = testSeed(11), rng = new Rng(seed);
    const arch = archOf(SHAPE);
    const params = ParamSet.from(arch, (n) => randomTinyModel(rng, SHAPE).weights.get(n) ?? null);
    const q = { bits: 3, groupSize: 8, sym: false };
    const qp = await quantizedCopy(params, q);
    const B = 2, T = 6, V = SHAPE.vocabSize;
    const tokens = Int32Array.from({ length: B * T }, () => rng.int(0, V - 1)), targets = Int32Array.from({ length: B * T }, () => rng.int(0, V - 1));
    const gq = params.zerosLike(), gp = params.zerosLike();
    const hq = createTrainerHandle(trainShape(arch), params.nativeTensors(), gq.nativeTensors(), { weights: normalizeQuantizer(q) });
    const hp = createTrainerHandle(trainShape(arch), qp.nativeTensors(), gp.nativeTensors());
    try {
      const lq = await hq.run({ tokens, batch: B, seqLen: T, targets, scale: 1 }), lp = await hp.run({ tokens, batch: B, seqLen: T, targets, scale: 1 });
      assert.equal(lq, lp, `[seed ${seed}] loss with fake-quantized weights vs the plain model at those weights`);
      assert.deepEqual(gq.data, gp.data, `[seed ${seed}] gradients`);
      assert.notDeepEqual(qp.data, params.data, 'the quantizer changed the weights');
      // a mask leaves the unmasked linears in float: only layer 1's down_proj quantized here
      const mask = new Uint8Array(SHAPE.nLayers * 7);
      mask[7 + 6] = 1;
      const down = 'model.layers.1.mlp.down_proj.weight';
      const one = new ParamSet(arch, params.data.slice());
      one.view(down).set(qp.view(down));
      const gm = params.zerosLike(), go = params.zerosLike();
      const hm = createTrainerHandle(trainShape(arch), params.nativeTensors(), gm.nativeTensors(), { weights: normalizeQuantizer(q), weightsMask: mask });
      const ho = createTrainerHandle(trainShape(arch), one.nativeTensors(), go.nativeTensors());
      try {
        assert.equal(await hm.run({ tokens, batch: B, seqLen: T, targets, scale: 1 }), await ho.run({ tokens, batch: B, seqLen: T, targets, scale: 1 }));
        assert.deepEqual(gm.data, go.data);
      } finally {
        hm.dispose();
        ho.dispose();
      }
    } finally {
      hq.dispose();
      hp.dispose();
    }
  });

  it('QAT, W4 g8 + A8 + KV4: the trainer\'s logits are the runtime\'s on the quantized checkpoint with the same settings', async () => {
    const seed = testSeed(12), rng = new Rng(seed);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-qat-'));
    try {
      const src = await writeHfDir(path.join(dir, 'src'), randomTinyModel(rng, SHAPE));
      const st = openSafetensors(src);
      const arch = { ...archOf(SHAPE), rope: 'half' as const };
      const params = ParamSet.from(arch, (n) => (st.has(n) ? st.toFloat32(n).slice() : null), src);
      st.close();
      const q = { bits: 4, groupSize: 8, sym: false };
      const qp = await quantizedCopy(params, q);
      // the checkpoint: the quantized weights, as RTN into the dequant format would write them
      const qdir = path.join(dir, 'q');
      fs.mkdirSync(qdir);
      await writeSafetensors(qdir, qp.entries.map((e) => ({ name: e.name, dtype: 'F32' as const, shape: e.shape, data: new Uint8Array(qp.view(e.name).slice().buffer) })));
      fs.copyFileSync(path.join(src, 'config.json'), path.join(qdir, 'config.json'));
      const T = 20, V = SHAPE.vocabSize;
      const tokens = Int32Array.from({ length: T }, () => rng.int(0, V - 1));
      for (const kv of [null, { bits: 4 as const, group: SHAPE.headDim, sym: false }, { bits: 8 as const, group: 2, sym: true }]) {
        const g = params.zerosLike();
        const h = createTrainerHandle(trainShape(arch), params.nativeTensors(), g.nativeTensors(), { weights: normalizeQuantizer(q), actBits: 8, ...(kv ? { kv } : {}) });
        const logits = new Float32Array(T * V);
        try {
          await h.run({ tokens, batch: 1, seqLen: T, targets: new Int32Array(T).fill(-1), scale: 1, backward: false, logits });
        } finally {
          h.dispose();
        }
        const m = await loadModel(qdir, { actQuant: { bits: 8 }, ...(kv ? { kv: { bits: kv.bits, group: kv.group, sym: kv.sym } } : {}) });
        const want = await m.forward(tokens, 0, T);
        m.dispose();
        let scale = 0;
        for (const x of want) scale += Math.abs(x) / want.length;
        assert.ok(meanAbsDiff(logits, want) < 2e-3 * scale, `[seed ${seed}] kv ${JSON.stringify(kv)}: trainer vs runtime logits ${meanAbsDiff(logits, want)} (mean |logit| ${scale})`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  /** A learnable stream: token t+1 = (3 · token t + 1) mod V, with a random token every 8th position. */
  function stream(rng: Rng, n: number, V: number): Int32Array {
    const s = new Int32Array(n);
    s[0] = rng.int(0, V - 1);
    for (let i = 1; i < n; i++) s[i] = i % 8 === 0 ? rng.int(0, V - 1) : (3 * s[i - 1] + 1) % V;
    return s;
  }

  async function run(steps: number, seed: number, opts: { stopAt?: number; dir?: string; resume?: string } = {}): Promise<{ params: Float32Array; losses: number[] }> {
    const rng = new Rng(seed);
    const B = 4, T = 16, V = SHAPE.vocabSize;
    const data = stream(rng, 4096, V);
    let t: Trainer;
    let cursor = 0;
    if (opts.resume) {
      const r = Trainer.loadCheckpoint(opts.resume, 2);
      t = r.trainer;
      cursor = r.extra.cursor as number;
    } else {
      const params = ParamSet.from(archOf(SHAPE), (n) => randomTinyModel(new Rng(seed + 1), SHAPE).weights.get(n) ?? null);
      t = new Trainer(params, { lr: 1e-2, warmupSteps: 3, steps, weightDecay: 0.01, gradClip: 1 }, 2);
    }
    const losses: number[] = [];
    try {
      while (t.step < steps) {
        const micro = [0, 1].map(() => {
          const tokens = new Int32Array(B * T / 2), targets = new Int32Array(B * T / 2);
          for (let b = 0; b < B / 2; b++) {
            const o = (cursor = (cursor + 97 * T) % (data.length - T - 1));
            tokens.set(data.subarray(o, o + T), b * T);
            targets.set(data.subarray(o + 1, o + T + 1), b * T);
          }
          return { tokens, targets, batch: B / 2, seqLen: T };
        });
        losses.push((await t.trainStep(micro)).loss);
        if (opts.stopAt === t.step && opts.dir) {
          await t.saveCheckpoint(opts.dir, { cursor });
          break;
        }
      }
      return { params: t.params.data.slice(), losses };
    } finally {
      t.dispose();
    }
  }

  it('training a tiny model drives the loss down, bit-identically run after run', async () => {
    const seed = testSeed(3);
    const a = await run(40, seed), b = await run(40, seed);
    const first = a.losses.slice(0, 3).reduce((x, y) => x + y) / 3, last = a.losses.slice(-3).reduce((x, y) => x + y) / 3;
    assert.ok(last < 0.6 * first, `[seed ${seed}] loss ${first.toFixed(4)} → ${last.toFixed(4)}`);
    assert.deepEqual(a.losses, b.losses);
    assert.deepEqual(a.params, b.params);
  });

  it('stopped after a checkpoint and resumed from it: the same weights as an uninterrupted run', async () => {
    const seed = testSeed(4);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-train-'));
    try {
      const whole = await run(12, seed);
      await run(12, seed, { stopAt: 5, dir });
      const resumed = await run(12, seed, { resume: dir });
      assert.deepEqual(resumed.params, whole.params);
      assert.deepEqual(resumed.losses, whole.losses.slice(5));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
