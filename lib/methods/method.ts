/**
 * The one interface every quantization method implements, so that adding a method is adding a
 * file: the pipeline (lib/pipeline/quantize.ts) plans which modules are quantized, asks the method
 * for each module's output tensors when the writer needs them, and records what the method
 * reports. It never knows a method's internals.
 *
 * A method may work module by module (RTN: `quantizeModule` reads the weight, quantizes it and
 * returns its tensors) or over the whole model first (GPTQ: `prepare` runs calibration block by
 * block and quantizes every planned module; `quantizeModule` then hands out what it produced).
 */
import type { NormalizedQuantizeConfig } from '../config/quantize';
import type { NormalizedCalibration } from '../config/calibration';
import type { Progress } from '../config/run';
import type { Model } from '../formats/hf-dir';
import type { LinearModule } from '../formats/hf-model';
import type { QuantStats } from '../ops/quantize';
import type { ResumeState } from '../formats/resume';

/** Per-module record (also written to quant_log.json). */
export interface ModuleLog {
  module: string;
  rows: number;
  cols: number;
  /** 'packed' (GPTQ tensors), 'dequant' (fake-quant weight) or 'fp16' (kept unquantized in the source's float type — F16, or BF16 for a BF16 model; see reason). */
  storage: 'packed' | 'dequant' | 'fp16';
  reason?: string;
  /** GPTQ: the reference's loss Σ(w − q)²/U_jj²/2, the damping used, calibration tokens. */
  gptqLoss?: number;
  dampUsed?: number;
  samples?: number;
  bits?: number;
  groupSize?: number;
  stats?: QuantStats;
  seconds: number;
}

/** What a calibrated method records about its calibration run (quant_log.json, the result). */
export interface CalibrationSummary {
  samples: number;
  seqLen: number;
  tokens: number;
  seed: number;
  /** sha256 of the calibration data as read (provenance; for one text: of its UTF-8 bytes). */
  textSha256: string;
  /** Where the data came from: its kind, records, bytes and sha256. */
  data: { kind: 'text' | 'jsonl' | 'dir' | 'texts'; records: number; bytes: number; sha256: string };
  /** Bytes the calibration needed at its peak beyond the model weights (stated before the run). */
  expectedPeakBytes: number;
  /**
   * The whole run's expected peak, every part: the resident block's f32 weights, activations (all
   * windows, or one chunk when spilled), one layer's Hessians, one window's temporaries, GPTQ's
   * working set for the largest layer and the outputs held for the writer (stated before the run).
   */
  expectedRunPeakBytes?: number;
  /** Where the activations lived: in memory, or spilled to a temporary file with one chunk in memory. */
  activations?: { totalBytes: number; memoryBytes: number; spilled: boolean; chunkSamples: number };
  /** Decoder layers run (GPTQ runs them as the writer asks for their modules), those read back from a killed run's state included. */
  layers?: number;
  /** Layers whose results were read back from the staging directory of a killed run of the same inputs and options (0: none). */
  resumedLayers?: number;
  seconds: number;
}

/** Everything a method may use while it runs: normalized, already validated. */
export interface MethodContext {
  /** The opened source model. */
  model: Model;
  config: NormalizedQuantizeConfig;
  /** The modules to quantize, by weight tensor name (the pipeline's plan). */
  plan: ReadonlyMap<string, LinearModule>;
  /** Calibration data, present when the method needs it. */
  calibration: NormalizedCalibration | null;
  /** Compute threads of this call (undefined: the process default). */
  threads: number | undefined;
  /** The run's memory budget in bytes (Infinity: none); a method spills or refuses up front. */
  maxMemory: number;
  /**
   * A resumable method's state in the staging directory (null for a method that is not): what a
   * killed run of the same inputs and options recorded, to go on from, and where to record each
   * finished step.
   */
  resume: ResumeState | null;
  signal: AbortSignal | undefined;
  /** Progress (never throws). */
  report(p: Progress): void;
}

/** The output tensors of one quantized module, by tensor name, and its log entry. */
export interface QuantizedModule {
  tensors: Map<string, Uint8Array>;
  log: ModuleLog;
}

/** One quantization method. */
export interface QuantMethod {
  /** The name users pass as `method`. */
  readonly name: string;
  /** Whether the method needs calibration data (the pipeline refuses to start without it). */
  readonly needsCalibration: boolean;
  /**
   * Whether the method records its progress step by step (`MethodContext.resume`), so that a run
   * killed part-way goes on from its staging directory when started again. A method whose work is
   * quick per module (RTN) starts over instead.
   */
  readonly resumable: boolean;
  /**
   * Start a run. Whole-model methods do their work here (and report progress); the returned run
   * then serves each module's tensors.
   */
  start(ctx: MethodContext): Promise<MethodRun>;
}

/** A method's state during one pipeline run. */
export interface MethodRun {
  /** The tensors of one planned module (called once per module, in write order). */
  quantizeModule(mod: LinearModule): Promise<QuantizedModule>;
  /** What the method records in the result and quant_log.json (calibration); complete once the writer is done. */
  readonly calibration?: CalibrationSummary;
  /** Release what the run holds (a streaming model, spill files); the pipeline calls it once, success or not. */
  close?(): Promise<void>;
}
