/**
 * loadModel: a Llama-family model in lowbit's native runtime, from any of the formats lowbit
 * reads — llama2.c `.bin` (v0/v1), GGUF (F32/F16/BF16 tensors), a Hugging Face directory
 * (safetensors), or a lowbit GPTQ checkpoint (dequantized at load for now). Weights are held as
 * f32; compute is f32. One forward pass at a time per model (calls are queued).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, toLowbitError, optionError } from '../errors';
import { createModelHandle, type ModelHandle, type NativeModelConfig, type NativeModelWeights, type NativePackedLinear, type NativeQBlock, type NativeStats } from '../ops/model';
import { checkThreads } from '../config/run';
import { qblockFromGgml, qblockFromGptq, GGML_QBLOCK_TYPES, type GgmlQBlockType } from '../ops/qdot';
import { isLowbitError } from '../errors';
import { unpackValues } from '../ops/pack';
import { readLlama2cModel } from '../formats/llama2c';
import { detectModelSource, findTokenizer, type ModelSource } from '../formats/source';
import { readGguf, ggufLlamaConfig, ggufLlamaTensorName } from '../formats/gguf';
import { decodeGgml, type GgmlDecodeType } from '../formats/ggml-blocks';
import { readHfConfig, type ModelConfig, type RopeScaling } from '../formats/hf-config';
import { openSafetensors } from '../formats/safetensors';
import { parseGptqConfig, decodeGptqModule } from '../formats/gptq';
import { Tokenizer, type TextTokenizer } from './tokenizer';
import { HfTokenizer } from './tokenizer-hf';
import { Sampler, type SamplerOptions } from './sampler';
import { invalidOption, checkBool, checkInt, checkOneOf, checkSignal } from '../config/validate';
import { toFloat32 } from '../formats/dtype';
import { normalizeKv, normalizeActQuant, ACT_INPUTS, type KvCacheOptions, type ActQuantOptions, type NormalizedKv, type NormalizedActQuant, type ActInput } from '../config/runtime-quant';

/** The context {@link loadModel} allocates unless told otherwise (`maxContext`). */
export const DEFAULT_MAX_CONTEXT = 4096;

/** Architecture of a loaded model. */
export interface RuntimeConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Largest context (positions) this model instance accepts. */
  seqLen: number;
  rmsEps: number;
  ropeTheta: number;
  /** 'adjacent' (llama2.c, GGUF) or 'half' (Hugging Face) rotary pairs. */
  rope: 'adjacent' | 'half';
  /** RoPE frequencies (headDim / 2) of a model that scales them; absent: 1 / ropeTheta^(2i / headDim). */
  invFreq?: Float32Array;
  /**
   * down_proj's input is rotated online by the rotation of this seed (a lowbit checkpoint rotated
   * with `rotate:down`: config.json lowbit.rotateDown); absent: no rotation.
   */
  rotateDownSeed?: number;
}

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /** A llama2.c tokenizer.bin; without it the model's own vocabulary is used (GGUF metadata, or an HF directory's tokenizer.json). */
  tokenizer?: string;
  /**
   * The context this instance holds (the KV cache is allocated for it): at most the model's own.
   * @default min(the model's context, 4096) — a 131k-context model does not reserve a 34 GB cache
   */
  maxContext?: number;
  /**
   * Run quantized layers from their codes, never dequantized: GPTQ/RTN checkpoints of 2, 3, 4 and
   * 8 bits and GGUF Q4_0 / Q4_1 / Q8_0 / Q4_K / Q6_K tensors (1/8 to 1/4 of the f32 memory, faster decoding).
   * false: dequantize every quantized layer to f32 at load. @default true
   */
  packed?: boolean;
  /**
   * How packed layers multiply. 'int8' (default): each linear layer's input is quantized to int8
   * per block of input channels and multiplied with integer dot products (W4A8 / W8A8; the layers
   * are repacked at load into lowbit's kernel layout — llama.cpp runs its Q4_0/Q8_0 the same way).
   * 'f32': activations stay f32 — GPTQ 4-bit layers run from their packed words, every other
   * quantized type is dequantized at load. Layers the int8 layout can't hold (input channels not a
   * multiple of 32, group sizes not a multiple of 32) fall back to 'f32' on their own.
   * @default 'int8'
   */
  activations?: 'int8' | 'f32';
  /**
   * Compute threads of every call on this model (forward, generate, evaluate, calibration), 1–1024.
   * @default the process default (setThreads, LOWBIT_THREADS, physical cores)
   */
  threads?: number;
  /**
   * Convert the F16/BF16 weights of a Hugging Face checkpoint to f32 at load. By default they stay
   * 16-bit, read where they lie in the memory-mapped file (half the memory of f32: a 7B F16 model
   * in about 14 GB, not 28) and multiplied by the f32 kernels — converted in registers when
   * decoding, in exactly converted tiles otherwise — so logits are the same either way; f32 copies
   * are needed only to change weights in place. @default false
   */
  f32Weights?: boolean;
  /**
   * Quantize the KV cache (stored quantized: bytes per position in `model.quantization.kv`). A
   * checkpoint whose config.json has a `lowbit.kv` section runs with it unless this is given;
   * `null` turns it off.
   */
  kv?: KvCacheOptions | null;
  /**
   * Quantize the input of every linear module (W·A8, W·A4): through the integer-dot kernels where the
   * layer is packed and the setting is what they do (8-bit, dynamic), as fake quantization (quantize
   * and decode in f32) everywhere else — `model.quantization.activations` says which ran where. A
   * checkpoint's `lowbit.actQuant` applies unless this is given; `null` turns it off.
   */
  actQuant?: ActQuantOptions | null;
}

/** What a loaded model quantizes at run time, and how (see {@link LanguageModel.quantization}). */
export interface RuntimeQuantization {
  weights: 'f32' | 'f16' | 'bf16' | 'packed' | 'mixed';
  kv: (NormalizedKv & { bytesPerToken: number; f32BytesPerToken: number; f16BytesPerToken: number; fixedBytes: number; from: 'options' | 'checkpoint' }) | null;
  activations: {
    bits: number; scheme: 'dynamic' | 'static'; inputs: ActInput[]; from: 'options' | 'checkpoint';
    /** Module inputs (layer.input) multiplied by the integer-dot kernels (int8 per block of channels) and by fake quantization. */
    kernel: number; fake: number;
  } | null;
  /** down_proj's input is rotated online (R4; the checkpoint's weights were folded with it). */
  rotateDown: boolean;
}

/** Options of {@link LanguageModel.generate}. */
export interface GenerateOptions extends SamplerOptions {
  prompt?: string;
  /** Tokens to run, prompt included (run.c's -n; 0 or more than the context: the context). @default 256 */
  steps?: number;
  /** New tokens to generate after the prompt (capped by the context), instead of `steps`. */
  maxTokens?: number;
  signal?: AbortSignal;
  /** Called with each new piece of text as it is decoded. */
  onText?: (text: string) => void;
}

/** What {@link LanguageModel.generate} returns (run.c's semantics). */
export interface GenerateResult {
  text: string;
  /** Every token of the run: prompt (BOS first) and generated tokens; a final BOS is not included. */
  ids: number[];
  stoppedBy: 'bos' | 'steps';
  promptTokens: number;
  generatedTokens: number;
  /** Prompt processing, tokens/s (the prompt runs as one batch). */
  promptTokensPerSecond: number;
  /** Decoding, tokens/s. */
  decodeTokensPerSecond: number;
}

const LIN = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
const HF_LIN: Record<(typeof LIN)[number], string> = { q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj', gate: 'mlp.gate_proj', up: 'mlp.up_proj', down: 'mlp.down_proj' };

/** A model ready to run. Call `dispose()` when done. */
export class LanguageModel {
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  /** @internal */
  constructor(readonly config: RuntimeConfig, readonly tokenizer: TextTokenizer | null, readonly source: string,
    private readonly native: ModelHandle, private readonly weights: NativeModelWeights, private readonly threads: number | undefined,
    /** What runs quantized besides the stored weights: the KV cache, the activations. */
    readonly quantization: RuntimeQuantization = { weights: 'f32', kv: null, activations: null, rotateDown: false }) {}

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /**
   * Run `tokens` at positions pos0 … pos0+n−1 (the cache must hold 0 … pos0−1) and return the
   * logits of the last `logitRows` positions ((logitRows × vocab) row-major).
   */
  forward(tokens: Int32Array | number[], pos0: number, logitRows = 1, signal?: AbortSignal): Promise<Float32Array> {
    if (this.disposed) return Promise.reject(new LowbitError('LOWBIT_DISPOSED', `${this.source}: model is disposed`));
    const t = tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
    if (t.length === 0) return Promise.reject(invalidOption('tokens', 'at least one token', t));
    if (!Number.isSafeInteger(pos0) || pos0 < 0) return Promise.reject(invalidOption('pos0', 'a non-negative integer', pos0));
    if (!Number.isSafeInteger(logitRows) || logitRows < 0) return Promise.reject(invalidOption('logitRows', 'a non-negative integer', logitRows));
    if (pos0 + t.length > this.config.seqLen) {
      return Promise.reject(optionError('pos0', `${this.source}: positions ${pos0}…${pos0 + t.length - 1} exceed the context of ${this.config.seqLen}`));
    }
    for (const id of t) if (id < 0 || id >= this.config.vocabSize) return Promise.reject(optionError('tokens', `token id ${id} is outside the vocabulary (${this.config.vocabSize})`));
    const rows = Math.min(logitRows, t.length);
    const logits = new Float32Array(rows * this.config.vocabSize);
    return this.serial(async () => {
      await this.native.forward(t, pos0, logits, rows, { signal, threads: this.threads });
      return logits;
    });
  }

  /** Generate text exactly as llama2.c's run.c does (see expected.json's run_c_semantics). */
  async generate(opts: GenerateOptions = {}): Promise<GenerateResult> {
    const signal = checkSignal(opts.signal);
    if (opts.steps !== undefined && opts.maxTokens !== undefined) throw optionError('maxTokens', 'maxTokens: give steps (positions, prompt included, as run.c) or maxTokens (new tokens), not both');
    const sampler = new Sampler({ temperature: opts.temperature ?? 1.0, topP: opts.topP ?? 0.9, seed: opts.seed });
    const tok = this.tokenizer;
    if (!tok) throw optionError('tokenizer', `${this.source}: no tokenizer: the model has no tokenizer.json, tokenizer.bin or GGUF vocabulary (pass tokenizer, --tokenizer FILE)`);
    const prompt = tok.encode(opts.prompt ?? '', { bos: true });
    let steps: number;
    if (opts.maxTokens !== undefined) {
      // run.c samples one token per position from the prompt's last: prompt − 1 + new positions
      steps = Math.min(this.config.seqLen, prompt.length - 1 + checkInt('maxTokens', opts.maxTokens, 1, 1e9));
    } else {
      steps = checkInt('steps', opts.steps ?? 256, 0, 1e9);
      if (steps === 0 || steps > this.config.seqLen) steps = this.config.seqLen;
    }
    const ids = [prompt[0]];
    const out: Uint8Array[] = [];
    let stoppedBy: 'bos' | 'steps' = 'steps';
    const nPrompt = Math.min(prompt.length, steps);
    // The prompt runs as one batch (logits of its last position only), then one token at a time.
    const t0 = performance.now();
    let logits = await this.forward(Int32Array.from(prompt.slice(0, nPrompt)), 0, 1, signal);
    const tPrompt = performance.now();
    let token = prompt[nPrompt - 1];
    for (let i = 1; i < nPrompt; i++) {
      out.push(tok.printedPiece(prompt[i - 1], prompt[i]));
      ids.push(prompt[i]);
      opts.onText?.(Buffer.from(out[out.length - 1]).toString('utf8'));
    }
    // run.c: `steps` iterations; iteration `pos` has the logits of position `pos` and picks the
    // next token (from the prompt while inside it, else sampled), stopping early on BOS.
    let pos = nPrompt - 1;
    let generated = 0;
    while (pos < steps) {
      const next = pos + 1 < prompt.length ? prompt[pos + 1] : sampler.sample(logits);
      pos++;
      if (next === 1) {
        stoppedBy = 'bos';
        break;
      }
      out.push(tok.printedPiece(token, next));
      opts.onText?.(Buffer.from(out[out.length - 1]).toString('utf8'));
      ids.push(next);
      token = next;
      if (pos > prompt.length - 1) generated++;
      if (pos < steps) logits = await this.forward(Int32Array.of(token), pos, 1, signal);
    }
    const tEnd = performance.now();
    const text = Buffer.concat(out).toString('utf8');
    return {
      text, ids, stoppedBy, promptTokens: nPrompt, generatedTokens: generated,
      promptTokensPerSecond: nPrompt / Math.max(1e-9, (tPrompt - t0) / 1000),
      decodeTokensPerSecond: generated / Math.max(1e-9, (tEnd - tPrompt) / 1000),
    };
  }

  /**
   * The live f32 weight of a linear layer (shared with the native model: writing it changes the
   * model). kind: q, k, v, o, gate, up, down. @internal
   */
  _linearWeight(layer: number, kind: 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down'): Float32Array {
    const w = this.weights.layers[layer][kind];
    if (!(w instanceof Float32Array)) throw new LowbitError('LOWBIT_INTERNAL', `${this.source}: layer ${layer} ${kind} is 16-bit (load with f32Weights to change weights in place)`);
    return w;
  }

  /** The live RMSNorm gain before a layer's attention (`attn`) or MLP (`ffn`), shared with the native model. @internal */
  _normWeight(layer: number, which: 'attn' | 'ffn'): Float32Array {
    const L = this.weights.layers[layer];
    return which === 'attn' ? L.attnNorm : L.ffnNorm;
  }

  /** The live bias of q, k or v (Qwen2-type models), or null. @internal */
  _linearBias(layer: number, kind: 'q' | 'k' | 'v'): Float32Array | null {
    return this.weights.layers[layer][`${kind}Bias`] ?? null;
  }

  /**
   * A second model on the same weight arrays (nothing copied: writing a weight changes both) that
   * runs with other activation quantization (`null`: none), its own KV cache and no stored KV
   * setting. Dispose it before this one. @internal
   */
  _withActQuant(actQuant: ActQuantOptions | null): LanguageModel {
    if (this.disposed) throw new LowbitError('LOWBIT_DISPOSED', `${this.source}: model is disposed`);
    const rq = runtimeQuantization(this.config, this.weights, { actQuant }, {}, this.source);
    const cfg = this.config;
    const native = createModelHandle({ ...cfg, ropeStyle: cfg.rope === 'half' ? 1 : 0, ...rq.native }, this.weights);
    return new LanguageModel(cfg, this.tokenizer, this.source, native, this.weights, this.threads, rq.report);
  }

  /** Embedding rows of `ids`, written one after another into `out` from `offset`. @internal */
  _embedRows(ids: ArrayLike<number>, out: Float32Array, offset = 0): void {
    const dim = this.config.dim, e = this.weights.embed;
    for (let i = 0; i < ids.length; i++) {
      const row = e.subarray(ids[i] * dim, (ids[i] + 1) * dim);
      out.set(row instanceof Float32Array ? row : toFloat32(new Uint8Array(row.buffer, row.byteOffset, row.byteLength), this.weights.dtype16 === 2 ? 'BF16' : 'F16'), offset + i * dim);
    }
  }

  /** The dtype the weights are held in: 'F32', or the checkpoint's 'F16' / 'BF16' kept 16-bit. */
  get weightDtype(): 'F32' | 'F16' | 'BF16' {
    return this.weights.dtype16 === 1 ? 'F16' : this.weights.dtype16 === 2 ? 'BF16' : 'F32';
  }

  /** Nothing to load: every layer is resident. @internal */
  _releaseLayer(): void {
    // the in-memory model keeps its weights
  }

  /**
   * Run decoder layer `layer` over hidden states (samples × seqLen × dim, in place), feeding the
   * given statistics buffers. @internal
   */
  _calibrateBlock(layer: number, hidden: Float32Array, seqLen: number, stats: Partial<Record<'attn' | 'o' | 'mlp' | 'down', NativeStats>>,
    signal?: AbortSignal, onProgress?: (done: number, total: number) => void): Promise<void> {
    if (this.disposed) return Promise.reject(new LowbitError('LOWBIT_DISPOSED', `${this.source}: model is disposed`));
    return this.serial(() => this.native.calibrateBlock(layer, hidden, seqLen, stats, { signal, threads: this.threads, onProgress }));
  }

  /** Release the native model (weights are released when garbage-collected). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.native.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A tensor by name: f32, or — when `wide` (a linear weight, the embedding, the head) and the source keeps them — its 16-bit bits. */
type Getter = (name: string, wide?: boolean) => Float32Array | Uint16Array | null;

/** A getter of tensors that checks presence, element count and (when known) shape. */
function needer(get: Getter, where: string, shapeOf: (name: string) => number[] | null) {
  function need(name: string, numel: number, shape?: number[]): Float32Array;
  function need(name: string, numel: number, shape: number[], wide: true): Float32Array | Uint16Array;
  function need(name: string, numel: number, shape?: number[], wide?: boolean): Float32Array | Uint16Array {
    const t = get(name, wide);
    if (t instanceof Uint16Array && !wide) throw new LowbitError('LOWBIT_INTERNAL', `${where}: ${name} came back 16-bit`);
    if (!t) throw new LowbitError('LOWBIT_BAD_FORMAT', `${where}: missing tensor ${name}`, { tensor: name });
    if (t.length !== numel) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${where}: ${name} has ${t.length} elements, expected ${numel}`, { tensor: name });
    const got = shapeOf(name);
    if (shape && got && (got.length !== shape.length || got.some((d, i) => d !== shape[i]))) {
      throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${where}: ${name} has shape [${got.join(', ')}], expected [${shape.join(', ')}]`, { tensor: name });
    }
    return t;
  }
  return need;
}

/**
 * The weights of decoder layer `i` (norms, the seven linear layers, q/k/v/o biases), f32 unless
 * `packed` holds a module's packed layout. @internal
 */
export function layerTensors(get: Getter, cfg: RuntimeConfig, where: string, shapeOf: (name: string) => number[] | null, i: number,
  packed: Map<string, NativePackedLinear | NativeQBlock> = new Map()): NativeModelWeights['layers'][number] {
  const need = needer(get, where, shapeOf);
  const { dim, hiddenDim: hid, nHeads, nKvHeads, headDim } = cfg;
  const qd = nHeads * headDim, kvd = nKvHeads * headDim;
  const dims: Record<(typeof LIN)[number], [number, number]> = { q: [qd, dim], k: [kvd, dim], v: [kvd, dim], o: [dim, qd], gate: [hid, dim], up: [hid, dim], down: [dim, hid] };
  const p = `model.layers.${i}`;
  const L: NativeModelWeights['layers'][number] = {
    attnNorm: need(`${p}.input_layernorm.weight`, dim, [dim]), ffnNorm: need(`${p}.post_attention_layernorm.weight`, dim, [dim]),
  } as NativeModelWeights['layers'][number];
  for (const k of LIN) {
    const pk = packed.get(`${p}.${HF_LIN[k]}`);
    if (pk) {
      if ('kb' in pk && (pk.inFeatures !== dims[k][1] || pk.outFeatures !== dims[k][0])) {
        throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${where}: ${p}.${HF_LIN[k]} is ${pk.outFeatures}×${pk.inFeatures}, expected ${dims[k][0]}×${dims[k][1]}`, { tensor: `${p}.${HF_LIN[k]}` });
      }
      (L.packed ??= {})[k] = pk;
      (L as unknown as Record<string, Float32Array>)[k] = new Float32Array(0);
    } else {
      (L as unknown as Record<string, Float32Array | Uint16Array>)[k] = need(`${p}.${HF_LIN[k]}.weight`, dims[k][0] * dims[k][1], dims[k], true);
    }
  }
  for (const k of LIN) {
    const b = get(`${p}.${HF_LIN[k]}.bias`);
    if (!b) continue;
    if (k !== 'q' && k !== 'k' && k !== 'v' && k !== 'o') {
      throw new LowbitError('LOWBIT_UNSUPPORTED', `${where}: ${p}.${HF_LIN[k]}.bias: MLP biases are not part of the Llama family`, { tensor: `${p}.${HF_LIN[k]}.bias` });
    }
    (L as unknown as Record<string, Float32Array>)[`${k}Bias`] = need(`${p}.${HF_LIN[k]}.bias`, dims[k][0], [dims[k][0]]);
  }
  return L;
}

function f32Tensors(get: Getter, cfg: RuntimeConfig, where: string, tied: boolean,
  shapeOf: (name: string) => number[] | null, packed: Map<string, NativePackedLinear | NativeQBlock> = new Map()): NativeModelWeights {
  const need = needer(get, where, shapeOf);
  const { dim, vocabSize } = cfg;
  const embed = need('model.embed_tokens.weight', vocabSize * dim, [vocabSize, dim], true);
  const layers = [];
  for (let i = 0; i < cfg.nLayers; i++) layers.push(layerTensors(get, cfg, where, shapeOf, i, packed));
  const head = packed.get('lm_head');
  if (head && 'kb' in head) {
    if (head.inFeatures !== dim || head.outFeatures !== vocabSize) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${where}: lm_head is ${head.outFeatures}×${head.inFeatures}, expected ${vocabSize}×${dim}`, { tensor: 'lm_head.weight' });
    return { embed, finalNorm: need('model.norm.weight', dim, [dim]), classifier: embed, classifierPacked: head, layers };
  }
  const lm = get('lm_head.weight');
  const classifier = lm ? need('lm_head.weight', vocabSize * dim, [vocabSize, dim], true) : tied ? embed : need('lm_head.weight', vocabSize * dim, [vocabSize, dim], true);
  return { embed, finalNorm: need('model.norm.weight', dim, [dim]), classifier, layers };
}

/** The runtime's view of a Hugging Face config.json (checked). @internal */
export function hfRuntimeConfig(hc: ModelConfig, where: string): RuntimeConfig {
  const cfg: RuntimeConfig = { dim: hc.hiddenSize, hiddenDim: hc.intermediateSize, nLayers: hc.numLayers, nHeads: hc.numHeads, nKvHeads: hc.numKvHeads,
    headDim: hc.headDim, vocabSize: hc.vocabSize, seqLen: hc.maxPositionEmbeddings, rmsEps: hc.rmsNormEps, ropeTheta: hc.ropeTheta, rope: 'half' };
  checkConfig(cfg, where);
  const f = ropeFrequencies(hc.ropeScaling, hc.ropeTheta, hc.headDim, where);
  if (f) cfg.invFreq = f;
  const rd = readLowbitSection(hc.raw.lowbit, path.join(where, 'config.json')).rotateDown;
  if (rd) cfg.rotateDownSeed = rd.seed;
  return cfg;
}

/** 1 / theta^(2i / headDim), i < headDim / 2, in f32 (what the native runtime computes). */
function baseFrequencies(theta: number, headDim: number): Float32Array {
  const f = new Float32Array(headDim / 2);
  for (let i = 0; i < f.length; i++) f[i] = 1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / headDim)));
  return f;
}

/**
 * The RoPE frequencies of a scaled model, as transformers computes them ("linear": every
 * frequency / factor; "llama3": low frequencies / factor, high ones kept, a smooth blend between),
 * or null without scaling. Other types (dynamic NTK, YaRN, LongRoPE: they change with the sequence
 * length or scale attention) are refused, never dropped.
 */
export function ropeFrequencies(s: RopeScaling | null, theta: number, headDim: number, where: string): Float32Array | null {
  if (!s) return null;
  const need = (v: number | undefined, key: string): number => {
    if (v === undefined) throw new LowbitError('LOWBIT_BAD_FORMAT', `${where}: rope_scaling of type "${s.type}" needs ${key}`, { field: `rope_scaling.${key}` });
    return v;
  };
  const base = baseFrequencies(theta, headDim);
  if (s.type === 'linear') {
    const factor = need(s.factor, 'factor');
    return base.map((f) => f / factor);
  }
  if (s.type === 'llama3') {
    const factor = need(s.factor, 'factor'), low = s.lowFreqFactor ?? 1, high = s.highFreqFactor ?? 4;
    const old = need(s.originalMaxPositionEmbeddings, 'original_max_position_embeddings');
    if (!(high > low)) throw new LowbitError('LOWBIT_BAD_FORMAT', `${where}: rope_scaling: high_freq_factor ${high} must exceed low_freq_factor ${low}`, { field: 'rope_scaling.high_freq_factor' });
    const lowWavelen = old / low, highWavelen = old / high;
    return base.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) return f;
      if (wavelen > lowWavelen) return f / factor;
      const smooth = (old / wavelen - low) / (high - low);
      return (1 - smooth) * (f / factor) + smooth * f;
    });
  }
  throw new LowbitError('LOWBIT_UNSUPPORTED',
    `${where}: rope_scaling of type "${s.type}" is not supported by lowbit's runtime (supported: linear, llama3); running without it would compute different attention`,
    { field: 'rope_scaling' });
}

function checkConfig(c: RuntimeConfig, where: string): void {
  const bad = (why: string) => new LowbitError('LOWBIT_BAD_FORMAT', `${where}: ${why}`);
  for (const k of ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'headDim', 'vocabSize', 'seqLen'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw bad(`${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.nHeads % c.nKvHeads !== 0) throw bad(`heads (${c.nHeads}) must be a multiple of kv heads (${c.nKvHeads})`);
  if (c.headDim % 2 !== 0) throw bad(`head size ${c.headDim} must be even for rotary embeddings`);
}

/**
 * The tokenizer a model runs with: `given` (a llama2.c tokenizer.bin), else `own` (GGUF metadata,
 * an HF directory's tokenizer.json), else a tokenizer.bin beside the model (outputs carry theirs),
 * else null. Its size is checked against the embedding: llama2.c vocabularies must match exactly,
 * tokenizer.json vocabularies may be smaller than a padded embedding. @internal
 */
export function finishTokenizer(own: TextTokenizer | null, source: ModelSource, vocabSize: number, given: string | undefined): TextTokenizer | null {
  let tokenizer = own;
  const found = findTokenizer(source);
  if (given) tokenizer = Tokenizer.fromLlama2c(given, vocabSize);
  else if (!tokenizer && found?.endsWith('.bin')) tokenizer = Tokenizer.fromLlama2c(found, vocabSize);
  if (tokenizer && (tokenizer instanceof HfTokenizer ? tokenizer.size > vocabSize : tokenizer.size !== vocabSize)) {
    throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${source.dir ?? source.path}: the tokenizer has ${tokenizer.size} pieces but the embedding has ${vocabSize} rows`);
  }
  return tokenizer;
}

/** Load a model for the native runtime. */
export async function loadModel(file: string, options: LoadModelOptions = {}): Promise<LanguageModel> {
  if (typeof file !== 'string' || !file) throw invalidOption('model', 'a path', file);
  if (options.activations !== undefined) checkOneOf('activations', options.activations, ['int8', 'f32']);
  if (options.f32Weights !== undefined) checkBool('f32Weights', options.f32Weights);
  const threads = checkThreads(options.threads);
  // the kind by magic bytes and layout (formats/source.ts), not by the file name
  const source = detectModelSource(file);
  const abs = source.dir ?? source.path;
  let cfg: RuntimeConfig;
  let weights: NativeModelWeights;
  let tokenizer: TextTokenizer | null = null;
  // run-time settings a lowbit checkpoint carries (config.json "lowbit": {kv, actQuant, rotateDown})
  let stored: { kv?: KvCacheOptions; actQuant?: ActQuantOptions; rotateDown?: { seed: number } } = {};
  try {
    if (source.kind === 'gguf') {
      const g = readGguf(abs);
      const c = ggufLlamaConfig(g);
      cfg = { dim: c.dim, hiddenDim: c.hiddenDim, nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim,
        vocabSize: c.vocabSize, seqLen: c.contextLength, rmsEps: c.rmsEps, ropeTheta: c.ropeTheta, rope: 'adjacent' };
      // RoPE scaling: llama.cpp's converter stores Llama 3's as per-frequency divisors (rope_freqs.weight);
      // a scaling type in the metadata is applied when linear, refused otherwise (never dropped)
      const st = g.metadata.get('llama.rope.scaling.type');
      const stype = st && st.type === 'STRING' ? String(st.value) : 'none';
      if (stype !== 'none') {
        const fv = g.metadata.get('llama.rope.scaling.factor');
        const factor = fv && fv.type !== 'ARRAY' ? Number(fv.value) : undefined;
        const f = ropeFrequencies({ type: stype, ...(factor !== undefined && factor > 0 ? { factor } : {}) }, c.ropeTheta, c.headDim, abs);
        if (f) cfg.invFreq = f;
      }
      if (g.has('rope_freqs.weight')) {
        const div = g.tensorF32('rope_freqs.weight');
        if (div.length !== c.headDim / 2) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${abs}: rope_freqs.weight has ${div.length} values, expected head size / 2 = ${c.headDim / 2}`, { tensor: 'rope_freqs.weight' });
        const f = cfg.invFreq ?? baseFrequencies(c.ropeTheta, c.headDim);
        cfg.invFreq = f.map((x, i) => x / div[i]);
      }
      const map = new Map<string, string>();
      for (const t of g.tensors) { const n = ggufLlamaTensorName(t.name); if (n) map.set(n, t.name); }
      checkConfig(cfg, abs);
      // F32/F16/BF16 tensors convert; ggml block types are dequantized at load unless they run packed (below)
      const f32 = (name: string): Float32Array => {
        const t = g.tensor(name);
        return ['F32', 'F16', 'BF16'].includes(t.typeName) ? g.tensorF32(name) : decodeGgml(t.typeName as GgmlDecodeType, g.bytes(name), t.numel);
      };
      // Q4_0 / Q4_1 / Q8_0 / Q4_K / Q6_K linear layers (and head) run packed in the integer-dot layout
      const packedMods = new Map<string, NativePackedLinear | NativeQBlock>();
      if (options.packed !== false && (options.activations ?? 'int8') === 'int8') {
        for (const [hf, gn] of map) {
          const t = g.tensor(gn);
          if (!(GGML_QBLOCK_TYPES as readonly string[]).includes(t.typeName) || t.shape.length !== 2 || !hf.endsWith('.weight') || hf === 'model.embed_tokens.weight') continue;
          // the layout needs whole ggml blocks per row (32 channels; 256 for the k-quants): dequantized otherwise
          if (t.shape[1] % (t.typeName.endsWith('_K') ? 256 : 32) !== 0) continue;
          const mod = hf.slice(0, -'.weight'.length);
          packedMods.set(mod, await qblockFromGgml(t.typeName as GgmlQBlockType, g.bytes(gn), t.shape[0], t.shape[1], undefined, { threads }));
        }
      }
      weights = f32Tensors((n) => { const gn = map.get(n); return gn === undefined ? null : f32(gn); }, cfg, abs, true,
        (n) => { const gn = map.get(n); return gn === undefined ? null : g.tensor(gn).shape; }, packedMods);
      tokenizer = options.tokenizer ? null : Tokenizer.fromGguf(g);
    } else if (source.kind === 'llama2c') {
      const m = readLlama2cModel(abs);
      const c = m.config;
      cfg = { dim: c.dim, hiddenDim: c.hiddenDim, nLayers: c.nLayers, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headSize,
        vocabSize: c.vocabSize, seqLen: c.seqLen, rmsEps: 1e-5, ropeTheta: 10000, rope: 'adjacent' };
      checkConfig(cfg, abs);
      weights = f32Tensors((n) => m.tensors.get(n) ?? null, cfg, abs, c.sharedClassifier, (n) => m.shapes.get(n) ?? null);
    } else {
      const hc = readHfConfig(abs);
      cfg = hfRuntimeConfig(hc, abs);
      stored = readLowbitSection(hc.raw.lowbit, path.join(abs, 'config.json'));
      const st = openSafetensors(abs);
      const qc = hc.raw.quantization_config !== undefined ? parseGptqConfig(hc.raw.quantization_config, path.join(abs, 'config.json')) : null;
      const packedMods = new Map<string, NativePackedLinear | NativeQBlock>();
      const int8 = (options.activations ?? 'int8') === 'int8';
      if (qc && options.packed !== false && (qc.bits === 4 || int8)) {
        for (const name of st.names()) {
          if (!name.endsWith('.qweight')) continue;
          const mod = name.slice(0, -'.qweight'.length);
          // validate the module through the decoder's checks once (shapes, dtypes, g_idx, zeros)
          const [words, out] = st.info(name).shape;
          const inF = (words * 32) / qc.bits;
          const sc = st.info(`${mod}.scales`);
          const groups = sc.shape[0];
          const bad = (why: string) => new LowbitError('LOWBIT_BAD_FORMAT', `${abs}: ${mod}: ${why}`, { module: mod });
          if (st.info(name).dtype !== 'I32' || sc.dtype !== 'F16' || sc.shape.length !== 2 || sc.shape[1] !== out) throw bad(`scales must be F16 [G, ${out}] beside I32 qweight [${words}, ${out}]`);
          const qzi = st.info(`${mod}.qzeros`), gi = st.info(`${mod}.g_idx`);
          if (qzi.dtype !== 'I32' || qzi.shape[0] !== groups || qzi.shape[1] !== (out * qc.bits) / 32) throw bad(`qzeros must be I32 [${groups}, ${(out * qc.bits) / 32}]`);
          if (gi.dtype !== 'I32' || gi.shape[0] !== inF) throw bad(`g_idx must be I32 [${inF}]`);
          const asI32 = (n: string) => { const b = st.bytes(n); return b.byteOffset % 4 === 0 ? new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4) : new Int32Array(b.slice().buffer); };
          const qz = asI32(`${mod}.qzeros`);
          const zeros = await unpackValues('gptq-qzeros', qc.bits, qz, groups, out, qc.checkpointFormat === 'gptq' ? 1 : 0, undefined, { threads });
          const gIdx = asI32(`${mod}.g_idx`);
          for (let k = 0; k < inF; k++) if (gIdx[k] < 0 || gIdx[k] >= groups) throw new LowbitError('LOWBIT_BAD_FORMAT', `${abs}: ${mod}.g_idx[${k}] = ${gIdx[k]} is outside [0, ${groups})`);
          const src = { bits: qc.bits, inFeatures: inF, outFeatures: out, groups, qweight: asI32(name), scales: st.toFloat32(`${mod}.scales`), zeros, gIdx };
          if (int8) {
            try {
              packedMods.set(mod, await qblockFromGptq(src, undefined, { threads }));
              st.release(name);
              continue;
            } catch (e) {
              if (!isLowbitError(e) || e.code !== 'LOWBIT_UNSUPPORTED') throw e;  // the layout can't hold it: f32 activations below
            }
          }
          if (qc.bits === 4) packedMods.set(mod, { qweight: src.qweight, scales: src.scales, zeros, gIdx, groups });
        }
      }
      // 16-bit weights stay 16-bit (views of the mapping, valid after close), in one dtype: the
      // checkpoint's first; a tensor of the other 16-bit type, or any tensor with f32Weights, converts
      const kept: { dtype16: 'F16' | 'BF16' | null } = { dtype16: null };
      try {
        weights = f32Tensors((n, wide) => {
          if (st.has(n)) {
            const d = st.info(n).dtype;
            if (wide && !options.f32Weights && (d === 'F16' || d === 'BF16') && (kept.dtype16 === null || kept.dtype16 === d)) {
              kept.dtype16 = d;
              const b = st.bytes(n);
              return b.byteOffset % 2 === 0 ? new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2) : new Uint16Array(b.slice().buffer);
            }
            const f = st.toFloat32(n);
            // a converted copy no longer needs the source pages (an F32 tensor may be a view: keep it)
            if (st.info(n).dtype !== 'F32') st.release(n);
            return f;
          }
          const mod = n.replace(/\.weight$/, '');
          if (qc && n.endsWith('.weight') && st.has(`${mod}.qweight`)) return decodeGptqModule(st, mod, qc).weight;
          return null;
        }, cfg, abs, hc.tieWordEmbeddings, (n) => (st.has(n) ? st.info(n).shape : null), packedMods);
        if (kept.dtype16 !== null) weights.dtype16 = kept.dtype16 === 'F16' ? 1 : 2;
      } finally {
        st.close();
      }
      if (!options.tokenizer && fs.existsSync(path.join(abs, 'tokenizer.json'))) tokenizer = HfTokenizer.fromDir(abs, cfg.vocabSize, hc.bosTokenId);
    }
    tokenizer = finishTokenizer(tokenizer, source, cfg.vocabSize, options.tokenizer);
  } catch (e) {
    throw toLowbitError(e);
  }
  cfg.seqLen = Math.min(cfg.seqLen, options.maxContext === undefined ? DEFAULT_MAX_CONTEXT : checkInt('maxContext', options.maxContext, 1, 1 << 24));
  const rq = runtimeQuantization(cfg, weights, options, stored, abs);
  let native;
  try {
    native = createModelHandle({ ...cfg, ropeStyle: cfg.rope === 'half' ? 1 : 0, ...rq.native }, weights);
  } catch (e) {
    throw toLowbitError(e, abs);
  }
  if (rq.report.kv) {
    const kvd = cfg.nKvHeads * cfg.headDim * cfg.nLayers * 2;
    rq.report.kv = { ...rq.report.kv, bytesPerToken: native.kvBytesPerToken, fixedBytes: native.kvFixedBytes, f32BytesPerToken: kvd * 4, f16BytesPerToken: kvd * 2 };
  }
  return new LanguageModel(cfg, tokenizer, abs, native, weights, threads, rq.report);
}

/** config.json's "lowbit" section (written by lowbit's transforms and recipes), checked. */
function readLowbitSection(raw: unknown, file: string): { kv?: KvCacheOptions; actQuant?: ActQuantOptions; rotateDown?: { seed: number } } {
  if (raw === undefined) return {};
  const bad = (why: string) => new LowbitError('LOWBIT_BAD_FORMAT', `${file}: lowbit: ${why}`, { field: 'lowbit' });
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('must be an object');
  const o = raw as Record<string, unknown>;
  const out: { kv?: KvCacheOptions; actQuant?: ActQuantOptions; rotateDown?: { seed: number } } = {};
  if (o.kv !== undefined && o.kv !== null) out.kv = o.kv as KvCacheOptions;
  if (o.actQuant !== undefined && o.actQuant !== null) out.actQuant = o.actQuant as ActQuantOptions;
  if (o.rotateDown !== undefined && o.rotateDown !== null) {
    const r = o.rotateDown as { seed?: unknown };
    if (typeof r !== 'object' || !Number.isSafeInteger(r.seed) || (r.seed as number) < 0) throw bad('rotateDown must be {seed: a non-negative integer}');
    out.rotateDown = { seed: r.seed as number };
  }
  return out;
}

/** The native KV / activation / rotation settings of a model, and the report of what runs. */
function runtimeQuantization(cfg: RuntimeConfig, weights: NativeModelWeights, options: LoadModelOptions,
  stored: { kv?: KvCacheOptions; actQuant?: ActQuantOptions; rotateDown?: { seed: number } }, abs: string): { native: Partial<NativeModelConfig>; report: RuntimeQuantization } {
  const native: Partial<NativeModelConfig> = {};
  const packedKinds = weights.layers.flatMap((L) => Object.values(L.packed ?? {}));
  const report: RuntimeQuantization = {
    weights: packedKinds.length === 0 ? (weights.dtype16 === 1 ? 'f16' : weights.dtype16 === 2 ? 'bf16' : 'f32') : packedKinds.length === weights.layers.length * 7 ? 'packed' : 'mixed',
    kv: null, activations: null, rotateDown: false,
  };
  const wrap = <T>(fromCheckpoint: boolean, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      if (fromCheckpoint && isLowbitError(e)) throw new LowbitError('LOWBIT_BAD_FORMAT', `${path.join(abs, 'config.json')}: lowbit: ${e.message}`, { field: 'lowbit' });
      throw e;
    }
  };
  const kvFrom = options.kv !== undefined ? 'options' : 'checkpoint';
  const kvOpt = options.kv !== undefined ? options.kv : stored.kv;
  if (kvOpt) {
    const kv: NormalizedKv = wrap(kvFrom === 'checkpoint', () => normalizeKv(kvOpt, cfg.headDim, cfg.seqLen));
    native.kv = { bits: kv.bits, group: kv.group, sym: kv.sym, kChannel: kv.axis === 'channel', block: kv.block, window: kv.window, rotate: kv.rotate };
    report.kv = { ...kv, bytesPerToken: 0, f32BytesPerToken: 0, f16BytesPerToken: 0, fixedBytes: 0, from: kvFrom };
  }
  const actFrom = options.actQuant !== undefined ? 'options' : 'checkpoint';
  const actOpt = options.actQuant !== undefined ? options.actQuant : stored.actQuant;
  if (actOpt) {
    const a: NormalizedActQuant = wrap(actFrom === 'checkpoint', () => normalizeActQuant(actOpt, cfg.nLayers));
    const bits = new Int32Array(cfg.nLayers * ACT_INPUTS.length), scale = new Float32Array(bits.length);
    const first = { qkv: 'q', o: 'o', gate_up: 'gate', down: 'down' } as const;
    let kernel = 0, fake = 0;
    for (let l = 0; l < cfg.nLayers; l++) {
      ACT_INPUTS.forEach((inp, j) => {
        if (!a.inputs.includes(inp)) return;
        const i = l * ACT_INPUTS.length + j;
        bits[i] = a.bits;
        scale[i] = a.scales ? a.scales[i] : 0;
        const pk = weights.layers[l].packed?.[first[inp]];
        if (a.bits === 8 && a.scheme === 'dynamic' && pk && 'kb' in pk) kernel++;
        else fake++;
      });
    }
    native.actBits = bits;
    native.actScale = scale;
    report.activations = { bits: a.bits, scheme: a.scheme, inputs: a.inputs, from: actFrom, kernel, fake };
  }
  // (the rotation itself travels in the config: RuntimeConfig.rotateDownSeed)
  report.rotateDown = stored.rotateDown !== undefined;
  return { native, report };
}
