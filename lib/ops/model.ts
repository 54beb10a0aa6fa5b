/**
 * The typed face of the native Llama runtime (native/runtime/llama.h): a model instance with its
 * KV cache, its forward pass and the per-block calibration pass. lib/runtime/ builds on this; it
 * never touches the addon itself.
 */
import { addon, modeId, runTask, type NativeModel, type NativeModelConfig, type NativeModelWeights, type NativeStats } from '../native';
import { nativeThreads } from '../config/run';

export type { NativeModelConfig, NativeModelWeights, NativePackedLinear, NativeQBlock, NativeStats } from '../native';

/** Per-call settings of a native model call. */
export interface ModelCallOptions {
  signal?: AbortSignal;
  /** Compute threads for this call; undefined: the process default. */
  threads?: number;
}

/** A native model instance. Calls on one instance must not overlap (lib/runtime/model.ts serializes them). */
export interface ModelHandle {
  /** Bytes the KV cache holds per position (all layers, K and V, scales included). */
  readonly kvBytesPerToken: number;
  /** The cache's fixed full-precision part (window, pending per-channel block). */
  readonly kvFixedBytes: number;
  /** Run `tokens` at positions pos0…; fills `logits` with the last `rows` positions' logits. */
  forward(tokens: Int32Array, pos0: number, logits: Float32Array, rows: number, opts: ModelCallOptions): Promise<void>;
  /** Run one decoder layer over hidden states (samples × seqLen × dim, in place), feeding the statistics buffers. */
  calibrateBlock(layer: number, hidden: Float32Array, seqLen: number, stats: Partial<Record<'attn' | 'o' | 'mlp' | 'down', NativeStats>>,
    opts: ModelCallOptions & { onProgress?: (done: number, total: number) => void }): Promise<void>;
  dispose(): void;
}

/** Create a native model from its config and weights (f32, or packed layouts). */
export function createModelHandle(config: NativeModelConfig, weights: NativeModelWeights): ModelHandle {
  const native: NativeModel = addon().createModel(config, weights);
  return {
    kvBytesPerToken: native.kvBytesPerToken,
    kvFixedBytes: native.kvFixedBytes,
    forward: (tokens, pos0, logits, rows, opts) =>
      runTask(() => native.forward({ tokens, pos0, logits, logitRows: rows, mode: modeId(), threads: nativeThreads(opts.threads) }), opts.signal, 'forward'),
    calibrateBlock: (layer, hidden, seqLen, stats, opts) =>
      runTask(() => native.calibrateBlock({ layer, hidden, seqLen, stats, mode: modeId(), threads: nativeThreads(opts.threads), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) }), opts.signal, 'calibrate'),
    dispose: () => native.dispose(),
  };
}
