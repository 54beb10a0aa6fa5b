/**
 * y = x · wᵀ: every fast variant vs the double-accumulating reference on fresh random inputs.
 * Bound per output: |fast − ref| ≤ 2·k·2⁻²⁴·Σ_t |x_t·w_t| + 1e-30 — the worst-case rounding of a
 * k-term float sum (any order, FMA or not), relative to the magnitudes summed.
 */
import { strict as assert } from 'node:assert';
import { addon } from '../../lib/native';
import { gemm } from '../../lib/ops/gemm';
import { testSeed, withSeed } from '../helpers/rng';
import { runnableIsas } from '../helpers/isa';

/**
 * (m, k, n): 1 row; odd sizes; ±1 around the 8-lane vector, the 6×16 tile and KC = 256; LLM-ish shapes.
 * The small-batch AVX2 path (9 ≤ m ≤ 64: 6 weight rows × 16 tokens, k blocked by 1024): its bounds
 * 8/9 and 64/65 rows, a partial token block (17, 33), fewer weight rows than a tile (n < 6), k ±1
 * around its 1024-channel block, k below the vector width.
 */
export const GEMM_SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 7, 5], [1, 33, 17], [1, 4096, 100], [2, 64, 16], [5, 100, 31], [6, 256, 16], [7, 257, 33],
  [13, 300, 47], [64, 512, 96], [100, 64, 1000], [37, 1000, 130],
  [8, 40, 20], [9, 3, 5], [16, 1023, 50], [17, 1025, 13], [33, 2049, 97], [64, 17, 7], [65, 100, 14], [48, 1024, 6],
];

describe('native GEMM y = x·wᵀ', function () {
  const isas = runnableIsas();
  for (const [m, k, n] of GEMM_SHAPES) {
    it(`${m}×${k} · (${n}×${k})ᵀ: every variant within the float-sum bound of the reference`, async function () {
      await withSeed(testSeed(m * 7 + k + n), async (rng) => {
        const x = Float32Array.from({ length: m * k }, () => rng.normal());
        const w = Float32Array.from({ length: n * k }, () => rng.normal() * 0.05);
        const ref = new Float32Array(m * n);
        await gemm(x, m, k, w, n, ref, { mode: 'ref' });
        const bound = new Float64Array(m * n);
        for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
          let s = 0;
          for (let t = 0; t < k; t++) s += Math.abs(x[i * k + t] * w[j * k + t]);
          bound[i * n + j] = 2 * k * 2 ** -24 * s + 1e-30;
        }
        for (const isa of isas) {
          addon().setIsa(isa);
          for (const accumulate of [false, true]) {
            const y = new Float32Array(m * n).fill(accumulate ? 1 : NaN);
            await gemm(x, m, k, w, n, y, { accumulate });
            for (let i = 0; i < m * n; i++) {
              const want = ref[i] + (accumulate ? 1 : 0);
              if (!(Math.abs(y[i] - want) <= bound[i] + (accumulate ? 2 ** -23 : 0))) {
                assert.fail(`${isa} accumulate=${accumulate} [${Math.floor(i / n)}, ${i % n}]: ${y[i]} vs ${want} (bound ${bound[i]})`);
              }
            }
          }
        }
        addon().setIsa(addon().info().isa);
      });
    });
  }
});
