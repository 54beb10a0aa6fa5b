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
import { writeLlama2cTokenizer, type Llama2cModel } from './llama2c';
import { ggufLlamaConfig, ggufLlamaTensorName, ggufVocab, type GgufFile } from './gguf';
import { decodeGgml, type GgmlDecodeType } from './ggml-blocks';

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

/** The ggml types a GGUF weight may hold to be a quantization source without re-quantizing. */
export const GGUF_FLOAT_TYPES = ['F32', 'F16', 'BF16'] as const;

/**
 * The 2-D weights of a GGUF file that are already quantized (block types), by GGUF name and type:
 * quantizing those again adds a second rounding (llama.cpp's quantize refuses them without
 * --allow-requantize for the same reason).
 */
export function ggufQuantizedWeights(g: GgufFile): { name: string; type: string }[] {
  return g.tensors.filter((t) => t.shape.length === 2 && !(GGUF_FLOAT_TYPES as readonly string[]).includes(t.typeName)).map((t) => ({ name: t.name, type: t.typeName }));
}

/**
 * Write a Llama GGUF file as a Hugging Face directory: config.json + model.safetensors with each
 * tensor under its HF name, q/k rows back in rotate-half order, float tensors in their own type,
 * block-quantized ones (only with `dequantize`) decoded to F32; and its vocabulary as a llama2.c
 * tokenizer.bin. Returns the directory.
 */
export async function writeHfFromGguf(g: GgufFile, dir: string, opts: { dequantize: boolean; signal?: AbortSignal }): Promise<string> {
  const c = ggufLlamaConfig(g);
  const quantized = ggufQuantizedWeights(g);
  if (quantized.length && !opts.dequantize) {
    throw new LowbitError('LOWBIT_UNSUPPORTED', `${g.file}: ${quantized.length} tensors are already quantized (${quantized[0].name} is ${quantized[0].type}); quantizing them again rounds twice — pass allowRequantize (--allow-requantize) to dequantize and re-quantize them, or start from an F32/F16/BF16 file`, { file: g.file, tensor: quantized[0].name });
  }
  const entries: TensorEntry[] = [];
  let tied = true;
  for (const t of g.tensors) {
    const name = ggufLlamaTensorName(t.name);
    if (name === null) continue; // e.g. rope_freqs: not a Llama weight of the HF layout
    if (name === 'lm_head.weight') tied = false;
    const float = (GGUF_FLOAT_TYPES as readonly string[]).includes(t.typeName);
    const dtype: 'F32' | 'F16' | 'BF16' = float ? (t.typeName as 'F32' | 'F16' | 'BF16') : 'F32';
    const shape = t.shape.slice();
    const permute = /self_attn\.[qk]_proj\.weight$/.test(name);
    entries.push({
      name, dtype, shape,
      data: () => {
        let v = float ? g.tensorF32(t.name) : decodeGgml(t.typeName as GgmlDecodeType, g.bytes(t.name), t.numel);
        if (permute) v = adjacentToHalf(v, name.includes('.q_proj.') ? c.nHeads : c.nKvHeads, c.headDim, c.dim);
        return dtype === 'F32' && !permute && float ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : fromFloat32(v, dtype, name);
      },
    });
  }
  await writeSafetensors(dir, entries, { signal: opts.signal });
  const vocab = ggufVocab(g);
  writeLlama2cTokenizer(vocab, path.join(dir, 'tokenizer.bin'));
  const dtypes = new Set(entries.map((e) => e.dtype));
  await writeJsonAtomic(path.join(dir, 'config.json'), {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: c.dim, intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers, num_attention_heads: c.nHeads, num_key_value_heads: c.nKvHeads, vocab_size: c.vocabSize,
    max_position_embeddings: c.contextLength, rms_norm_eps: c.rmsEps, rope_theta: c.ropeTheta, hidden_act: 'silu',
    tie_word_embeddings: tied, bos_token_id: vocab.bos, eos_token_id: vocab.eos,
    torch_dtype: dtypes.has('F32') ? 'float32' : dtypes.has('BF16') ? 'bfloat16' : 'float16',
  });
  return dir;
}
