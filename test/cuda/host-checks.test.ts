/**
 * The CUDA path's argument checks, which run before any device call and so are testable on a
 * machine without a GPU (STYLE.md §7 "CI without a GPU"):
 *   1. lib/cuda.ts validates in TS: typed errors whether or not the CUDA variant is built;
 *   2. valid calls without a device reject with LOWBIT_NO_CUDA and the reason;
 *   3. the native host entries re-check shapes, g_idx, options and finiteness before touching the
 *      device — exercised on the CUDA variant loaded without a device (when it is built and its
 *      child-process probe loaded it), where everything past those checks is LOWBIT_NO_CUDA.
 */
import { strict as assert } from 'node:assert';
import { cudaBenchCopy, cudaGemmF16, cudaGptqLayer, cudaHessian, cudaInverseFactor, cudaQmatmul, cudaStatus } from '../../lib/ops/cuda';
import { runTask, type NativeAddon } from '../../lib/native';
import { isLowbitError, type ErrorCode } from '../../lib/errors';
import { Rng } from '../helpers/rng';
import { asCudaAddon, cudaVariantForHostChecks, randomPackedLinear, type CudaAddon } from './helpers';

const code = (c: ErrorCode, re?: RegExp) => (e: unknown) => isLowbitError(e, c) && (!re || re.test((e as Error).message));

describe('CUDA host-side checks (no device needed)', function () {
  const rng = new Rng(1);
  const w = randomPackedLinear(rng, 16, 64, 32, false, 4);
  const x = new Float32Array(64);

  it('cudaQmatmul: bad shapes, bits, g_idx and options are typed errors before the device', async function () {
    await assert.rejects(cudaQmatmul(new Float32Array(63), 1, w), code('LOWBIT_SHAPE_MISMATCH', /x: expected 1×64/));
    await assert.rejects(cudaQmatmul(x, 1, { ...w, bits: 3 as 4 }), code('LOWBIT_INVALID_OPTION', /bits/));
    await assert.rejects(cudaQmatmul(x, 0, w), code('LOWBIT_INVALID_OPTION', /^m: /));
    await assert.rejects(cudaQmatmul(x, 1, { ...w, qweight: new Int32Array(5) }), code('LOWBIT_SHAPE_MISMATCH', /qweight/));
    await assert.rejects(cudaQmatmul(x, 1, { ...w, gIdx: Int32Array.from(w.gIdx, () => 7) }), code('LOWBIT_BAD_FORMAT', /g_idx\[0\] = 7 is outside \[0, 2\)/));
    await assert.rejects(cudaQmatmul(x, 1, w, { kernel: 'tiled' as 'mma' }), code('LOWBIT_INVALID_OPTION', /kernel/));
    await assert.rejects(cudaQmatmul(x, 1, w, { repeats: 0 }), code('LOWBIT_INVALID_OPTION', /repeats/));
    await assert.rejects(cudaQmatmul(x, 1, { ...w, inFeatures: 60, gIdx: new Int32Array(60) }), code('LOWBIT_SHAPE_MISMATCH', /multiple of 8/));
    await assert.rejects(cudaQmatmul(new Float64Array(64) as unknown as Float32Array, 1, w), code('LOWBIT_INVALID_OPTION', /x/));
  });

  it('cudaGemmF16, cudaHessian, cudaInverseFactor, cudaBenchCopy: shape and option errors', async function () {
    await assert.rejects(cudaGemmF16(new Float32Array(12), 1, new Float32Array(24), 2), code('LOWBIT_SHAPE_MISMATCH', /multiple of 8/));
    await assert.rejects(cudaGemmF16(new Float32Array(16), 1, new Float32Array(16), 2), code('LOWBIT_SHAPE_MISMATCH', /w: expected/));
    await assert.rejects(cudaHessian(new Float32Array(10), 2, 5, new Float32Array(24)), code('LOWBIT_SHAPE_MISMATCH', /H: expected/));
    await assert.rejects(cudaHessian(new Float32Array(10), 2, 5, new Float32Array(25), { gamma: 1 } as never), code('LOWBIT_INVALID_OPTION'));
    await assert.rejects(cudaInverseFactor(new Float32Array(10), 3), code('LOWBIT_SHAPE_MISMATCH'));
    await assert.rejects(cudaBenchCopy(0), code('LOWBIT_INVALID_OPTION'));
  });

  it('cudaGptqLayer: the gptqLayer checks plus the device limits (blockSize ≤ 128, clip minmax)', async function () {
    const W = new Float32Array(4 * 32), H = new Float32Array(32 * 32);
    for (let i = 0; i < 32; i++) H[i * 33] = 1;
    await assert.rejects(cudaGptqLayer(W, H, { rows: 4, cols: 32, bits: 9 }), code('LOWBIT_INVALID_OPTION', /bits/));
    await assert.rejects(cudaGptqLayer(W, H, { rows: 4, cols: 32, blockSize: 256 }), code('LOWBIT_UNSUPPORTED', /blockSize 256/));
    await assert.rejects(cudaGptqLayer(W, H, { rows: 4, cols: 32, clip: 'mse' }), code('LOWBIT_UNSUPPORTED', /clip 'mse'/));
    await assert.rejects(cudaGptqLayer(W, new Float32Array(10), { rows: 4, cols: 32 }), code('LOWBIT_SHAPE_MISMATCH', /hessian/));
    await assert.rejects(cudaGptqLayer(W, H, { rows: 4, cols: 32, blocksize: 3 } as never), code('LOWBIT_INVALID_OPTION'));
    await assert.rejects(cudaGptqLayer(W, H, { rows: 4, cols: 32, groupSize: 0 }), code('LOWBIT_INVALID_OPTION', /groupSize/));
  });

  it('valid calls without a usable device reject with LOWBIT_NO_CUDA and the reason', async function () {
    const s = cudaStatus();
    if (s.available) this.skip();
    const re = new RegExp(`no CUDA device: ${s.reason.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);
    await assert.rejects(cudaQmatmul(x, 1, w), code('LOWBIT_NO_CUDA', re));
    await assert.rejects(cudaGemmF16(new Float32Array(16), 1, new Float32Array(32), 2), code('LOWBIT_NO_CUDA', re));
    await assert.rejects(cudaInverseFactor(new Float32Array(9), 3), code('LOWBIT_NO_CUDA', re));
  });
});

describe('CUDA native host entries, loaded without a device', function () {
  let a: CudaAddon;
  before(function () {
    const r = cudaVariantForHostChecks();
    if (!r.addon) {
      console.log(`      skipped: ${r.reason}`);
      this.skip();
    }
    a = asCudaAddon(r.addon);
  });

  const rng = new Rng(2);
  const w = randomPackedLinear(rng, 8, 32, 32, false, 4);
  const q = (over: Record<string, unknown>) => ({
    x: new Float32Array(32), xDtype: 0, m: 1, inFeatures: 32, outFeatures: 8, bits: 4, groups: 1,
    qweight: w.qweight, scales: w.scales, zeros: w.zeros, gIdx: w.gIdx, y: new Float32Array(8), kernel: 0, warmup: 0, repeats: 1, ...over,
  }) as Parameters<NonNullable<NativeAddon['cudaQgemm']>>[0];

  it('cudaQgemm: buffer sizes (sync), g_idx, bits, in_features, grid limits before the device; then LOWBIT_NO_CUDA', async function () {
    assert.throws(() => a.cudaQgemm(q({ y: new Float32Array(7) })), /LOWBIT_INTERNAL: cudaQgemm: buffer sizes/);
    await assert.rejects(runTask(() => a.cudaQgemm(q({ gIdx: new Int32Array(32).fill(-1) })), undefined, 't'), code('LOWBIT_BAD_FORMAT', /g_idx\[0\] = -1/));
    await assert.rejects(runTask(() => a.cudaQgemm(q({ bits: 3 })), undefined, 't'), code('LOWBIT_UNSUPPORTED', /bits must be 4 or 8/));
    await assert.rejects(runTask(() => a.cudaQgemm(q({ inFeatures: 28, x: new Float32Array(28), gIdx: new Int32Array(28) })), undefined, 't'), code('LOWBIT_SHAPE_MISMATCH', /not a multiple of 8/));
    await assert.rejects(runTask(() => a.cudaQgemm(q({ m: 65536, kernel: 1, x: new Float32Array(65536 * 32), y: new Float32Array(65536 * 8) })), undefined, 't'),
      code('LOWBIT_UNSUPPORTED', /65536 tokens is above the GEMV kernel's 65535/));
    await assert.rejects(runTask(() => a.cudaQgemm(q({})), undefined, 't'), code('LOWBIT_NO_CUDA'));
  });

  it('cudaGptqLayer: unsupported options and non-finite inputs before the device (the CPU messages); then LOWBIT_NO_CUDA', async function () {
    const rows = 4, cols = 32;
    const H = new Float32Array(cols * cols);
    for (let i = 0; i < cols; i++) H[i * (cols + 1)] = 1;
    const job = (over: Record<string, unknown>) => ({
      rows, cols, bits: 4, groupSize: 32, sym: true, clip: 0, zeroMin: 0, scaleF16: true, actOrder: false, staticGroups: false, damp: 0.01, dampMax: 1, blockSize: 128,
      weight: new Float32Array(rows * cols), hessian: H, codes: new Uint8Array(rows * cols), scales: new Float32Array(rows), zeros: new Uint8Array(rows),
      gIdx: new Int32Array(cols), dequant: new Float32Array(rows * cols), ...over,
    });
    assert.throws(() => a.cudaGptqLayer(job({ codes: new Uint8Array(3) })), /LOWBIT_INTERNAL: cudaGptqLayer: buffer sizes/);
    await assert.rejects(runTask(() => a.cudaGptqLayer(job({ blockSize: 129 })), undefined, 't'), code('LOWBIT_UNSUPPORTED', /blockSize/));
    await assert.rejects(runTask(() => a.cudaGptqLayer(job({ clip: 1 })), undefined, 't'), code('LOWBIT_UNSUPPORTED', /clip/));
    const wn = new Float32Array(rows * cols);
    wn[cols + 6] = NaN;
    await assert.rejects(runTask(() => a.cudaGptqLayer(job({ weight: wn })), undefined, 't'), code('LOWBIT_NUMERICAL', /non-finite weight at \[1, 6\]/));
    const hn = Float32Array.from(H);
    hn[5] = Infinity;
    await assert.rejects(runTask(() => a.cudaGptqLayer(job({ hessian: hn })), undefined, 't'), code('LOWBIT_NUMERICAL', /non-finite Hessian entry at \[0, 5\]/));
    await assert.rejects(runTask(() => a.cudaGptqLayer(job({})), undefined, 't'), code('LOWBIT_NO_CUDA'));
  });

  it('cudaHessian, cudaInverseFactor, cudaGemmF16, cudaBenchCopy: sizes (sync), shapes, then LOWBIT_NO_CUDA', async function () {
    assert.throws(() => a.cudaHessian({ x: new Float32Array(3), n: 2, cols: 2, H: new Float32Array(4), alpha: 1, beta: 1 }), /LOWBIT_INTERNAL/);
    await assert.rejects(runTask(() => a.cudaHessian({ x: new Float32Array(4), n: 2, cols: 2, H: new Float32Array(4), alpha: 1, beta: 1 }), undefined, 't'), code('LOWBIT_NO_CUDA'));
    await assert.rejects(runTask(() => a.cudaInverseFactor({ H: new Float32Array(4), n: 2, U: new Float32Array(4) }), undefined, 't'), code('LOWBIT_NO_CUDA'));
    await assert.rejects(runTask(() => a.cudaGemmF16({ x: new Float32Array(12), w: new Float32Array(24), m: 1, inFeatures: 12, outFeatures: 2, y: new Float32Array(2), warmup: 0, repeats: 1 }), undefined, 't'),
      code('LOWBIT_SHAPE_MISMATCH', /multiple of 8/));
    await assert.rejects(runTask(() => a.cudaBenchCopy({ bytes: 1024, repeats: 1 }), undefined, 't'), code('LOWBIT_NO_CUDA'));
  });
});
