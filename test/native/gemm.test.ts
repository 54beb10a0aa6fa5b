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
import { fromFloat32, toFloat32 } from '../../lib/formats/dtype';

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

describe('native GEMM with 16-bit weights (gemm_w16): bit-identical to converting w to f32 first', function () {
  const isas = runnableIsas();
  // the f32 shapes, plus k and n around the converted tile (≈ 64 Ki floats: k = 4096 → 16 columns
  // a tile) and the small-batch path's 48-column unit
  const shapes: [number, number, number][] = [...GEMM_SHAPES, [1, 4096, 49], [3, 4097, 33], [20, 4096, 97], [70, 2048, 70], [1, 65537, 3]];
  for (const dt of ['F16', 'BF16'] as const) {
    for (const [m, k, n] of shapes) {
      it(`${dt} ${m}×${k} · (${n}×${k})ᵀ: every variant equals gemm on the converted f32 weights; the reference equals the f32 reference`, async function () {
        await withSeed(testSeed(m * 11 + k + n + (dt === 'F16' ? 1 : 2)), async (rng) => {
          const x = Float32Array.from({ length: m * k }, () => rng.normal());
          const w16 = fromFloat32(Float32Array.from({ length: n * k }, () => rng.normal() * 0.05), dt, 'w');
          const bits = new Uint16Array(w16.buffer, w16.byteOffset, w16.byteLength / 2);
          const w = toFloat32(w16, dt);
          for (const mode of ['ref', 'fast'] as const) {
            for (const isa of mode === 'ref' ? [addon().info().isa] : isas) {
              addon().setIsa(isa);
              const want = new Float32Array(m * n), got = new Float32Array(m * n).fill(NaN);
              await gemm(x, m, k, w, n, want, { mode });
              await gemm(x, m, k, bits, n, got, { mode, wDtype: dt });
              for (let i = 0; i < m * n; i++) {
                if (!Object.is(got[i], want[i])) assert.fail(`${mode} ${isa} [${Math.floor(i / n)}, ${i % n}]: ${got[i]} vs ${want[i]}`);
              }
            }
          }
          addon().setIsa(addon().info().isa);
        });
      });
    }
  }

  it('refuses a 16-bit w without its dtype, a dtype for an f32 w, and accumulate', async function () {
    const x = new Float32Array(4), y = new Float32Array(4);
    await assert.rejects(gemm(x, 2, 2, new Uint16Array(4), 2, y), /wDtype/);
    await assert.rejects(gemm(x, 2, 2, new Float32Array(4), 2, y, { wDtype: 'F16' }), /wDtype/);
    await assert.rejects(gemm(x, 2, 2, new Uint16Array(4), 2, y, { wDtype: 'F8' as 'F16' }), /wDtype/);
    await assert.rejects(gemm(x, 2, 2, new Uint16Array(4), 2, y, { wDtype: 'BF16', accumulate: true }), /accumulate/);
  });
});

describe('native GEMM in bf16 (gemm_bf16): rounded operands, f32 sums', function () {
  const isas = runnableIsas();
  const shapes: [number, number, number][] = [[1, 1, 1], [1, 7, 5], [2, 64, 33], [11, 31, 31], [12, 32, 32], [13, 300, 40], [25, 129, 65], [64, 512, 97], [3, 1025, 17], [100, 2, 3], [37, 1000, 130]];
  const round = (v: Float32Array) => toFloat32(fromFloat32(v, 'BF16', 'v'), 'BF16');
  for (const [m, k, n] of shapes) {
    it(`${m}×${k} · (${n}×${k})ᵀ: every variant within the f32 sum bound of the rounded operands' exact products; the error against f32 within the bf16 rounding bound`, async function () {
      await withSeed(testSeed(m * 13 + k * 3 + n), async (rng) => {
        const x = Float32Array.from({ length: m * k }, () => rng.normal());
        const w = Float32Array.from({ length: n * k }, () => rng.normal() * 0.05);
        const xr = round(x), wr = round(w);
        const ref = new Float32Array(m * n), f32 = new Float32Array(m * n);
        await gemm(x, m, k, w, n, ref, { compute: 'bf16', mode: 'ref' });
        await gemm(x, m, k, w, n, f32, { mode: 'ref' });
        const sumBound = new Float64Array(m * n), roundBound = new Float64Array(m * n);
        for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
          let exact = 0, s = 0, sr = 0;
          for (let t = 0; t < k; t++) {
            exact += xr[i * k + t] * wr[j * k + t];
            s += Math.abs(x[i * k + t] * w[j * k + t]);
            sr += Math.abs(xr[i * k + t] * wr[j * k + t]);
          }
          // the reference is the exact sum of the rounded products, rounded once
          assert.ok(Math.abs(ref[i * n + j] - exact) <= Math.abs(exact) * 2 ** -24 + 1e-30, `ref [${i}, ${j}]`);
          sumBound[i * n + j] = 2 * k * 2 ** -24 * sr + 1e-30;
          // each operand rounded by at most 2⁻⁸ relative (8 significand bits): |x̃w̃ − xw| ≤ (2·2⁻⁸ + 2⁻¹⁶)|xw|, plus both sums' rounding
          roundBound[i * n + j] = (2 * 2 ** -8 + 2 ** -16) * s + 2 * k * 2 ** -24 * (s + sr) + 1e-30;
        }
        for (const isa of isas) {
          addon().setIsa(isa);
          const y = new Float32Array(m * n).fill(NaN);
          await gemm(x, m, k, w, n, y, { compute: 'bf16' });
          for (let i = 0; i < m * n; i++) {
            if (!(Math.abs(y[i] - ref[i]) <= sumBound[i])) assert.fail(`${isa} [${Math.floor(i / n)}, ${i % n}]: ${y[i]} vs ${ref[i]} (bound ${sumBound[i]})`);
            if (!(Math.abs(y[i] - f32[i]) <= roundBound[i])) assert.fail(`${isa} [${Math.floor(i / n)}, ${i % n}]: ${y[i]} vs f32 ${f32[i]} (bound ${roundBound[i]})`);
          }
        }
        addon().setIsa(addon().info().isa);
      });
    });
  }

  it('refuses bf16 compute with 16-bit weights or accumulate, and an unknown compute', async function () {
    const x = new Float32Array(4), y = new Float32Array(4);
    await assert.rejects(gemm(x, 2, 2, new Uint16Array(4), 2, y, { wDtype: 'BF16', compute: 'bf16' }), /compute/);
    await assert.rejects(gemm(x, 2, 2, new Float32Array(4), 2, y, { compute: 'bf16', accumulate: true }), /compute/);
    await assert.rejects(gemm(x, 2, 2, new Float32Array(4), 2, y, { compute: 'f16' as 'bf16' }), /compute/);
  });
});
