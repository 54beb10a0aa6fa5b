/**
 * A model for calibration that holds one decoder block at a time (issue 18: real-size models in
 * bounded memory). The source stays memory-mapped in its own dtype; when calibration reaches
 * layer l, that layer's weights are converted to f32 and a one-layer native model is built over
 * them (zero copy: GPTQ writes its quantized weights into the same arrays, so the layer's forward
 * runs on them), and layer l − 1's weights are dropped: every block has the same shapes, so the next
 * block is converted into the same buffers. Embedding rows are converted as they are
 * looked up; the head and the final norm are never read. So the weights in memory are one block's,
 * not the model's: a Llama-2-7B block is 0.8 GB in f32 against 27 GB for the whole model.
 *
 * The block computation is the same native `Llama::block` the in-memory model runs, on the same
 * f32 weights, so results are bit-identical to calibrating a fully loaded model.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, toLowbitError } from '../errors';
import { createModelHandle, type ModelHandle, type NativeModelWeights, type NativeStats } from '../ops/model';
import { readHfConfig } from '../formats/hf-config';
import { openSafetensors, type SafetensorsReader } from '../formats/safetensors';
import { parseGptqConfig, decodeGptqModule, type GptqConfig } from '../formats/gptq';
import { toFloat32, type Dtype } from '../formats/dtype';
import { detectModelSource } from '../formats/source';
import { HfTokenizer } from './tokenizer-hf';
import { finishTokenizer, hfRuntimeConfig, layerTensors, type RuntimeConfig } from './model';
import type { TextTokenizer } from './tokenizer';
import type { CalibrationModel } from './calibrate';

/**
 * Bytes of one decoder block's weights in f32 (norms and the seven linear layers): what a
 * streaming model holds at a time.
 */
export function blockWeightBytes(c: RuntimeConfig): number {
  const qd = c.nHeads * c.headDim, kvd = c.nKvHeads * c.headDim;
  return 4 * (2 * c.dim + 2 * qd * c.dim + 2 * kvd * c.dim + 3 * c.hiddenDim * c.dim);
}

/** Options of {@link openStreamingModel}. */
export interface StreamingModelOptions {
  /** A llama2.c tokenizer.bin; else the directory's tokenizer.json or tokenizer.bin. */
  tokenizer?: string;
  /** Compute threads of every block pass. */
  threads?: number;
  /**
   * The block's matrix products: 'f32', or 'bf16' (operands rounded to bf16, f32 sums: AVX-512
   * BF16 where the CPU has it). The statistics (Hessians) see the f32 activations. @default 'f32'
   */
  compute?: 'f32' | 'bf16';
}

type LinearKind = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down';

/** A Hugging Face checkpoint directory opened for block-by-block calibration. @internal */
export class StreamingModel implements CalibrationModel {
  private current: { layer: number; weights: NativeModelWeights['layers'][number]; handle: ModelHandle; seqLen: number } | null = null;
  private disposed = false;
  /** The f32 buffers of the resident block, by tensor kind ("self_attn.q_proj.weight", …), reused by the next. */
  private readonly pool = new Map<string, Float32Array>();
  private readonly embedName = 'model.embed_tokens.weight';
  private readonly embedDtype: Dtype;

  /** @internal */
  constructor(readonly config: RuntimeConfig, readonly tokenizer: TextTokenizer | null, readonly source: string,
    private readonly reader: SafetensorsReader, private readonly gptq: GptqConfig | null, private readonly threads: number | undefined,
    private readonly bf16Compute = false) {
    const e = reader.info(this.embedName);
    if (e.shape.length !== 2 || e.shape[0] !== config.vocabSize || e.shape[1] !== config.dim) {
      throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${source}: ${this.embedName} has shape [${e.shape.join(', ')}], expected [${config.vocabSize}, ${config.dim}]`, { tensor: this.embedName });
    }
    this.embedDtype = e.dtype;
  }

  _embedRows(ids: ArrayLike<number>, out: Float32Array, offset = 0): void {
    const dim = this.config.dim;
    const bytes = this.reader.bytes(this.embedName); // a view of the mapping: no copy of the table
    const es = this.embedDtype === 'F32' ? 4 : 2;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      toFloat32(bytes.subarray(id * dim * es, (id + 1) * dim * es), this.embedDtype, out.subarray(offset + i * dim, offset + (i + 1) * dim));
    }
    this.reader.release(this.embedName); // the table's pages (the NaN/Inf scan read them all) can go
  }

  private check(): void {
    if (this.disposed) throw new LowbitError('LOWBIT_DISPOSED', `${this.source}: model is disposed`);
  }

  /** Load layer `layer` (dropping the one before), with a KV cache of `seqLen` positions. */
  private ensure(layer: number, seqLen: number): NonNullable<StreamingModel['current']> {
    this.check();
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.config.nLayers) throw new LowbitError('LOWBIT_INTERNAL', `${this.source}: layer ${layer} is out of range`);
    const cur = this.current;
    if (cur && cur.layer === layer && cur.seqLen >= seqLen) return cur;
    if (cur && cur.layer === layer) {
      // the same weights, a longer context: a new native block over them
      cur.handle.dispose();
      cur.handle = this.handle(cur.weights, seqLen);
      cur.seqLen = seqLen;
      return cur;
    }
    this._releaseLayer();
    const st = this.reader;
    const get = (n: string): Float32Array | null => {
      if (st.has(n)) {
        // Every block has the same shapes: each tensor is converted into the buffer its kind used
        // in the block before (no new allocation, nothing left for the garbage collector to find
        // late), then its source pages can go.
        const kind = n.replace(/^model\.layers\.\d+\./, '');
        const numel = st.info(n).shape.reduce((a, b) => a * b, 1);
        let buf = this.pool.get(kind);
        if (buf?.length !== numel) {
          buf = new Float32Array(numel);
          this.pool.set(kind, buf);
        }
        const f = st.toFloat32(n, buf);
        st.release(n);
        return f;
      }
      const mod = n.replace(/\.weight$/, '');
      if (this.gptq && n.endsWith('.weight') && st.has(`${mod}.qweight`)) return decodeGptqModule(st, mod, this.gptq).weight;
      return null;
    };
    let weights;
    try {
      weights = layerTensors(get, this.config, this.source, (n) => (st.has(n) ? st.info(n).shape : null), layer);
    } catch (e) {
      throw toLowbitError(e);
    }
    const next = { layer, weights, handle: this.handle(weights, seqLen), seqLen };
    this.current = next;
    return next;
  }

  /** A one-layer native model over `weights` (embedding, final norm and head: unused placeholders). */
  private handle(weights: NativeModelWeights['layers'][number], seqLen: number): ModelHandle {
    const c = this.config;
    const unused = new Float32Array(c.dim);
    return createModelHandle({ ...c, nLayers: 1, vocabSize: 1, seqLen, ropeStyle: c.rope === 'half' ? 1 : 0, ...(this.bf16Compute ? { bf16Compute: true } : {}) },
      { embed: unused, finalNorm: unused, classifier: unused, layers: [weights] });
  }

  _linearWeight(layer: number, kind: LinearKind): Float32Array {
    const w = this.ensure(layer, this.current?.layer === layer ? this.current.seqLen : 1).weights[kind];
    // (the streaming model converts every block to f32: GPTQ writes into it)
    if (!(w instanceof Float32Array)) throw new LowbitError('LOWBIT_INTERNAL', `${this.source}: layer ${layer} ${kind} is not f32`);
    return w;
  }

  _calibrateBlock(layer: number, hidden: Float32Array, seqLen: number, stats: Partial<Record<'attn' | 'o' | 'mlp' | 'down', NativeStats>>,
    signal?: AbortSignal, onProgress?: (done: number, total: number) => void): Promise<void> {
    let cur;
    try {
      cur = this.ensure(layer, seqLen);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    return cur.handle.calibrateBlock(0, hidden, seqLen, stats, { signal, threads: this.threads, onProgress });
  }

  /** Drop the resident block (its weights go with the next garbage collection). */
  _releaseLayer(): void {
    if (!this.current) return;
    this.current.handle.dispose();
    this.current = null;
  }

  dispose(): void {
    if (this.disposed) return;
    this._releaseLayer();
    this.pool.clear();
    this.disposed = true;
    this.reader.close();
  }
}

/** Open a Hugging Face checkpoint directory for block-by-block calibration. @internal */
export function openStreamingModel(dir: string, options: StreamingModelOptions = {}): StreamingModel {
  const abs = path.resolve(dir);
  const source = detectModelSource(abs);
  if (source.kind !== 'hf-dir') throw new LowbitError('LOWBIT_INTERNAL', `${abs}: block-by-block calibration reads Hugging Face directories (the pipeline stages other sources as one)`);
  const hc = readHfConfig(abs);
  const cfg = hfRuntimeConfig(hc, abs);
  const st = openSafetensors(abs);
  try {
    const gptq = hc.raw.quantization_config !== undefined ? parseGptqConfig(hc.raw.quantization_config, path.join(abs, 'config.json')) : null;
    const own = fs.existsSync(path.join(abs, 'tokenizer.json')) ? HfTokenizer.fromDir(abs, cfg.vocabSize, hc.bosTokenId) : null;
    const tokenizer = finishTokenizer(own, source, cfg.vocabSize, options.tokenizer);
    return new StreamingModel(cfg, tokenizer, abs, st, gptq, options.threads, options.compute === 'bf16');
  } catch (e) {
    st.close();
    throw toLowbitError(e);
  }
}
