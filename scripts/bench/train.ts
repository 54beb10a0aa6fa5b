/**
 * The training engine (issue 20):
 *   train-step-29m — one optimizer step (forward, loss, per-block recomputation, backward, AdamW) of
 *     a 29M-parameter Llama built in memory (dim 512, 8 layers, 8 heads × 64, FFN 1536, vocab 4096:
 *     every dimension a multiple of 128), batch 4 × 256 tokens, f32, plain and with W4 g128 + A8 + KV4
 *     fake quantization (QAT) — alternating, A B A B. Reports tokens/s and the achieved GFLOP/s
 *     against the FMA peak measured in the same run. FLOPs counted: the matrix products the step
 *     executes — 2 · (linear + head weights) per token for each of the forward, the recomputed
 *     forward and the two backward products (dX, dW): 8 · N per token — plus attention's
 *     4 · T · d per token and layer in each of those passes (T/2 positions on average).
 */
import { ParamSet, type TrainArch } from '../../lib/train/params';
import { Trainer } from '../../lib/train/trainer';
import { normalizeQuantizer } from '../../lib/config/quant';
import { log, round, settle, median } from './timing';
import type { Limits } from './limits';

export const TRAIN_NAMES = ['train-step-29m'];

export async function benchTrain(o: { quick: boolean; limits: Limits; want: (n: string) => boolean; threads: number | undefined }): Promise<Record<string, unknown>[]> {
  if (!o.want('train-step-29m')) return [];
  const arch: TrainArch = { dim: 512, hiddenDim: 1536, nLayers: 8, nHeads: 8, nKvHeads: 8, headDim: 64, vocabSize: 4096, rmsEps: 1e-5, ropeTheta: 10000, rope: 'half', tied: true, biases: false };
  const B = 4, T = 256, N = B * T;
  const make = () => {
    const p = new ParamSet(arch);
    let s = 12345;
    for (let i = 0; i < p.data.length; i++) { s = (s * 1103515245 + 12345) >>> 0; p.data[i] = (s / 4294967296 - 0.5) * 0.05; }
    for (const e of p.entries) if (e.name.endsWith('norm.weight')) p.view(e.name).fill(1);
    return p;
  };
  const hyper = { lr: 1e-4, steps: 1000 };
  const variants = [
    { name: 'f32', t: new Trainer(make(), hyper, o.threads) },
    { name: 'qat-w4g128-a8-kv4', t: new Trainer(make(), hyper, o.threads, { weights: normalizeQuantizer({ bits: 4, groupSize: 128, sym: false }), actBits: 8, kv: { bits: 4, group: 64, sym: false } }) },
  ];
  const linear = arch.nLayers * (4 * arch.dim * arch.dim + 3 * arch.dim * arch.hiddenDim) + arch.vocabSize * arch.dim;
  const attn = arch.nLayers * 4 * (T / 2) * arch.dim;
  const flopsPerToken = 4 * (2 * linear + attn);  // forward, recomputed forward, backward dX and dW
  const tokens = Int32Array.from({ length: N }, (_, i) => (i * 7919) % arch.vocabSize);
  const targets = Int32Array.from({ length: N }, (_, i) => (i * 104729 + 3) % arch.vocabSize);
  try {
    for (const v of variants) {
      log(`train-step-29m: ${v.name}: warm-up step`);
      await v.t.trainStep([{ tokens, targets, batch: B, seqLen: T }]);
    }
    const rounds = o.quick ? 2 : 5;
    const times = variants.map(() => [] as number[]);
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < variants.length; i++) {
        await settle();
        const t0 = performance.now();
        await variants[i].t.trainStep([{ tokens, targets, batch: B, seqLen: T }]);
        times[i].push((performance.now() - t0) / 1000);
      }
    }
    const peak = o.limits.fmaPeakAll.gflops;
    return [{
      name: 'train-step-29m',
      description: `one optimizer step, batch ${B} × ${T} tokens, of a ${round(variants[0].t.params.size / 1e6)}M-parameter Llama (dim ${arch.dim}, ${arch.nLayers} layers, FFN ${arch.hiddenDim}, vocab ${arch.vocabSize}); A B A B over ${rounds} rounds; FLOPs = 8·N + attention per token (see scripts/bench/train.ts)`,
      flopsPerToken, peakGflops: round(peak),
      variants: variants.map((v, i) => {
        const s = median(times[i]);
        const gflops = (flopsPerToken * N) / s / 1e9;
        return { variant: v.name, secondsPerStep: round(s), tokensPerSecond: round(N / s), gflops: round(gflops), ofPeak: round(gflops / peak, 3) };
      }),
    }];
  } finally {
    for (const v of variants) v.t.dispose();
  }
}
