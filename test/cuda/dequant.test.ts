/**
 * CUDA int4 dequantization (GPTQ layout) against the CPU reference, on the shared shape table.
 * Exact match required: both compute f32(scale) · (f32(code) − f32(zero)) with one rounding.
 * Skips with the reason when no CUDA device is usable (CI and development machines have none).
 */
import { strict as assert } from 'node:assert';
import { cudaAddon } from '../../lib/native';
import { unpackValues, packValues } from '../../lib/ops/pack';
import { testSeed, withSeed } from '../helpers/rng';
import { assertArraysEqual } from '../helpers/assert';
import { asCudaAddon, type CudaAddon } from './helpers';

/** rows = out, cols = in; groupSize -1 = per channel; actOrder = a permuted g_idx. */
export const CUDA_DEQUANT_SHAPES = [
  { rows: 1, cols: 64, groupSize: 32, actOrder: false },
  { rows: 7, cols: 256, groupSize: 128, actOrder: false },
  { rows: 33, cols: 96, groupSize: 32, actOrder: true },
  { rows: 100, cols: 512, groupSize: -1, actOrder: false },
  { rows: 4096, cols: 4096, groupSize: 128, actOrder: true },
];

describe('CUDA dequant int4 (GPTQ layout)', function () {
  let cuda: CudaAddon;
  before(function () {
    const r = cudaAddon();
    if (!r.addon) {
      console.log(`      no CUDA device: ${r.reason}`);
      this.skip();
    }
    cuda = asCudaAddon(r.addon);
    const info = cuda.cudaInfo();
    console.log(`      CUDA device: ${info.devices.map((d) => `${d.name} sm_${d.major}${d.minor}`).join(', ')}, driver ${info.driverVersion}, runtime ${info.runtimeVersion}`);
  });

  for (const sh of CUDA_DEQUANT_SHAPES) {
    it(`${sh.rows}x${sh.cols} g${sh.groupSize}${sh.actOrder ? ' act-order' : ''}: == CPU reference`, async function () {
      await withSeed(testSeed(sh.rows + sh.cols), async (rng) => {
        const { rows, cols } = sh;
        const gs = sh.groupSize === -1 ? cols : sh.groupSize;
        const groups = cols / gs;
        const codes = Uint8Array.from({ length: rows * cols }, () => rng.int(0, 15));
        const scales = Float32Array.from({ length: groups * rows }, () => Math.fround(0.001 + rng.next() * 0.05));
        const zeros = Uint8Array.from({ length: groups * rows }, () => rng.int(0, 15));
        const gIdx = Int32Array.from({ length: cols }, (_, k) => Math.floor(k / gs));
        if (sh.actOrder) for (let k = cols - 1; k > 0; k--) { const j = rng.int(0, k); [gIdx[k], gIdx[j]] = [gIdx[j], gIdx[k]]; }
        const qweight = await packValues('gptq-qweight', 4, codes, rows, cols);
        const out = new Float32Array(rows * cols);
        const r = await cuda.cudaDequantInt4({ qweight, scales, zeros, gIdx, rows, cols, groups, out }).promise;
        // CPU reference: unpack, then the formula
        const c2 = await unpackValues('gptq-qweight', 4, qweight, rows, cols);
        const ref = new Float32Array(rows * cols);
        for (let n = 0; n < rows; n++) for (let k = 0; k < cols; k++) {
          const g = gIdx[k];
          ref[n * cols + k] = Math.fround(scales[g * rows + n] * (c2[n * cols + k] - zeros[g * rows + n]));
        }
        assertArraysEqual(out, ref, 'W');
        assert.ok(r.kernelMs >= 0);
      });
    });
  }
});
