/**
 * The typed face of the native training engine (native/train/): one op's forward and backward (for
 * tests and the bench), AdamW, Σ x², and the trainer that runs a whole model's forward, loss and
 * backward over a batch (activations recomputed per block).
 */
import { LowbitError } from '../errors';
import { addon, modeId, runTask, type NativeTrainShape, type NativeTrainTensors } from '../native';
import type { NormalizedQuantizer } from '../config/quant';
import { quantSpecJob } from './quantize';
import { nativeThreads } from '../config/run';
import type { KernelModeOption } from './rtquant';

export type { NativeTrainShape as TrainShape, NativeTrainTensors as TrainTensors } from '../native';

const mode = (m: KernelModeOption): number => (m === 'ref' ? 1 : m === 'fast' ? 0 : modeId());

/** The ops {@link trainOp} runs, with their inputs and what they return (see native/train/ops.h). */
export interface TrainOps {
  linear: { in: { x: Float32Array; w: Float32Array; b?: Float32Array; dy: Float32Array; n: number; in: number; out: number }; out: { y: Float32Array; dx: Float32Array; dw: Float32Array; db: Float32Array } };
  rmsnorm: { in: { x: Float32Array; g: Float32Array; dy: Float32Array; n: number; d: number; eps: number }; out: { y: Float32Array; dx: Float32Array; dg: Float32Array } };
  rope: { in: { x: Float32Array; n: number; heads: number; hd: number; pos: Int32Array; invFreq: Float32Array; style: number; inverse: boolean }; out: Record<string, never> };
  attention: { in: { q: Float32Array; k: Float32Array; v: Float32Array; dout: Float32Array; T: number; H: number; KVH: number; hd: number }; out: { out: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array } };
  swiglu: { in: { a: Float32Array; u: Float32Array; dh: Float32Array; n: number }; out: { h: Float32Array; da: Float32Array; du: Float32Array } };
  crossEntropy: { in: { logits: Float32Array; targets: Int32Array; n: number; V: number; scale: number }; out: { loss: number; dlogits: Float32Array } };
  klTeacher: { in: { logits: Float32Array; teacher: Float32Array; n: number; V: number; scale: number }; out: { loss: number; dlogits: Float32Array } };
}

/** One op's forward and backward on small inputs (`rope` rotates `x` in place). @internal */
export function trainOp<K extends keyof TrainOps>(op: K, inputs: TrainOps[K]['in'], m?: KernelModeOption): TrainOps[K]['out'] {
  return addon().trainOp({ op, mode: mode(m), ...inputs }) as unknown as TrainOps[K]['out'];
}

/** AdamW hyper-parameters of one step. */
export interface AdamWStep { lr: number; b1: number; b2: number; eps: number; weightDecay: number; step: number }

/** One AdamW step on `p` (in place) with gradient `g` and moments `m`, `v` (decoupled weight decay). */
export function adamwStep(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, h: AdamWStep, opts: { mode?: KernelModeOption; threads?: number } = {}): void {
  if (g.length !== p.length || m.length !== p.length || v.length !== p.length) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `adamw: p, g, m, v must have the same length (${p.length}, ${g.length}, ${m.length}, ${v.length})`);
  addon().adamw({ p, g, m, v, lr: h.lr, b1: h.b1, b2: h.b2, eps: h.eps, wd: h.weightDecay, t: h.step, mode: mode(opts.mode), threads: nativeThreads(opts.threads) });
}

/** Σ x² in double (fixed chunks: the same for any thread count). */
export function sumSquares(x: Float32Array, opts: { mode?: KernelModeOption; threads?: number } = {}): number {
  return addon().sumSquares({ x, mode: mode(opts.mode), threads: nativeThreads(opts.threads) });
}

/** x ← s · x. */
export function scaleInPlace(x: Float32Array, s: number, threads?: number): void {
  addon().scaleInPlace({ x, s, threads: nativeThreads(threads) });
}

/** One batch for a trainer: `targets` (cross-entropy) or `teacher` logits (KL to the teacher). */
export interface TrainBatchInput {
  tokens: Int32Array; batch: number; seqLen: number;
  targets?: Int32Array; teacher?: Float32Array;
  /** The gradient's factor (1 / tokens of the optimizer step: a mean). */
  scale: number;
  /** Accumulate gradients (false: the loss only). @default true */
  backward?: boolean;
  /** Receives the logits (batch·seqLen × vocab). */
  logits?: Float32Array;
}

/** A native trainer on caller-owned parameters and gradients. @internal */
export interface TrainerHandle {
  /** Forward (+ backward, accumulating into the gradients); resolves to the summed loss. */
  run(b: TrainBatchInput, opts?: { mode?: KernelModeOption; threads?: number; signal?: AbortSignal }): Promise<number>;
  dispose(): void;
}

/**
 * What a trainer fake-quantizes in its forward (straight-through in the backward; native/train/model.h
 * TrainQuant): every block linear's weights with `weights` (per tensor is not supported), each linear
 * input per token at `actBits`, K (after RoPE) and V per token in groups of `kv.group`.
 */
export interface TrainQuantOptions {
  weights?: NormalizedQuantizer;
  /** Which block linears `weights` applies to (nLayers × 7: q, k, v, o, gate, up, down; the others train in float). @default all */
  weightsMask?: Uint8Array;
  actBits?: number;
  kv?: { bits: 2 | 4 | 8; group: number; sym: boolean };
}

export function createTrainerHandle(shape: NativeTrainShape, params: NativeTrainTensors, grads: NativeTrainTensors, quant: TrainQuantOptions = {}): TrainerHandle {
  if (quant.weights?.perTensor) throw new LowbitError('LOWBIT_UNSUPPORTED', 'training: per-tensor weight quantization is not supported (use per channel or groups)', { option: 'perTensor' });
  const q = { ...(quant.weights ? { weights: quantSpecJob(quant.weights) } : {}), ...(quant.weightsMask ? { weightsMask: quant.weightsMask } : {}), ...(quant.actBits ? { actBits: quant.actBits } : {}), ...(quant.kv ? { kv: quant.kv } : {}) };
  const t = addon().createTrainer({ shape, params, grads, quant: q });
  return {
    run: (b, opts = {}) => runTask(() => t.run({
      tokens: b.tokens, batch: b.batch, seqLen: b.seqLen, ...(b.targets ? { targets: b.targets } : {}), ...(b.teacher ? { teacher: b.teacher } : {}),
      scale: b.scale, backward: b.backward ?? true, ...(b.logits ? { logits: b.logits } : {}), mode: mode(opts.mode), threads: nativeThreads(opts.threads),
    }), opts.signal, 'train'),
    dispose: () => t.dispose(),
  };
}
