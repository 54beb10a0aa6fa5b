/**
 * Transforms applied to a model's weights before (or instead of) quantization, each exact in full
 * precision, written as a standard Hugging Face checkpoint (F32) tensor by tensor:
 *
 * rotate (QuaRot-style, no learning). Column vectors; Q orthogonal (ops/rtquant.ts: Hadamard ⊗ …):
 *   1. every RMSNorm gain g is folded into the linears that read it: W ← W · diag(g), g ← 1
 *      (q/k/v, gate/up; the final norm into the head), so RMSNorm(Q x) = Q RMSNorm(x) holds;
 *   2. R1 = Q_dim on the residual stream: embeddings e ← Q e; linears reading it W ← W Qᵀ (q, k, v,
 *      gate, up, the head); linears writing it W ← Q W (o, down). The head no longer equals the
 *      embedding: it is written as lm_head (tie_word_embeddings false);
 *   3. R2 = Q_headDim per head on V/O: each kv head's v rows ← Q2 · rows (and its bias), each query
 *      head's o columns ← columns · Q2ᵀ (attention mixes V rows linearly, so O is unchanged);
 *   4. optional R4 (`down: true`, lowbit's runtime only): down_proj ← down_proj · Q4ᵀ with Q4 of the
 *      hidden size; the runtime applies Q4 to down_proj's input (config.json lowbit.rotateDown), so
 *      llama.cpp and transformers would NOT run this checkpoint correctly — off by default.
 *   Without R4 the result loads and runs unchanged anywhere a Llama checkpoint does.
 *   R3 (Q/K after RoPE) is the KV cache's `rotate` option (loadModel kv.rotate, --kv-rotate).
 *
 * smoothquant (Xiao et al.): per input channel j of a linear input X, s_j = max|X_j|^α / max|W_j|^(1−α)
 *   (max over calibration tokens; over every linear reading X), X ← X / s, W ← W · diag(s), folded into
 *   what produces X: the RMSNorm gains for q/k/v and gate/up; v's rows for o (per kv channel: the
 *   query heads of a group share one scale, the max over them); up's rows for down (silu(gate) ⊙ up
 *   is linear in up). The o and down scales are computed first, so the q/k/v and gate/up scales see
 *   v's and up's rows as they will be written (each smoothed channel ends with max|X'_j| = max|W'_j|
 *   at α = 0.5, which the tests check). α is one number for the model (no per-layer search).
 *
 * The two are not combined: rotation folds the RMSNorm gains into the linears, which undoes the
 * smoothing of their inputs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, optionError } from '../errors';
import { SMOOTH_INPUTS, type RotateTransform, type SmoothQuantTransform, type Transform } from '../config/transform';
import type { NormalizedCalibration } from '../config/calibration';
import { calibrationTexts, readCalibrationFile } from '../formats/calib';
import { openSafetensors, writeSafetensors, type TensorEntry } from '../formats/safetensors';
import { readHfConfig, hfConfigToJson } from '../formats/hf-config';
import { writeJsonAtomic } from '../formats/output';
import { rotateRows } from '../ops/rtquant';
import { loadModel } from '../runtime/model';
import { calibrateNormalized, type LayerStats } from '../runtime/calibrate';

/** What {@link applyTransforms} did. */
export interface TransformReport {
  transforms: Transform[];
  /** Rotation sizes: n = m · 2^k and whether H_m is a Hadamard matrix (else random orthogonal). */
  rotations?: { name: string; n: number; seed: number }[];
  /** SmoothQuant: the calibration used and the scales' range per input kind. */
  smoothquant?: { alpha: number; tokens: number; scaleRange: Record<string, [number, number]> };
  seconds: number;
}

/** Options of {@link applyTransforms}. */
export interface ApplyTransformsOptions {
  /** Calibration data for smoothquant. */
  calibration?: NormalizedCalibration | null;
  threads?: number;
  signal?: AbortSignal;
}

const HF = { q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj', gate: 'mlp.gate_proj', up: 'mlp.up_proj', down: 'mlp.down_proj' } as const;

function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

function f32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Apply `transforms` to the HF directory `src`, writing an F32 HF directory `out` (config.json with
 * the lowbit section when R4 is on; tokenizer files copied). Returns what was done.
 */
export async function applyTransforms(src: string, out: string, transforms: Transform[], opts: ApplyTransformsOptions = {}): Promise<TransformReport> {
  const t0 = performance.now();
  const hc = readHfConfig(src);
  const dim = hc.hiddenSize, hid = hc.intermediateSize, H = hc.numHeads, KVH = hc.numKvHeads, hd = hc.headDim, L = hc.numLayers, V = hc.vocabSize;
  const rot = transforms.find((t): t is RotateTransform => t.kind === 'rotate');
  const sq = transforms.find((t): t is SmoothQuantTransform => t.kind === 'smoothquant');
  const report: TransformReport = { transforms, seconds: 0 };
  // SmoothQuant's scales, per layer: s (qkv: dim, gate_up: dim, o: kv_dim, down: hid)
  let smooth: { qkv?: Float32Array; gate_up?: Float32Array; o?: Float32Array; down?: Float32Array }[] | null = null;
  const st = openSafetensors(src);
  try {
    const get = (n: string): Float32Array => {
      if (!st.has(n)) throw new LowbitError('LOWBIT_BAD_FORMAT', `${src}: ${n} is missing`, { tensor: n });
      return st.toFloat32(n).slice();
    };
    if (sq) {
      if (!opts.calibration) throw optionError('calibration', 'calibration: transform smoothquant needs calibration text (calibration: {file | text}, CLI --calib FILE)');
      smooth = await smoothScales(src, get, sq, opts, { dim, hid, H, KVH, hd, L }, report);
    }
    const entries: TensorEntry[] = [];
    const norm = (n: string) => (st.has(n) ? get(n) : null);
    const seed = rot?.seed ?? 1;
    if (rot) report.rotations = [{ name: 'R1 residual', n: dim, seed }, ...(rot.heads !== false ? [{ name: 'R2 per head (v/o)', n: hd, seed: seed + 1 }] : []), ...(rot.down ? [{ name: 'R4 down input (online)', n: hid, seed: seed + 2 }] : [])];
    const rotRows = async (w: Float32Array, rows: number, n: number, s: number) => { await rotateRows(w, rows, n, s, { threads: opts.threads, signal: opts.signal }); };
    const push = (name: string, shape: number[], make: () => Promise<Float32Array>) => {
      entries.push({ name, dtype: 'F32', shape, data: async () => f32Bytes(await make()) });
    };
    const tied = !st.has('lm_head.weight');
    push('model.embed_tokens.weight', [V, dim], async () => {
      const e = get('model.embed_tokens.weight');
      if (rot) await rotRows(e, V, dim, seed);
      return e;
    });
    for (let l = 0; l < L; l++) {
      const p = `model.layers.${l}`;
      const g1 = get(`${p}.input_layernorm.weight`), g2 = get(`${p}.post_attention_layernorm.weight`);
      const sm = smooth?.[l];
      push(`${p}.input_layernorm.weight`, [dim], () => Promise.resolve(rot ? new Float32Array(dim).fill(1) : sm?.qkv ? g1.map((g, j) => g / must(sm.qkv)[j]) : g1));
      push(`${p}.post_attention_layernorm.weight`, [dim], () => Promise.resolve(rot ? new Float32Array(dim).fill(1) : sm?.gate_up ? g2.map((g, j) => g / must(sm.gate_up)[j]) : g2));
      for (const k of ['q', 'k', 'v', 'gate', 'up'] as const) {
        const name = `${p}.${HF[k]}.weight`;
        const rows = k === 'q' ? H * hd : k === 'k' || k === 'v' ? KVH * hd : hid;
        push(name, [rows, dim], async () => {
          const w = get(name);
          const gain = k === 'gate' || k === 'up' ? g2 : g1;
          const s = k === 'gate' || k === 'up' ? sm?.gate_up : sm?.qkv;
          for (let r = 0; r < rows; r++) {
            for (let j = 0; j < dim; j++) {
              if (rot) w[r * dim + j] *= gain[j];
              else if (s) w[r * dim + j] *= s[j];
            }
          }
          if (k === 'v' && sm?.o) for (let r = 0; r < rows; r++) for (let j = 0; j < dim; j++) w[r * dim + j] /= sm.o[r];
          if (k === 'up' && sm?.down) for (let r = 0; r < rows; r++) for (let j = 0; j < dim; j++) w[r * dim + j] /= sm.down[r];
          if (rot) await rotRows(w, rows, dim, seed);  // W Qᵀ: Q on every row
          if (k === 'v' && rot && rot.heads !== false) {
            // R2: Q2 on each kv head's hd rows, column by column
            const t = transpose(w, rows, dim);  // (dim, KVH·hd): each row holds KVH segments of hd
            await rotRows(t, dim * KVH, hd, seed + 1);
            return transpose(t, dim, rows);
          }
          return w;
        });
        for (const b of ['bias'] as const) {
          const bn = `${p}.${HF[k]}.${b}`;
          if (!st.has(bn)) continue;
          push(bn, [rows], async () => {
            const v = get(bn);
            if (k === 'v' && sm?.o) for (let r = 0; r < rows; r++) v[r] /= sm.o[r];
            if (k === 'v' && rot && rot.heads !== false) await rotRows(v, KVH, hd, seed + 1);
            return v;
          });
        }
      }
      const oName = `${p}.${HF.o}.weight`;
      push(oName, [dim, H * hd], async () => {
        let w = get(oName);
        const qd = H * hd, group = H / KVH;
        if (sm?.o) for (let r = 0; r < dim; r++) for (let c = 0; c < qd; c++) w[r * qd + c] *= sm.o[Math.floor(c / hd / group) * hd + (c % hd)];
        if (rot && rot.heads !== false) await rotRows(w, dim * H, hd, seed + 1);  // columns of each head · Q2ᵀ
        if (rot) {
          w = transpose(w, dim, qd);
          await rotRows(w, qd, dim, seed);  // Q W: Q on every column
          w = transpose(w, qd, dim);
        }
        return w;
      });
      const dName = `${p}.${HF.down}.weight`;
      push(dName, [dim, hid], async () => {
        let w = get(dName);
        if (sm?.down) for (let r = 0; r < dim; r++) for (let c = 0; c < hid; c++) w[r * hid + c] *= sm.down[c];
        if (rot?.down) await rotRows(w, dim, hid, seed + 2);  // W Q4ᵀ
        if (rot) {
          w = transpose(w, dim, hid);
          await rotRows(w, hid, dim, seed);
          w = transpose(w, hid, dim);
        }
        return w;
      });
      for (const extra of st.names().filter((n) => n.startsWith(`${p}.`) && !/(layernorm|_proj)\.(weight|bias)$/.test(n))) {
        throw new LowbitError('LOWBIT_UNSUPPORTED', `${src}: transform: ${extra} is not part of a Llama layer lowbit can rotate or smooth`, { tensor: extra });
      }
      for (const k of ['o', 'gate', 'up', 'down'] as const) {
        if (st.has(`${p}.${HF[k]}.bias`)) throw new LowbitError('LOWBIT_UNSUPPORTED', `${src}: transform: ${p}.${HF[k]}.bias is not supported`, { tensor: `${p}.${HF[k]}.bias` });
      }
    }
    const gf = norm('model.norm.weight');
    if (!gf) throw new LowbitError('LOWBIT_BAD_FORMAT', `${src}: model.norm.weight is missing`);
    push('model.norm.weight', [dim], () => Promise.resolve(rot ? new Float32Array(dim).fill(1) : gf));
    if (rot || !tied) {
      push('lm_head.weight', [V, dim], async () => {
        const w = get(tied ? 'model.embed_tokens.weight' : 'lm_head.weight');
        if (rot) {
          for (let r = 0; r < V; r++) for (let j = 0; j < dim; j++) w[r * dim + j] *= gf[j];
          await rotRows(w, V, dim, seed);
        }
        return w;
      });
    }
    fs.mkdirSync(out, { recursive: true });
    await writeSafetensors(out, entries, { metadata: { format: 'pt', lowbit_transforms: JSON.stringify(transforms) }, signal: opts.signal });
  } finally {
    st.close();
  }
  const cfg = hfConfigToJson(hc);
  cfg.torch_dtype = 'float32';
  if (rot) cfg.tie_word_embeddings = false;
  const prev = (typeof cfg.lowbit === 'object' && cfg.lowbit !== null ? cfg.lowbit : {}) as Record<string, unknown>;
  const lowbit: Record<string, unknown> = { ...prev, transforms };
  if (rot?.down) lowbit.rotateDown = { seed: (rot.seed ?? 1) + 2 };
  cfg.lowbit = lowbit;
  await writeJsonAtomic(path.join(out, 'config.json'), cfg);
  for (const f of ['tokenizer.json', 'tokenizer.bin', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) {
    if (fs.existsSync(path.join(src, f))) fs.copyFileSync(path.join(src, f), path.join(out, f));
  }
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

function must<T>(x: T | undefined): T {
  if (x === undefined) throw new LowbitError('LOWBIT_INTERNAL', 'transform: a scale vector is missing');
  return x;
}

/** SmoothQuant's per-layer scales from max |x| over the calibration text and max |w| per input channel. */
async function smoothScales(src: string, get: (n: string) => Float32Array, sq: SmoothQuantTransform, opts: ApplyTransformsOptions,
  s: { dim: number; hid: number; H: number; KVH: number; hd: number; L: number }, report: TransformReport) {
  const cal = must(opts.calibration ?? undefined);
  const data = cal.text !== null ? calibrationTexts([cal.text], 'text') : cal.texts !== null ? calibrationTexts(cal.texts, 'texts') : readCalibrationFile(cal.file ?? '');
  const model = await loadModel(src, { f32Weights: true, threads: opts.threads, ...(cal.tokenizer ? { tokenizer: cal.tokenizer } : {}) });
  let layers: LayerStats[];
  let tokens: number;
  try {
    const r = await calibrateNormalized(model, {
      text: data.texts ? data.texts.join('\n\n') : '', ...(data.ids ? { tokens: Int32Array.from(data.ids.flat()) } : {}), dataSha256: data.sha256,
      samples: cal.samples, seqLen: Math.min(cal.seqLen, model.config.seqLen), seed: cal.seed, keepHessians: false, activationBudgetBytes: Infinity, signal: opts.signal, onLayer: undefined, onProgress: undefined,
    });
    layers = r.layers;
    tokens = r.tokens;
  } finally {
    model.dispose();
  }
  const alpha = sq.alpha ?? 0.5;
  const inputs = sq.inputs ?? [...SMOOTH_INPUTS];
  const range: Record<string, [number, number]> = {};
  const scale = (xmax: number, wmax: number, kind: string): number => {
    const v = xmax > 0 && wmax > 0 ? Math.max(1e-5, Math.pow(xmax, alpha) / Math.pow(wmax, 1 - alpha)) : 1;
    const r = (range[kind] ??= [Infinity, -Infinity]);
    r[0] = Math.min(r[0], v);
    r[1] = Math.max(r[1], v);
    return v;
  };
  const colMax = (w: Float32Array, rows: number, cols: number, into: Float32Array) => {
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) into[c] = Math.max(into[c], Math.abs(w[r * cols + c]));
  };
  const out: { qkv?: Float32Array; gate_up?: Float32Array; o?: Float32Array; down?: Float32Array }[] = [];
  const { dim, hid, H, KVH, hd } = s, group = H / KVH;
  const divRows = (w: Float32Array, by: Float32Array | undefined, cols: number) => {
    if (by) for (let r = 0; r < by.length; r++) for (let c = 0; c < cols; c++) w[r * cols + c] /= by[r];
    return w;
  };
  for (let l = 0; l < s.L; l++) {
    const p = `model.layers.${l}`, st = layers[l];
    const e: (typeof out)[number] = {};
    // o and down first: their scales divide v's and up's rows, which the q/k/v and gate/up scales then see
    if (inputs.includes('o')) {
      const wm = new Float32Array(H * hd);
      colMax(get(`${p}.${HF.o}.weight`), dim, H * hd, wm);
      e.o = Float32Array.from({ length: KVH * hd }, (_, c) => {
        const kvh = Math.floor(c / hd), i = c % hd;
        let xm = 0, w = 0;
        for (let h = kvh * group; h < (kvh + 1) * group; h++) { xm = Math.max(xm, st.o.maxAbs[h * hd + i]); w = Math.max(w, wm[h * hd + i]); }
        return scale(xm, w, 'o');
      });
    }
    if (inputs.includes('down')) {
      const wm = new Float32Array(hid);
      colMax(get(`${p}.${HF.down}.weight`), dim, hid, wm);
      e.down = Float32Array.from({ length: hid }, (_, j) => scale(st.down.maxAbs[j], wm[j], 'down'));
    }
    if (inputs.includes('qkv')) {
      const wm = new Float32Array(dim);
      for (const k of ['q', 'k', 'v'] as const) colMax(divRows(get(`${p}.${HF[k]}.weight`), k === 'v' ? e.o : undefined, dim), k === 'q' ? H * hd : KVH * hd, dim, wm);
      e.qkv = Float32Array.from({ length: dim }, (_, j) => scale(st.attn.maxAbs[j], wm[j], 'qkv'));
    }
    if (inputs.includes('gate_up')) {
      const wm = new Float32Array(dim);
      for (const k of ['gate', 'up'] as const) colMax(divRows(get(`${p}.${HF[k]}.weight`), k === 'up' ? e.down : undefined, dim), hid, dim, wm);
      e.gate_up = Float32Array.from({ length: dim }, (_, j) => scale(st.mlp.maxAbs[j], wm[j], 'gate_up'));
    }
    out.push(e);
  }
  report.smoothquant = { alpha, tokens, scaleRange: range };
  return out;
}
