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
import { LowbitError, optionError } from '../errors';
import { checkEnum, checkSignal, invalidOption, checkObject } from '../config/validate';
import { GGUF_EXPORT_TYPES, type GgufExportType } from '../config/quantize';
import type { Progress } from '../config/run';
import { readLlama2cModel, readLlama2cTokenizer } from '../formats/llama2c';
import { readHfConfig } from '../formats/hf-config';
import { openSafetensors } from '../formats/safetensors';
import { buildLlamaGgufSpec, writeGguf, type LlamaTensorInput } from '../formats/gguf-write';
import { hfVocab } from '../runtime/tokenizer-hf';
import { parseGptqConfig, resolveGptqModuleConfig, decodeGptqModule, type DecodedModule } from '../formats/gptq';
import { f32ToF16Bits, f16BitsToF32 } from '../formats/dtype';
import type { Vocab } from '../runtime/tokenizer';

export { GGUF_EXPORT_TYPES, type GgufExportType } from '../config/quantize';

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
  /**
   * Store the token embedding and the output head in this float type instead of `type` (llama.cpp's
   * `--token-embedding-type` / `--output-tensor-type`). @default `type` (for a GPTQ checkpoint:
   * the dtype the checkpoint keeps them in)
   */
  embeddingType?: 'F32' | 'F16' | 'BF16';
  /** Tensors whose (Hugging Face) name contains one of these strings stay in float (`embeddingType`, else F16), as `quantize --exclude` keeps modules. */
  exclude?: string[];
  signal?: AbortSignal;
  /** Progress in tensors written (phase 'write'). Latest wins. */
  onProgress?: (p: Progress) => void;
}

/** What {@link exportGguf} returns. */
export interface ExportGgufResult {
  file: string;
  type: GgufExportType;
  bytes: number;
  sourceBytes: number;
  tensors: number;
  /** Tensors by the ggml type they were written in (norms stay F32; fallbacks and kept tensors in float). */
  tensorsByType: Record<string, number>;
  /** Tensors stored in another type than asked (rows the block type cannot hold), with why. */
  fallbacks: { name: string; reason: string }[];
  /**
   * For a GPTQ checkpoint: how each packed module went into GGUF — `exact` (the GPTQ codes and
   * scales as ggml blocks, or F32), `rounded` (one fp16 rounding: Q4_1's min, or F16/BF16), or
   * `requantized` (dequantized and re-encoded by ggml's quantizer; `detail` says why).
   */
  conversions: GptqConversion[];
  seconds: number;
}

/** One GPTQ module's way into GGUF (see {@link ExportGgufResult.conversions}). */
export interface GptqConversion {
  name: string;
  how: 'exact' | 'rounded' | 'requantized';
  detail?: string;
}

/** Export a model (llama2.c `.bin`, or an HF directory, GPTQ checkpoints included) to one GGUF file. */
export async function exportGguf(source: string, out: string, opts: ExportGgufOptions): Promise<ExportGgufResult> {
  checkObject('options', opts, 'an object with at least {type}');
  const type = checkEnum('type', opts.type, GGUF_EXPORT_TYPES);
  if (opts.tokenizer !== undefined && (typeof opts.tokenizer !== 'string' || !opts.tokenizer)) throw invalidOption('tokenizer', 'a path to a llama2.c tokenizer.bin', opts.tokenizer);
  if (typeof out !== 'string' || !out) throw invalidOption('out', 'an output .gguf path', out);
  if (opts.embeddingType !== undefined) checkEnum('embeddingType', opts.embeddingType, ['F32', 'F16', 'BF16'] as const);
  if (opts.exclude !== undefined && (!Array.isArray(opts.exclude) || !opts.exclude.every((p) => typeof p === 'string' && p))) throw invalidOption('exclude', 'an array of non-empty strings', opts.exclude);
  if (opts.overwrite !== undefined && typeof opts.overwrite !== 'boolean') throw invalidOption('overwrite', 'a boolean', opts.overwrite);
  if (opts.name !== undefined && (typeof opts.name !== 'string' || !opts.name)) throw invalidOption('name', 'a non-empty string', opts.name);
  return exportGgufNormalized(source, out, { ...opts, type, signal: checkSignal(opts.signal) });
}

/** {@link exportGguf} on checked options (what the pipelines call). @internal */
export async function exportGgufNormalized(source: string, out: string, opts: ExportGgufOptions & { type: GgufExportType }): Promise<ExportGgufResult> {
  const t0 = performance.now();
  const type = opts.type;
  const outAbs = path.resolve(out);
  if (fs.existsSync(outAbs) && !opts.overwrite) throw new LowbitError('LOWBIT_IO', `${outAbs}: exists (pass overwrite / --force to replace it)`, { file: outAbs });
  const src = path.resolve(source);
  if (!fs.existsSync(src)) throw new LowbitError('LOWBIT_NOT_FOUND', `${src}: no such model file or directory`);
  const tensors = new Map<string, LlamaTensorInput>();
  const conversions: GptqConversion[] = [];
  let cfg, ropeOrder: 'adjacent' | 'half', sourceBytes = 0;
  const isDir = fs.statSync(src).isDirectory();
  // the vocabulary: the file given, else the directory's tokenizer.json, else a tokenizer.bin beside the model
  const besideBin = path.join(isDir ? src : path.dirname(src), 'tokenizer.bin');
  if (opts.tokenizer === undefined && !(isDir && fs.existsSync(path.join(src, 'tokenizer.json'))) && fs.existsSync(besideBin)) opts = { ...opts, tokenizer: besideBin };
  if (opts.tokenizer === undefined && !(isDir && fs.existsSync(path.join(src, 'tokenizer.json')))) {
    throw optionError('tokenizer', `tokenizer: ${src} has no tokenizer.json or tokenizer.bin; GGUF export needs the vocabulary as a llama2.c tokenizer.bin (--tokenizer FILE)`);
  }
  // An HF directory's plain tensors are read when they are written (producers): the export holds one
  // of them in f32 at a time, not the whole model (4.5 GB for a 1.1B model, 27 GB for a 7B one), and
  // its files stay open until the GGUF file is complete.
  let st: ReturnType<typeof openSafetensors> | null = null;
  try {
    let vocab: Vocab | undefined;
    if (isDir) {
      const hc = readHfConfig(src);
      if (hc.ropeScaling) {
        // never dropped: a GGUF without it would run with other frequencies
        throw new LowbitError('LOWBIT_UNSUPPORTED', `${src}: config.json has rope_scaling of type "${hc.ropeScaling.type}"; GGUF export does not write RoPE scaling yet (llama.cpp's rope_freqs / rope.scaling keys)`, { field: 'rope_scaling' });
      }
      if (opts.tokenizer === undefined) vocab = hfVocab(src, hc.vocabSize, { bos: hc.bosTokenId, eos: hc.eosTokenId });
      const qc = hc.raw.quantization_config !== undefined ? parseGptqConfig(hc.raw.quantization_config, path.join(src, 'config.json')) : null;
      const sf = openSafetensors(src);
      st = sf;
      const modules = qc ? new Set(sf.names().filter((n) => n.endsWith('.qweight')).map((n) => n.slice(0, -'.qweight'.length))) : new Set<string>();
      for (const n of sf.names()) {
        sourceBytes += sf.info(n).byteLength;
        const mod = n.slice(0, n.lastIndexOf('.'));
        if (modules.has(mod)) {
          if (!n.endsWith('.qweight')) continue;
          const mc = qc ? resolveGptqModuleConfig(qc, mod) : null;
          if (!mc) throw new LowbitError('LOWBIT_BAD_FORMAT', `${src}: ${mod} has packed weights but quantization_config.dynamic excludes it`, { module: mod });
          const dec = decodeGptqModule(sf, mod, mc);
          const m = gptqToGgml(dec, mc.bits, type);
          // what is not mapped onto blocks exactly is decoded again when written (one module's f32 at a time)
          const shape = [dec.rows, dec.cols];
          tensors.set(`${mod}.weight`, m.encoded ? { encoded: m.encoded, shape } : { data: () => decodeGptqModule(sf, mod, mc).weight, shape });
          conversions.push({ name: `${mod}.weight`, how: m.how, ...(m.detail ? { detail: m.detail } : {}) });
          continue;
        }
        // What a GPTQ checkpoint left unquantized (embedding, head, layers it skipped) stays in the
        // checkpoint's own dtype, so the GGUF file is the same model.
        const dt = sf.info(n).dtype;
        const keep: { as?: 'F32' | 'F16' | 'BF16' } = qc && sf.info(n).shape.length === 2 ? { as: dt === 'F32' || dt === 'BF16' ? dt : 'F16' } : {};
        tensors.set(n, { data: () => { const v = sf.toFloat32(n); sf.release(n); return v; }, shape: sf.info(n).shape, ...keep });
      }
      cfg = { dim: hc.hiddenSize, hiddenDim: hc.intermediateSize, nLayers: hc.numLayers, nHeads: hc.numHeads, nKvHeads: hc.numKvHeads,
        vocabSize: hc.vocabSize, contextLength: hc.maxPositionEmbeddings, rmsEps: hc.rmsNormEps, ropeTheta: hc.ropeTheta, name: opts.name ?? path.basename(src) };
      ropeOrder = 'half';
    } else {
      const m = readLlama2cModel(src);
      for (const [n, t] of m.tensors) tensors.set(n, { data: t, shape: m.shapes.get(n) ?? [t.length] });
      sourceBytes = fs.statSync(src).size;
      const c = m.config;
      cfg = { dim: c.dim, hiddenDim: c.hiddenDim, nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads, vocabSize: c.vocabSize,
        contextLength: c.seqLen, rmsEps: 1e-5, ropeTheta: 10000, name: opts.name ?? path.basename(src).replace(/\.bin$/, '') };
      ropeOrder = 'adjacent';
    }
    const et = opts.embeddingType;
    for (const [n, t] of tensors) {
      if (!t.data || t.shape.length !== 2) continue;
      if (et && (n === 'model.embed_tokens.weight' || n === 'lm_head.weight')) tensors.set(n, { ...t, as: et });
      else if (opts.exclude?.some((p) => n.includes(p))) tensors.set(n, { ...t, as: et ?? 'F16' });
    }
    if (!vocab) {
      if (opts.tokenizer === undefined) throw optionError('tokenizer', `tokenizer: ${src}: GGUF export needs the vocabulary as a llama2.c tokenizer.bin (--tokenizer FILE)`);
      vocab = readLlama2cTokenizer(opts.tokenizer, cfg.vocabSize);
    }
    const spec = buildLlamaGgufSpec(cfg, vocab, tensors, { type, ropeOrder });
    const r = await writeGguf(outAbs, spec, { signal: opts.signal, onProgress: opts.onProgress });
    const tensorsByType: Record<string, number> = {};
    for (const t of spec.tensors) tensorsByType[t.type] = (tensorsByType[t.type] ?? 0) + 1;
    return { file: outAbs, type, bytes: r.bytes, sourceBytes, tensors: spec.tensors.length, tensorsByType, fallbacks: spec.fallbacks, conversions, seconds: (performance.now() - t0) / 1000 };
  } finally {
    st?.close();
  }
}

/**
 * How one GPTQ module goes into GGUF. GPTQ stores w = s·(q − z) with fp16 scales per group:
 * - groups of 32 consecutive input channels (g_idx[k] = ⌊k/32⌋; act-order only with static groups)
 *   and symmetric zeros (z = 2^(b−1)) map onto Q4_0 (b ≤ 4: d = s, q' = q − z + 8) and Q8_0
 *   (b ≤ 8: d = s, q' = q − z) **exactly** — the same weights, no second rounding; 4-bit groups with
 *   z = 7 (the signed-max grid's groups whose largest weight is positive) too, as d = −s,
 *   q' = 15 − q: s·(q − 7) = −s·((15 − q) − 8);
 * - groups of 32 with any zeros map onto Q4_1 (b ≤ 4: d = s, m = −s·z) exactly up to the fp16
 *   rounding of m (the largest change is reported);
 * - F32 holds the dequantized weights exactly; F16/BF16 round them once;
 * - anything else (other group sizes, act-order without static groups, 8-bit codes into a 4-bit
 *   type) is dequantized and re-encoded by ggml's block quantizer: a second rounding, reported.
 */
function gptqToGgml(dec: DecodedModule, bits: number, type: GgufExportType): { encoded?: { type: 'Q8_0' | 'Q4_0' | 'Q4_1'; bytes: Uint8Array }; how: GptqConversion['how']; detail?: string } {
  if (type === 'F32') return { how: 'exact' };
  if (type === 'F16' || type === 'BF16') return { how: 'rounded', detail: `dequantized weights rounded to ${type}` };
  if (type === 'Q4_K') return { how: 'requantized', detail: 'GPTQ groups have no Q4_K form (6-bit sub-block scales of 256-channel super-blocks): dequantized and re-encoded as Q4_K' };
  const { rows, cols, codes, scales, zeros, gIdx } = dec;
  let why: string | null = null;
  if (cols % 32 !== 0) return { how: 'rounded', detail: `in_features ${cols} is not a multiple of 32: dequantized weights stored as F16 (see fallbacks)` };
  if (scales.length !== (cols / 32) * rows) why = `groups of ${cols / (scales.length / rows)} input channels, not 32`;
  else {
    for (let k = 0; k < cols; k++) if (gIdx[k] !== k >> 5) { why = 'act-order groups (g_idx not ⌊k/32⌋)'; break; }
  }
  const sym = zeros.every((z) => z === 1 << (bits - 1));
  const signedMax = bits === 4 && zeros.every((z) => z === 8 || z === 7);  // lowbit's signed-max grid (Q4_0's own)
  if (!why && type === 'Q4_0' && (bits > 4 || !(sym || signedMax))) why = bits > 4 ? `${bits}-bit codes do not fit Q4_0` : 'asymmetric zeros (Q4_0 has none; Q4_1 holds them)';
  if (!why && type === 'Q8_0' && !sym) why = 'asymmetric zeros (Q8_0 has none; Q4_1 holds 4-bit ones)';
  if (!why && type === 'Q4_1' && bits > 4) why = `${bits}-bit codes do not fit Q4_1`;
  if (why) return { how: 'requantized', detail: `${why}: dequantized and re-encoded as ${type}` };
  const nb = cols / 32;
  const bsize = type === 'Q8_0' ? 34 : type === 'Q4_0' ? 18 : 20;
  const bytes = new Uint8Array(rows * nb * bsize);
  const dv = new DataView(bytes.buffer);
  let maxDm = 0;
  for (let n = 0; n < rows; n++) {
    for (let b = 0; b < nb; b++) {
      const s = scales[b * rows + n], z = zeros[b * rows + n];
      const o = (n * nb + b) * bsize;
      const q = codes.subarray(n * cols + b * 32, n * cols + b * 32 + 32);
      dv.setUint16(o, f32ToF16Bits(s, `${n}/${b} scale`), true);
      if (type === 'Q8_0') {
        for (let j = 0; j < 32; j++) dv.setInt8(o + 2 + j, q[j] - z);
      } else if (type === 'Q4_0' && z === 7) {
        dv.setUint16(o, f32ToF16Bits(-s, `${n}/${b} scale`), true);
        for (let j = 0; j < 16; j++) bytes[o + 2 + j] = (15 - q[j]) | ((15 - q[j + 16]) << 4);
      } else if (type === 'Q4_0') {
        for (let j = 0; j < 16; j++) bytes[o + 2 + j] = (q[j] - z + 8) | ((q[j + 16] - z + 8) << 4);
      } else {
        const mb = f32ToF16Bits(-s * z, 'Q4_1 min');
        dv.setUint16(o + 2, mb, true);
        maxDm = Math.max(maxDm, Math.abs(f16BitsToF32(mb) + s * z));
        for (let j = 0; j < 16; j++) bytes[o + 4 + j] = q[j] | (q[j + 16] << 4);
      }
    }
  }
  if (type === 'Q4_1') return { encoded: { type, bytes }, how: maxDm === 0 ? 'exact' : 'rounded', detail: maxDm === 0 ? undefined : `min −s·z rounded to fp16 (largest change ${maxDm.toExponential(2)})` };
  return { encoded: { type, bytes }, how: 'exact' };
}
