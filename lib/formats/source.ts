/**
 * What kind of model a path holds, decided by magic bytes and layout (never by the file name
 * alone): a Hugging Face directory (config.json + safetensors), a single safetensors file inside
 * such a directory, a GGUF file, or a llama2.c checkpoint. Anything else is one
 * LOWBIT_BAD_FORMAT error that names every kind tried and why it did not match. A Hugging Face id
 * (`org/name[@revision]`) that is not a local path resolves to its snapshot in the local cache.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, badFormat, toLowbitError } from '../errors';
import { LLAMA2C_MAGIC, LLAMA2C_V0_HEADER_BYTES, readLlama2cModel } from './llama2c';
import { GGUF_MAGIC, ggufLlamaConfig, readGguf } from './gguf';
import { inspectHfDir, type ModelSummary } from './hf-dir';
import { looksLikeRepoId, resolveRepoId } from './hf-cache';

/** The kinds of model source lowbit reads. */
export type ModelSourceKind = 'hf-dir' | 'gguf' | 'llama2c';

/** A model source, as detected. */
export interface ModelSource {
  kind: ModelSourceKind;
  /** Absolute path of what was given. */
  path: string;
  /** For 'hf-dir': the directory (a single .safetensors file given resolves to its directory). */
  dir: string | null;
}

/** The first `n` bytes of a file; a file that cannot be read is LOWBIT_IO naming it (it was a raw EACCES / EISDIR). */
function readHead(file: string, n: number): Buffer {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const b = Buffer.alloc(n);
      const got = fs.readSync(fd, b, 0, n, 0);
      return b.subarray(0, got);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    throw toLowbitError(e, file);
  }
}

/** Why a file is not a safetensors file, or null when its first bytes are a safetensors header. */
function safetensorsProblem(head: Buffer, size: number): string | null {
  if (head.length < 9) return `${size} bytes, shorter than a header`;
  const len = head.readBigUInt64LE(0);
  if (len < 2n || len > BigInt(size - 8)) return `header length ${len} does not fit the file`;
  if (head[8] !== 0x7b) return 'the header does not start with "{"';
  return null;
}

/**
 * Why a file is not a llama2.c checkpoint, or null when its header is plausible. A version 1/2
 * header (magic first) gets the same plausibility limits on its seven integers as a legacy one:
 * it used to be trusted on its magic alone, so a seq_len of 2^31 − 1 went on to loadModel, whose
 * KV cache for it cannot be allocated (the process aborted on std::bad_alloc).
 */
function llama2cProblem(head: Buffer, size: number): string | null {
  const magic = head.length >= 8 && head.readUInt32LE(0) === LLAMA2C_MAGIC;
  const at = magic ? 8 : 0;
  if (head.length < at + LLAMA2C_V0_HEADER_BYTES) return `${size} bytes, shorter than its ${magic ? 256 : LLAMA2C_V0_HEADER_BYTES}-byte header`;
  const f = [0, 1, 2, 3, 4, 5, 6].map((i) => head.readInt32LE(at + 4 * i));
  const [dim, hidden, layers, heads, kvHeads, vocab, seq] = f;
  const sane = (v: number, max: number) => v > 0 && v <= max;
  if (!sane(dim, 1 << 16) || !sane(hidden, 1 << 18) || !sane(layers, 1024) || !sane(heads, 1024) || !sane(kvHeads, 1024) ||
      !sane(Math.abs(vocab), 1 << 22) || !sane(seq, 1 << 22) || dim % heads !== 0 || heads % kvHeads !== 0) {
    return `its 7-integer header (${f.join(', ')}) is not a model's dimensions`;
  }
  if (magic) return null; // the reader checks the exact size of a versioned file
  // the float32 weights must fill the rest of the file (at least the embedding and one layer)
  if ((size - LLAMA2C_V0_HEADER_BYTES) % 4 !== 0 || size - LLAMA2C_V0_HEADER_BYTES < 4 * Math.abs(vocab) * dim) return `its ${size} bytes do not hold the float32 weights its header describes`;
  return null;
}

/**
 * Detect the kind of model at `p`. A directory must hold config.json and safetensors; a file is
 * GGUF by its magic, safetensors by its header (then its directory is the model), llama2.c by its
 * magic or a plausible v0 header.
 */
export function detectModelSource(p: string): ModelSource {
  // `org/name[@revision]` that is not a local path: the snapshot in the local Hugging Face cache
  const abs = looksLikeRepoId(p) ? resolveRepoId(p) : path.resolve(p);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new LowbitError('LOWBIT_NOT_FOUND', `${abs}: no such model file or directory`, { file: abs });
  }
  if (st.isDirectory()) {
    const tried: string[] = [];
    if (!fs.existsSync(path.join(abs, 'config.json'))) tried.push('a Hugging Face model directory: no config.json');
    let files: string[];
    try {
      files = fs.readdirSync(abs);
    } catch (e) {
      throw toLowbitError(e, abs);
    }
    if (!files.some((f) => f.endsWith('.safetensors') || f === 'model.safetensors.index.json')) tried.push('a Hugging Face model directory: no *.safetensors');
    if (tried.length === 0) return { kind: 'hf-dir', path: abs, dir: abs };
    const models = files.filter((f) => f.endsWith('.gguf') || f.endsWith('.bin'));
    throw new LowbitError('LOWBIT_NOT_FOUND', `${abs}: not a model directory (${tried.join('; ')})${models.length ? `; model files inside: ${models.slice(0, 5).join(', ')} (pass one of them)` : ''}`, { file: abs });
  }
  const head = readHead(abs, 256);
  if (head.length >= 4 && head.readUInt32LE(0) === GGUF_MAGIC) return { kind: 'gguf', path: abs, dir: null };
  const tried: string[] = [`GGUF: no "GGUF" magic`];
  const sp = safetensorsProblem(head, st.size);
  if (sp === null) {
    const dir = path.dirname(abs);
    if (!fs.existsSync(path.join(dir, 'config.json'))) {
      throw badFormat(abs, `a safetensors file without its config.json: pass the Hugging Face model directory that holds both (${dir} has no config.json)`);
    }
    return { kind: 'hf-dir', path: abs, dir };
  }
  tried.push(`safetensors: ${sp}`);
  const lp = llama2cProblem(head, st.size);
  if (lp === null) return { kind: 'llama2c', path: abs, dir: null };
  tried.push(`llama2.c: ${lp}`);
  throw badFormat(abs, `not a model lowbit reads (tried ${tried.join('; ')}; a Hugging Face model is a directory with config.json and *.safetensors)`, { tried });
}

/**
 * The tokenizer file lowbit uses for a model when none is given: tokenizer.json (HF) or
 * tokenizer.bin (llama2.c's format) in the model's directory, or next to a model file. GGUF files
 * carry their vocabulary, so none is looked for. Returns null when there is none.
 */
export function findTokenizer(src: ModelSource): string | null {
  if (src.kind === 'gguf') return null;
  const dir = src.dir ?? path.dirname(src.path);
  for (const name of src.kind === 'hf-dir' ? ['tokenizer.json', 'tokenizer.bin'] : ['tokenizer.bin']) {
    const f = path.join(dir, name);
    if (fs.existsSync(f)) return f;
  }
  return null;
}

/** Describe any model source lowbit reads (HF directory, GGUF, llama2.c) from its headers. */
export function inspectModel(p: string): ModelSummary {
  const src = detectModelSource(p);
  if (src.kind === 'hf-dir') return inspectHfDir(src.dir ?? src.path);
  const size = fs.statSync(src.path).size;
  const dtypes: Record<string, number> = {};
  const tensors: ModelSummary['tensors'] = [];
  if (src.kind === 'gguf') {
    const g = readGguf(src.path);
    try {
      const c = ggufLlamaConfig(g);
      let parameters = 0, tensorBytes = 0;
      const byType = new Map<string, number>();
      for (const t of g.tensors) {
        dtypes[t.typeName] = (dtypes[t.typeName] ?? 0) + 1;
        tensors.push({ name: t.name, dtype: t.typeName, shape: t.shape, bytes: t.byteLength });
        parameters += t.numel;
        tensorBytes += t.byteLength;
        if (t.shape.length === 2) byType.set(t.typeName, (byType.get(t.typeName) ?? 0) + t.numel);
      }
      const main = [...byType].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'F32';
      return {
        kind: 'gguf', dir: src.path, family: 'llama', architectures: ['llama'], hiddenSize: c.dim, intermediateSize: c.hiddenDim, layers: c.nLayers,
        heads: c.nHeads, kvHeads: c.nKvHeads, headDim: c.headDim, vocabSize: c.vocabSize, maxPositionEmbeddings: c.contextLength,
        tieWordEmbeddings: !g.has('output.weight'), torchDtype: main, parameters, tensorBytes, bytesOnDisk: size, dtypes,
        files: [path.basename(src.path)], quantization: null, tensors,
      };
    } finally {
      g.close();
    }
  }
  const m = readLlama2cModel(src.path);
  const c = m.config;
  let parameters = 0;
  dtypes.F32 = m.tensors.size;
  for (const [name, t] of m.tensors) {
    tensors.push({ name, dtype: 'F32', shape: m.shapes.get(name) ?? [t.length], bytes: t.byteLength });
    parameters += t.length;
  }
  return {
    kind: 'llama2c', dir: src.path, family: 'llama', architectures: [`llama2.c v${m.version}`], hiddenSize: c.dim, intermediateSize: c.hiddenDim,
    layers: c.nLayers, heads: c.nHeads, kvHeads: c.nKvHeads, headDim: c.headSize, vocabSize: c.vocabSize, maxPositionEmbeddings: c.seqLen,
    tieWordEmbeddings: c.sharedClassifier, torchDtype: 'float32', parameters, tensorBytes: parameters * 4, bytesOnDisk: size, dtypes,
    files: [path.basename(src.path)], quantization: null, tensors,
  };
}
