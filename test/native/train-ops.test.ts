/**
 * The training engine's ops (native/train/ops.h), each forward and backward:
 * - against float64 finite differences of L = Σ dy ⊙ f(x) (the backward is ∂L/∂inputs), with the
 *   forward written here in float64 from each op's definition (linear, RMSNorm, RoPE, causal GQA
 *   attention, SwiGLU, cross-entropy, KL to a teacher);
 * - the fast, threaded form against the plain reference on fresh random inputs: odd sizes, one row,
 *   GQA ratios 1, 2 and 3;
 * - AdamW against the update written out in float64; Σ x² the same for any thread count.
 */
import { strict as assert } from 'node:assert';
import { trainOp, adamwStep, sumSquares } from '../../lib/ops/train';
import { Rng, testSeed } from '../helpers/rng';

const f32 = (rng: Rng, n: number, s = 1) => Float32Array.from({ length: n }, () => s * rng.normal());

/** max |a − b| / max |b|: how far a gradient is from the finite-difference one, on the gradient's scale. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(m, 1e-12);
}

/**
 * ∂L/∂x[i] by central differences for up to `count` indices (all when fewer), where `loss` reads
 * x (float64 copy) and returns L in float64.
 */
function fd(x: Float32Array, loss: (x: Float64Array) => number, rng: Rng, count = 24, h = 1e-4): { idx: number[]; g: number[] } {
  const idx = x.length <= count ? Array.from({ length: x.length }, (_, i) => i) : Array.from({ length: count }, () => rng.int(0, x.length - 1));
  const base = Float64Array.from(x);
  const g = idx.map((i) => {
    const xp = base.slice(), xm = base.slice();
    xp[i] += h;
    xm[i] -= h;
    return (loss(xp) - loss(xm)) / (2 * h);
  });
  return { idx, g };
}

const pick = (a: Float32Array, idx: number[]) => idx.map((i) => a[i]);
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * b[i]; return s; };

// float64 forwards, from the definitions
function linear64(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | undefined, n: number, inp: number, out: number): Float64Array {
  const y = new Float64Array(n * out);
  for (let t = 0; t < n; t++) for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0;
    for (let i = 0; i < inp; i++) s += x[t * inp + i] * w[o * inp + i];
    y[t * out + o] = s;
  }
  return y;
}
function rmsnorm64(x: ArrayLike<number>, g: ArrayLike<number>, n: number, d: number, eps: number): Float64Array {
  const y = new Float64Array(n * d);
  for (let t = 0; t < n; t++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[t * d + i] ** 2;
    const r = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) y[t * d + i] = g[i] * x[t * d + i] * r;
  }
  return y;
}
function rope64(x: ArrayLike<number>, n: number, heads: number, hd: number, pos: Int32Array, inv: Float32Array, style: number): Float64Array {
  const y = Float64Array.from(x), half = hd / 2;
  for (let t = 0; t < n; t++) for (let i = 0; i < half; i++) {
    const a = pos[t] * inv[i], c = Math.cos(a), s = Math.sin(a);
    const i0 = style === 0 ? 2 * i : i, i1 = style === 0 ? 2 * i + 1 : i + half;
    for (let h = 0; h < heads; h++) {
      const o = t * heads * hd + h * hd, v0 = y[o + i0], v1 = y[o + i1];
      y[o + i0] = v0 * c - v1 * s;
      y[o + i1] = v0 * s + v1 * c;
    }
  }
  return y;
}
function attention64(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, T: number, H: number, KVH: number, hd: number): Float64Array {
  const out = new Float64Array(T * H * hd), group = H / KVH, qd = H * hd, kvd = KVH * hd;
  for (let h = 0; h < H; h++) {
    const kh = Math.floor(h / group);
    for (let t = 0; t < T; t++) {
      const s = Array.from({ length: t + 1 }, (_, p) => { let d = 0; for (let i = 0; i < hd; i++) d += q[t * qd + h * hd + i] * k[p * kvd + kh * hd + i]; return d / Math.sqrt(hd); });
      const mx = Math.max(...s), e = s.map((x) => Math.exp(x - mx)), z = e.reduce((a, b) => a + b, 0);
      for (let p = 0; p <= t; p++) for (let i = 0; i < hd; i++) out[t * qd + h * hd + i] += (e[p] / z) * v[p * kvd + kh * hd + i];
    }
  }
  return out;
}
function logSoftmax64(z: ArrayLike<number>, t: number, V: number): Float64Array {
  const row = Float64Array.from({ length: V }, (_, j) => z[t * V + j]);
  const mx = Math.max(...row), lse = mx + Math.log(row.reduce((a, x) => a + Math.exp(x - mx), 0));
  return row.map((x) => x - lse);
}

describe('training ops: backward against float64 finite differences, fast against reference', function () {
  this.timeout(120000);

  for (const [n, inp, out] of [[1, 5, 3], [7, 13, 9], [33, 20, 17]]) {
    it(`linear n=${n} in=${inp} out=${out}: dx, dW, db`, () => {
      const seed = testSeed(n * 100 + inp), rng = new Rng(seed);
      const x = f32(rng, n * inp), w = f32(rng, out * inp, 0.3), b = f32(rng, out, 0.3), dy = f32(rng, n * out);
      const r = trainOp('linear', { x, w, b, dy, n, in: inp, out }, 'ref');
      assert.ok(relErr(r.y, linear64(x, w, b, n, inp, out)) < 1e-5, `[seed ${seed}] y`);
      const gx = fd(x, (xx) => dot(dy, linear64(xx, w, b, n, inp, out)), rng);
      assert.ok(relErr(pick(r.dx, gx.idx), gx.g) < 1e-3, `[seed ${seed}] dx ${relErr(pick(r.dx, gx.idx), gx.g)}`);
      const gw = fd(w, (ww) => dot(dy, linear64(x, ww, b, n, inp, out)), rng);
      assert.ok(relErr(pick(r.dw, gw.idx), gw.g) < 1e-3, `[seed ${seed}] dW`);
      const gb = fd(b, (bb) => dot(dy, linear64(x, w, bb, n, inp, out)), rng);
      assert.ok(relErr(pick(r.db, gb.idx), gb.g) < 1e-3, `[seed ${seed}] db`);
      const f = trainOp('linear', { x, w, b, dy, n, in: inp, out }, 'fast');
      for (const k of ['y', 'dx', 'dw', 'db'] as const) assert.ok(relErr(f[k], r[k]) < 1e-5, `[seed ${seed}] fast ${k}: ${relErr(f[k], r[k])}`);
    });
  }

  for (const [n, d] of [[1, 7], [9, 32], [17, 50]]) {
    it(`rmsnorm n=${n} d=${d}: dx, dg`, () => {
      const seed = testSeed(n * 7 + d), rng = new Rng(seed), eps = 1e-5;
      const x = f32(rng, n * d), g = Float32Array.from({ length: d }, () => 1 + 0.3 * rng.normal()), dy = f32(rng, n * d);
      const r = trainOp('rmsnorm', { x, g, dy, n, d, eps }, 'ref');
      assert.ok(relErr(r.y, rmsnorm64(x, g, n, d, eps)) < 1e-5, `[seed ${seed}] y`);
      const gx = fd(x, (xx) => dot(dy, rmsnorm64(xx, g, n, d, eps)), rng);
      assert.ok(relErr(pick(r.dx, gx.idx), gx.g) < 1e-3, `[seed ${seed}] dx ${relErr(pick(r.dx, gx.idx), gx.g)}`);
      const gg = fd(g, (gg2) => dot(dy, rmsnorm64(x, gg2, n, d, eps)), rng);
      assert.ok(relErr(pick(r.dg, gg.idx), gg.g) < 1e-3, `[seed ${seed}] dg`);
      const f = trainOp('rmsnorm', { x, g, dy, n, d, eps }, 'fast');
      for (const k of ['y', 'dx', 'dg'] as const) assert.ok(relErr(f[k], r[k]) < 1e-6, `[seed ${seed}] fast ${k}`);
    });
  }

  for (const style of [0, 1]) {
    it(`rope (${style === 0 ? 'adjacent pairs' : 'halves'}): forward as defined; the backward is the inverse rotation`, () => {
      const seed = testSeed(31 + style), rng = new Rng(seed);
      const n = 6, heads = 3, hd = 8;
      const pos = Int32Array.from({ length: n }, () => rng.int(0, 300));
      const inv = Float32Array.from({ length: hd / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / hd));
      const x = f32(rng, n * heads * hd), dy = f32(rng, n * heads * hd);
      const y = x.slice();
      trainOp('rope', { x: y, n, heads, hd, pos, invFreq: inv, style, inverse: false }, 'ref');
      assert.ok(relErr(y, rope64(x, n, heads, hd, pos, inv, style)) < 1e-5, `[seed ${seed}] forward`);
      const dx = dy.slice();
      trainOp('rope', { x: dx, n, heads, hd, pos, invFreq: inv, style, inverse: true }, 'fast');
      const gx = fd(x, (xx) => dot(dy, rope64(xx, n, heads, hd, pos, inv, style)), rng, 40);
      assert.ok(relErr(pick(dx, gx.idx), gx.g) < 1e-3, `[seed ${seed}] dx`);
    });
  }

  for (const [T, H, KVH, hd] of [[1, 2, 2, 4], [5, 4, 2, 6], [9, 6, 2, 4], [7, 3, 1, 8]]) {
    it(`causal attention T=${T} heads ${H}/${KVH} hd=${hd}: dq, dk, dv`, () => {
      const seed = testSeed(T * 1000 + H * 10 + KVH), rng = new Rng(seed);
      const q = f32(rng, T * H * hd), k = f32(rng, T * KVH * hd), v = f32(rng, T * KVH * hd), dout = f32(rng, T * H * hd);
      const r = trainOp('attention', { q, k, v, dout, T, H, KVH, hd }, 'ref');
      assert.ok(relErr(r.out, attention64(q, k, v, T, H, KVH, hd)) < 1e-5, `[seed ${seed}] out`);
      const L = (qq: ArrayLike<number>, kk: ArrayLike<number>, vv: ArrayLike<number>) => dot(dout, attention64(qq, kk, vv, T, H, KVH, hd));
      const gq = fd(q, (x) => L(x, k, v), rng), gk = fd(k, (x) => L(q, x, v), rng), gv = fd(v, (x) => L(q, k, x), rng);
      assert.ok(relErr(pick(r.dq, gq.idx), gq.g) < 1e-3, `[seed ${seed}] dq ${relErr(pick(r.dq, gq.idx), gq.g)}`);
      assert.ok(relErr(pick(r.dk, gk.idx), gk.g) < 1e-3, `[seed ${seed}] dk ${relErr(pick(r.dk, gk.idx), gk.g)}`);
      assert.ok(relErr(pick(r.dv, gv.idx), gv.g) < 1e-3, `[seed ${seed}] dv`);
      const f = trainOp('attention', { q, k, v, dout, T, H, KVH, hd }, 'fast');
      for (const key of ['out', 'dq', 'dk', 'dv'] as const) assert.deepEqual(f[key], r[key], `[seed ${seed}] fast ${key} (the same arithmetic per head)`);
    });
  }

  it('swiglu: da, du', () => {
    const seed = testSeed(77), rng = new Rng(seed), n = 37;
    const a = f32(rng, n, 2), u = f32(rng, n), dh = f32(rng, n);
    const r = trainOp('swiglu', { a, u, dh, n }, 'ref');
    const f64 = (aa: ArrayLike<number>, uu: ArrayLike<number>) => Float64Array.from({ length: n }, (_, i) => (aa[i] / (1 + Math.exp(-aa[i]))) * uu[i]);
    assert.ok(relErr(r.h, f64(a, u)) < 1e-6);
    const ga = fd(a, (x) => dot(dh, f64(x, u)), rng, n), gu = fd(u, (x) => dot(dh, f64(a, x)), rng, n);
    assert.ok(relErr(pick(r.da, ga.idx), ga.g) < 1e-4, `[seed ${seed}] da`);
    assert.ok(relErr(pick(r.du, gu.idx), gu.g) < 1e-4, `[seed ${seed}] du`);
  });

  it('cross-entropy (ignored rows) and KL to a teacher: loss and dlogits', () => {
    const seed = testSeed(91), rng = new Rng(seed), n = 5, V = 11, scale = 0.25;
    const z = f32(rng, n * V, 2), teacher = f32(rng, n * V, 2);
    const targets = Int32Array.from([3, -1, 0, 10, 7]);
    const ce = (zz: ArrayLike<number>) => { let s = 0; for (let t = 0; t < n; t++) if (targets[t] >= 0) s -= logSoftmax64(zz, t, V)[targets[t]]; return s; };
    const kl = (zz: ArrayLike<number>) => {
      let s = 0;
      for (let t = 0; t < n; t++) { const lt = logSoftmax64(teacher, t, V), ls = logSoftmax64(zz, t, V); for (let j = 0; j < V; j++) s += Math.exp(lt[j]) * (lt[j] - ls[j]); }
      return s;
    };
    for (const [op, L] of [['crossEntropy', ce], ['klTeacher', kl]] as const) {
      const r = op === 'crossEntropy' ? trainOp(op, { logits: z, targets, n, V, scale }, 'ref') : trainOp(op, { logits: z, teacher, n, V, scale }, 'ref');
      assert.ok(Math.abs(r.loss - L(z)) < 1e-9 * Math.max(1, L(z)), `[seed ${seed}] ${op} loss ${r.loss} vs ${L(z)}`);
      const g = fd(z, L, rng, n * V);
      assert.ok(relErr(pick(r.dlogits, g.idx), g.g.map((x) => x * scale)) < 1e-4, `[seed ${seed}] ${op} dlogits`);
    }
  });

  it('AdamW: the update written out in float64 (decoupled decay, bias correction); Σ x² in double', () => {
    const seed = testSeed(5), rng = new Rng(seed), n = 70001;
    const p = f32(rng, n), g = f32(rng, n), m = f32(rng, n, 0.1), v = Float32Array.from({ length: n }, () => Math.abs(rng.normal()) * 0.01);
    const h = { lr: 3e-3, b1: 0.9, b2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 7 };
    const p0 = p.slice(), m0 = m.slice(), v0 = v.slice();
    adamwStep(p, g, m, v, h);
    for (const i of [0, 1, 12345, n - 1]) {
      const mi = h.b1 * m0[i] + (1 - h.b1) * g[i], vi = h.b2 * v0[i] + (1 - h.b2) * g[i] ** 2;
      const want = p0[i] * (1 - h.lr * h.weightDecay) - (h.lr * (mi / (1 - h.b1 ** h.step))) / (Math.sqrt(vi / (1 - h.b2 ** h.step)) + h.eps);
      assert.ok(Math.abs(p[i] - want) < 1e-6 * Math.max(1, Math.abs(want)), `[seed ${seed}] p[${i}] ${p[i]} vs ${want}`);
    }
    let s = 0;
    for (const x of g) s += x * x;
    assert.ok(Math.abs(sumSquares(g) - s) < 1e-9 * s);
    assert.equal(sumSquares(g, { threads: 1 }), sumSquares(g, { threads: 2 }));
  });
});
