/**
 * Model: an opened Hugging Face model directory (config.json + safetensors, possibly sharded).
 * Opening reads only headers: tensors are mapped lazily, so a 10 GB checkpoint opens in
 * milliseconds with small RSS.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, invalidOption, optionError } from '../errors';
import { readHfConfig, type ModelConfig } from './hf-config';
import { listLinearModules, checkNonLinearTensors, type LinearModule, type ListLinearModulesOptions } from './hf-model';
import { openSafetensors, type SafetensorsReader } from './safetensors';
import { parseGptqConfig, type GptqConfig } from './gptq';
import { dtypeSize, type Dtype } from './dtype';

/** Options of {@link openModel}. */
export type OpenModelOptions = ListLinearModulesOptions;

/** An opened model directory. Call `close()` (or use `using`) when done. */
export interface Model {
  /** Absolute path of the directory. */
  readonly dir: string;
  readonly config: ModelConfig;
  readonly tensors: SafetensorsReader;
  /** The linear layers that quantization applies to, in layer order (q, k, v, o, gate, up, down). */
  readonly linears: LinearModule[];
  close(): void;
  [Symbol.dispose](): void;
}

function checkDir(dir: string): string {
  if (typeof dir !== 'string' || dir.length === 0) throw invalidOption('model', 'a directory path', dir);
  const abs = path.resolve(dir);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new LowbitError('LOWBIT_NOT_FOUND', `${abs}: no such model directory`, { file: abs });
  }
  if (!st.isDirectory()) throw optionError('model', `${abs}: expected a model directory (config.json + *.safetensors), found a file`, { file: abs });
  return abs;
}

/**
 * Open an unquantized Llama-family model directory (llama, mistral, qwen2) and validate its
 * config and the shapes of every tensor the architecture names.
 */
export function openModel(dir: string, options: OpenModelOptions = {}): Model {
  const abs = checkDir(dir);
  const config = readHfConfig(abs);
  const tensors = openSafetensors(abs);
  try {
    checkNonLinearTensors(config, tensors);
    const linears = listLinearModules(config, tensors, options);
    let closed = false;
    const close = () => {
      if (!closed) {
        closed = true;
        tensors.close();
      }
    };
    return { dir: abs, config, tensors, linears, close, [Symbol.dispose]: close };
  } catch (e) {
    tensors.close();
    throw namingDir(e, abs);
  }
}

/**
 * The shape checks of hf-model name the tensor but not the model; a file-level error (BAD_FORMAT,
 * SHAPE_MISMATCH, NOT_FOUND) that does not name the directory gets it as a prefix.
 */
function namingDir(e: unknown, dir: string): unknown {
  if (!(e instanceof LowbitError) || e.message.includes(dir)) return e;
  if (e.code !== 'LOWBIT_BAD_FORMAT' && e.code !== 'LOWBIT_SHAPE_MISMATCH' && e.code !== 'LOWBIT_NOT_FOUND') return e;
  return new LowbitError(e.code, `${dir}: ${e.message}`, { ...e.details, dir }, { cause: e });
}

/** What {@link inspectModel} reports. */
export interface ModelSummary {
  /** What the source is: a Hugging Face directory, a GGUF file or a llama2.c checkpoint. */
  kind: 'hf-dir' | 'gguf' | 'llama2c';
  /** The model's directory, or the file for GGUF / llama2.c. */
  dir: string;
  family: string;
  architectures: string[];
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  torchDtype: string;
  /** Logical parameters (a packed GPTQ module counts in × out). */
  parameters: number;
  /** Bytes of tensor data. */
  tensorBytes: number;
  /** Bytes of all files in the directory. */
  bytesOnDisk: number;
  /** Tensor count per dtype. */
  dtypes: Record<string, number>;
  files: string[];
  /** Parsed GPTQ quantization_config, when the model is a GPTQ checkpoint. */
  quantization: GptqConfig | null;
  tensors: { name: string; dtype: string; shape: number[]; bytes: number }[];
}

/** Describe a model directory (unquantized or a GPTQ checkpoint) from its headers alone. */
export function inspectHfDir(dir: string): ModelSummary {
  const abs = checkDir(dir);
  const config = readHfConfig(abs);
  const qc = config.raw.quantization_config;
  const quantization = qc !== undefined ? parseGptqConfig(qc, path.join(abs, 'config.json')) : null;
  const reader = openSafetensors(abs);
  try {
    const dtypes: Record<string, number> = {};
    const tensors = [];
    let parameters = 0;
    for (const name of reader.names()) {
      const t = reader.info(name);
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
      tensors.push({ name, dtype: t.dtype, shape: t.shape, bytes: t.byteLength });
      const numel = t.shape.reduce((a, b) => a * b, 1);
      if (quantization && name.endsWith('.qweight')) parameters += (t.shape[0] * 32) / quantization.bits * t.shape[1];
      else if (quantization && /\.(qzeros|scales|g_idx)$/.test(name)) continue;
      else parameters += numel;
    }
    let bytesOnDisk = 0;
    for (const f of fs.readdirSync(abs)) {
      // a dangling symlink (a Hugging Face cache whose blob is gone) or an unreadable entry is not
      // a file of the model: it counts nothing, instead of failing with a raw ENOENT
      let st: fs.Stats;
      try {
        st = fs.statSync(path.join(abs, f));
      } catch {
        continue;
      }
      if (st.isFile()) bytesOnDisk += st.size;
    }
    return {
      kind: 'hf-dir', dir: abs, family: config.family, architectures: config.architectures, hiddenSize: config.hiddenSize,
      intermediateSize: config.intermediateSize, layers: config.numLayers, heads: config.numHeads, kvHeads: config.numKvHeads,
      headDim: config.headDim, vocabSize: config.vocabSize, maxPositionEmbeddings: config.maxPositionEmbeddings,
      tieWordEmbeddings: config.tieWordEmbeddings, torchDtype: config.torchDtype, parameters,
      tensorBytes: reader.totalBytes(), bytesOnDisk, dtypes, files: reader.files.map((f) => path.basename(f)), quantization, tensors,
    };
  } finally {
    reader.close();
  }
}

/** Bytes per element of a float dtype name. @internal */
export function elementSize(dtype: string): number {
  return dtypeSize(dtype as Dtype);
}
