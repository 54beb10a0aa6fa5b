/**
 * Write a llama2.c model (or any adjacent-pair RoPE weights) as a Hugging Face Llama directory:
 * config.json + model.safetensors, with q/k rows permuted to rotate-half order per head
 * (formats.md §3.3: hf_row(h, t·hd/2 + i) = src_row(h, 2i + t)).
 */
import * as path from 'node:path';
import { LowbitError } from '../errors';
import { writeSafetensors, type TensorEntry } from './safetensors';
import { fromFloat32 } from './dtype';
import { writeJsonAtomic } from './output';
import type { Llama2cModel } from './llama2c';

/** Permute the rows of a (heads·hd, cols) matrix from adjacent-pair to rotate-half order. */
export function adjacentToHalf(w: Float32Array, heads: number, hd: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd / 2; i++) {
      for (let t = 0; t < 2; t++) {
        const dst = h * hd + t * (hd / 2) + i, src = h * hd + 2 * i + t;
        out.set(w.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return out;
}

/** Write `m` as an HF model directory in `dtype` (default F32). Returns the directory. */
export async function writeHfFromLlama2c(m: Llama2cModel, dir: string, dtype: 'F32' | 'F16' | 'BF16' = 'F32'): Promise<string> {
  const c = m.config;
  const entries: TensorEntry[] = [];
  for (const [name, t] of m.tensors) {
    const shape = m.shapes.get(name);
    if (!shape) throw new LowbitError('LOWBIT_INTERNAL', `${name}: the llama2.c model lists no shape for it`, { tensor: name });
    let data = t;
    if (/self_attn\.q_proj\.weight$/.test(name)) data = adjacentToHalf(t, c.nHeads, c.headSize, c.dim);
    if (/self_attn\.k_proj\.weight$/.test(name)) data = adjacentToHalf(t, c.nKvHeads, c.headSize, c.dim);
    entries.push({ name, dtype, shape, data: fromFloat32(data, dtype, name) });
  }
  await writeSafetensors(dir, entries);
  await writeJsonAtomic(path.join(dir, 'config.json'), {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: c.dim, intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers, num_attention_heads: c.nHeads, num_key_value_heads: c.nKvHeads, vocab_size: c.vocabSize,
    max_position_embeddings: c.seqLen, rms_norm_eps: 1e-5, rope_theta: 10000.0, hidden_act: 'silu',
    tie_word_embeddings: c.sharedClassifier, bos_token_id: 1, eos_token_id: 2,
    torch_dtype: dtype === 'F32' ? 'float32' : dtype === 'F16' ? 'float16' : 'bfloat16',
  });
  return path.resolve(dir);
}
