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
import { LowbitError, optionError } from '../errors';
import { checkBool, checkInt, checkSignal, invalidOption, checkObject } from '../config/validate';
import type { NativeStats } from '../ops/model';
import type { LanguageModel, RuntimeConfig } from './model';
import type { TextTokenizer } from './tokenizer';
import { ActivationStore, type ActivationPlacement } from './activations';
import { Mulberry32 } from './rng';
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
  /**
   * The layer's input hidden states, one window (seqLen × dim) at a time, in order: the first
   * `maxWindows` of them (all by default). `fn` gets a copy it may change.
   */
  forEachInput(fn: (hidden: Float32Array, window: number) => Promise<void>, maxWindows?: number): Promise<void>;
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

/** A seeded generator for window offsets (mulberry32). */
function rng(seed: number): () => number {
  const g = new Mulberry32(seed);
  return () => g.next();
}

/**
 * Memory a calibration run needs beyond the weights: the activations (all windows, or one chunk
 * when spilled), one layer's statistics (four Hessians and their channel sums) and one window's
 * block temporaries (the statistics pass's copy, the block's intermediates and Xᵀ).
 */
export function calibrationPeakBytes(model: { config: RuntimeConfig }, samples: number, seqLen: number, placement?: ActivationPlacement): number {
  const c = model.config;
  const qd = c.nHeads * c.headDim;
  const act = placement ? placement.memoryBytes : samples * seqLen * c.dim * 4;
  const stats = 4 * (2 * c.dim * c.dim + qd * qd + c.hiddenDim * c.hiddenDim) + 4 * 4 * (2 * c.dim + qd + c.hiddenDim);
  const scratch = 4 * seqLen * c.dim + 4 * seqLen * (3 * c.dim + 3 * qd + 2 * c.hiddenDim) + 4 * seqLen * c.hiddenDim;
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
  /**
   * The inputs whose statistics the first pass over a layer collects (the others come back empty:
   * no Hessian, zero sums) when `onLayer` recollects them anyway (GPTQ's true-sequential order
   * needs only q/k/v's up front). @default all four
   */
  firstPassInputs?: readonly ('attn' | 'o' | 'mlp' | 'down')[];
  /** Activations above this many bytes are spilled to a file (Infinity: always in memory). */
  activationBudgetBytes: number;
  /** Where a spill file goes. @default the OS temp directory */
  spillDir?: string;
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
    activationBudgetBytes: Infinity,
    onLayer: opts.onLayer,
    signal: checkSignal(opts.signal),
    onProgress: opts.onProgress,
  });
}

/**
 * What calibration needs of a model: the in-memory {@link LanguageModel}, or the block-by-block
 * streaming model (runtime/stream-model.ts) that holds one decoder layer at a time. @internal
 */
export interface CalibrationModel {
  readonly config: RuntimeConfig;
  readonly tokenizer: TextTokenizer | null;
  readonly source: string;
  /** Embedding rows of `ids`, one after another into `out` from `offset`. */
  _embedRows(ids: ArrayLike<number>, out: Float32Array, offset?: number): void;
  /** A layer's linear weight (out × in, f32), the array the layer computes with (GPTQ writes into it). */
  _linearWeight(layer: number, kind: 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down'): Float32Array;
  /** Run decoder layer `layer` over hidden states (samples × seqLen × dim, in place), feeding the statistics buffers. */
  _calibrateBlock(layer: number, hidden: Float32Array, seqLen: number, stats: Partial<Record<'attn' | 'o' | 'mlp' | 'down', NativeStats>>,
    signal?: AbortSignal, onProgress?: (done: number, total: number) => void): Promise<void>;
  /** The driver is done with the layer it last ran (a streaming model drops its weights). */
  _releaseLayer(): void;
}

/**
 * Calibration one decoder layer at a time, as a driver: `start` tokenizes and embeds the windows,
 * each `step()` runs the next layer (statistics, `onLayer`, the layer's forward) and returns its
 * statistics. GPTQ steps it lazily, as the writer asks for each layer's modules, so finished
 * layers are written while the next are still to run. @internal
 */
export class LayerCalibrator {
  private layer = 0;
  private readonly t0 = performance.now();
  private constructor(private readonly model: CalibrationModel, private readonly opts: NormalizedCalibrateOptions, private readonly store: ActivationStore,
    private readonly windows: number[], private readonly textSha256: string) {}

  /** Tokenize, sample the windows, embed them into the activation store. */
  static async start(model: CalibrationModel, opts: NormalizedCalibrateOptions): Promise<LayerCalibrator> {
    const tok = model.tokenizer;
    if (!tok && !opts.tokens) throw optionError('tokenizer', `${model.source}: calibration needs a tokenizer`);
    const { samples, seqLen, seed } = opts;
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
    const dim = model.config.dim, row = seqLen * dim;
    const store = await ActivationStore.create(samples, row, opts.activationBudgetBytes, opts.spillDir);
    try {
      await store.forEach((first, count, data) => {
        for (let s = 0; s < count; s++) {
          const w = windows[first + s];
          model._embedRows(ids.slice(w, w + seqLen), data, s * row);
        }
        return Promise.resolve();
      }, true);
    } catch (e) {
      await store.dispose();
      throw e;
    }
    const textSha256 = opts.dataSha256 ?? createHash('sha256').update(opts.text).digest('hex');
    return new LayerCalibrator(model, opts, store, windows, textSha256);
  }

  /** Layers run so far (the next `step` runs this one). */
  get layersDone(): number {
    return this.layer;
  }

  /** Where the activations live (in memory, or spilled with one chunk in memory). */
  get placement(): ActivationPlacement {
    return this.store.placement;
  }

  /** Save the hidden states that are the next layer's input into a new file (a resume point). */
  saveActivations(file: string): Promise<void> {
    return this.store.saveTo(file);
  }

  /**
   * Go on from layer `layer`, with its input hidden states read from `file` (what
   * {@link saveActivations} wrote after layer − 1 ran, in a run with the same inputs; null after
   * the last layer): the layers before it are not run again.
   */
  async resumeAt(layer: number, file: string | null): Promise<void> {
    const n = this.model.config.nLayers;
    if (this.layer !== 0 || layer < 0 || layer > n || (file === null && layer !== n)) throw new LowbitError('LOWBIT_INTERNAL', `${this.model.source}: cannot resume at layer ${layer} after ${this.layer}`);
    // (after the last layer there is nothing left to run: no hidden states are needed)
    if (file !== null) await this.store.loadFrom(file);
    this.layer = layer;
  }

  /** Run the next layer. */
  async step(): Promise<LayerStats> {
    const { model, opts, store } = this;
    const c = model.config;
    const l = this.layer;
    if (l >= c.nLayers) throw new LowbitError('LOWBIT_INTERNAL', `${model.source}: calibration already ran every layer`);
    const { seqLen, signal } = opts;
    const dim = c.dim, qd = c.nHeads * c.headDim, row = seqLen * dim;
    const n = opts.samples * seqLen;
    const widths = { attn: dim, o: qd, mlp: dim, down: c.hiddenDim };
    const names = { attn: ['q_proj', 'k_proj', 'v_proj'], o: ['o_proj'], mlp: ['gate_proj', 'up_proj'], down: ['down_proj'] };
    const make = (input: keyof typeof widths): NativeStats & { modules: string[]; w: number } => {
      const w = widths[input];
      return { modules: names[input], w, H: new Float32Array(w * w), sumAbs: new Float32Array(w), maxAbs: new Float32Array(w) };
    };
    const finish = (x: ReturnType<typeof make>): InputStats => {
      const H = x.H;
      const scale = 2 / n;
      for (let i = 0; i < H.length; i++) H[i] *= scale;
      const meanAbs = x.sumAbs.map((v) => v / n);
      return { modules: x.modules, inFeatures: x.w, tokens: n, hessian: H.length ? H : null, meanAbs, maxAbs: x.maxAbs };
    };
    // A statistics pass runs the layer on a copy of each window (the layer may still change before
    // it runs forward, under GPTQ): one window's scratch, windows in order, statistics accumulated.
    const scratch = new Float32Array(row);
    const statsPass = async (st: Partial<Record<keyof typeof widths, NativeStats>>, progress: boolean) => {
      await store.forEach(async (first, count, data) => {
        for (let s = 0; s < count; s++) {
          scratch.set(data.subarray(s * row, (s + 1) * row));
          await model._calibrateBlock(l, scratch, seqLen, st, signal);
          if (progress) opts.onProgress?.({ phase: 'calibrate', layer: l, layers: c.nLayers, done: first + s + 1, total: opts.samples });
        }
      }, false);
    };
    const want = opts.firstPassInputs ?? ['attn', 'o', 'mlp', 'down'];
    const empty = (input: keyof typeof widths): ReturnType<typeof make> => ({ modules: names[input], w: widths[input], H: new Float32Array(0), sumAbs: new Float32Array(0), maxAbs: new Float32Array(0) });
    const st = { attn: make('attn'), o: want.includes('o') ? make('o') : empty('o'), mlp: want.includes('mlp') ? make('mlp') : empty('mlp'), down: want.includes('down') ? make('down') : empty('down') };
    const collected: Partial<Record<keyof typeof widths, NativeStats>> = { attn: st.attn };
    for (const k of ['o', 'mlp', 'down'] as const) if (want.includes(k)) collected[k] = st[k];
    if (opts.onLayer) await statsPass(collected, true);
    else {
      // nothing changes the layer: collect the statistics while it runs forward, in place
      await store.forEach(async (first, count, data) => {
        for (let s = 0; s < count; s++) {
          await model._calibrateBlock(l, data.subarray(s * row, (s + 1) * row), seqLen, collected, signal);
          opts.onProgress?.({ phase: 'calibrate', layer: l, layers: c.nLayers, done: first + s + 1, total: opts.samples });
        }
      }, true);
    }
    const ls: LayerStats = { layer: l, attn: finish(st.attn), o: finish(st.o), mlp: finish(st.mlp), down: finish(st.down) };
    if (opts.onLayer) {
      const tools: LayerTools = {
        recollect: async (input) => {
          const one = make(input);
          await statsPass({ [input]: one }, false);
          return finish(one);
        },
        forEachInput: async (fn, maxWindows = Infinity) => {
          await store.forEach(async (first, count, data) => {
            for (let s = 0; s < count && first + s < maxWindows; s++) await fn(data.slice(s * row, (s + 1) * row), first + s);
          }, false);
        },
      };
      await opts.onLayer(ls, tools);
      // Run the (possibly updated) layer forward: its output is the next layer's input.
      await store.forEach((_first, _count, data) => model._calibrateBlock(l, data, seqLen, {}, signal), true);
    }
    model._releaseLayer();
    if (!opts.keepHessians) for (const k of ['attn', 'o', 'mlp', 'down'] as const) ls[k].hessian = null;
    this.layer++;
    return ls;
  }

  /** The run so far. */
  summary(layers: LayerStats[]): CalibrationResult {
    const { samples, seqLen, seed } = this.opts;
    return {
      samples, seqLen, tokens: samples * seqLen, seed, textSha256: this.textSha256, windows: this.windows,
      expectedPeakBytes: calibrationPeakBytes(this.model, samples, seqLen, this.store.placement), layers, seconds: (performance.now() - this.t0) / 1000,
    };
  }

  /** Remove the activations (and their spill file). */
  async close(): Promise<void> {
    this.model._releaseLayer();
    await this.store.dispose();
  }
}

/** {@link calibrate} on checked options (what the pipelines call). @internal */
export async function calibrateNormalized(model: CalibrationModel, opts: NormalizedCalibrateOptions): Promise<CalibrationResult> {
  const cal = await LayerCalibrator.start(model, opts);
  try {
    const layers: LayerStats[] = [];
    for (let l = 0; l < model.config.nLayers; l++) layers.push(await cal.step());
    return cal.summary(layers);
  } finally {
    await cal.close();
  }
}
