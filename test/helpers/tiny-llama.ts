/**
 * Tiny random Llama models for runtime tests, written byte by byte from docs/formats.md (§8.1
 * llama2.c v0, §8.4 tokenizer.bin, §3 Hugging Face directories with §3.3's RoPE row permutation).
 * Only writeSafetensors comes from lib/ (its own format has its own tests).
 *
 * Weights are generated in adjacent-pair RoPE order (llama2.c's); {@link toRotateHalf} gives the
 * HF order.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSafetensors, type TensorEntry } from '../../lib/formats/safetensors';
import { writeLlama2cTokenizer } from '../../lib/formats/llama2c';
import type { Rng } from './rng';
import type { SlowConfig } from './slow-forward';
import { must } from './assert';

export interface TinyShape {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Context (llama2.c seq_len, HF max_position_embeddings). */
  seqLen: number;
  rmsEps: number;
  ropeTheta: number;
  /** Classifier = embedding (no lm_head.weight). */
  tied: boolean;
  /** q/k/v biases (Qwen2). */
  biases: boolean;
}

export interface TinyModel {
  shape: TinyShape;
  /** HF names, q/k rows (and biases) in adjacent-pair order. */
  weights: Map<string, Float32Array>;
  /** Row-major shape of each weight. */
  shapes: Map<string, number[]>;
}

/** The slow forward's config for `s` in the given RoPE order. */
export function slowConfig(s: TinyShape, rope: 'adjacent' | 'half'): SlowConfig {
  return { dim: s.dim, hiddenDim: s.hiddenDim, nLayers: s.nLayers, nHeads: s.nHeads, nKvHeads: s.nKvHeads, headDim: s.headDim,
    vocabSize: s.vocabSize, rmsEps: s.rmsEps, ropeTheta: s.ropeTheta, rope };
}

/** Random weights: N(0, 1) embeddings, N(0, 1/in) matrices, norms 1 + N(0, 0.2²), biases N(0, 0.3²). */
export function randomTinyModel(rng: Rng, s: TinyShape): TinyModel {
  const weights = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  const add = (name: string, shape: number[], gen: () => number) => {
    const a = new Float32Array(shape.reduce((x, y) => x * y, 1));
    for (let i = 0; i < a.length; i++) a[i] = gen();
    weights.set(name, a);
    shapes.set(name, shape);
  };
  const mat = (name: string, out: number, inp: number) => { add(name, [out, inp], () => rng.normal() / Math.sqrt(inp)); };
  const norm = (name: string) => { add(name, [s.dim], () => 1 + 0.2 * rng.normal()); };
  const qd = s.nHeads * s.headDim, kvd = s.nKvHeads * s.headDim;
  add('model.embed_tokens.weight', [s.vocabSize, s.dim], () => rng.normal());
  for (let l = 0; l < s.nLayers; l++) {
    const p = `model.layers.${l}`;
    norm(`${p}.input_layernorm.weight`);
    mat(`${p}.self_attn.q_proj.weight`, qd, s.dim);
    mat(`${p}.self_attn.k_proj.weight`, kvd, s.dim);
    mat(`${p}.self_attn.v_proj.weight`, kvd, s.dim);
    if (s.biases) {
      add(`${p}.self_attn.q_proj.bias`, [qd], () => 0.3 * rng.normal());
      add(`${p}.self_attn.k_proj.bias`, [kvd], () => 0.3 * rng.normal());
      add(`${p}.self_attn.v_proj.bias`, [kvd], () => 0.3 * rng.normal());
    }
    mat(`${p}.self_attn.o_proj.weight`, s.dim, qd);
    norm(`${p}.post_attention_layernorm.weight`);
    mat(`${p}.mlp.gate_proj.weight`, s.hiddenDim, s.dim);
    mat(`${p}.mlp.up_proj.weight`, s.hiddenDim, s.dim);
    mat(`${p}.mlp.down_proj.weight`, s.dim, s.hiddenDim);
  }
  norm('model.norm.weight');
  if (!s.tied) mat('lm_head.weight', s.vocabSize, s.dim);
  return { shape: s, weights, shapes };
}

/**
 * Adjacent-pair → rotate-half (formats.md §3.3): hf_row(h, t·hd/2 + i) = src_row(h, 2i + t), per
 * head, for a (heads·hd, cols) matrix (cols = 1 for a bias).
 */
export function permuteRows(w: Float32Array, heads: number, hd: number, cols: number): Float32Array {
  if (w.length !== heads * hd * cols) throw new Error(`permuteRows: ${w.length} != ${heads}·${hd}·${cols}`);
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd / 2; i++) {
      for (let t = 0; t < 2; t++) {
        const dst = h * hd + t * (hd / 2) + i, src = h * hd + 2 * i + t;
        for (let c = 0; c < cols; c++) out[dst * cols + c] = w[src * cols + c];
      }
    }
  }
  return out;
}

/** The weights with q/k rows and q/k biases in rotate-half (HF) order. */
export function toRotateHalf(m: TinyModel): Map<string, Float32Array> {
  const s = m.shape;
  const out = new Map<string, Float32Array>();
  for (const [name, w] of m.weights) {
    let v = w;
    if (/\.q_proj\.weight$/.test(name)) v = permuteRows(w, s.nHeads, s.headDim, s.dim);
    else if (/\.k_proj\.weight$/.test(name)) v = permuteRows(w, s.nKvHeads, s.headDim, s.dim);
    else if (/\.q_proj\.bias$/.test(name)) v = permuteRows(w, s.nHeads, s.headDim, 1);
    else if (/\.k_proj\.bias$/.test(name)) v = permuteRows(w, s.nKvHeads, s.headDim, 1);
    out.set(name, v);
  }
  return out;
}

/** Write `m` as a llama2.c legacy (v0) file (§8.1): 28-byte header, arrays in order, RoPE tables. */
export function writeLlama2cV0(file: string, m: TinyModel): void {
  const s = m.shape;
  if (s.headDim * s.nHeads !== s.dim || s.biases) throw new Error('writeLlama2cV0: llama2.c needs hd = dim / heads and no biases');
  const parts: Float32Array[] = [];
  const w = (name: string) => {
    const t = m.weights.get(name);
    if (!t) throw new Error(`writeLlama2cV0: missing ${name}`);
    parts.push(t);
  };
  const perLayer = (part: string) => {
    for (let l = 0; l < s.nLayers; l++) w(`model.layers.${l}.${part}.weight`);
  };
  w('model.embed_tokens.weight');
  perLayer('input_layernorm');
  perLayer('self_attn.q_proj');
  perLayer('self_attn.k_proj');
  perLayer('self_attn.v_proj');
  perLayer('self_attn.o_proj');
  perLayer('post_attention_layernorm');
  perLayer('mlp.gate_proj'); // w1
  perLayer('mlp.down_proj'); // w2
  perLayer('mlp.up_proj'); // w3
  w('model.norm.weight');
  const half = s.headDim / 2;
  const cos = new Float32Array(s.seqLen * half), sin = new Float32Array(s.seqLen * half);
  for (let p = 0; p < s.seqLen; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * Math.pow(10000, (-2 * i) / s.headDim);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  parts.push(cos, sin);
  if (!s.tied) w('lm_head.weight');
  const header = Buffer.alloc(28);
  [s.dim, s.hiddenDim, s.nLayers, s.nHeads, s.nKvHeads, s.tied ? s.vocabSize : -s.vocabSize, s.seqLen]
    .forEach((v, i) => header.writeInt32LE(v, 4 * i));
  const body = parts.map((p) => {
    const b = Buffer.alloc(p.length * 4);
    for (let i = 0; i < p.length; i++) b.writeFloatLE(p[i], 4 * i);
    return b;
  });
  fs.writeFileSync(file, Buffer.concat([header, ...body]));
}

/** Little-endian F32 bytes of `a`. */
export function f32Bytes(a: Float32Array): Uint8Array {
  const b = Buffer.alloc(a.length * 4);
  for (let i = 0; i < a.length; i++) b.writeFloatLE(a[i], 4 * i);
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

export interface HfWriteOptions {
  /** 'llama' (LlamaForCausalLM) or 'qwen2' (Qwen2ForCausalLM). */
  family?: 'llama' | 'qwen2';
  /** Tensors to leave out. */
  omit?: string[];
  /** Change the entries before writing (e.g. a mis-shaped tensor). */
  edit?: (entries: TensorEntry[]) => TensorEntry[];
  /** Extra or replaced config.json fields. */
  config?: Record<string, unknown>;
}

/** Write `m` as an HF directory: config.json + model.safetensors, q/k rows in rotate-half order. */
export async function writeHfDir(dir: string, m: TinyModel, opts: HfWriteOptions = {}): Promise<string> {
  const s = m.shape;
  const family = opts.family ?? 'llama';
  const half = toRotateHalf(m);
  let entries: TensorEntry[] = [];
  for (const [name, t] of half) {
    if (opts.omit?.includes(name)) continue;
    entries.push({ name, dtype: 'F32', shape: must(m.shapes.get(name), `shape of ${name}`), data: f32Bytes(t) });
  }
  if (opts.edit) entries = opts.edit(entries);
  await writeSafetensors(dir, entries);
  const config: Record<string, unknown> = {
    architectures: [family === 'qwen2' ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'], model_type: family,
    hidden_size: s.dim, intermediate_size: s.hiddenDim, num_hidden_layers: s.nLayers, num_attention_heads: s.nHeads,
    num_key_value_heads: s.nKvHeads, vocab_size: s.vocabSize, max_position_embeddings: s.seqLen,
    rms_norm_eps: s.rmsEps, rope_theta: s.ropeTheta, hidden_act: 'silu', tie_word_embeddings: s.tied,
    bos_token_id: 1, eos_token_id: 2, torch_dtype: 'float32',
  };
  if (s.headDim * s.nHeads !== s.dim) config.head_dim = s.headDim;
  Object.assign(config, opts.config ?? {});
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return dir;
}

/**
 * The 40 pieces of the tiny tokenizer (llama2.c spelling): <unk>, BOS, EOS, ' ', a–z, '.', and
 * nine merges. Encodes any text made of lower-case letters, spaces and full stops.
 */
export const TINY_PIECES: readonly string[] = [
  '<unk>', '\n<s>\n', '\n</s>\n', ' ',
  ...'abcdefghijklmnopqrstuvwxyz'.split(''), '.',
  ' t', 'th', 'he', ' the', 'an', ' a', 'in', 'er', ' s',
];

/**
 * Write a llama2.c tokenizer.bin (§8.4) with {@link TINY_PIECES} (merges scored −1, −2, …) and
 * then `extra` pieces (for a vocabulary that disagrees with the model).
 */
export function writeTinyTokenizer(file: string, extra: string[] = []): void {
  const recs: Buffer[] = [];
  let maxLen = 0;
  [...TINY_PIECES, ...extra].forEach((p, id) => {
    const bytes = Buffer.from(p, 'utf8');
    maxLen = Math.max(maxLen, bytes.length);
    const h = Buffer.alloc(8);
    h.writeFloatLE(id >= 31 ? -(id - 30) : 0, 0);
    h.writeInt32LE(bytes.length, 4);
    recs.push(h, bytes);
  });
  const head = Buffer.alloc(4);
  head.writeUInt32LE(maxLen, 0);
  fs.writeFileSync(file, Buffer.concat([head, ...recs]));
}

/**
 * Write a llama2.c tokenizer.bin of `n` pieces into `dir` (<unk>, BOS, EOS, then byte pieces
 * <0x00>…), for synthetic models whose vocabulary is only a size; returns its path.
 */
export function writeByteTokenizer(dir: string, n: number): string {
  const pieces = Array.from({ length: n }, (_, i) => (i === 0 ? '<unk>' : i === 1 ? '\n<s>\n' : i === 2 ? '\n</s>\n' : `<0x${(i - 3).toString(16).toUpperCase().padStart(2, '0')}>`));
  const pieceBytes = pieces.map((p) => new Uint8Array(Buffer.from(p, 'utf8')));
  const file = path.join(dir, 'tokenizer.bin');
  writeLlama2cTokenizer({ pieces, pieceBytes, scores: new Float32Array(n), bos: 1, eos: 2, maxTokenLength: Math.max(...pieceBytes.map((b) => b.length)) }, file);
  return file;
}
