/**
 * GPTQ of one layer on the device against the CPU path (gptqLayer, fast mode) on the table in
 * test/cuda/shapes.ts: 1 row, widths that are not multiples of the 128-column block or of the
 * group, bits 2/3/4/8, groups 32/64/128/per channel, act-order, static groups, sym/asym, block
 * sizes 32/100/128.
 *
 * The device path runs the same algorithm in the same order, and its column sweep uses the CPU's
 * arithmetic exactly; the factorization and the lazy-update GEMMs sum in another order, so a code
 * can flip where a value sits within float rounding of a grid boundary, and a flip early in a row
 * changes what follows. Bounds (measured 100 % agreement on a host emulation of the kernels):
 *   codes equal for ≥ 99 % of weights; layer error tr((W−Q)H(W−Q)ᵀ) and the reported loss within
 *   1 % of the CPU's; g_idx and the damping used identical; dequantized == s·(code − zero).
 */
import { strict as assert } from 'node:assert';
import { cudaGptqLayer } from '../../lib/ops/cuda';
import { gptqLayer } from '../../lib/ops/gptq';
import { isLowbitError } from '../../lib/errors';
import { Rng, testSeed, withSeed } from '../helpers/rng';
import { layerError, makeHessian } from '../helpers/gptq-plain';
import { assertArraysEqual } from '../helpers/assert';
import { requireCuda } from './helpers';
import { GPTQ_CASES } from './shapes';

describe('CUDA GPTQ layer vs the CPU path', function () {
  before(function () {
    requireCuda(this);
  });

  for (const c of GPTQ_CASES) {
    const name = `${c.rows}×${c.cols} ${c.bits}-bit g${c.gs}${c.act ? ' act-order' : ''}${c.stat ? ' static' : ''} ${c.sym ? 'sym' : 'asym'} block ${c.block}`;
    it(`${name}: codes ≥ 99 % equal, error and loss within 1 %`, async function () {
      const seed = testSeed(c.rows * 31 + c.cols + c.bits);
      await withSeed(seed, async (rng) => {
        const H = makeHessian(new Rng(seed + 1), Math.max(2 * c.cols, 64), c.cols);
        const W = rng.weights(c.rows, c.cols, 0.005);
        const o = { rows: c.rows, cols: c.cols, bits: c.bits, groupSize: c.gs, actOrder: c.act, staticGroups: c.stat, sym: c.sym, blockSize: c.block, zeroMin: c.sym ? 0 : 1 };
        const cpu = await gptqLayer(W, H, o);
        const gpu = await cudaGptqLayer(W, H, o);
        assertArraysEqual(gpu.gIdx, cpu.gIdx, 'g_idx');
        assert.equal(gpu.groups, cpu.groups);
        assert.equal(gpu.dampUsed, cpu.dampUsed);
        let same = 0;
        for (let i = 0; i < cpu.codes.length; i++) if (gpu.codes[i] === cpu.codes[i]) same++;
        assert.ok(same / cpu.codes.length >= 0.99, `codes agree on ${(100 * same / cpu.codes.length).toFixed(2)} %`);
        for (let n = 0; n < c.rows; n++) for (let k = 0; k < c.cols; k++) {
          const g = gpu.gIdx[k];
          assert.equal(gpu.dequantized[n * c.cols + k], Math.fround(gpu.scales[n * gpu.groups + g] * (gpu.codes[n * c.cols + k] - gpu.zeros[n * gpu.groups + g])));
        }
        const eC = layerError(W, cpu.dequantized, H, c.rows, c.cols), eG = layerError(W, gpu.dequantized, H, c.rows, c.cols);
        assert.ok(Math.abs(eG - eC) <= 0.01 * eC + 1e-12, `layer error: device ${eG} vs CPU ${eC}`);
        assert.ok(Math.abs(gpu.loss - cpu.loss) <= 0.01 * cpu.loss + 1e-12, `loss: device ${gpu.loss} vs CPU ${cpu.loss}`);
        assert.ok(gpu.timings.deviceBytes > 0 && gpu.timings.factorAttempts === 1);
      });
    });
  }

  it('raises the damping like the CPU path when the Hessian is singular; fails past the bound with the same message', async function () {
    const rng = new Rng(testSeed(9));
    const cols = 64;
    const Hs = makeHessian(rng, 8, cols); // rank ≤ 8: singular
    const W = rng.weights(32, cols);
    const cpu = await gptqLayer(W, Hs, { rows: 32, cols, groupSize: 32, dampPercent: 0 });
    const gpu = await cudaGptqLayer(W, Hs, { rows: 32, cols, groupSize: 32, dampPercent: 0 });
    assert.ok(gpu.dampUsed > 0);
    assert.equal(gpu.dampUsed, cpu.dampUsed);
    assert.ok(gpu.timings.factorAttempts > 1);
    const bad = new Float32Array(cols * cols);
    for (let i = 0; i < cols; i++) bad[i * cols + i] = i === 3 ? -50 : 1;
    await assert.rejects(cudaGptqLayer(W, bad, { rows: 32, cols, groupSize: 32, dampMax: 0.05 }),
      (e: unknown) => isLowbitError(e, 'LOWBIT_NUMERICAL') && /not positive definite after damping raised 0\.01 → 0\.05/.test((e as Error).message));
  });

  it('dead inputs (H_jj = 0) quantize to zero, as on the CPU', async function () {
    const rng = new Rng(testSeed(10));
    const cols = 96;
    const Hd = makeHessian(rng, 200, cols);
    for (let i = 0; i < cols; i++) { Hd[5 * cols + i] = 0; Hd[i * cols + 5] = 0; }
    const W = rng.weights(32, cols);
    const gpu = await cudaGptqLayer(W, Hd, { rows: 32, cols, groupSize: -1, sym: false, actOrder: true });
    for (let n = 0; n < 32; n++) assert.equal(gpu.dequantized[n * cols + 5], 0);
  });

  it('progress reaches the column count; an aborted signal rejects with LOWBIT_ABORTED', async function () {
    const rng = new Rng(testSeed(11));
    const cols = 384;
    const H = makeHessian(rng, 400, cols);
    const W = rng.weights(16, cols);
    let last = 0;
    await cudaGptqLayer(W, H, { rows: 16, cols, onProgress: (p) => { last = p.done; } });
    assert.ok(last <= cols);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(cudaGptqLayer(W, H, { rows: 16, cols, signal: ac.signal }), (e: unknown) => isLowbitError(e, 'LOWBIT_ABORTED'));
  });
});
