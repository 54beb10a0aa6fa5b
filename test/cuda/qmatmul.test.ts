/**
 * CUDA packed-int matmul (GPTQ 4/8-bit words) and the fp16 GEMM baseline against CPU references,
 * on the table in test/cuda/shapes.ts (1 token, odd sizes around the tiles, act-order g_idx,
 * per-channel and group sizes that are not multiples of the 32-channel chunk, f32 and f16
 * activations, both kernels). References: 4-bit — the CPU path's double reference
 * (qmatmulGptq4 mode 'ref'); 8-bit — the formula in double (the CPU has no 8-bit float-activation
 * GPTQ matmul). W = f32(s·(q − z)) in both.
 *
 * Bounds, per output, from where each kernel rounds (a layout bug gives errors of order |y|):
 *   MMA:  |Δ| ≤ 2⁻⁹·Σ_k |x_k·w_k| + 1e-6 — x rounded to f16 (2⁻¹¹), s·(q − z) rounded once to
 *         f16 (2⁻¹¹; s is fp16-exact as in checkpoints), f32 tensor-core sums (≤ 2⁻¹² here).
 *   GEMV: |Δ| ≤ 2⁻¹⁴·Σ_k |x_k|·s_k·(2^bits − 1 + z_k) + 1e-6 — f32 sums of ≤ in/8 word terms in
 *         the factored form s·(Σx·q − z·Σx), whose cancellation is bounded by that magnitude.
 *   fp16 GEMM: |Δ| ≤ 2⁻¹⁴·Σ|x̃·w̃| + 1e-6 against Σ x̃·w̃ in double, x̃, w̃ the f16-rounded inputs.
 */
import { strict as assert } from 'node:assert';
import { cudaGemmF16, cudaQmatmul } from '../../lib/ops/cuda';
import { qmatmulGptq4 } from '../../lib/ops/qmatmul';
import { testSeed, withSeed } from '../helpers/rng';
import { f16Bits, fromF16, randomPackedLinear, requireCuda, roundF16 } from './helpers';
import { GEMM_F16_CASES, QMATMUL_CASES } from './shapes';

describe('CUDA packed-int matmul (GPTQ layout)', function () {
  before(function () {
    requireCuda(this);
  });

  for (const c of QMATMUL_CASES) {
    const name = `${c.m}×${c.inF} · (${c.out}×${c.inF})ᵀ int${c.bits} g${c.gs}${c.act ? ' act-order' : ''} x ${c.x}, kernel ${c.kernel}`;
    it(`${name}: within the bound of the CPU reference`, async function () {
      await withSeed(testSeed(c.m * 7 + c.out + c.inF + c.bits), async (rng) => {
        const w = randomPackedLinear(rng, c.out, c.inF, c.gs, c.act, c.bits);
        const x32 = Float32Array.from({ length: c.m * c.inF }, () => rng.normal());
        const xh = f16Bits(x32);
        const xv = c.x === 'f16' ? fromF16(xh) : x32; // the values the device sees
        const r = await cudaQmatmul(c.x === 'f16' ? xh : x32, c.m, w, { kernel: c.kernel, repeats: 1 });
        const mma = r.kernel === 'mma';
        assert.equal(r.kernel, c.kernel === 'auto' ? (c.m === 1 ? 'gemv' : 'mma') : c.kernel);
        let ref: Float32Array | Float64Array;
        if (c.bits === 4) {
          ref = await qmatmulGptq4(xv, c.m, { inFeatures: c.inF, outFeatures: c.out, groups: w.groups, qweight: w.qweight, scales: w.scales, zeros: w.zeros, gIdx: w.gIdx }, undefined, { mode: 'ref' });
        } else {
          ref = new Float64Array(c.m * c.out);
          for (let t = 0; t < c.m; t++) for (let n = 0; n < c.out; n++) {
            let s = 0;
            for (let k = 0; k < c.inF; k++) {
              const g = w.gIdx[k];
              s += xv[t * c.inF + k] * Math.fround(w.scales[g * c.out + n] * (w.codes[n * c.inF + k] - w.zeros[g * c.out + n]));
            }
            ref[t * c.out + n] = s;
          }
        }
        const maxq = (1 << c.bits) - 1;
        let worst = 0, bad = 0;
        const first: string[] = [];
        for (let t = 0; t < c.m; t++) for (let n = 0; n < c.out; n++) {
          let mag = 0;
          for (let k = 0; k < c.inF; k++) {
            const g = w.gIdx[k], s = w.scales[g * c.out + n], z = w.zeros[g * c.out + n], xk = Math.abs(xv[t * c.inF + k]);
            mag += mma ? xk * Math.abs(s * (w.codes[n * c.inF + k] - z)) : xk * s * (maxq + z);
          }
          const bound = (mma ? 2 ** -9 : 2 ** -14) * mag + 1e-6;
          const d = Math.abs(r.y[t * c.out + n] - ref[t * c.out + n]);
          worst = Math.max(worst, d / bound);
          if (!(d <= bound)) {
            bad++;
            if (first.length < 5) first.push(`[${t}, ${n}] ${r.y[t * c.out + n]} vs ${ref[t * c.out + n]} (bound ${bound.toExponential(2)})`);
          }
        }
        if (bad) assert.fail(`${bad} outputs outside the bound (worst ${worst.toFixed(2)}× the bound); first: ${first.join(', ')}`);
        assert.ok(r.deviceBytes > 0 && r.ms.length === 1);
      });
    });
  }
});

describe('CUDA fp16 GEMM (benchmark baseline)', function () {
  before(function () {
    requireCuda(this);
  });

  for (const [m, out, inF] of GEMM_F16_CASES) {
    it(`${m}×${inF} · (${out}×${inF})ᵀ: within 2⁻¹⁴·Σ|x̃w̃| of the f16-rounded product`, async function () {
      await withSeed(testSeed(m + out + inF), async (rng) => {
        const x = Float32Array.from({ length: m * inF }, () => rng.normal());
        const w = Float32Array.from({ length: out * inF }, () => 0.05 * rng.normal());
        const r = await cudaGemmF16(x, m, w, out);
        const xr = roundF16(x), wr = roundF16(w);
        for (let t = 0; t < m; t++) for (let n = 0; n < out; n++) {
          let s = 0, mag = 0;
          for (let k = 0; k < inF; k++) { const p = xr[t * inF + k] * wr[n * inF + k]; s += p; mag += Math.abs(p); }
          const d = Math.abs(r.y[t * out + n] - s), bound = 2 ** -14 * mag + 1e-6;
          if (!(d <= bound)) assert.fail(`[${t}, ${n}] ${r.y[t * out + n]} vs ${s} (bound ${bound})`);
        }
      });
    });
  }
});
