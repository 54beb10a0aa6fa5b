/**
 * Uniform / codebook quantizer: every fast variant vs the native reference vs an independent
 * TypeScript reference, on fresh random inputs over the shared shape table.
 * Tolerance: codes, scales, zeros and dequantized values must match EXACTLY (same float32 formula,
 * no FMA contraction); error statistics within 1e-5 relative (the fast kernels sum squares in
 * float per group, in independent chains, then fold into double; the reference sums in double).
 */
import { strict as assert } from 'node:assert';
import { quantizeTensor } from '../../lib/ops/quantize';
import { addon, setKernelMode } from '../../lib/native';
import { fromFloat32 } from '../../lib/formats/dtype';
import { QUANT_SHAPES } from '../helpers/shapes';
import { Rng, testSeed, withSeed } from '../helpers/rng';
import { assertArraysEqual, must } from '../helpers/assert';
import { refQuantize } from '../helpers/ref-quant';
import { isLowbitError, type ErrorCode } from '../../lib/errors';
import { runnableIsas } from '../helpers/isa';

async function inMode<T>(mode: 'ref' | 'fast', isa: string | null, fn: () => Promise<T>): Promise<T> {
  const best = addon().info().isa;
  setKernelMode(mode);
  if (isa) addon().setIsa(isa);
  try {
    return await fn();
  } finally {
    setKernelMode('fast');
    addon().setIsa(best);
  }
}

describe('native quantizer', function () {
  const isas = runnableIsas();
  before(function () {
    console.log(`      fast variants under test on this CPU: ${isas.join(', ')}`);
  });

  for (const sh of QUANT_SHAPES) {
    for (const bits of [2, 3, 4, 8]) {
      for (const [sym, zeroMin, signedMax] of [[true, 0, false], [false, 0, false], [false, 1, false], [true, 0, true]] as const) {
        it(`${sh.rows}x${sh.cols} g${sh.groupSize} ${bits}-bit ${signedMax ? 'sym signed-max' : sym ? 'sym' : 'asym'}${zeroMin ? ' zeroMin=1' : ''}: fast == ref == TS ref`, async function () {
          await withSeed(testSeed(sh.rows * 131 + sh.cols + bits), async (rng) => {
            const w = rng.weights(sh.rows, sh.cols);
            if (!sym && rng.next() < 0.5) for (let i = 0; i < sh.cols; i++) w[i] = Math.abs(w[i]); // an all-positive row
            const opts = { bits, groupSize: sh.groupSize, sym, zeroMin, ...(signedMax ? { signedMax } : {}) };
            const ref = await inMode('ref', null, () => quantizeTensor(w, [sh.rows, sh.cols], opts));
            const gs = sh.groupSize === -1 ? sh.cols : sh.groupSize;
            const ts = refQuantize(w, sh.rows, sh.cols, { bits, groupSize: gs, sym, zeroMin, scaleF16: true, signedMax });
            assertArraysEqual(ref.codes, ts.codes, 'native ref codes vs TS ref');
            assertArraysEqual(ref.scales, ts.scales, 'native ref scales vs TS ref');
            assertArraysEqual(ref.zeros, ts.zeros, 'native ref zeros vs TS ref');
            assertArraysEqual(must(ref.dequantized, 'ref.dequantized'), ts.deq, 'native ref dequant vs TS ref');
            for (const isa of isas) {
              const fast = await inMode('fast', isa, () => quantizeTensor(w, [sh.rows, sh.cols], opts));
              assertArraysEqual(fast.codes, ref.codes, `${isa} codes`);
              assertArraysEqual(fast.scales, ref.scales, `${isa} scales`);
              assertArraysEqual(fast.zeros, ref.zeros, `${isa} zeros`);
              assertArraysEqual(must(fast.dequantized, 'fast.dequantized'), must(ref.dequantized, 'ref.dequantized'), `${isa} dequant`);
              assert.ok(Math.abs(fast.stats.mse - ref.stats.mse) <= 1e-5 * ref.stats.mse + 1e-30, `${isa} mse ${fast.stats.mse} vs ${ref.stats.mse}`);
              assert.equal(fast.stats.maxAbsError, ref.stats.maxAbsError, `${isa} maxAbsError`);
            }
            if (zeroMin === 1) for (const z of ref.zeros) assert.ok(z >= 1, 'zeroMin 1 respected');
            if (signedMax) {
              // zeros by the sign of the extreme; both signs occur on random weights
              const half = 1 << (bits - 1);
              for (const z of ref.zeros) assert.ok(z === half || z === half - 1, `signed-max zero ${z}`);
              if (ref.zeros.length >= 16) assert.ok(ref.zeros.includes(half) && ref.zeros.includes(half - 1), 'both signs of extreme seen');
            }
            const maxq = (1 << bits) - 1;
            for (const c of ref.codes) assert.ok(c <= maxq);
          });
        });
      }
    }
  }

  it('f16 and bf16 sources give the same result as converting to f32 first', async function () {
    await withSeed(testSeed(7), async (rng) => {
      const rows = 17, cols = 256;
      const w = rng.weights(rows, cols);
      for (const dtype of ['F16', 'BF16'] as const) {
        const bytes = fromFloat32(w, dtype, 'w', { saturate: true });
        const wq = new Float32Array(rows * cols);
        addon().convertSync({ src: bytes, srcDtype: dtype === 'F16' ? 1 : 2, dst: wq, dstDtype: 0, saturate: false, mode: 1 });
        for (const mode of ['ref', 'fast'] as const) {
          const a = await inMode(mode, null, () => quantizeTensor({ dtype, bytes }, [rows, cols], { bits: 4, groupSize: 64, sym: false }));
          const b = await inMode(mode, null, () => quantizeTensor(wq, [rows, cols], { bits: 4, groupSize: 64, sym: false }));
          assertArraysEqual(a.codes, b.codes, `${dtype} ${mode} codes`);
          assertArraysEqual(must(a.dequantized, 'a.dequantized'), must(b.dequantized, 'b.dequantized'), `${dtype} ${mode} dequant`);
        }
      }
    });
  });

  it('MSE clipping: every variant picks a shrink whose error is within 1e-5 of the reference optimum, never worse than minmax', async function () {
    // The fast clip search evaluates Σ|x̂ − x|^p with a polynomial pow and float sums, so between
    // candidates whose errors agree to ~1e-6 it may pick another one than the reference (double
    // pow). Bound: per (row, group), its error (recomputed here in double) ≤ ref error · (1 + 1e-5).
    await withSeed(testSeed(11), async (rng) => {
      const rows = 9, cols = 256, gs = 64;
      const w = rng.weights(rows, cols, 0.01);
      const groupErr = (d: Float32Array, p: number) => {
        const out: number[] = [];
        for (let r = 0; r < rows; r++) for (let g = 0; g < cols / gs; g++) {
          let e = 0;
          for (let c = g * gs; c < (g + 1) * gs; c++) e += Math.abs(d[r * cols + c] - w[r * cols + c]) ** p;
          out.push(e);
        }
        return out;
      };
      for (const sym of [true, false]) {
        for (const clipNorm of [2, 2.4]) {
          const opts = { bits: 3, groupSize: gs, sym, clip: 'mse' as const, clipNorm };
          const ref = await inMode('ref', null, () => quantizeTensor(w, [rows, cols], opts));
          const refErr = groupErr(must(ref.dequantized, 'ref.dequantized'), clipNorm);
          for (const isa of isas) {
            const fast = await inMode('fast', isa, () => quantizeTensor(w, [rows, cols], opts));
            const fe = groupErr(must(fast.dequantized, 'fast.dequantized'), clipNorm);
            fe.forEach((e, i) => { assert.ok(e <= refErr[i] * (1 + 1e-5) + 1e-30, `${isa} p=${clipNorm} group ${i}: ${e} vs ref ${refErr[i]}`); });
          }
          const mm = await quantizeTensor(w, [rows, cols], { bits: 3, groupSize: gs, sym });
          const mmErr = groupErr(must(mm.dequantized, 'mm.dequantized'), clipNorm);
          refErr.forEach((e, i) => { assert.ok(e <= mmErr[i] * (1 + 1e-12), `group ${i}: mse clip ${e} > minmax ${mmErr[i]}`); });
        }
      }
    });
  });

  for (const codebook of ['nf4', 'log2'] as const) {
    it(`codebook ${codebook}: fast == ref, dequant = scale × level`, async function () {
      await withSeed(testSeed(13), async (rng) => {
        const rows = 5, cols = 130;
        const w = rng.weights(rows, cols);
        const opts = { bits: 4, groupSize: 64, codebook, raggedLastGroup: true };
        const ref = await inMode('ref', null, () => quantizeTensor(w, [rows, cols], opts));
        const fast = await quantizeTensor(w, [rows, cols], opts);
        assertArraysEqual(fast.codes, ref.codes, 'codes');
        assertArraysEqual(must(fast.dequantized, 'fast.dequantized'), must(ref.dequantized, 'ref.dequantized'), 'dequant');
        assert.equal(ref.groups, 3);
        // every dequantized value lies within the group's absmax and the error beats 3-bit RTN-ish levels
        assert.ok(ref.stats.relError < 0.2, `relError ${ref.stats.relError}`);
        for (const z of ref.zeros) assert.equal(z, 0);
      });
    });
  }

  it('per-tensor: one scale for the whole tensor', async function () {
    const rng = new Rng(testSeed(17));
    const w = rng.weights(8, 64);
    const q = await quantizeTensor(w, [8, 64], { bits: 8, perTensor: true, sym: true });
    assert.equal(q.groups, 1);
    assert.ok(q.scales.every((s) => s === q.scales[0]));
    assert.ok(q.stats.relError < 0.05);
  });

  it('more bits never increase the error', async function () {
    const rng = new Rng(testSeed(19));
    const w = rng.weights(32, 512);
    let prev = Infinity;
    for (const bits of [2, 3, 4, 5, 6, 7, 8]) {
      const q = await quantizeTensor(w, [32, 512], { bits, groupSize: 128, sym: false });
      assert.ok(q.stats.mse < prev, `${bits}-bit mse ${q.stats.mse} >= ${prev}`);
      prev = q.stats.mse;
    }
  });

  it('NaN / Inf in a weight is a LOWBIT_NUMERICAL error naming the tensor and position', async function () {
    const w = new Float32Array(4 * 64).fill(0.5);
    w[2 * 64 + 5] = NaN;
    w[3 * 64 + 1] = Infinity;
    for (const mode of ['ref', 'fast'] as const) {
      await assert.rejects(inMode(mode, null, () => quantizeTensor(w, [4, 64], { bits: 4, groupSize: 32, name: 'model.layers.0.mlp.up_proj.weight' })),
        (e: unknown) => isLowbitError(e, 'LOWBIT_NUMERICAL') && /up_proj\.weight: non-finite weight .* at \[2, 5\] \(2 in total\)/.test((e as Error).message));
    }
  });

  it('bad options are LOWBIT_INVALID_OPTION / LOWBIT_SHAPE_MISMATCH', async function () {
    const w = new Float32Array(4 * 96);
    const bad: [object, ErrorCode, RegExp][] = [
      [{ bits: 9 }, 'LOWBIT_INVALID_OPTION', /bits: expected an integer in \[2, 8\], received 9/],
      [{ bits: 1 }, 'LOWBIT_INVALID_OPTION', /bits/],
      [{ groupSize: 0 }, 'LOWBIT_INVALID_OPTION', /groupSize/],
      [{ groupSize: 64 }, 'LOWBIT_SHAPE_MISMATCH', /expected cols divisible by groupSize 64, got 96/],
      [{ clip: 'max' }, 'LOWBIT_INVALID_OPTION', /clip: expected one of/],
      [{ codebook: 'nf4', bits: 3 }, 'LOWBIT_INVALID_OPTION', /bits/],
      [{ groupsize: 32 }, 'LOWBIT_INVALID_OPTION', /unknown option "groupsize"/],
    ];
    for (const [opts, code, re] of bad) {
      await assert.rejects(quantizeTensor(w, [4, 96], opts), (e: unknown) => isLowbitError(e, code) && re.test(e.message), JSON.stringify(opts));
    }
    await assert.rejects(quantizeTensor(new Float32Array(10), [4, 96]), (e: unknown) => isLowbitError(e, 'LOWBIT_SHAPE_MISMATCH'));
    await assert.rejects(quantizeTensor(w, [4, 0] as never), (e: unknown) => isLowbitError(e, 'LOWBIT_INVALID_OPTION'));
  });

  it('an aborted signal rejects with LOWBIT_ABORTED; progress is reported', async function () {
    const w = new Rng(1).weights(2048, 1024);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(quantizeTensor(w, [2048, 1024], { signal: ac.signal }), (e: unknown) => isLowbitError(e, 'LOWBIT_ABORTED'));
    // aborted mid-run: at the first progress report (a timer of a few ms raced the whole run when
    // the machine was busy and the event loop late)
    const ac2 = new AbortController();
    // (a fine clip grid makes the run last seconds on any CPU, so the abort lands mid-run)
    const p = quantizeTensor(w, [2048, 1024], { signal: ac2.signal, clip: 'mse', clipGrid: 5000, clipNorm: 2, onProgress: () => { ac2.abort(); } });
    await assert.rejects(p, (e: unknown) => isLowbitError(e, 'LOWBIT_ABORTED'));
    let last = { done: 0, total: 0 };
    await quantizeTensor(w, [2048, 1024], { clip: 'mse', clipGrid: 20, clipNorm: 2, onProgress: (pr) => { last = pr; } });
    assert.ok(last.total === 2048 && last.done > 0, `progress ${JSON.stringify(last)}`);
  });
});
