/**
 * A slow, deliberately plain Llama forward pass in float64 for tests, written from the model's
 * definition (it does not import lib/ or the addon). Weights are HF-named Float32Arrays,
 * (out, in) row-major; q/k rows are in whatever RoPE order `rope` says.
 *
 *   x = embed[token]
 *   per layer:  h = x + Wo · attn(rope(Wq·n1(x) + bq), rope(Wk·n1(x) + bk), Wv·n1(x) + bv)
 *               x = h + Wdown · (silu(Wgate · n2(h)) ⊙ Wup · n2(h))
 *   logits = Wlm · nf(x)          (Wlm = embed when there is no lm_head.weight)
 *
 *   n(x) = w ⊙ x / sqrt(mean(x²) + eps)
 *   RoPE at position p, inv_freq_i = 1 / theta^(2i/hd), i ∈ [0, hd/2):
 *     'adjacent' rotates the pair (2i, 2i+1), 'half' rotates (i, i + hd/2), by the angle p · inv_freq_i
 *   attention per head: softmax over positions 0…t of q·k / sqrt(hd); query head h reads kv head
 *   floor(h / (nHeads / nKvHeads)).
 */

/** Architecture of the model {@link slowForward} runs. */
export interface SlowConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsEps: number;
  ropeTheta: number;
  rope: 'adjacent' | 'half';
}

/** y[o] = Σ_i W[o, i] · x[i] (+ b[o]), in float64. */
function matvec(w: Float32Array, x: Float64Array, out: number, inp: number, bias?: Float32Array): Float64Array {
  const y = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < inp; i++) s += w[o * inp + i] * x[i];
    y[o] = s + (bias ? bias[o] : 0);
  }
  return y;
}

function rmsnorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = w[i] * x[i] * inv;
  return y;
}

/** Rotate every head of `v` (heads × hd) in place for position `pos`. */
function applyRope(v: Float64Array, heads: number, hd: number, pos: number, theta: number, style: 'adjacent' | 'half'): void {
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd / 2; i++) {
      const angle = pos * (1 / Math.pow(theta, (2 * i) / hd));
      const c = Math.cos(angle), s = Math.sin(angle);
      const a = h * hd + (style === 'adjacent' ? 2 * i : i);
      const b = h * hd + (style === 'adjacent' ? 2 * i + 1 : i + hd / 2);
      const v0 = v[a], v1 = v[b];
      v[a] = v0 * c - v1 * s;
      v[b] = v0 * s + v1 * c;
    }
  }
}

/** Where a test changes what the plain forward computes (a simulated quantized cache, rotations, quantized activations). */
export interface SlowHooks {
  /** Q and K of position `pos` after RoPE (all heads, in place). */
  afterRope?: (q: Float64Array, k: Float64Array, layer: number, pos: number) => void;
  /** The K or V row a query at position `last` reads for position p; rows: every position's exact row. */
  kvRead?: (kind: 'k' | 'v', layer: number, p: number, last: number, rows: Float64Array[]) => Float64Array;
  /** The input of a layer's linear modules as they multiply it. */
  act?: (input: 'qkv' | 'o' | 'gate_up' | 'down', layer: number, x: Float64Array) => Float64Array;
}

/**
 * Logits (tokens.length × vocab, row-major, float64) of every position of `tokens`, run at
 * positions 0 … n−1 from an empty cache.
 */
export function slowForward(cfg: SlowConfig, weights: Map<string, Float32Array>, tokens: ArrayLike<number>, hooks: SlowHooks = {}): Float64Array {
  const { dim, hiddenDim: hid, nLayers, nHeads, nKvHeads, headDim: hd, vocabSize: V, rmsEps, ropeTheta, rope } = cfg;
  const qd = nHeads * hd, kvd = nKvHeads * hd, group = nHeads / nKvHeads;
  const get = (name: string, numel: number): Float32Array => {
    const t = weights.get(name);
    if (!t) throw new Error(`slowForward: missing ${name}`);
    if (t.length !== numel) throw new Error(`slowForward: ${name} has ${t.length} elements, expected ${numel}`);
    return t;
  };
  const opt = (name: string, numel: number): Float32Array | undefined => (weights.has(name) ? get(name, numel) : undefined);
  const n = tokens.length;
  const embed = get('model.embed_tokens.weight', V * dim);
  const xs: Float64Array[] = [];
  for (let t = 0; t < n; t++) {
    const id = tokens[t];
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`slowForward: token ${id} out of range`);
    xs.push(Float64Array.from(embed.subarray(id * dim, (id + 1) * dim)));
  }
  for (let l = 0; l < nLayers; l++) {
    const p = `model.layers.${l}`;
    const wq = get(`${p}.self_attn.q_proj.weight`, qd * dim), bq = opt(`${p}.self_attn.q_proj.bias`, qd);
    const wk = get(`${p}.self_attn.k_proj.weight`, kvd * dim), bk = opt(`${p}.self_attn.k_proj.bias`, kvd);
    const wv = get(`${p}.self_attn.v_proj.weight`, kvd * dim), bv = opt(`${p}.self_attn.v_proj.bias`, kvd);
    const wo = get(`${p}.self_attn.o_proj.weight`, dim * qd);
    const wg = get(`${p}.mlp.gate_proj.weight`, hid * dim), wu = get(`${p}.mlp.up_proj.weight`, hid * dim);
    const wd = get(`${p}.mlp.down_proj.weight`, dim * hid);
    const n1 = get(`${p}.input_layernorm.weight`, dim), n2 = get(`${p}.post_attention_layernorm.weight`, dim);
    // Every position's q, k, v first (k and v are the cache), then causal attention.
    const qs: Float64Array[] = [], ks: Float64Array[] = [], vs: Float64Array[] = [];
    for (let t = 0; t < n; t++) {
      const xn0 = rmsnorm(xs[t], n1, rmsEps);
      const xn = hooks.act ? hooks.act('qkv', l, xn0) : xn0;
      const q = matvec(wq, xn, qd, dim, bq), k = matvec(wk, xn, kvd, dim, bk), v = matvec(wv, xn, kvd, dim, bv);
      applyRope(q, nHeads, hd, t, ropeTheta, rope);
      applyRope(k, nKvHeads, hd, t, ropeTheta, rope);
      hooks.afterRope?.(q, k, l, t);
      qs.push(q);
      ks.push(k);
      vs.push(v);
    }
    for (let t = 0; t < n; t++) {
      const att = new Float64Array(qd);
      for (let h = 0; h < nHeads; h++) {
        const kh = Math.floor(h / group);
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          const kr = hooks.kvRead ? hooks.kvRead('k', l, s, t, ks) : ks[s];
          for (let i = 0; i < hd; i++) dot += qs[t][h * hd + i] * kr[kh * hd + i];
          scores[s] = dot / Math.sqrt(hd);
          if (scores[s] > max) max = scores[s];
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) {
          scores[s] = Math.exp(scores[s] - max);
          sum += scores[s];
        }
        for (let s = 0; s <= t; s++) {
          const a = scores[s] / sum;
          const vr = hooks.kvRead ? hooks.kvRead('v', l, s, t, vs) : vs[s];
          for (let i = 0; i < hd; i++) att[h * hd + i] += a * vr[kh * hd + i];
        }
      }
      const o = matvec(wo, hooks.act ? hooks.act('o', l, att) : att, dim, qd);
      for (let i = 0; i < dim; i++) xs[t][i] += o[i];
      const xn2 = rmsnorm(xs[t], n2, rmsEps);
      const xn = hooks.act ? hooks.act('gate_up', l, xn2) : xn2;
      const g = matvec(wg, xn, hid, dim), u = matvec(wu, xn, hid, dim);
      const act = new Float64Array(hid);
      for (let i = 0; i < hid; i++) act[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
      const d = matvec(wd, hooks.act ? hooks.act('down', l, act) : act, dim, hid);
      for (let i = 0; i < dim; i++) xs[t][i] += d[i];
    }
  }
  const fn = get('model.norm.weight', dim);
  const head = opt('lm_head.weight', V * dim) ?? embed;
  const logits = new Float64Array(n * V);
  for (let t = 0; t < n; t++) logits.set(matvec(head, rmsnorm(xs[t], fn, rmsEps), V, dim), t * V);
  return logits;
}

/** Mean |a − b| over every element (logits): what the quantized-runtime tests bound, robust to a rare code flip. */
export function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`meanAbsDiff: lengths ${a.length} and ${b.length} differ`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

/** max |a − b| / max |b|: the relative error the runtime tests bound. */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxRelError: lengths ${a.length} and ${b.length} differ`);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    if (Number.isNaN(x)) return NaN;
    d = Math.max(d, x);
    m = Math.max(m, Math.abs(b[i]));
  }
  return m === 0 ? d : d / m;
}
