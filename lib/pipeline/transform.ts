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
 *   at α = 0.5, which the tests check). α is one number for the model, or searched per layer
 *   (`alpha: 'search'`): for each α of the grid the layer's smoothed weights are fake-quantized (RTN,
 *   the run's quantizer, per module; modules the run keeps stay full precision) into a second native model on the same arrays that quantizes activations
 *   (per token, the run's activation bits), the block runs on the first calibration windows of its
 *   full-precision input, and the α with the least squared error against the full-precision block's
 *   output wins; the layer's own weights are then restored and it runs forward in full precision.
 *
 * The two are not combined: rotation folds the RMSNorm gains into the linears, which undoes the
 * smoothing of their inputs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, optionError } from '../errors';
import { SMOOTH_INPUTS, SMOOTH_GRID, type RotateTransform, type SmoothQuantTransform, type Transform } from '../config/transform';
import type { NormalizedCalibration } from '../config/calibration';
import { calibrationTexts, readCalibrationFile } from '../formats/calib';
import { openSafetensors, writeSafetensors, type TensorEntry } from '../formats/safetensors';
import { readHfConfig, hfConfigToJson } from '../formats/hf-config';
import { writeJsonAtomic } from '../formats/output';
import { rotateRows } from '../ops/rtquant';
import { loadModel } from '../runtime/model';
import { calibrateNormalized, type LayerStats, type LayerTools } from '../runtime/calibrate';
import { normalizeQuantizer, type NormalizedQuantizer } from '../config/quant';
import { quantizeNormalized } from '../ops/quantize';

/** What {@link applyTransforms} did. */
export interface TransformReport {
  transforms: Transform[];
  /** Rotation sizes: n = m · 2^k and whether H_m is a Hadamard matrix (else random orthogonal). */
  rotations?: { name: string; n: number; seed: number }[];
  /** SmoothQuant: the calibration used and the scales' range per input kind. */
  smoothquant?: {
    alpha: number | 'search'; tokens: number; scaleRange: Record<string, [number, number]>;
    /** With `alpha: 'search'`: what was searched and what each layer got. */
    search?: {
      grid: number[]; tokens: number; weights: { bits: number; groupSize: number; sym: boolean }; actBits: number;
      /** Weights the run keeps unquantized, left full precision in the simulation too. */
      keptModules: string[];
      /**
       * Per layer: the α chosen, its block error ‖y − y_fp‖² / ‖y_fp − x‖² (x the block's input), the
       * error at α = 0.5 (null when 0.5 is not in the grid) and at every α of the grid.
       */
      layers: { alpha: number; error: number; errorAtHalf: number | null; errors: number[] }[];
    };
  };
  seconds: number;
}

/** Options of {@link applyTransforms}. */
export interface ApplyTransformsOptions {
  /** Calibration data for smoothquant. */
  calibration?: NormalizedCalibration | null;
  /**
   * The quantization SmoothQuant's α search simulates: the weights' quantizer (RTN stands in for
   * the method) and the activations' bits (per token; the transform's own `actBits` wins).
   * @default W8 per channel, A8
   */
  target?: {
    quantizer: NormalizedQuantizer; actBits: number;
    /** Each weight's own quantizer (recipe overrides), or null for one the run keeps unquantized. @default `quantizer` for all */
    quantizerOf?: (weight: string) => NormalizedQuantizer | null;
  };
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
  const dims: Dims = { dim, hid, H, KVH, hd, L };
  // SmoothQuant's scales, per layer: s (qkv: dim, gate_up: dim, o: kv_dim, down: hid)
  let smooth: LayerScales[] | null = null;
  const st = openSafetensors(src);
  try {
    const get = (n: string): Float32Array => {
      if (!st.has(n)) throw new LowbitError('LOWBIT_BAD_FORMAT', `${src}: ${n} is missing`, { tensor: n });
      return st.toFloat32(n).slice();
    };
    if (sq) {
      if (!opts.calibration) throw optionError('calibration', 'calibration: transform smoothquant needs calibration text (calibration: {file | text}, CLI --calib FILE)');
      smooth = await smoothScales(src, get, sq, opts, dims, report);
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
      push(`${p}.input_layernorm.weight`, [dim], () => Promise.resolve(rot ? new Float32Array(dim).fill(1) : smoothNorm(g1, sm?.qkv)));
      push(`${p}.post_attention_layernorm.weight`, [dim], () => Promise.resolve(rot ? new Float32Array(dim).fill(1) : smoothNorm(g2, sm?.gate_up)));
      for (const k of ['q', 'k', 'v', 'gate', 'up'] as const) {
        const name = `${p}.${HF[k]}.weight`;
        const rows = k === 'q' ? H * hd : k === 'k' || k === 'v' ? KVH * hd : hid;
        push(name, [rows, dim], async () => {
          const w = get(name);
          const gain = k === 'gate' || k === 'up' ? g2 : g1;
          if (rot) for (let r = 0; r < rows; r++) for (let j = 0; j < dim; j++) w[r * dim + j] *= gain[j];
          if (sm) smoothWeight(k, w, sm, dims);
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
        const qd = H * hd;
        if (sm) smoothWeight('o', w, sm, dims);
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
        if (sm) smoothWeight('down', w, sm, dims);
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

type Kind = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down';
const KINDS: readonly Kind[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];
interface Dims { dim: number; hid: number; H: number; KVH: number; hd: number; L: number }
/** SmoothQuant's scales of one layer, per input: s (qkv: dim, gate_up: dim, o: kv_dim, down: hid). */
interface LayerScales { qkv?: Float32Array; gate_up?: Float32Array; o?: Float32Array; down?: Float32Array }

/** A linear weight's shape (rows = out, cols = in). */
function shapeOf(k: Kind, d: Dims): [number, number] {
  const qd = d.H * d.hd, kvd = d.KVH * d.hd;
  return k === 'q' ? [qd, d.dim] : k === 'k' || k === 'v' ? [kvd, d.dim] : k === 'o' ? [d.dim, qd] : k === 'down' ? [d.dim, d.hid] : [d.hid, d.dim];
}

/**
 * Smooth a linear weight (out × in, in place): its columns × s of its input (o's per query head
 * channel from its kv head's scale), and for v and up their rows ÷ s of the input they produce
 * (o's and down's).
 */
function smoothWeight(k: Kind, w: Float32Array, sm: LayerScales, d: Dims): void {
  const [rows, cols] = shapeOf(k, d);
  const colScale = k === 'q' || k === 'k' || k === 'v' ? sm.qkv : k === 'gate' || k === 'up' ? sm.gate_up : k === 'down' ? sm.down : undefined;
  if (colScale) for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) w[r * cols + c] *= colScale[c];
  if (k === 'o' && sm.o) {
    const so = sm.o, group = d.H / d.KVH;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) w[r * cols + c] *= so[Math.floor(c / d.hd / group) * d.hd + (c % d.hd)];
  }
  const rowScale = k === 'v' ? sm.o : k === 'up' ? sm.down : undefined;
  if (rowScale) for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) w[r * cols + c] /= rowScale[r];
}

/** An RMSNorm gain divided by the scales of the input it produces (itself when there are none). */
function smoothNorm(g: Float32Array, s: Float32Array | undefined): Float32Array {
  return s ? g.map((x, j) => x / s[j]) : g;
}

/**
 * SmoothQuant's scales of one layer at α, from its inputs' max |x| and its original weights `w`
 * (not changed). o and down first: their scales divide v's and up's rows, which the q/k/v and
 * gate/up scales then see. `range` collects each input kind's min and max scale.
 */
function layerScales(st: LayerStats, w: (k: Kind) => Float32Array, alpha: number, inputs: readonly string[], d: Dims, range?: Record<string, [number, number]>): LayerScales {
  const { dim, hid, H, KVH, hd } = d, group = H / KVH;
  const scale = (xmax: number, wmax: number, kind: string): number => {
    const v = xmax > 0 && wmax > 0 ? Math.max(1e-5, Math.pow(xmax, alpha) / Math.pow(wmax, 1 - alpha)) : 1;
    if (range) {
      const r = (range[kind] ??= [Infinity, -Infinity]);
      r[0] = Math.min(r[0], v);
      r[1] = Math.max(r[1], v);
    }
    return v;
  };
  // max |w| per input channel, each row first divided by rowDiv[row] when given
  const colMax = (k: Kind, into: Float32Array, rowDiv?: Float32Array) => {
    const a = w(k), [rows, cols] = shapeOf(k, d);
    for (let r = 0; r < rows; r++) {
      const div = rowDiv ? rowDiv[r] : 1;
      for (let c = 0; c < cols; c++) into[c] = Math.max(into[c], Math.abs(a[r * cols + c] / div));
    }
  };
  const e: LayerScales = {};
  if (inputs.includes('o')) {
    const wm = new Float32Array(H * hd);
    colMax('o', wm);
    e.o = Float32Array.from({ length: KVH * hd }, (_, c) => {
      const kvh = Math.floor(c / hd), i = c % hd;
      let xm = 0, m = 0;
      for (let h = kvh * group; h < (kvh + 1) * group; h++) { xm = Math.max(xm, st.o.maxAbs[h * hd + i]); m = Math.max(m, wm[h * hd + i]); }
      return scale(xm, m, 'o');
    });
  }
  if (inputs.includes('down')) {
    const wm = new Float32Array(hid);
    colMax('down', wm);
    e.down = Float32Array.from({ length: hid }, (_, j) => scale(st.down.maxAbs[j], wm[j], 'down'));
  }
  if (inputs.includes('qkv')) {
    const wm = new Float32Array(dim);
    for (const k of ['q', 'k', 'v'] as const) colMax(k, wm, k === 'v' ? e.o : undefined);
    e.qkv = Float32Array.from({ length: dim }, (_, j) => scale(st.attn.maxAbs[j], wm[j], 'qkv'));
  }
  if (inputs.includes('gate_up')) {
    const wm = new Float32Array(dim);
    for (const k of ['gate', 'up'] as const) colMax(k, wm, k === 'up' ? e.down : undefined);
    e.gate_up = Float32Array.from({ length: dim }, (_, j) => scale(st.mlp.maxAbs[j], wm[j], 'gate_up'));
  }
  return e;
}

/** Tokens of each layer's input the α search runs the block on (the first calibration windows). */
const SEARCH_TOKENS = 8192;

/** SmoothQuant's per-layer scales: α given, or searched per layer (see the file header). */
async function smoothScales(src: string, get: (n: string) => Float32Array, sq: SmoothQuantTransform, opts: ApplyTransformsOptions, d: Dims, report: TransformReport): Promise<LayerScales[]> {
  const cal = must(opts.calibration ?? undefined);
  const data = cal.text !== null ? calibrationTexts([cal.text], 'text') : cal.texts !== null ? calibrationTexts(cal.texts, 'texts') : readCalibrationFile(cal.file ?? '');
  const inputs = sq.inputs ?? [...SMOOTH_INPUTS];
  const search = sq.alpha === 'search';
  const quantizer = opts.target?.quantizer ?? normalizeQuantizer({ bits: 8, groupSize: -1, sym: true });
  const quantizerOf = opts.target?.quantizerOf ?? (() => quantizer);
  const actBits = sq.actBits ?? opts.target?.actBits ?? 8;
  const grid = sq.grid ?? [...SMOOTH_GRID];
  // full precision whatever the checkpoint says (its own lowbit.kv / actQuant do not apply here)
  const model = await loadModel(src, { f32Weights: true, threads: opts.threads, kv: null, actQuant: null, ...(cal.tokenizer ? { tokenizer: cal.tokenizer } : {}) });
  const sim = search ? model._withActQuant({ bits: actBits, scheme: 'dynamic' }) : null;
  const chosen: { alpha: number; error: number; errorAtHalf: number | null; errors: number[] }[] = [];
  const seqLen = Math.min(cal.seqLen, model.config.seqLen);
  const windows = Math.max(1, Math.ceil(SEARCH_TOKENS / seqLen));
  let layers: LayerStats[];
  let tokens: number;
  try {
    const onLayer = sim ? async (st: LayerStats, tools: LayerTools) => { chosen.push(await searchLayer(model, sim, st, tools, grid, inputs, d, quantizerOf, seqLen, windows, opts)); } : undefined;
    const r = await calibrateNormalized(model, {
      text: data.texts ? data.texts.join('\n\n') : '', ...(data.ids ? { tokens: Int32Array.from(data.ids.flat()) } : {}), dataSha256: data.sha256,
      samples: cal.samples, seqLen, seed: cal.seed, keepHessians: false, activationBudgetBytes: Infinity, signal: opts.signal, onLayer, onProgress: undefined,
    });
    layers = r.layers;
    tokens = r.tokens;
  } finally {
    sim?.dispose();
    model.dispose();
  }
  const range: Record<string, [number, number]> = {};
  const out = layers.map((st, l) => {
    const p = `model.layers.${l}`;
    const cache = new Map<Kind, Float32Array>();
    const w = (k: Kind) => cache.get(k) ?? cache.set(k, get(`${p}.${HF[k]}.weight`)).get(k) ?? must<Float32Array>(undefined);
    return layerScales(st, w, search ? chosen[l].alpha : (sq.alpha as number), inputs, d, range);
  });
  report.smoothquant = {
    alpha: search ? 'search' : (sq.alpha as number), tokens, scaleRange: range,
    ...(search ? { search: { grid, tokens: Math.min(windows, cal.samples) * seqLen, weights: { bits: quantizer.bits, groupSize: quantizer.groupSize, sym: quantizer.sym }, actBits,
      keptModules: layers.flatMap((_, l) => KINDS.map((k) => `model.layers.${l}.${HF[k]}.weight`)).filter((n) => quantizerOf(n) === null), layers: chosen } } : {}),
  };
  return out;
}

/**
 * One layer's α search: the full-precision block's output on the first `windows` inputs, then for
 * each α the smoothed, fake-quantized weights written into the shared arrays and the block run by
 * `sim` (activations quantized); the layer's weights are restored before returning.
 */
async function searchLayer(model: LanguageModelLike, sim: LanguageModelLike, st: LayerStats, tools: LayerTools, grid: number[], inputs: readonly string[], d: Dims,
  quantizerOf: (weight: string) => NormalizedQuantizer | null, seqLen: number, windows: number, opts: ApplyTransformsOptions): Promise<{ alpha: number; error: number; errorAtHalf: number | null; errors: number[] }> {
  const l = st.layer;
  const live = new Map(KINDS.map((k) => [k, model._linearWeight(l, k)] as const));
  const orig = new Map(KINDS.map((k) => [k, must(live.get(k)).slice()] as const));
  const norms = { attn: model._normWeight(l, 'attn'), ffn: model._normWeight(l, 'ffn') };
  const origNorms = { attn: norms.attn.slice(), ffn: norms.ffn.slice() };
  const vBias = model._linearBias(l, 'v'), origVBias = vBias?.slice();
  const xs: Float32Array[] = [], refs: Float32Array[] = [];
  let refSq = 0;
  await tools.forEachInput(async (x) => {
    const x0 = x.slice();
    xs.push(x0);
    await model._calibrateBlock(l, x, seqLen, {}, opts.signal);
    for (let j = 0; j < x.length; j++) refSq += (x[j] - x0[j]) ** 2;  // the block's own contribution (the residual is exact)
    refs.push(x);
  }, windows);
  const errors: number[] = [];
  try {
    for (const alpha of grid) {
      const sm = layerScales(st, (k) => must(orig.get(k)), alpha, inputs, d);
      for (const k of KINDS) {
        const w = must(orig.get(k)).slice();
        smoothWeight(k, w, sm, d);
        const name = `model.layers.${l}.${HF[k]}.weight`, quantizer = quantizerOf(name);
        if (quantizer) {
          const q = await quantizeNormalized(w, ...shapeOf(k, d), quantizer, { name, dequantize: true, threads: opts.threads, signal: opts.signal });
          must(live.get(k)).set(must(q.dequantized ?? undefined));
        } else {
          must(live.get(k)).set(w);  // the run keeps it unquantized
        }
      }
      norms.attn.set(smoothNorm(origNorms.attn, sm.qkv));
      norms.ffn.set(smoothNorm(origNorms.ffn, sm.gate_up));
      if (vBias && origVBias) vBias.set(sm.o ? origVBias.map((b, r) => b / must(sm.o)[r]) : origVBias);
      let err = 0;
      for (let i = 0; i < xs.length; i++) {
        const y = xs[i].slice();
        await sim._calibrateBlock(l, y, seqLen, {}, opts.signal);
        const ref = refs[i];
        for (let j = 0; j < y.length; j++) err += (y[j] - ref[j]) ** 2;
      }
      errors.push(refSq > 0 ? err / refSq : err);
    }
  } finally {
    for (const k of KINDS) must(live.get(k)).set(must(orig.get(k)));
    norms.attn.set(origNorms.attn);
    norms.ffn.set(origNorms.ffn);
    if (vBias && origVBias) vBias.set(origVBias);
  }
  let best = 0;
  for (let i = 1; i < errors.length; i++) if (errors[i] < errors[best]) best = i;
  const half = grid.indexOf(0.5);
  return { alpha: grid[best], error: errors[best], errorAtHalf: half >= 0 ? errors[half] : null, errors };
}

/** What the α search needs of a loaded model (runtime/model.ts LanguageModel). */
type LanguageModelLike = Pick<Awaited<ReturnType<typeof loadModel>>, '_linearWeight' | '_normWeight' | '_linearBias' | '_calibrateBlock'>;
