/**
 * y = x · Wᵀ from GPTQ 4-bit words (no dequantized W): the fast path vs the double reference on the
 * shared-style shape table — 1 row, odd output counts (not multiples of the 8-lane vector), group
 * boundaries, batches of 1–9 tokens, act-order g_idx (reference path). Bound per output, from the
 * factored form y = Σ_g s·(Σ x·q − z·Σx) in float: |fast − ref| ≤ 2⁻²⁰ · Σ_k |x_k|·s·(15 + z) + 1e-6.
 */
import { strict as assert } from 'node:assert';
import { qmatmulGptq4, type GptqInt4Weights } from '../../lib/ops/qmatmul';
import { packValues } from '../../lib/ops/pack';
import { isLowbitError } from '../../lib/errors';
import { testSeed, withSeed, type Rng } from '../helpers/rng';

async function layer(rng: Rng, out: number, inF: number, gs: number, actOrder: boolean): Promise<GptqInt4Weights> {
  const groups = inF / gs;
  const codes = Uint8Array.from({ length: out * inF }, () => rng.int(0, 15));
  const gIdx = Int32Array.from({ length: inF }, (_, k) => Math.floor(k / gs));
  if (actOrder) for (let k = inF - 1; k > 0; k--) { const j = rng.int(0, k); [gIdx[k], gIdx[j]] = [gIdx[j], gIdx[k]]; }
  // qweight packs (out, in) codes along in; pad out to a multiple of 32 is not needed for the words
  const padOut = Math.ceil(out / 32) * 32;
  const padded = new Uint8Array(padOut * inF);
  padded.set(codes);
  const qw = await packValues('gptq-qweight', 4, padded, padOut, inF);
  const qweight = new Int32Array((inF / 8) * out);
  for (let r = 0; r < inF / 8; r++) for (let n = 0; n < out; n++) qweight[r * out + n] = qw[r * padOut + n];
  return {
    inFeatures: inF, outFeatures: out, groups, qweight, gIdx,
    scales: Float32Array.from({ length: groups * out }, () => Math.fround(0.001 + 0.02 * rng.next())),
    zeros: Uint8Array.from({ length: groups * out }, () => rng.int(0, 15)),
  };
}

export const QGEMM_SHAPES: [number, number, number, number, boolean][] = [
  // m, out, in, group size, act-order
  [1, 8, 32, 32, false], [1, 13, 64, 32, false], [1, 100, 256, 128, false], [3, 33, 96, 32, false],
  [4, 64, 128, 64, false], [5, 17, 256, 256, false], [9, 40, 512, 128, false], [1, 4096, 4096, 128, false], [2, 24, 64, 32, true],
];

describe('int4 GPTQ matmul from packed words', function () {
  for (const [m, out, inF, gs, act] of QGEMM_SHAPES) {
    it(`${m}×${inF} · (${out}×${inF})ᵀ g${gs}${act ? ' act-order' : ''}: fast within the bound of the reference`, async function () {
      await withSeed(testSeed(m + out + inF), async (rng) => {
        const w = await layer(rng, out, inF, gs, act);
        const x = Float32Array.from({ length: m * inF }, () => rng.normal());
        const ref = await qmatmulGptq4(x, m, w, undefined, { mode: 'ref' });
        const fast = await qmatmulGptq4(x, m, w);
        for (let t = 0; t < m; t++) for (let n = 0; n < out; n++) {
          let b = 1e-6;
          for (let k = 0; k < inF; k++) {
            const g = w.gIdx[k];
            b += Math.abs(x[t * inF + k]) * w.scales[g * out + n] * (15 + w.zeros[g * out + n]) * 2 ** -20;
          }
          const d = Math.abs(fast[t * out + n] - ref[t * out + n]);
          if (!(d <= b)) assert.fail(`[${t}, ${n}]: ${fast[t * out + n]} vs ${ref[t * out + n]} (bound ${b})`);
        }
      });
    });
  }

  it('bad shapes and g_idx are typed errors', async function () {
    const rng = (await import('../helpers/rng')).Rng;
    const w = await layer(new rng(1), 8, 32, 32, false);
    await assert.rejects(qmatmulGptq4(new Float32Array(10), 1, w), (e: unknown) => isLowbitError(e, 'LOWBIT_SHAPE_MISMATCH'));
    const bad = { ...w, gIdx: Int32Array.from(w.gIdx, () => 5) };
    await assert.rejects(qmatmulGptq4(new Float32Array(32), 1, bad), (e: unknown) => isLowbitError(e, 'LOWBIT_BAD_FORMAT') && /g_idx/.test((e as Error).message));
  });
});
