/**
 * The training loop's parts on top of the native engine (lib/ops/train.ts): AdamW with decoupled
 * weight decay (matrices only), gradient clipping by the global norm, a cosine schedule with linear
 * warmup, gradient accumulation over micro-batches, and checkpoints holding the parameters, both
 * moments, the step and the data sampler's state, so a run killed and resumed from its last
 * checkpoint ends with the same bits as one that was not (same thread count: the engine's sums
 * are ordered by it).
 *
 * One optimizer step: gradients zeroed; each micro-batch's forward + backward accumulates
 * scale · ∂loss/∂θ with scale = 1 / (tokens with a target in the whole step), so the step's gradient
 * is the mean over its tokens whatever the split; ‖g‖ clipped to `gradClip`; AdamW at lr(step).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError } from '../errors';
import { invalidOption } from '../config/validate';
import { adamwStep, createTrainerHandle, scaleInPlace, sumSquares, type TrainBatchInput, type TrainerHandle, type TrainQuantOptions } from '../ops/train';
import { openSafetensors, writeSafetensors } from '../formats/safetensors';
import { ParamSet, trainShape, type TrainArch } from './params';

/** The optimizer and schedule. */
export interface TrainHyper {
  /** Peak learning rate. */
  lr: number;
  /** Learning rate at the end of the cosine decay. @default lr / 10 */
  minLr?: number;
  /** Steps of linear warmup from 0. @default 0 */
  warmupSteps?: number;
  /** Total optimizer steps (the cosine's length). */
  steps: number;
  /** AdamW's decoupled weight decay, on matrices (embeddings, linears, the head). @default 0 */
  weightDecay?: number;
  /** @default 0.9 */
  beta1?: number;
  /** @default 0.95 */
  beta2?: number;
  /** @default 1e-8 */
  eps?: number;
  /** Clip the global gradient norm to this (0: no clipping). @default 1 */
  gradClip?: number;
}

type FullHyper = Required<TrainHyper>;

/** Check and fill in {@link TrainHyper}. */
export function normalizeHyper(h: TrainHyper): FullHyper {
  const num = (k: keyof TrainHyper, v: unknown, lo: number, hi: number, open = false): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (open && v === lo)) throw invalidOption(k, `a number in ${open ? '(' : '['}${lo}, ${hi}]`, v);
    return v;
  };
  const int = (k: keyof TrainHyper, v: unknown, lo: number): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo) throw invalidOption(k, `an integer ≥ ${lo}`, v);
    return v;
  };
  const lr = num('lr', h.lr, 0, 10, true);
  return {
    lr, minLr: num('minLr', h.minLr ?? lr / 10, 0, lr), warmupSteps: int('warmupSteps', h.warmupSteps ?? 0, 0), steps: int('steps', h.steps, 1),
    weightDecay: num('weightDecay', h.weightDecay ?? 0, 0, 10), beta1: num('beta1', h.beta1 ?? 0.9, 0, 0.999999), beta2: num('beta2', h.beta2 ?? 0.95, 0, 0.999999),
    eps: num('eps', h.eps ?? 1e-8, 0, 1, true), gradClip: num('gradClip', h.gradClip ?? 1, 0, 1e9),
  };
}

/** The learning rate of optimizer step `step` (1-based): linear warmup, then cosine to minLr. */
export function learningRate(h: FullHyper, step: number): number {
  if (step <= h.warmupSteps) return (h.lr * step) / Math.max(1, h.warmupSteps);
  const span = Math.max(1, h.steps - h.warmupSteps);
  const p = Math.min(1, (step - h.warmupSteps) / span);
  return h.minLr + 0.5 * (h.lr - h.minLr) * (1 + Math.cos(Math.PI * p));
}

/** What one optimizer step did. */
export interface StepResult {
  step: number;
  /** Mean loss per token with a target (cross-entropy) or per token (KL). */
  loss: number;
  /** ‖g‖ before clipping. */
  gradNorm: number;
  lr: number;
  tokens: number;
}

/** A model being trained: its parameters, gradients, moments and step. Dispose when done. */
export class Trainer {
  readonly grads: ParamSet;
  readonly m: Float32Array;
  readonly v: Float32Array;
  readonly hyper: FullHyper;
  private handle: TrainerHandle;
  private stepCount = 0;

  /** `quant`: what the forward fake-quantizes (quantization-aware training; see lib/ops/train.ts). */
  constructor(readonly params: ParamSet, hyper: TrainHyper, private readonly threads?: number, readonly quant: TrainQuantOptions = {}) {
    this.hyper = normalizeHyper(hyper);
    this.grads = params.zerosLike();
    this.m = new Float32Array(params.size);
    this.v = new Float32Array(params.size);
    this.handle = createTrainerHandle(trainShape(params.arch), params.nativeTensors(), this.grads.nativeTensors(), quant);
  }

  get arch(): TrainArch {
    return this.params.arch;
  }

  /** Optimizer steps taken. */
  get step(): number {
    return this.stepCount;
  }

  /** The summed loss of a batch without gradients (logits copied out when given). */
  async loss(b: Omit<TrainBatchInput, 'scale' | 'backward'>, signal?: AbortSignal): Promise<number> {
    return this.handle.run({ ...b, scale: 1, backward: false }, { threads: this.threads, signal });
  }

  /** One optimizer step over micro-batches (their gradients accumulate; see the file header). */
  async trainStep(micro: Omit<TrainBatchInput, 'scale' | 'backward'>[], signal?: AbortSignal): Promise<StepResult> {
    if (micro.length === 0) throw invalidOption('micro', 'at least one micro-batch', micro);
    const counted = (b: (typeof micro)[number]) => (b.targets ? b.targets.reduce((s, t) => s + (t >= 0 ? 1 : 0), 0) : b.batch * b.seqLen);
    const tokens = micro.reduce((s, b) => s + counted(b), 0);
    if (tokens === 0) throw invalidOption('micro', 'micro-batches with at least one target', micro);
    this.grads.data.fill(0);
    let loss = 0;
    for (const b of micro) loss += await this.handle.run({ ...b, scale: 1 / tokens, backward: true }, { threads: this.threads, signal });
    const gradNorm = Math.sqrt(sumSquares(this.grads.data, { threads: this.threads }));
    if (!Number.isFinite(gradNorm) || !Number.isFinite(loss)) throw new LowbitError('LOWBIT_NUMERICAL', `training diverged at step ${this.stepCount + 1}: loss ${loss / tokens}, gradient norm ${gradNorm} (lower the learning rate)`);
    const h = this.hyper;
    if (h.gradClip > 0 && gradNorm > h.gradClip) scaleInPlace(this.grads.data, h.gradClip / gradNorm, this.threads);
    const step = this.stepCount + 1;
    const lr = learningRate(h, step);
    for (const e of this.params.entries) {
      const sl = (a: Float32Array) => a.subarray(e.offset, e.offset + e.size);
      adamwStep(sl(this.params.data), sl(this.grads.data), sl(this.m), sl(this.v), { lr, b1: h.beta1, b2: h.beta2, eps: h.eps, weightDecay: e.decay ? h.weightDecay : 0, step }, { threads: this.threads });
    }
    this.stepCount = step;
    return { step, loss: loss / tokens, gradNorm, lr, tokens };
  }

  /**
   * Write a checkpoint into directory `dir` (train_state.safetensors, atomic): parameters, both
   * moments, the step, the hyper-parameters, the architecture, the quantization and `extra` (the caller's state, e.g.
   * the data sampler's).
   */
  async saveCheckpoint(dir: string, extra: Record<string, unknown> = {}): Promise<void> {
    fs.mkdirSync(dir, { recursive: true });
    const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const arch = { ...this.arch, invFreq: this.arch.invFreq ? Array.from(this.arch.invFreq) : undefined };
    await writeSafetensors(dir, [
      { name: 'params', dtype: 'F32', shape: [this.params.size], data: bytes(this.params.data) },
      { name: 'adam_m', dtype: 'F32', shape: [this.params.size], data: bytes(this.m) },
      { name: 'adam_v', dtype: 'F32', shape: [this.params.size], data: bytes(this.v) },
    ], { baseName: 'train_state', metadata: { lowbit_train: JSON.stringify({ step: this.stepCount, hyper: this.hyper, arch, quant: { ...this.quant, ...(this.quant.weightsMask ? { weightsMask: Array.from(this.quant.weightsMask) } : {}) }, extra }) } });
  }

  /** A trainer from a checkpoint written by {@link Trainer.saveCheckpoint}, and its `extra`. */
  static loadCheckpoint(dir: string, threads?: number): { trainer: Trainer; extra: Record<string, unknown> } {
    const file = path.join(dir, 'train_state.safetensors');
    if (!fs.existsSync(file)) throw new LowbitError('LOWBIT_NOT_FOUND', `${dir}: no training checkpoint (train_state.safetensors)`, { file });
    const st = openSafetensors(file);
    try {
      const raw = st.metadata.lowbit_train;
      if (typeof raw !== 'string') throw new LowbitError('LOWBIT_BAD_FORMAT', `${file}: not a lowbit training checkpoint (no lowbit_train metadata)`, { file });
      const meta = JSON.parse(raw) as { step: number; hyper: FullHyper; arch: TrainArch & { invFreq?: number[] }; quant?: Omit<TrainQuantOptions, 'weightsMask'> & { weightsMask?: number[] }; extra: Record<string, unknown> };
      const arch: TrainArch = { ...meta.arch, ...(meta.arch.invFreq ? { invFreq: Float32Array.from(meta.arch.invFreq) } : {}) };
      const params = new ParamSet(arch, st.toFloat32('params').slice());
      const { weightsMask, ...rest } = meta.quant ?? {};
      const quant: TrainQuantOptions = { ...rest, ...(weightsMask ? { weightsMask: Uint8Array.from(weightsMask) } : {}) };
      const t = new Trainer(params, meta.hyper, threads, quant);
      t.m.set(st.toFloat32('adam_m'));
      t.v.set(st.toFloat32('adam_v'));
      t.stepCount = meta.step;
      return { trainer: t, extra: meta.extra };
    } finally {
      st.close();
    }
  }

  dispose(): void {
    this.handle.dispose();
  }
}
