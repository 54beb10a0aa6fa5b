/**
 * Export a Llama-family model to GGUF (llama.cpp's format) with ggml's own block quantizers
 * (Q8_0, Q4_0, Q4_1; bit-exact with llama.cpp's reference encoders) or F32/F16/BF16, so the llama.cpp
 * world (llama.cpp, node-llama-cpp, …) can run what lowbit makes. Sources: a llama2.c `.bin` or a
 * Hugging Face directory (q/k rows permuted back to adjacent pairs). The vocabulary comes from a
 * llama2.c tokenizer.bin (SentencePiece pieces and scores) or, for a Hugging Face directory, from
 * its own tokenizer.json (see {@link hfVocab}).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError } from '../errors';
import { checkEnum, invalidOption } from '../validate';
import { readLlama2cModel, readLlama2cTokenizer } from '../formats/llama2c';
import { readHfConfig } from '../formats/hf-config';
import { openSafetensors } from '../formats/safetensors';
import { buildLlamaGgufSpec, writeGguf, type LlamaTensorInput } from '../formats/gguf-write';
import { hfVocab } from '../tokenizer-hf';
import type { Vocab } from '../tokenizer';

export const GGUF_EXPORT_TYPES = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1'] as const;
export type GgufExportType = (typeof GGUF_EXPORT_TYPES)[number];

/** Options of {@link exportGguf}. */
export interface ExportGgufOptions {
  /** Type of the embedding and linear weights (norms stay F32). */
  type: GgufExportType;
  /**
   * llama2.c tokenizer.bin with the model's SentencePiece vocabulary. Optional for a Hugging Face
   * directory with a Llama-style tokenizer.json (used when this is not given).
   */
  tokenizer?: string;
  /** `general.name`. @default the source's base name */
  name?: string;
  /** Replace an existing output file. @default false */
  overwrite?: boolean;
  signal?: AbortSignal;
}

/** What {@link exportGguf} returns. */
export interface ExportGgufResult {
  file: string;
  type: GgufExportType;
  bytes: number;
  sourceBytes: number;
  tensors: number;
  /** Tensors stored in another type than asked (rows the block type cannot hold), with why. */
  fallbacks: { name: string; reason: string }[];
  seconds: number;
}

export async function exportGguf(source: string, out: string, opts: ExportGgufOptions): Promise<ExportGgufResult> {
  const t0 = performance.now();
  const type = checkEnum('type', opts.type, GGUF_EXPORT_TYPES);
  if (opts.tokenizer !== undefined && (typeof opts.tokenizer !== 'string' || !opts.tokenizer)) throw invalidOption('tokenizer', 'a path to a llama2.c tokenizer.bin', opts.tokenizer);
  if (typeof out !== 'string' || !out) throw invalidOption('out', 'an output .gguf path', out);
  const outAbs = path.resolve(out);
  if (fs.existsSync(outAbs) && !opts.overwrite) throw new LowbitError('LOWBIT_IO', `${outAbs}: exists (pass overwrite / --force to replace it)`, { file: outAbs });
  const src = path.resolve(source);
  if (!fs.existsSync(src)) throw new LowbitError('LOWBIT_NOT_FOUND', `${src}: no such model file or directory`);
  const tensors = new Map<string, LlamaTensorInput>();
  let cfg, ropeOrder: 'adjacent' | 'half', sourceBytes = 0;
  const isDir = fs.statSync(src).isDirectory();
  if (opts.tokenizer === undefined && !(isDir && fs.existsSync(path.join(src, 'tokenizer.json')))) {
    throw new LowbitError('LOWBIT_INVALID_OPTION', `tokenizer: ${src} has no tokenizer.json; GGUF export needs the vocabulary as a llama2.c tokenizer.bin (--tokenizer FILE)`, { option: 'tokenizer' });
  }
  let vocab: Vocab | undefined;
  if (isDir) {
    const hc = readHfConfig(src);
    if (opts.tokenizer === undefined) vocab = hfVocab(src, hc.vocabSize, { bos: hc.bosTokenId, eos: hc.eosTokenId });
    const st = openSafetensors(src);
    try {
      for (const n of st.names()) {
        tensors.set(n, { data: st.toFloat32(n), shape: st.info(n).shape });
        sourceBytes += st.info(n).byteLength;
        st.release(n);
      }
    } finally {
      st.close();
    }
    cfg = { dim: hc.hiddenSize, hiddenDim: hc.intermediateSize, nLayers: hc.numLayers, nHeads: hc.numHeads, nKvHeads: hc.numKvHeads,
      vocabSize: hc.vocabSize, contextLength: hc.maxPositionEmbeddings, rmsEps: hc.rmsNormEps, ropeTheta: hc.ropeTheta, name: opts.name ?? path.basename(src) };
    ropeOrder = 'half';
  } else {
    const m = readLlama2cModel(src);
    for (const [n, t] of m.tensors) tensors.set(n, { data: t, shape: m.shapes.get(n)! });
    sourceBytes = fs.statSync(src).size;
    const c = m.config;
    cfg = { dim: c.dim, hiddenDim: c.hiddenDim, nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads, vocabSize: c.vocabSize,
      contextLength: c.seqLen, rmsEps: 1e-5, ropeTheta: 10000, name: opts.name ?? path.basename(src).replace(/\.bin$/, '') };
    ropeOrder = 'adjacent';
  }
  vocab ??= readLlama2cTokenizer(opts.tokenizer!, cfg.vocabSize);
  const spec = buildLlamaGgufSpec(cfg, vocab, tensors, { type, ropeOrder });
  const r = await writeGguf(outAbs, spec, { signal: opts.signal });
  return { file: outAbs, type, bytes: r.bytes, sourceBytes, tensors: spec.tensors.length, fallbacks: spec.fallbacks, seconds: (performance.now() - t0) / 1000 };
}
