/**
 * llama2.c model and tokenizer readers (docs/formats.md §8).
 *
 * Model files, all float32 little-endian, weights row-major `[out, in]`:
 * - version 0 (legacy, §8.1): 7 × i32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 *   vocab_size, seq_len; vocab_size < 0 ⇒ an unshared classifier at the end), then embedding,
 *   attention norms, wq, wk, wv, wo, FFN norms, w1, w2, w3 (each kind for all layers), final norm,
 *   two RoPE tables of seq_len · hs/2 (skipped), classifier.
 * - version 1 (§8.2): 256-byte header (u32 magic 0x616B3432, i32 version, the 7 config i32, u8
 *   shared_classifier), then attention norms, FFN norms, final norm, embedding, wq, wk, wv, wo, w1,
 *   w2, w3, classifier if not shared.
 * - version 2 (int8 groups) is recognised and reported as LOWBIT_UNSUPPORTED.
 *
 * Tensors get HF-style names (§3.2) but keep llama2.c's adjacent-pair RoPE row order in q/k (no
 * permutation here; §3.3 describes the conversion). They are zero-copy Float32Array views over one
 * native mapping of the file when the addon is available (the data starts at byte 28 or 256, so
 * every array is 4-aligned), else views over one buffer read with fs.
 *
 * tokenizer.bin (§8.4): u32 max_token_length, then vocab_size records of f32 score, i32 length,
 * bytes (the count comes from the model header).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, toLowbitError, badFormat } from '../errors';
import { openForRead, readFully } from './io';
import { invalidOption } from '../config/validate';
import { openMapping } from '../native';
import { HOST_LITTLE_ENDIAN, assertFiniteTensor, toFloat32 } from './dtype';
import type { Vocab } from './vocab';

/** `32 34 6B 61` ("ak42") read as a little-endian u32: the magic of versions 1 and 2. */
export const LLAMA2C_MAGIC = 0x616b3432;
/** Header size of the legacy (version 0) layout. */
export const LLAMA2C_V0_HEADER_BYTES = 28;
/** Header size of versions 1 and 2. */
export const LLAMA2C_V1_HEADER_BYTES = 256;
/**
 * Largest max_token_length a tokenizer.bin may declare (64 KiB; real vocabularies: 7 to ~50 bytes).
 * It bounds what a reader reads: vocab_size records of at most 8 + max_token_length bytes.
 */
export const LLAMA2C_MAX_TOKEN_LENGTH = 65536;

/** Hyper-parameters of a llama2.c model. */
export interface Llama2cConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** Always positive (the sign of the v0 header field is reflected in `sharedClassifier`). */
  vocabSize: number;
  seqLen: number;
  /** dim / nHeads. */
  headSize: number;
  /** nKvHeads · headSize. */
  kvDim: number;
  /** True when the classifier is the token embedding (no `lm_head.weight`). */
  sharedClassifier: boolean;
}

/** A loaded llama2.c model. */
export interface Llama2cModel {
  /** Absolute path. */
  file: string;
  version: 0 | 1;
  config: Llama2cConfig;
  /**
   * Weights by HF-style name, in file-independent order (embedding, layers, final norm, lm_head).
   * Views of the mapped file (copy-on-write: writing to them never changes the file).
   */
  tensors: Map<string, Float32Array>;
  /** Row-major shape of each tensor in `tensors`. */
  shapes: Map<string, number[]>;
}

function fileSizeOf(fd: number, file: string): number {
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw new LowbitError('LOWBIT_IO', `${file}: is a directory, expected a file`, { file });
    return st.size;
  } catch (e) {
    throw toLowbitError(e, file);
  }
}

/** One array of the body: name (null = skipped RoPE table), shape, element count. */
interface Segment {
  name: string | null;
  shape: number[];
  numel: bigint;
}

const layerName = (i: number, part: string): string => `model.layers.${i}.${part}.weight`;

/** The body of a file in storage order (§8.1 / §8.2). */
function layout(version: 0 | 1, c: Llama2cConfig): Segment[] {
  const { dim, hiddenDim: hid, nLayers: L, vocabSize: V, kvDim, headSize, seqLen } = c;
  const segs: Segment[] = [];
  const add = (name: string | null, shape: number[]): void => {
    segs.push({ name, shape, numel: shape.reduce((a, b) => a * BigInt(b), 1n) });
  };
  const perLayer = (part: string, shape: number[]): void => {
    for (let i = 0; i < L; i++) add(layerName(i, part), shape);
  };
  const embed = (): void => {
    add('model.embed_tokens.weight', [V, dim]);
  };
  const attnNorm = (): void => {
    perLayer('input_layernorm', [dim]);
  };
  const ffnNorm = (): void => {
    perLayer('post_attention_layernorm', [dim]);
  };
  const finalNorm = (): void => {
    add('model.norm.weight', [dim]);
  };
  const matrices = (): void => {
    perLayer('self_attn.q_proj', [dim, dim]);
    perLayer('self_attn.k_proj', [kvDim, dim]);
    perLayer('self_attn.v_proj', [kvDim, dim]);
    perLayer('self_attn.o_proj', [dim, dim]);
  };
  const ffn = (): void => {
    perLayer('mlp.gate_proj', [hid, dim]); // w1
    perLayer('mlp.down_proj', [dim, hid]); // w2
    perLayer('mlp.up_proj', [hid, dim]); // w3
  };
  if (version === 0) {
    embed();
    attnNorm();
    matrices();
    ffnNorm();
    ffn();
    finalNorm();
    add(null, [seqLen, headSize / 2]); // RoPE cos
    add(null, [seqLen, headSize / 2]); // RoPE sin
  } else {
    attnNorm();
    ffnNorm();
    finalNorm();
    embed();
    matrices();
    ffn();
  }
  if (!c.sharedClassifier) add('lm_head.weight', [V, dim]);
  return segs;
}

/** Floats in the body of a file: the sum of {@link layout}'s segments, without listing them. */
function bodyFloats(version: 0 | 1, c: Llama2cConfig): bigint {
  const [dim, hid, L, V, kv, hs, seq] = [c.dim, c.hiddenDim, c.nLayers, c.vocabSize, c.kvDim, c.headSize, c.seqLen].map(BigInt);
  const perLayer = 2n * dim + 2n * dim * dim + 2n * kv * dim + 3n * hid * dim; // 2 norms, q/o, k/v, w1/w2/w3
  let n = V * dim + L * perLayer + dim; // embedding, layers, final norm
  if (version === 0) n += 2n * seq * (hs / 2n); // RoPE cos and sin tables (skipped)
  if (!c.sharedClassifier) n += V * dim;
  return n;
}

/** The order tensors are listed in {@link Llama2cModel.tensors}. */
function canonicalOrder(c: Llama2cConfig): string[] {
  const names = ['model.embed_tokens.weight'];
  for (let i = 0; i < c.nLayers; i++) {
    for (const p of ['input_layernorm', 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj',
      'post_attention_layernorm', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']) names.push(layerName(i, p));
  }
  names.push('model.norm.weight');
  if (!c.sharedClassifier) names.push('lm_head.weight');
  return names;
}

/**
 * Read a llama2.c model file (version 0 or 1). Validates the header (§8.1 reader rules: fields
 * positive except the sign of a v0 vocab_size, dim % n_heads == 0, n_heads % n_kv_heads == 0, even
 * head size) and the exact file size.
 *
 * Errors: LOWBIT_NOT_FOUND (no file), LOWBIT_BAD_FORMAT (naming the file, what was expected and
 * what was found), LOWBIT_UNSUPPORTED (version 2 int8 files).
 */
export function readLlama2cModel(file: string): Llama2cModel {
  if (typeof file !== 'string' || file.length === 0) throw invalidOption('file', 'a path to a llama2.c model file', file);
  const abs = path.resolve(file);
  const fd = openForRead(abs);
  let size: number;
  let header: Buffer;
  try {
    size = fileSizeOf(fd, abs);
    if (size < LLAMA2C_V0_HEADER_BYTES) {
      throw badFormat(abs, `file is ${size} bytes, too short for a llama2.c header (at least ${LLAMA2C_V0_HEADER_BYTES})`);
    }
    header = Buffer.alloc(Math.min(size, LLAMA2C_V1_HEADER_BYTES));
    readFully(fd, header, 0, abs);
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // nothing useful to do
    }
  }

  let version: 0 | 1;
  let headerBytes: number;
  let fieldsAt: number;
  let shared: boolean;
  if (header.readUInt32LE(0) === LLAMA2C_MAGIC) {
    if (size < LLAMA2C_V1_HEADER_BYTES) {
      throw badFormat(abs, `file starts with the llama2.c magic 0x616b3432 but is ${size} bytes, too short for the ${LLAMA2C_V1_HEADER_BYTES}-byte header`);
    }
    const v = header.readInt32LE(4);
    if (v === 2) {
      throw new LowbitError('LOWBIT_UNSUPPORTED', `${abs}: llama2.c version 2 (int8 "Q8_0" groups) is not supported; export the model as version 0 or 1 (float32)`, { file: abs });
    }
    if (v !== 1) throw badFormat(abs, `unknown llama2.c version ${v} after the magic (expected 1; 2 is int8, unsupported)`);
    const flag = header[36];
    if (flag !== 0 && flag !== 1) throw badFormat(abs, `shared_classifier byte at offset 36 must be 0 or 1, found ${flag}`);
    version = 1;
    headerBytes = LLAMA2C_V1_HEADER_BYTES;
    fieldsAt = 8;
    shared = flag === 1;
  } else {
    version = 0;
    headerBytes = LLAMA2C_V0_HEADER_BYTES;
    fieldsAt = 0;
    shared = true;
  }

  const names = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'] as const;
  const f = names.map((_, i) => header.readInt32LE(fieldsAt + 4 * i));
  const where = version === 0 ? 'legacy (v0) header' : 'v1 header';
  for (let i = 0; i < names.length; i++) {
    const isVocab = names[i] === 'vocab_size';
    if (isVocab && version === 0) {
      if (f[i] === 0) throw badFormat(abs, `${where}: vocab_size must be nonzero (negative means an unshared classifier), found 0`, { field: names[i] });
    } else if (f[i] <= 0) {
      throw badFormat(abs, `${where}: ${names[i]} must be positive, found ${f[i]}${version === 0 ? ' (not a llama2.c file, or a corrupted header?)' : ''}`, { field: names[i] });
    }
  }
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = f;
  if (version === 0 && rawVocab < 0) shared = false;
  const vocabSize = Math.abs(rawVocab);
  if (dim % nHeads !== 0) throw badFormat(abs, `${where}: dim ${dim} is not divisible by n_heads ${nHeads}`, { field: 'n_heads' });
  if (nHeads % nKvHeads !== 0) throw badFormat(abs, `${where}: n_heads ${nHeads} is not divisible by n_kv_heads ${nKvHeads}`, { field: 'n_kv_heads' });
  const headSize = dim / nHeads;
  if (headSize % 2 !== 0) throw badFormat(abs, `${where}: head size dim / n_heads = ${headSize} must be even (RoPE rotates pairs)`, { field: 'n_heads' });
  const config: Llama2cConfig = {
    dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen, headSize, kvDim: nKvHeads * headSize, sharedClassifier: shared,
  };

  // The size in closed form first: layout() lists one segment per layer and kind, so a lying
  // n_layers (2^31 − 1) must be refused before it is built (a multi-second loop, GBs of objects).
  const expected = BigInt(headerBytes) + 4n * bodyFloats(version, config);
  if (expected !== BigInt(size)) {
    const cfg = `dim ${dim}, hidden_dim ${hiddenDim}, n_layers ${nLayers}, n_heads ${nHeads}, n_kv_heads ${nKvHeads}, vocab_size ${rawVocab}, seq_len ${seqLen}`;
    const why = BigInt(size) < expected ? 'truncated file?' : 'trailing bytes, or a header that does not match the weights';
    throw badFormat(abs, `expected ${expected} bytes for a version ${version} file with ${cfg}${shared ? '' : ' (unshared classifier)'}, found ${size} (${why})`, { expected: Number(expected), found: size });
  }

  const segs = layout(version, config); // n_layers is now bounded by the file size
  const data = loadFileData(abs, size);
  const tensors = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  let off = headerBytes;
  for (const s of segs) {
    const n = Number(s.numel);
    if (s.name !== null) {
      // a NaN or Inf weight is refused here, naming the tensor (one vector scan of the mapping)
      assertFiniteTensor(data.subarray(off, off + 4 * n), 'F32', abs, s.name, s.shape);
      let t: Float32Array;
      if (HOST_LITTLE_ENDIAN) t = new Float32Array(data.buffer, data.byteOffset + off, n);
      else t = toFloat32(data.subarray(off, off + 4 * n), 'F32');
      tensors.set(s.name, t);
      shapes.set(s.name, s.shape);
    }
    off += 4 * n;
  }
  const ordered = new Map<string, Float32Array>();
  const orderedShapes = new Map<string, number[]>();
  for (const name of canonicalOrder(config)) {
    const t = tensors.get(name), shape = shapes.get(name);
    if (!t || !shape) throw new LowbitError('LOWBIT_INTERNAL', `${abs}: ${name} was not read (the canonical order names a tensor the reader skipped)`, { tensor: name });
    ordered.set(name, t);
    orderedShapes.set(name, shape);
  }
  return { file: abs, version, config, tensors: ordered, shapes: orderedShapes };
}

/** The whole file, 4-aligned: one native mapping when possible, else one fs read. */
function loadFileData(file: string, size: number): Uint8Array {
  try {
    const m = openMapping(file);
    if (m) {
      try {
        const ab = m.view(0, size);
        if (ab.byteLength === size) return new Uint8Array(ab);
      } finally {
        m.close(); // the view keeps the mapping alive
      }
    }
  } catch {
    // a failed mmap: read with fs below
  }
  const fd = openForRead(file);
  try {
    const buf = new Uint8Array(size); // own ArrayBuffer at offset 0, so 4-aligned
    readFully(fd, buf, 0, file);
    return buf;
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // nothing useful to do
    }
  }
}

/**
 * Read a llama2.c `tokenizer.bin` (§8.4) with `vocabSize` records (from the model header). Pieces
 * keep llama2.c's spelling (space, not `▁`; BOS `"\n<s>\n"` at id 1; EOS `"\n</s>\n"` at id 2).
 *
 * Errors: LOWBIT_NOT_FOUND, LOWBIT_BAD_FORMAT (a record past the end of the file, a length above
 * max_token_length or negative, trailing bytes), LOWBIT_INVALID_OPTION (vocabSize).
 */
export function readLlama2cTokenizer(file: string, vocabSize: number): Vocab {
  if (typeof file !== 'string' || file.length === 0) throw invalidOption('file', 'a path to a tokenizer.bin file', file);
  if (!Number.isSafeInteger(vocabSize) || vocabSize <= 0) throw invalidOption('vocabSize', 'a positive integer', vocabSize);
  const abs = path.resolve(file);
  const fd = openForRead(abs);
  let buf: Buffer;
  let size: number;
  try {
    const fileSize = fileSizeOf(fd, abs);
    if (fileSize < 4) throw badFormat(abs, `file is ${fileSize} bytes, too short for the 4-byte max_token_length`);
    // At least 8 bytes per record: reject an impossible count before allocating for it.
    if (vocabSize > (fileSize - 4) / 8) {
      throw badFormat(abs, `expected ${vocabSize} records (at least ${4 + 8 * vocabSize} bytes), but the file has ${fileSize} bytes (wrong vocab size, or a truncated file?)`);
    }
    const head = Buffer.alloc(4);
    readFully(fd, head, 0, abs);
    const maxLen = head.readUInt32LE(0);
    if (maxLen > LLAMA2C_MAX_TOKEN_LENGTH) {
      throw badFormat(abs, `max_token_length ${maxLen} exceeds the limit of ${LLAMA2C_MAX_TOKEN_LENGTH} bytes (not a llama2.c tokenizer.bin?)`);
    }
    // vocabSize records of at most 8 + max_token_length bytes each: only that much is read (it was
    // the whole file); a larger file fails below, at the record that breaks a rule or as trailing bytes
    size = fileSize;
    buf = Buffer.alloc(Math.min(fileSize, 4 + vocabSize * (8 + maxLen)));
    readFully(fd, buf, 0, abs);
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // nothing useful to do
    }
  }
  const maxTokenLength = buf.readUInt32LE(0);
  const pieces = new Array<string>(vocabSize);
  const pieceBytes = new Array<Uint8Array>(vocabSize);
  const scores = new Float32Array(vocabSize);
  const td = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }); // keep U+FEFF: Llama 2 has it as a piece
  let p = 4;
  for (let i = 0; i < vocabSize; i++) {
    if (p + 8 > buf.length) {
      throw badFormat(abs, `record ${i} of ${vocabSize}: header at offset ${p} extends past the end of the file (${buf.length} bytes)`, { record: i });
    }
    scores[i] = buf.readFloatLE(p);
    const len = buf.readInt32LE(p + 4);
    p += 8;
    if (len < 0) throw badFormat(abs, `record ${i}: negative length ${len}`, { record: i });
    if (len > maxTokenLength) throw badFormat(abs, `record ${i}: length ${len} exceeds max_token_length ${maxTokenLength}`, { record: i });
    if (p + len > buf.length) {
      throw badFormat(abs, `record ${i}: ${len} bytes at offset ${p} extend past the end of the file (${buf.length} bytes)`, { record: i });
    }
    const b = new Uint8Array(buf.subarray(p, p + len)); // own copy, independent of the file buffer
    pieceBytes[i] = b;
    pieces[i] = td.decode(b);
    p += len;
  }
  if (p !== size) {
    throw badFormat(abs, `${size - p} trailing bytes after ${vocabSize} records (ends at ${p}, file has ${size}; wrong vocab size?)`);
  }
  return { pieces, pieceBytes, scores, bos: Math.min(1, vocabSize - 1), eos: Math.min(2, vocabSize - 1), maxTokenLength };
}

/**
 * Write a vocabulary as llama2.c's tokenizer.bin: max_token_length (u32), then per piece its score
 * (f32), byte length (i32) and bytes — what {@link readLlama2cTokenizer} reads back unchanged.
 */
export function writeLlama2cTokenizer(vocab: Vocab, file: string): void {
  let bytes = 4;
  for (const b of vocab.pieceBytes) bytes += 8 + b.length;
  const buf = Buffer.alloc(bytes);
  const maxLen = vocab.pieceBytes.reduce((m, b) => Math.max(m, b.length), 0);
  buf.writeUInt32LE(Math.max(maxLen, vocab.maxTokenLength), 0);
  let p = 4;
  for (let i = 0; i < vocab.pieceBytes.length; i++) {
    buf.writeFloatLE(vocab.scores[i], p);
    buf.writeInt32LE(vocab.pieceBytes[i].length, p + 4);
    buf.set(vocab.pieceBytes[i], p + 8);
    p += 8 + vocab.pieceBytes[i].length;
  }
  try {
    fs.writeFileSync(file, buf);
  } catch (e) {
    throw toLowbitError(e, `${file}: cannot write the tokenizer`);
  }
}
