/**
 * The quantized KV cache's attention (native/runtime/kv_cache.h) against a plain TS attention whose
 * rows come from an independent simulation of the cache (test/helpers/kv-sim.ts), on fresh random
 * q/k/v: the same f32 inputs give the same codes, so the two agree to float rounding (1e-5 of the
 * output's scale) for every setting — 8/4/2 bits, groups, sym/asym, per-token and per-channel K with
 * odd block sizes, windows — whether the sequence arrives in one call (GEMM path), token by token
 * (decode path) or in uneven calls, in 'fast' and 'ref' modes; GQA with 3 query heads per kv head.
 */
import { strict as assert } from 'node:assert';
import { createKvCache, type KernelModeOption } from '../../lib/ops/rtquant';
import { KvSim, type KvSimOptions } from '../helpers/kv-sim';
import { testSeed, withSeed, type Rng } from '../helpers/rng';

const H = 6, KVH = 2, LAYERS = 2;

function plainAttention(q: Float32Array[], k: Float64Array[], v: Float64Array[], hd: number, sim: KvSim, layer: number): Float64Array[] {
  const out: Float64Array[] = [];
  const group = H / KVH;
  for (let t = 0; t < q.length; t++) {
    const o = new Float64Array(H * hd);
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / group);
      const sc = new Float64Array(t + 1);
      let mx = -Infinity;
      for (let p = 0; p <= t; p++) {
        const kr = sim.read('k', layer, p, t, k);
        let d = 0;
        for (let i = 0; i < hd; i++) d += q[t][h * hd + i] * kr[kh * hd + i];
        sc[p] = d / Math.sqrt(hd);
        mx = Math.max(mx, sc[p]);
      }
      let sum = 0;
      for (let p = 0; p <= t; p++) { sc[p] = Math.exp(sc[p] - mx); sum += sc[p]; }
      for (let p = 0; p <= t; p++) {
        const vr = sim.read('v', layer, p, t, v);
        for (let i = 0; i < hd; i++) o[h * hd + i] += (sc[p] / sum) * vr[kh * hd + i];
      }
    }
    out.push(o);
  }
  return out;
}

function rows(rng: Rng, n: number, width: number, outliers: boolean): Float32Array[] {
  const hot = new Set<number>();
  if (outliers) for (let i = 0; i < 3; i++) hot.add(rng.int(0, width - 1));
  return Array.from({ length: n }, () => Float32Array.from({ length: width }, (_, i) => rng.normal() * (hot.has(i) ? 6 : 1)));
}

describe('quantized KV cache attention (runtime/kv_cache.h)', () => {
  const CASES: (Partial<KvSimOptions> & { bits: number; hd: number })[] = [
    { bits: 8, hd: 16 }, { bits: 4, hd: 16 }, { bits: 2, hd: 16 }, { bits: 4, hd: 32, group: 8 }, { bits: 2, hd: 12, group: 4, sym: true },
    { bits: 4, hd: 16, sym: true }, { bits: 4, hd: 16, axis: 'channel', block: 8 }, { bits: 2, hd: 8, axis: 'channel', block: 5 },
    { bits: 8, hd: 16, axis: 'channel', block: 1 }, { bits: 4, hd: 16, window: 7 }, { bits: 4, hd: 24, axis: 'channel', block: 6, window: 3, group: 8 },
    { bits: 2, hd: 16, window: 1 },
  ];
  for (const c of CASES) {
    it(`equals the plain attention over simulated rows: ${JSON.stringify(c)}`, async () => {
      const o: KvSimOptions = { bits: c.bits, group: c.group ?? 0, sym: c.sym ?? false, axis: c.axis ?? 'token', block: c.block ?? 32, window: c.window ?? 0, headDim: c.hd };
      await withSeed(testSeed(c.bits * 100 + c.hd + (c.block ?? 0) + (c.window ?? 0)), (rng) => {
        const P = 41, hd = c.hd;
        for (const [mode, cuts] of [['fast', [P]], ['fast', Array(P).fill(1) as number[]], ['fast', [3, 1, 20, 17]], ['ref', [18, 23]], ['ref', [1, 2, 38]]] as [KernelModeOption, number[]][]) {
          const cache = createKvCache({ layers: LAYERS, seqLen: 64, nHeads: H, nKvHeads: KVH, headDim: hd }, o);
          for (let layer = 0; layer < LAYERS; layer++) {
            const q = rows(rng, P, H * hd, false), k = rows(rng, P, KVH * hd, true), v = rows(rng, P, KVH * hd, false);
            const sim = new KvSim(o);
            const want = plainAttention(q, k.map((r) => Float64Array.from(r)), v.map((r) => Float64Array.from(r)), hd, sim, layer);
            let p0 = 0;
            for (const n of cuts) {
              const cat = (a: Float32Array[]) => { const x = new Float32Array(n * a[0].length); for (let i = 0; i < n; i++) x.set(a[p0 + i], i * a[0].length); return x; };
              const out = new Float32Array(n * H * hd);
              cache.attend(layer, cat(q), cat(k), cat(v), n, p0, out, mode);
              for (let t = 0; t < n; t++) for (let i = 0; i < H * hd; i++) {
                const w = want[p0 + t][i];
                assert.ok(Math.abs(out[t * H * hd + i] - w) < 1e-5 * 6, `${String(mode)} cuts ${cuts.length} layer ${layer} pos ${p0 + t} [${i}]: ${out[t * H * hd + i]} vs ${w}`);
              }
              p0 += n;
            }
          }
        }
      });
    });
  }

  it('bytes per position and the fixed ring follow the layout', () => {
    const c = createKvCache({ layers: 3, seqLen: 64, nHeads: 4, nKvHeads: 2, headDim: 32 }, { bits: 4, group: 8, sym: false, axis: 'channel', block: 16, window: 20 });
    const kvd = 64;
    assert.equal(c.bytesPerToken, 3 * (2 * kvd * 0.5 + (kvd / 8) * 4 + (kvd * 4) / 16));
    assert.equal(c.fixedBytes, 3 * 20 * kvd * 4 * 2);
  });
});
