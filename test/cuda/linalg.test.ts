/**
 * GPTQ's linear algebra on the device against the CPU path:
 *   Hessian H = beta·H + alpha·XᵀX — vs the CPU double reference (addon().hessian, mode ref),
 *     |Δ| ≤ 4·n·2⁻²⁴·Σ_t|x_ti·x_tj| + 2⁻²²·|beta·H₀| (float sums of n products, as the CPU test);
 *     exactly symmetric.
 *   Inverse factor U (Uᵀ U = H⁻¹) — U upper with exact zeros below; |UᵀUH − I| < 2e-3 (the CPU
 *     test's bound); and close to the CPU reference, |U − U_ref| ≤ 1e-3·max|U_ref| (f32 blocked
 *     arithmetic vs double reference on a well-conditioned matrix); false for an indefinite H.
 */
import { strict as assert } from 'node:assert';
import { cudaHessian, cudaInverseFactor } from '../../lib/ops/cuda';
import { addon } from '../../lib/native';
import { Rng, testSeed, withSeed } from '../helpers/rng';
import { makeHessian } from '../helpers/gptq-plain';
import { requireCuda } from './helpers';
import { HESSIAN_CASES, INVERSE_CASES } from './shapes';

describe('CUDA Hessian accumulation (SYRK)', function () {
  before(function () {
    requireCuda(this);
  });

  for (const [n, cols] of HESSIAN_CASES) {
    it(`${n} tokens × ${cols}: accumulated twice (beta 1) and once with alpha 2/n, beta 0.5: within the float-sum bound`, async function () {
      await withSeed(testSeed(n * 3 + cols), async (rng) => {
        const x = Float32Array.from({ length: n * cols }, () => rng.normal() * (rng.next() < 0.01 ? 20 : 1));
        const ref = new Float32Array(cols * cols);
        await addon().hessian({ x, n, cols, H: ref, sumAbs: null, maxAbs: null, mode: 1 }).promise;
        const H = new Float32Array(cols * cols);
        await cudaHessian(x, n, cols, H);
        await cudaHessian(x, n, cols, H);
        const H2 = Float32Array.from(ref);
        const alpha = 2 / n, beta = 0.5;
        await cudaHessian(x, n, cols, H2, { alpha, beta });
        for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) {
          let b = 0;
          for (let t = 0; t < n; t++) b += Math.abs(x[t * cols + i] * x[t * cols + j]);
          const e = ref[i * cols + j];
          const bound = 2 * 4 * n * 2 ** -24 * b + 1e-30;
          const d = Math.abs(H[i * cols + j] - 2 * e);
          if (!(d <= bound)) assert.fail(`H[${i},${j}] ${H[i * cols + j]} vs ${2 * e} (bound ${bound})`);
          const e2 = beta * e + alpha * e, d2 = Math.abs(H2[i * cols + j] - e2);
          if (!(d2 <= alpha * bound + 2 ** -22 * Math.abs(beta * e) + 1e-30)) assert.fail(`alpha/beta: H[${i},${j}] ${H2[i * cols + j]} vs ${e2}`);
          assert.equal(H[i * cols + j], H[j * cols + i], 'symmetric');
          assert.equal(H2[i * cols + j], H2[j * cols + i], 'symmetric');
        }
      });
    });
  }
});

describe('CUDA GPTQ inverse factor (blocked Cholesky + triangular inverse)', function () {
  before(function () {
    requireCuda(this);
  });

  for (const n of INVERSE_CASES) {
    it(`${n}×${n}: U upper, Uᵀ U H = I, close to the CPU reference`, async function () {
      const seed = testSeed(n);
      await withSeed(seed, async () => {
        const rng = new Rng(seed);
        const A = makeHessian(rng, n + 20, n);
        for (let i = 0; i < n; i++) A[i * n + i] += 0.01;
        const r = await cudaInverseFactor(A, n);
        assert.ok(r.ok, 'positive definite');
        const Uref = new Float32Array(n * n);
        assert.ok((await addon().gptqInverseFactor({ H: A, n, U: Uref, mode: 1 }).promise).ok);
        let maxRef = 0, maxDiff = 0, maxErr = 0;
        for (let i = 0; i < n * n; i++) { maxRef = Math.max(maxRef, Math.abs(Uref[i])); maxDiff = Math.max(maxDiff, Math.abs(r.U[i] - Uref[i])); }
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
          if (j < i) assert.equal(r.U[i * n + j], 0, `U[${i},${j}] below the diagonal`);
          let s = 0;
          for (let k = 0; k < n; k++) {
            let uu = 0;
            for (let t = 0; t <= Math.min(i, k); t++) uu += r.U[t * n + i] * r.U[t * n + k];
            s += uu * A[k * n + j];
          }
          maxErr = Math.max(maxErr, Math.abs(s - (i === j ? 1 : 0)));
        }
        assert.ok(maxErr < 2e-3, `|UᵀUH − I| = ${maxErr}`);
        assert.ok(maxDiff <= 1e-3 * maxRef, `|U − U_ref| = ${maxDiff} (max |U_ref| ${maxRef})`);
      });
    });
  }

  it('an indefinite matrix: ok false (the GPTQ layer then raises the damping)', async function () {
    for (const n of [5, 64, 130]) {
      const A = new Float32Array(n * n);
      for (let i = 0; i < n; i++) A[i * n + i] = i === n - 3 ? -1 : 1;
      assert.equal((await cudaInverseFactor(A, n)).ok, false, `n ${n}`);
    }
  });
});
