/**
 * The quantized KV cache end to end (native/runtime/llama.cpp attention_quant):
 * - a tiny random GQA model's logits with the cache at 8/4/2 bits, per group and per head, symmetric
 *   and asymmetric, K per token and per channel (KIVI blocks), with a full-precision window and with
 *   the Q/K rotation, follow a float64 forward whose attention reads rows quantized by an independent
 *   TS simulation (test/helpers/kv-sim.ts). The attention itself is checked exactly in
 *   test/native/kv-attention.test.ts; here the wiring (RoPE → rotation → cache → attention, per layer)
 *   is. Exact agreement is not possible at this level: K and V are computed in f32 here and in float64
 *   there, and a value that lands within 1e-6 of a rounding boundary takes the neighbouring code
 *   (measured: usually 3e-7 of the largest logit; one such flip at 8 bits ≈ 2e-4, at 2 bits up to 0.1
 *   of the quantization's own effect in the largest logit, less in the mean). So the bound is on the
 *   mean |logit difference|: a quarter of the mean distance to the f32-cache logits — a setting wired
 *   wrong (no rotation, another window, other groups) lands as far from the simulation as from f32;
 * - one batch == the same tokens in uneven chunks (decode path vs GEMM path, ring carried across calls);
 * - 'ref' kernels == 'fast';
 * - bytes per token as the format says; the report on the model;
 * - bad input: typed errors naming the option.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel } from '../../lib/runtime/model';
import { setKernelMode, getKernelMode } from '../../lib/native';
import { rotationInfo } from '../../lib/ops/rtquant';
import type { KvCacheOptions } from '../../lib/config/runtime-quant';
import { Rng, testSeed, withSeed } from '../helpers/rng';
import { slowForward, meanAbsDiff, type SlowHooks } from '../helpers/slow-forward';
import { randomTinyModel, slowConfig, toRotateHalf, writeHfDir, type TinyModel, type TinyShape } from '../helpers/tiny-llama';
import { KvSim } from '../helpers/kv-sim';
import { rejectsCode } from '../helpers/errors';
import { must } from '../helpers/assert';

const SHAPE: TinyShape = { dim: 64, hiddenDim: 96, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 16, vocabSize: 48, seqLen: 128, rmsEps: 1e-5, ropeTheta: 10000, tied: false, biases: false };
const ROTATE_SEED = 0x6b76;

function hooksFor(kv: KvCacheOptions, hd: number): SlowHooks {
  const sim = new KvSim({ bits: kv.bits, group: kv.group === undefined || kv.group === 'head' ? 0 : kv.group, sym: kv.sym ?? false, axis: kv.axis ?? 'token', block: kv.block ?? 32, window: kv.window ?? 0, headDim: hd });
  const hooks: SlowHooks = { kvRead: (kind, l, p, last, rows) => sim.read(kind, l, p, last, rows) };
  if (kv.rotate) {
    const M = must(rotationInfo(hd, ROTATE_SEED, true).matrix, 'matrix');
    const rot = (v: Float64Array) => {
      for (let h = 0; h < v.length / hd; h++) {
        const x = v.slice(h * hd, (h + 1) * hd);
        for (let a = 0; a < hd; a++) {
          let s = 0;
          for (let b = 0; b < hd; b++) s += M[a * hd + b] * x[b];
          v[h * hd + a] = s;
        }
      }
    };
    hooks.afterRope = (q, k) => { rot(q); rot(k); };
  }
  return hooks;
}

describe('quantized KV cache (runtime)', function () {
  this.timeout(300000);
  let dir: string;
  let model: TinyModel;
  let hf: string;
  let tokens: number[];
  let f32Logits: Float64Array;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-kv-'));
    const seed = testSeed(19);
    model = randomTinyModel(new Rng(seed), SHAPE);
    hf = await writeHfDir(path.join(dir, 'hf'), model);
    const rng = new Rng(seed + 1);
    tokens = Array.from({ length: 70 }, () => rng.int(0, SHAPE.vocabSize - 1));
    f32Logits = slowForward(slowConfig(SHAPE, 'half'), toRotateHalf(model), tokens);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const CASES: KvCacheOptions[] = [
    { bits: 8 }, { bits: 4 }, { bits: 2 }, { bits: 4, group: 4 }, { bits: 4, sym: true }, { bits: 2, group: 8, sym: true },
    { bits: 4, axis: 'channel', block: 16 }, { bits: 2, axis: 'channel', block: 7 }, { bits: 4, window: 9 }, { bits: 4, axis: 'channel', block: 8, window: 5 },
    { bits: 4, rotate: true }, { bits: 2, rotate: true, axis: 'channel', block: 16, window: 3 },
  ];
  for (const kv of CASES) {
    it(`equals the plain simulation: ${JSON.stringify(kv)}`, async () => {
      await withSeed(testSeed(), async () => {
        const m = await loadModel(hf, { kv });
        try {
          const batch = await m.forward(tokens, 0, tokens.length);
          const expect = slowForward(slowConfig(SHAPE, 'half'), toRotateHalf(model), tokens, hooksFor(kv, SHAPE.headDim));
          const errQ = meanAbsDiff(batch, expect), errF = meanAbsDiff(batch, f32Logits);
          const bound = errF / 4;
          assert.ok(errQ < bound, `vs the simulation: ${errQ} (the f32 cache: ${errF})`);
          // the same tokens in uneven calls: decode path (n < 16), GEMM path, the ring across calls
          const parts: Float32Array[] = [];
          let p = 0;
          for (const n of [1, 3, 17, 1, 48]) { parts.push(await m.forward(tokens.slice(p, p + n), p, n)); p += n; }
          const chunked = new Float32Array(batch.length);
          let o = 0;
          for (const x of parts) { chunked.set(x, o); o += x.length; }
          const errC = meanAbsDiff(chunked, expect);
          assert.ok(errC < bound, `chunked vs the simulation: ${errC} (the f32 cache: ${errF})`);
          const prev = getKernelMode();
          setKernelMode('ref');
          try {
            const r = await m.forward(tokens, 0, tokens.length);
            assert.ok(meanAbsDiff(r, expect) < bound, `ref kernels vs the simulation: ${meanAbsDiff(r, expect)} (the f32 cache: ${errF})`);
          } finally {
            setKernelMode(prev);
          }
        } finally {
          m.dispose();
        }
      });
    });
  }

  it('stores the cache quantized: bytes per position as the format says, and reports what runs', async () => {
    const L = SHAPE.nLayers, kvd = SHAPE.nKvHeads * SHAPE.headDim;
    const want = (kv: KvCacheOptions): number => {
      const g = kv.group === undefined || kv.group === 'head' ? SHAPE.headDim : kv.group;
      const codes = (kvd * kv.bits) / 8, vsz = (kvd / g) * 4;
      const ksz = kv.axis === 'channel' ? (kvd * 4) / (kv.block ?? 32) : vsz;
      return L * (2 * codes + vsz + ksz);
    };
    for (const kv of [{ bits: 8 }, { bits: 4 }, { bits: 2 }, { bits: 4, group: 4 }, { bits: 4, axis: 'channel' }] as KvCacheOptions[]) {
      const m = await loadModel(hf, { kv });
      const r = must(m.quantization.kv, 'kv report');
      assert.equal(r.bytesPerToken, want(kv), JSON.stringify(kv));
      assert.equal(r.f32BytesPerToken, L * kvd * 8);
      assert.equal(r.f16BytesPerToken, L * kvd * 4);
      assert.equal(r.from, 'options');
      assert.equal(r.fixedBytes, kv.axis === 'channel' ? L * 32 * kvd * 8 : 0);
      m.dispose();
    }
    const plain = await loadModel(hf);
    assert.equal(plain.quantization.kv, null);
    plain.dispose();
  });

  it('reads the cache settings a checkpoint carries (config.json "lowbit"), options override them', async () => {
    const d2 = path.join(dir, 'hf-kv');
    fs.cpSync(hf, d2, { recursive: true });
    const cfg = JSON.parse(fs.readFileSync(path.join(d2, 'config.json'), 'utf8')) as Record<string, unknown>;
    cfg.lowbit = { kv: { bits: 4, axis: 'channel', block: 16 } };
    fs.writeFileSync(path.join(d2, 'config.json'), JSON.stringify(cfg));
    const m = await loadModel(d2);
    assert.deepEqual({ ...must(m.quantization.kv, 'kv'), bytesPerToken: 0, fixedBytes: 0, f32BytesPerToken: 0, f16BytesPerToken: 0 },
      { bits: 4, group: 0, sym: false, axis: 'channel', block: 16, window: 0, rotate: false, from: 'checkpoint', bytesPerToken: 0, fixedBytes: 0, f32BytesPerToken: 0, f16BytesPerToken: 0 });
    m.dispose();
    const off = await loadModel(d2, { kv: null });
    assert.equal(off.quantization.kv, null);
    off.dispose();
    cfg.lowbit = { kv: { bits: 3 } };
    fs.writeFileSync(path.join(d2, 'config.json'), JSON.stringify(cfg));
    await rejectsCode(loadModel(d2), 'LOWBIT_BAD_FORMAT', /lowbit: kv\.bits/);
  });

  it('bad settings are typed errors naming the option', async () => {
    await rejectsCode(loadModel(hf, { kv: { bits: 4, group: 5 } }), 'LOWBIT_INVALID_OPTION', /kv\.group: 5 does not divide the head size 16/);
    await rejectsCode(loadModel(hf, { kv: { bits: 3 as 4 } }), 'LOWBIT_INVALID_OPTION', /kv\.bits/);
    await rejectsCode(loadModel(hf, { kv: { bits: 4, colour: 1 } as unknown as KvCacheOptions }), 'LOWBIT_INVALID_OPTION', /colour/);
    await rejectsCode(loadModel(hf, { kv: { bits: 4, block: 8 } }), 'LOWBIT_INVALID_OPTION', /kv\.block: applies to per-channel keys only/);
    await rejectsCode(loadModel(hf, { kv: { bits: 4, window: 1000 } }), 'LOWBIT_INVALID_OPTION', /kv\.window/);
    await rejectsCode(loadModel(hf, { kv: { bits: 2, group: 2 } }), 'LOWBIT_INVALID_OPTION', /whole number of bytes/);
    // with a window the cache is written in order: going back is refused (start again at 0 is fine)
    const m = await loadModel(hf, { kv: { bits: 4, window: 4 } });
    try {
      await m.forward([1, 2, 3, 4, 5, 6], 0, 1);
      await rejectsCode(m.forward([7], 3, 1), 'LOWBIT_INVALID_OPTION', /written in order/);
      await m.forward([1, 2], 0, 1);
    } finally {
      m.dispose();
    }
  });
});
