/**
 * Hessian accumulation H += XᵀX (SYRK) and per-channel Σ|x|, max|x|: fast vs the double reference.
 * Bound: |fast − ref| ≤ 2·n·2⁻²⁴·Σ_t |x_ti·x_tj| per entry (float sums of n products); the
 * result must be exactly symmetric; max |x| exact.
 */
import { strict as assert } from 'node:assert';
import { addon } from '../../lib/native';
import { testSeed, withSeed } from '../helpers/rng';
import { assertArraysEqual } from '../helpers/assert';

export const HESSIAN_SHAPES: [number, number][] = [[1, 1], [1, 7], [3, 17], [64, 63], [65, 65], [100, 130], [257, 200], [1000, 64]];

describe('native Hessian accumulation (SYRK)', function () {
  for (const [n, cols] of HESSIAN_SHAPES) {
    it(`${n} tokens × ${cols} features, accumulated twice: fast within the float-sum bound of ref`, async function () {
      await withSeed(testSeed(n + cols), async (rng) => {
        const x = Float32Array.from({ length: n * cols }, () => rng.normal() * (rng.next() < 0.01 ? 20 : 1));
        const run = async (mode: number) => {
          const H = new Float32Array(cols * cols), sa = new Float32Array(cols), ma = new Float32Array(cols);
          await addon().hessian({ x, n, cols, H, sumAbs: sa, maxAbs: ma, mode }).promise;
          await addon().hessian({ x, n, cols, H, sumAbs: sa, maxAbs: ma, mode }).promise;
          return { H, sa, ma };
        };
        const ref = await run(1), fast = await run(0);
        for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) {
          let b = 0;
          for (let t = 0; t < n; t++) b += Math.abs(x[t * cols + i] * x[t * cols + j]);
          const bound = 2 * (2 * 2 * n * 2 ** -24 * b) + 1e-30;
          const d = Math.abs(fast.H[i * cols + j] - ref.H[i * cols + j]);
          if (!(d <= bound)) assert.fail(`H[${i},${j}] ${fast.H[i * cols + j]} vs ${ref.H[i * cols + j]} (bound ${bound})`);
          assert.equal(fast.H[i * cols + j], fast.H[j * cols + i], 'symmetric');
        }
        assertArraysEqual(fast.ma, ref.ma, 'max |x|');
        for (let i = 0; i < cols; i++) assert.ok(Math.abs(fast.sa[i] - ref.sa[i]) <= 1e-5 * ref.sa[i] + 1e-30, 'sum |x|');
      });
    });
  }
});
