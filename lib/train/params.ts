/**
 * A Llama's trainable parameters in one f32 buffer, tensor by tensor under their Hugging Face names
 * (linears (out, in); q/k rows in the checkpoint's own RoPE order), with the views the native
 * trainer reads. The gradients and AdamW's moments are buffers of the same layout.
 */
import { LowbitError } from '../errors';
import type { TrainShape, TrainTensors } from '../ops/train';

/** The architecture a training run builds. */
export interface TrainArch {
  dim: number; hiddenDim: number; nLayers: number; nHeads: number; nKvHeads: number; headDim: number; vocabSize: number;
  rmsEps: number; ropeTheta: number;
  /** 'adjacent': pairs (2i, 2i+1) as llama2.c; 'half': (i, i + hd/2) as Hugging Face checkpoints. */
  rope: 'adjacent' | 'half';
  /** RoPE frequencies (headDim / 2) when scaled; else 1 / θ^(2i/hd). */
  invFreq?: Float32Array;
  /** The head is the embedding (no lm_head.weight). */
  tied: boolean;
  /** q/k/v biases (Qwen2). */
  biases: boolean;
}

/** One tensor of the layout. */
export interface ParamEntry {
  name: string;
  shape: number[];
  offset: number;
  size: number;
  /** Matrices get AdamW's weight decay; norms and biases do not. */
  decay: boolean;
}

/** A block's linears in the native trainer's order (native/train/model.h TrainLinear), with their HF module names. */
const LIN = [['q', 'self_attn.q_proj'], ['k', 'self_attn.k_proj'], ['v', 'self_attn.v_proj'], ['o', 'self_attn.o_proj'], ['gate', 'mlp.gate_proj'], ['up', 'mlp.up_proj'], ['down', 'mlp.down_proj']] as const;

/** The trainer's weight-quantizer mask (nLayers × 7, its linear order): 1 where `quantized(weight name)` says so. */
export function linearMask(a: TrainArch, quantized: (weight: string) => boolean): Uint8Array {
  return Uint8Array.from({ length: a.nLayers * LIN.length }, (_, i) => (quantized(`model.layers.${Math.floor(i / LIN.length)}.${LIN[i % LIN.length][1]}.weight`) ? 1 : 0));
}

/** The tensors of `a`, in buffer order. */
export function paramLayout(a: TrainArch): ParamEntry[] {
  const out: ParamEntry[] = [];
  let offset = 0;
  const add = (name: string, shape: number[], decay: boolean) => {
    const size = shape.reduce((x, y) => x * y, 1);
    out.push({ name, shape, offset, size, decay });
    offset += size;
  };
  const qd = a.nHeads * a.headDim, kvd = a.nKvHeads * a.headDim;
  add('model.embed_tokens.weight', [a.vocabSize, a.dim], true);
  for (let l = 0; l < a.nLayers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [a.dim], false);
    add(`${p}.post_attention_layernorm.weight`, [a.dim], false);
    const shapes: Record<(typeof LIN)[number][0], number[]> = { q: [qd, a.dim], k: [kvd, a.dim], v: [kvd, a.dim], o: [a.dim, qd], gate: [a.hiddenDim, a.dim], up: [a.hiddenDim, a.dim], down: [a.dim, a.hiddenDim] };
    for (const [k, hf] of LIN) add(`${p}.${hf}.weight`, shapes[k], true);
    if (a.biases) for (const [k, hf] of LIN.slice(0, 3)) add(`${p}.${hf}.bias`, [shapes[k][0]], false);
  }
  add('model.norm.weight', [a.dim], false);
  if (!a.tied) add('lm_head.weight', [a.vocabSize, a.dim], true);
  return out;
}

/** A buffer in the layout of {@link paramLayout}. */
export class ParamSet {
  readonly entries: ParamEntry[];
  readonly data: Float32Array;
  private readonly byName: Map<string, ParamEntry>;

  constructor(readonly arch: TrainArch, data?: Float32Array) {
    this.entries = paramLayout(arch);
    const n = this.entries.reduce((s, e) => s + e.size, 0);
    if (data && data.length !== n) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `parameters: ${data.length} values for a layout of ${n}`);
    this.data = data ?? new Float32Array(n);
    this.byName = new Map(this.entries.map((e) => [e.name, e]));
  }

  /** Parameters read tensor by tensor from `get` (an HF name → f32 values; each checked for size). */
  static from(arch: TrainArch, get: (name: string) => Float32Array | null, source = 'model'): ParamSet {
    const ps = new ParamSet(arch);
    for (const e of ps.entries) {
      const t = get(e.name);
      if (!t) throw new LowbitError('LOWBIT_BAD_FORMAT', `${source}: ${e.name} is missing`, { tensor: e.name });
      if (t.length !== e.size) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `${source}: ${e.name} has ${t.length} values, expected ${e.shape.join(' × ')}`, { tensor: e.name });
      ps.data.set(t, e.offset);
    }
    return ps;
  }

  get size(): number {
    return this.data.length;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The live values of one tensor. */
  view(name: string): Float32Array {
    const e = this.byName.get(name);
    if (!e) throw new LowbitError('LOWBIT_INTERNAL', `parameters: no tensor ${name}`);
    return this.data.subarray(e.offset, e.offset + e.size);
  }

  /** A buffer of the same layout, zeros (gradients, moments). */
  zerosLike(): ParamSet {
    return new ParamSet(this.arch);
  }

  /** The views the native trainer reads (native/train/model.h TrainParams). */
  nativeTensors(): TrainTensors {
    const a = this.arch;
    const layers: TrainTensors['layers'] = [];
    for (let l = 0; l < a.nLayers; l++) {
      const p = `model.layers.${l}`;
      const w = (hf: string) => this.view(`${p}.${hf}.weight`);
      layers.push({
        attnNorm: this.view(`${p}.input_layernorm.weight`), ffnNorm: this.view(`${p}.post_attention_layernorm.weight`),
        q: w('self_attn.q_proj'), k: w('self_attn.k_proj'), v: w('self_attn.v_proj'), o: w('self_attn.o_proj'), gate: w('mlp.gate_proj'), up: w('mlp.up_proj'), down: w('mlp.down_proj'),
        ...(a.biases ? { qBias: this.view(`${p}.self_attn.q_proj.bias`), kBias: this.view(`${p}.self_attn.k_proj.bias`), vBias: this.view(`${p}.self_attn.v_proj.bias`) } : {}),
      });
    }
    return { embed: this.view('model.embed_tokens.weight'), finalNorm: this.view('model.norm.weight'), ...(a.tied ? {} : { head: this.view('lm_head.weight') }), layers };
  }
}

/** The native trainer's shape of `a`. */
export function trainShape(a: TrainArch): TrainShape {
  const invFreq = a.invFreq ?? Float32Array.from({ length: a.headDim / 2 }, (_, i) => 1 / Math.pow(a.ropeTheta, (2 * i) / a.headDim));
  return { dim: a.dim, hiddenDim: a.hiddenDim, nLayers: a.nLayers, nHeads: a.nHeads, nKvHeads: a.nKvHeads, headDim: a.headDim, vocabSize: a.vocabSize, rmsEps: a.rmsEps, ropeStyle: a.rope === 'half' ? 1 : 0, invFreq };
}
