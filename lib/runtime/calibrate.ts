/**
 * Calibration: statistics of every linear layer's input while the model runs on calibration text.
 *
 * Sequential, block by block (as GPTQ's reference does): N windows of seqLen tokens are sampled
 * from the text with a seeded generator, embedded, and pushed through decoder layer 0, then layer
 * 1, …; only one block's activations (N × seqLen × dim floats) live in memory, updated in place.
 * For each distinct linear input — q/k/v share one, o, gate/up share one, down — the native
 * observer accumulates Σ xxᵀ with a SYRK kernel plus per-channel Σ|x| and max |x|.
 * Reported Hessians are H = 2/n · Σ xxᵀ (n = tokens; GPTQ's scale does not change its result).
 */
import { createHash } from 'node:crypto';
import { optionError } from '../errors';
import { checkBool, checkInt, checkSignal, invalidOption, checkObject } from '../config/validate';
import type { NativeStats } from '../ops/model';
import type { LanguageModel } from './model';
import type { Progress } from '../config/run';

/** Statistics of one linear-layer input. */
export interface InputStats {
  /** The modules that read this input, e.g. ['q_proj', 'k_proj', 'v_proj']. */
  modules: string[];
  inFeatures: number;
  tokens: number;
  /** H = 2/n · Σ xxᵀ, (inFeatures × inFeatures) row-major; null unless kept. */
  hessian: Float32Array | null;
  /** mean |x| per input channel. */
  meanAbs: Float32Array;
  /** max |x| per input channel. */
  maxAbs: Float32Array;
}

/** The four inputs of one decoder layer. */
export interface LayerStats {
  layer: number;
  attn: InputStats;
  o: InputStats;
  mlp: InputStats;
  down: InputStats;
}

/** Passed to `onLayer`: re-collect an input's statistics after the layer's weights changed. */
export interface LayerTools {
  /**
   * Run the layer again on its (unchanged) input hidden states and return fresh statistics of one
   * input — e.g. o_proj's input after q/k/v were quantized (GPTQ's true-sequential order).
   */
  recollect(input: 'attn' | 'o' | 'mlp' | 'down'): Promise<InputStats>;
}

/** Options of {@link calibrate}. */
export interface CalibrateOptions {
  /** Calibration text (UTF-8). */
  text: string;
  /** Number of windows. @default 128 */
  samples?: number;
  /** Tokens per window (capped at the model's context). @default 2048 */
  seqLen?: number;
  /** Seed of the window sampler. @default 0 */
  seed?: number;
  /** Keep each layer's Hessians in the result (memory: 4·Σ in² bytes per layer). @default false */
  keepHessians?: boolean;
  /**
   * Called after each layer's statistics are complete and before the next layer runs, with the
   * hidden states (samples × seqLen × dim) that are that layer's input — GPTQ quantizes here.
   * Resolve to let the driver run the (possibly modified) layer forward to the next one.
   */
  onLayer?: (stats: LayerStats, tools: LayerTools) => void | Promise<void>;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

/** What {@link calibrate} returns. */
export interface CalibrationResult {
  samples: number;
  seqLen: number;
  tokens: number;
  seed: number;
  /** sha256 of the calibration text (provenance). */
  textSha256: string;
  /** Start offset (in tokens) of every window. */
  windows: number[];
  /** Bytes the run needed at its peak beyond the model weights: activations + one layer's statistics. */
  expectedPeakBytes: number;
  layers: LayerStats[];
  seconds: number;
}

/** mulberry32: a small seeded generator for window offsets. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Memory a calibration run needs beyond the weights. */
export function calibrationPeakBytes(model: LanguageModel, samples: number, seqLen: number): number {
  const c = model.config;
  const qd = c.nHeads * c.headDim;
  const act = samples * seqLen * c.dim * 4;
  const stats = 4 * (2 * c.dim * c.dim + qd * qd + c.hiddenDim * c.hiddenDim) + 4 * 4 * (2 * c.dim + qd + c.hiddenDim);
  const scratch = 4 * seqLen * (3 * c.dim + 3 * qd + 2 * c.hiddenDim) + 4 * seqLen * c.hiddenDim; // one block's temporaries + Xᵀ
  return act + stats + scratch;
}

/** Calibration options with every field checked and present. @internal */
export interface NormalizedCalibrateOptions {
  text: string;
  /** Pre-tokenized data used instead of tokenizing `text` (JSONL `input_ids`), or undefined. */
  tokens?: Int32Array;
  /** The data's sha256 when it is not `text` itself (files, records, token ids). */
  dataSha256?: string;
  samples: number;
  /** Already capped at the model's context. */
  seqLen: number;
  seed: number;
  keepHessians: boolean;
  onLayer: CalibrateOptions['onLayer'];
  signal: AbortSignal | undefined;
  onProgress: ((p: Progress) => void) | undefined;
}

/** Run the model over calibration windows, block by block, collecting input statistics. */
export async function calibrate(model: LanguageModel, opts: CalibrateOptions): Promise<CalibrationResult> {
  checkObject('options', opts, 'an object {text, samples, seqLen, seed}');
  if (typeof opts.text !== 'string') throw invalidOption('text', 'a string', opts.text);
  if (opts.onLayer !== undefined && typeof opts.onLayer !== 'function') throw invalidOption('onLayer', 'a function', opts.onLayer);
  return calibrateNormalized(model, {
    text: opts.text,
    samples: checkInt('samples', opts.samples ?? 128, 1, 1e6),
    seqLen: Math.min(checkInt('seqLen', opts.seqLen ?? 2048, 2, 1 << 24), model.config.seqLen),
    seed: checkInt('seed', opts.seed ?? 0, 0, 2 ** 32 - 1),
    keepHessians: opts.keepHessians === undefined ? false : checkBool('keepHessians', opts.keepHessians),
    onLayer: opts.onLayer,
    signal: checkSignal(opts.signal),
    onProgress: opts.onProgress,
  });
}

/** {@link calibrate} on checked options (what the pipelines call). @internal */
export async function calibrateNormalized(model: LanguageModel, opts: NormalizedCalibrateOptions): Promise<CalibrationResult> {
  const t0 = performance.now();
  const tok = model.tokenizer;
  if (!tok && !opts.tokens) throw optionError('tokenizer', `${model.source}: calibration needs a tokenizer`);
  const { samples, seqLen, seed, signal } = opts;
  const ids = opts.tokens ?? (tok ? tok.encode(opts.text, { bos: false }) : []);
  if (opts.tokens) {
    for (const id of opts.tokens) if (id >= model.config.vocabSize) throw optionError('calibration', `calibration: token id ${id} is outside the model's vocabulary (${model.config.vocabSize})`);
  }
  if (ids.length < seqLen + 1) {
    throw optionError('text', `text: ${ids.length} tokens is shorter than one calibration window of ${seqLen} tokens`);
  }
  // Windows as GPTQ's reference samples them: a random start in [0, len − seqLen − 1]; no BOS.
  const next = rng(seed);
  const windows: number[] = [];
  for (let s = 0; s < samples; s++) windows.push(Math.floor(next() * (ids.length - seqLen)));
  const c = model.config;
  const dim = c.dim, qd = c.nHeads * c.headDim;
  const hidden = new Float32Array(samples * seqLen * dim);
  const embed = model._embedTable();
  for (let s = 0; s < samples; s++) {
    for (let t = 0; t < seqLen; t++) {
      const id = ids[windows[s] + t];
      hidden.set(embed.subarray(id * dim, (id + 1) * dim), (s * seqLen + t) * dim);
    }
  }
  const n = samples * seqLen;
  const layers: LayerStats[] = [];
  const make = (modules: string[], w: number): NativeStats & { modules: string[]; w: number } => ({
    modules, w, H: new Float32Array(w * w), sumAbs: new Float32Array(w), maxAbs: new Float32Array(w),
  });
  for (let l = 0; l < c.nLayers; l++) {
    const st = { attn: make(['q_proj', 'k_proj', 'v_proj'], dim), o: make(['o_proj'], qd), mlp: make(['gate_proj', 'up_proj'], dim), down: make(['down_proj'], c.hiddenDim) };
    // Statistics pass over a copy (the layer may change before it runs forward, e.g. under GPTQ).
    const copy = opts.onLayer ? hidden.slice() : hidden;
    await model._calibrateBlock(l, copy, seqLen, st, signal, (done, total) => opts.onProgress?.({ phase: 'calibrate', layer: l, layers: c.nLayers, done, total }));
    const finish = (x: typeof st.attn): InputStats => {
      const H = x.H;
      const scale = 2 / n;
      for (let i = 0; i < H.length; i++) H[i] *= scale;
      const meanAbs = x.sumAbs.map((v) => v / n);
      return { modules: x.modules, inFeatures: x.w, tokens: n, hessian: H, meanAbs, maxAbs: x.maxAbs };
    };
    const ls: LayerStats = { layer: l, attn: finish(st.attn), o: finish(st.o), mlp: finish(st.mlp), down: finish(st.down) };
    if (opts.onLayer) {
      const tools: LayerTools = {
        recollect: async (input) => {
          const widths = { attn: dim, o: qd, mlp: dim, down: c.hiddenDim };
          const names = { attn: ['q_proj', 'k_proj', 'v_proj'], o: ['o_proj'], mlp: ['gate_proj', 'up_proj'], down: ['down_proj'] };
          const one = make(names[input], widths[input]);
          await model._calibrateBlock(l, hidden.slice(), seqLen, { [input]: one }, signal);
          return finish(one);
        },
      };
      await opts.onLayer(ls, tools);
      // Run the (possibly updated) layer forward: its output is the next layer's input.
      await model._calibrateBlock(l, hidden, seqLen, {}, signal);
    }
    if (!opts.keepHessians) for (const k of ['attn', 'o', 'mlp', 'down'] as const) ls[k].hessian = null;
    layers.push(ls);
  }
  return {
    samples, seqLen, tokens: n, seed, textSha256: opts.dataSha256 ?? createHash('sha256').update(opts.text).digest('hex'), windows,
    expectedPeakBytes: calibrationPeakBytes(model, samples, seqLen), layers, seconds: (performance.now() - t0) / 1000,
  };
}

