/**
 * Deterministic synthetic Llama-shaped checkpoints (random weights, real shapes) for the demo,
 * tests and benchmarks. Written as a real HF model directory (config.json + safetensors), streamed
 * tensor by tensor so a 7B-shaped model needs no more memory than its largest tensor.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSafetensors, type TensorEntry } from '../formats/safetensors';
import { fromFloat32 } from '../formats/dtype';
import { invalidOption } from '../config/validate';
import { writeJsonAtomic } from '../formats/output';

/** Shape of a synthetic Llama-family model. */
export interface SyntheticShape {
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocabSize: number;
  maxPositions?: number;
  tieWordEmbeddings?: boolean;
}

/** Named shapes: the built-in demo model and real model shapes. */
export const SYNTHETIC_PRESETS: Record<string, SyntheticShape> = {
  /** The built-in demo model (~4 M parameters). */
  demo: { hiddenSize: 256, intermediateSize: 768, layers: 4, heads: 8, kvHeads: 4, vocabSize: 2048, maxPositions: 512 },
  /** A test-sized model whose FFN width (100) does not fit the packed GPTQ layout. */
  tiny: { hiddenSize: 64, intermediateSize: 100, layers: 2, heads: 4, kvHeads: 2, vocabSize: 128, maxPositions: 128 },
  'tinyllama-1.1b': { hiddenSize: 2048, intermediateSize: 5632, layers: 22, heads: 32, kvHeads: 4, vocabSize: 32000, maxPositions: 2048 },
  'llama2-7b': { hiddenSize: 4096, intermediateSize: 11008, layers: 32, heads: 32, kvHeads: 32, vocabSize: 32000, maxPositions: 4096 },
};

/** Options of {@link writeSyntheticModel}. */
export interface SyntheticOptions {
  /** A preset name or an explicit shape. @default 'demo' */
  shape?: string | SyntheticShape;
  /** Element type of the weights. @default 'F16' */
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Seed of the weights (same seed, same bytes). @default 0 */
  seed?: number;
  /** Fraction of weights that are large outliers (×10–30), as real LLM weights have. @default 0.001 */
  outlierRate?: number;
}

/** A small, fast, seedable generator (xorshift32); approximately normal values via Irwin–Hall. */
function fillWeights(out: Float32Array, seed: number, std: number, outlierRate: number): void {
  let s = (seed ^ 0x9e3779b9) >>> 0 || 1;
  const next = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
  const k = std * Math.sqrt(3); // sum of 4 uniforms in [-1,1] has variance 4/3
  for (let i = 0; i < out.length; i++) {
    let v = (next() + next() + next() + next() - 2) * k;
    if (next() < outlierRate) v *= 10 + 20 * next();
    out[i] = v;
  }
}

function hashName(name: string, seed: number): number {
  let h = 2166136261 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Write a synthetic model directory; returns its path. */
export async function writeSyntheticModel(dir: string, options: SyntheticOptions = {}): Promise<string> {
  const shape = typeof options.shape === 'object' ? options.shape : (SYNTHETIC_PRESETS[options.shape ?? 'demo'] as SyntheticShape | undefined);
  if (!shape) throw invalidOption('shape', `one of ${Object.keys(SYNTHETIC_PRESETS).join(', ')} or a shape object`, options.shape);
  const dtype = options.dtype ?? 'F16';
  const seed = options.seed ?? 0;
  const outlierRate = options.outlierRate ?? 0.001;
  const { hiddenSize: d, intermediateSize: ffn, layers, heads, kvHeads, vocabSize: vocab } = shape;
  const hd = d / heads;
  const tied = shape.tieWordEmbeddings ?? false;
  fs.mkdirSync(dir, { recursive: true });
  const mats: [string, number[], number][] = []; // name, shape, std
  mats.push(['model.embed_tokens.weight', [vocab, d], 0.02]);
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    mats.push([`${p}.input_layernorm.weight`, [d], -1]);
    mats.push([`${p}.self_attn.q_proj.weight`, [heads * hd, d], 1 / Math.sqrt(d)]);
    mats.push([`${p}.self_attn.k_proj.weight`, [kvHeads * hd, d], 1 / Math.sqrt(d)]);
    mats.push([`${p}.self_attn.v_proj.weight`, [kvHeads * hd, d], 1 / Math.sqrt(d)]);
    mats.push([`${p}.self_attn.o_proj.weight`, [d, heads * hd], 1 / Math.sqrt(d)]);
    mats.push([`${p}.post_attention_layernorm.weight`, [d], -1]);
    mats.push([`${p}.mlp.gate_proj.weight`, [ffn, d], 1 / Math.sqrt(d)]);
    mats.push([`${p}.mlp.up_proj.weight`, [ffn, d], 1 / Math.sqrt(d)]);
    mats.push([`${p}.mlp.down_proj.weight`, [d, ffn], 1 / Math.sqrt(ffn)]);
  }
  mats.push(['model.norm.weight', [d], -1]);
  if (!tied) mats.push(['lm_head.weight', [vocab, d], 0.02]);
  const entries: TensorEntry[] = mats.map(([name, sh, std]) => ({
    name, dtype, shape: sh,
    data: () => {
      const n = sh.reduce((a, b) => a * b, 1);
      const f = new Float32Array(n);
      if (std < 0) f.fill(1); // RMSNorm gains
      else fillWeights(f, hashName(name, seed), std, outlierRate);
      return fromFloat32(f, dtype, name, { saturate: true });
    },
  }));
  await writeSafetensors(dir, entries, { maxShardBytes: 2 * 1024 ** 3 });
  await writeJsonAtomic(path.join(dir, 'config.json'), {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: d, intermediate_size: ffn,
    num_hidden_layers: layers, num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: hd, vocab_size: vocab,
    max_position_embeddings: shape.maxPositions ?? 2048, rms_norm_eps: 1e-5, rope_theta: 10000, hidden_act: 'silu',
    tie_word_embeddings: tied, bos_token_id: 1, eos_token_id: 2,
    torch_dtype: dtype === 'F16' ? 'float16' : dtype === 'BF16' ? 'bfloat16' : 'float32',
    lowbit_synthetic: { seed, outlierRate, note: 'random weights of a real shape, written by lowbit for tests and benchmarks' },
  });
  return path.resolve(dir);
}
