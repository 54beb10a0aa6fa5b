/**
 * Per-call threads: every long call carries `threads` in its native job, and the addon's Task runs
 * the work under a thread-local count, so
 *   (a) results do not depend on the thread count (bit for bit);
 *   (b) concurrent calls with different counts give the bytes of serial runs, and the process
 *       default (setThreads / LOWBIT_THREADS) is never touched;
 *   (c) a bad `threads` is one message from every public call that takes it;
 *   (d) a native job with a field of the wrong type is LOWBIT_INTERNAL naming the field.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { addon, runTask, type NativeQBlock } from '../../lib/native';
import { toLowbitError } from '../../lib/errors';
import { gemm } from '../../lib/ops/gemm';
import { gptqLayer } from '../../lib/ops/gptq';
import { quantizeTensor } from '../../lib/ops/quantize';
import { systemInfo } from '../../lib/ops/system';
import { quantize } from '../../lib/pipeline/quantize';
import { loadModel } from '../../lib/runtime/model';
import { must } from '../helpers/assert';
import { rejectsCode, throwsCode } from '../helpers/errors';
import { Rng } from '../helpers/rng';

const MESSAGE = 'threads: expected an integer in [1, 1024]';

function bytesOf(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function randomArray(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** A positive definite (cols × cols) Hessian: XᵀX/n of random activations, plus a small ridge. */
function hessian(rng: Rng, n: number, cols: number): Float32Array {
  const x = randomArray(rng, n * cols);
  const H = new Float32Array(cols * cols);
  for (let i = 0; i < cols; i++) {
    for (let j = 0; j < cols; j++) {
      let s = 0;
      for (let t = 0; t < n; t++) s += x[t * cols + i] * x[t * cols + j];
      H[i * cols + j] = (2 * s) / n;
    }
    H[i * cols + i] += 0.01;
  }
  return H;
}

describe('per-call threads', function () {
  // large enough that each call splits into many chunks of lowbit's pool
  const m = 96, k = 320, n = 192;
  const rng = new Rng(20251207);
  const x = randomArray(rng, m * k);
  const w = randomArray(rng, n * k, 0.05);
  const rows = 128, cols = 256;
  const W = randomArray(rng, rows * cols, 0.02);
  const H = hessian(rng, 512, cols);

  const runGemm = async (threads?: number) => {
    const y = new Float32Array(m * n);
    await gemm(x, m, k, w, n, y, threads === undefined ? {} : { threads });
    return y;
  };
  const runGptq = (threads?: number) => gptqLayer(Float32Array.from(W), H, { rows, cols, bits: 4, groupSize: 64, ...(threads === undefined ? {} : { threads }) });

  it('(a) a GEMM and a quantizeTensor with threads 1 and 2 are bit-identical to the default', async function () {
    const y0 = await runGemm();
    for (const t of [1, 2]) assert.ok(bytesOf(await runGemm(t)).equals(bytesOf(y0)), `gemm, threads ${t}`);
    const opts = { bits: 4, groupSize: 64, sym: false };
    const q0 = await quantizeTensor(W, [rows, cols], opts);
    for (const t of [1, 2]) {
      const q = await quantizeTensor(W, [rows, cols], { ...opts, threads: t });
      assert.ok(bytesOf(q.codes).equals(bytesOf(q0.codes)), `codes, threads ${t}`);
      assert.ok(bytesOf(q.scales).equals(bytesOf(q0.scales)), `scales, threads ${t}`);
      assert.ok(bytesOf(q.zeros).equals(bytesOf(q0.zeros)), `zeros, threads ${t}`);
      assert.ok(bytesOf(must(q.dequantized, 'dequantized')).equals(bytesOf(must(q0.dequantized, 'dequantized'))), `dequantized, threads ${t}`);
      assert.deepEqual(q.stats, q0.stats, `stats, threads ${t}`);
    }
  });

  it('(b) concurrent calls with different threads give the bytes of serial runs; the process default is untouched', async function () {
    const before = addon().info().threads;
    const beforeInfo = must(systemInfo().native, 'native info').threads;
    const ySerial = await runGemm(1);
    const gSerial = await runGptq(2);
    const [y, g] = await Promise.all([runGemm(1), runGptq(2)]);
    assert.ok(bytesOf(y).equals(bytesOf(ySerial)), 'gemm (threads 1) beside gptqLayer (threads 2)');
    for (const key of ['codes', 'scales', 'zeros', 'gIdx', 'dequantized'] as const) assert.ok(bytesOf(g[key]).equals(bytesOf(gSerial[key])), `gptqLayer ${key}`);
    assert.equal(g.loss, gSerial.loss);
    assert.equal(g.dampUsed, gSerial.dampUsed);
    // several at once, each with its own count, while the default is read in between
    const many = await Promise.all([runGemm(2), runGemm(1), runGemm(), runGemm(2)]);
    for (const yy of many) assert.ok(bytesOf(yy).equals(bytesOf(ySerial)));
    assert.equal(addon().info().threads, before, 'addon().info().threads after the calls');
    assert.equal(must(systemInfo().native, 'native info').threads, beforeInfo, 'systemInfo().native.threads after the calls');
  });

  describe('(c) an invalid threads is one message everywhere', function () {
    let dir = '';
    before(function () {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-threads-'));
    });
    after(function () {
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const bad: unknown[] = [0, 1025, 1.5, '2'];
    for (const t of bad) {
      it(`threads ${JSON.stringify(t)}: gemm, quantizeTensor, gptqLayer, quantize and loadModel refuse it alike`, async function () {
        const threads = t as number;
        const y = new Float32Array(m * n);
        await rejectsCode(gemm(x, m, k, w, n, y, { threads }), 'LOWBIT_INVALID_OPTION', MESSAGE);
        await rejectsCode(quantizeTensor(W, [rows, cols], { threads }), 'LOWBIT_INVALID_OPTION', MESSAGE);
        await rejectsCode(gptqLayer(W, H, { rows, cols, threads }), 'LOWBIT_INVALID_OPTION', MESSAGE);
        // checked before the model is touched: a missing model is not what is reported
        const missing = path.join(dir, 'no-such-model');
        await rejectsCode(quantize(missing, { method: 'rtn', bits: 4 }, { out: path.join(dir, 'out'), threads }), 'LOWBIT_INVALID_OPTION', MESSAGE);
        await rejectsCode(loadModel(missing, { threads }), 'LOWBIT_INVALID_OPTION', MESSAGE);
      });
    }
  });

  it('(d) a native job with a field of the wrong type is LOWBIT_INTERNAL naming the field', async function () {
    const y = new Float32Array(m * n);
    const job = { x, m: 'x' as unknown as number, k, w, n, y, accumulate: false, mode: 0 };
    await rejectsCode(runTask(() => addon().gemm(job), undefined, 'gemm'), 'LOWBIT_INTERNAL', 'gemm: job.m: expected a non-negative integer, received string');
    // the other reads of a job: a typed array, the thread count, the mode, a string field
    await rejectsCode(runTask(() => addon().gemm({ ...job, m, x: [1, 2] as unknown as Float32Array }), undefined, 'gemm'), 'LOWBIT_INTERNAL',
      'gemm: job.x: expected a typed array, received an array');
    await rejectsCode(runTask(() => addon().gemm({ ...job, m, threads: -1 }), undefined, 'gemm'), 'LOWBIT_INTERNAL', 'gemm: job.threads: expected an integer in [0, 1024], received number');
    await rejectsCode(runTask(() => addon().hessian({ x, n: m, cols: k, H: new Float32Array(k * k), sumAbs: null, maxAbs: null, mode: 2 }), undefined, 'hessian'),
      'LOWBIT_INTERNAL', 'hessian: job.mode: expected 0 (fast) or 1 (reference), received number');
    await rejectsCode(runTask(() => addon().benchPeak({ kind: 1 as unknown as 'fma', millis: 1 }), undefined, 'benchPeak'), 'LOWBIT_INTERNAL',
      'benchPeak: job.kind: expected a string, received number');
    // positional arguments are refused as a whole
    await rejectsCode(runTask(() => (addon().gemm as unknown as (...a: unknown[]) => ReturnType<ReturnType<typeof addon>['gemm']>)(x, m, k, w, n, y), undefined, 'gemm'),
      'LOWBIT_INTERNAL', 'gemm: expected one job object, received a Float32Array');
    // a synchronous entry throws at once (toLowbitError, as lib does), and a nested object names its path
    const acts = () => addon().quantizeActs({ x: new Float32Array(32), rows: 1, inFeatures: 32, kb: 32, perm: 'p' as unknown as Int32Array, mode: 0 });
    throwsCode(() => { try { acts(); } catch (e) { throw toLowbitError(e); } }, 'LOWBIT_INTERNAL', 'quantizeActs: job.perm: expected a typed array, received string');
    const w1 = { bits: '4', kb: 32, inFeatures: 32, outFeatures: 8, q: new Uint8Array(128), d: new Uint16Array(8), m: null, zeroFixed: 8, perm: null } as unknown as NativeQBlock;
    await rejectsCode(runTask(() => addon().qdotLinear({ w: [w1], x: new Float32Array(32), rows: 1, y: [new Float32Array(8)], mode: 0 }), undefined, 'qdotLinear'),
      'LOWBIT_INTERNAL', 'qdotLinear: job.w[0].bits: expected a number, received string');
  });
});
