/**
 * The quantize pipeline: plan → (calibrate) → quantize → write, for any method (lib/methods/).
 *
 * Streaming: tensors are produced one at a time while the safetensors writer asks for them, and
 * the source pages of each tensor are dropped from memory after use, so peak memory is one layer's
 * work, not the model. (This is why `quantize` writes its output itself instead of returning an
 * in-memory model to a separate `save`: a 70B model does not fit in RAM.) Everything is written
 * into a temp directory that is renamed into place at the end; on error or abort it is removed.
 * A GGUF output is written by the GGUF exporter: from the source with ggml's encoders (RTN), or
 * from a GPTQ checkpoint staged beside the output (GPTQ), which is removed afterwards.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, toLowbitError, optionError } from '../errors';
import { normalizeQuantizeConfig, quantizerFor, type QuantizeConfig, type NormalizedQuantizeConfig } from '../config/quantize';
import { normalizeCalibration, type CalibrationOptions, type NormalizedCalibration } from '../config/calibration';
import { checkThreads, safeReporter, type Progress } from '../config/run';
import { checkBool, checkInt, checkSignal, invalidOption, checkObject } from '../config/validate';
import { loadModel } from '../runtime/model';
import { evaluate } from '../runtime/evaluate';
import { openModel, type Model } from '../formats/hf-dir';
import { hfConfigToJson, type TorchDtype } from '../formats/hf-config';
import { gptqQuantizationConfig } from '../formats/gptq';
import { ctQuantizationConfig, ctTensorSpecs, ctTensorsFromGptq, type CtModuleLayout, type CtScheme } from '../formats/compressed-tensors';
import { writeSafetensors, type TensorEntry, type Dtype } from '../formats/safetensors';
import { fromFloat32, toFloat32 } from '../formats/dtype';
import { stageDir, writeJsonAtomic } from '../formats/output';
import { applyTransforms, type TransformReport } from './transform';
import { normalizeTransforms, type Transform } from '../config/transform';
import { checkRecipeRuntime } from '../config/recipe';
import { measureActScales } from '../runtime/act-scales';
import { calibrationTexts, readCalibrationFile } from '../formats/calib';
import { ResumeState } from '../formats/resume';
import { fingerprint, keyOf } from '../formats/fingerprint';
import { getKernelMode, nativeInfo } from '../ops/system';
import { METHODS } from '../methods';
import type { CalibrationSummary, MethodRun, ModuleLog, QuantizedModule } from '../methods/method';
import type { LinearModule } from '../formats/hf-model';
import { planModules } from './plan';
import { stageQuantizeSource } from './source';
import type { ModelSource } from '../formats/source';
import { looksLikeRepoId } from '../formats/hf-cache';
import { modelCard, type QualityResult } from './model-card';
export type { QualityResult } from './model-card';
import { exportGgufNormalized, type ExportGgufResult } from './gguf-export';
import { LOWBIT_VERSION } from '../version';

export type { ModuleLog } from '../methods/method';

/** Options of one {@link quantize} run (where and how, as opposed to what). */
export interface QuantizeRunOptions {
  /** Output directory. Must not exist or be empty, unless `overwrite`. */
  out: string;
  /** Replace a non-empty output directory (only once the new one is complete). @default false */
  overwrite?: boolean;
  /** Extra tokenizer file(s) to copy into the output (e.g. a llama2.c tokenizer.bin). */
  tokenizer?: string | string[];
  /** Progress: phase 'quantize' with layer/layers/module, then 'write'. Latest wins. */
  onProgress?: (p: Progress) => void;
  /** Cancels the run; rejects with LOWBIT_ABORTED and leaves no output. */
  signal?: AbortSignal;
  /** Calibration data (GPTQ only). */
  calibration?: CalibrationOptions;
  /** Compute threads for this run (1–1024). @default the process default (setThreads, LOWBIT_THREADS, physical cores) */
  threads?: number;
  /**
   * Measure the result before it is written out: perplexity of the quantized model on this text,
   * and KL divergence and top-1 agreement against the source, recorded in the result, quant_log.json
   * and the model card (CLI: `--eval FILE`, `--eval-ctx`, `--eval-chunks`).
   */
  evaluate?: { text?: string; file?: string; ctx?: number; maxChunks?: number };
  /**
   * The command line that started the run, for the model card (`lowbit quantize …`; the CLI sets
   * it). Absolute paths in it are written as base names.
   */
  command?: string;
  /**
   * Accept a GGUF source whose weights are already quantized: they are dequantized to F32 and
   * quantized again (two roundings; llama.cpp's quantize asks for the same flag). @default false
   */
  allowRequantize?: boolean;
  /**
   * A memory budget in bytes for the run (CLI `--max-memory 8G`). The expected peak is computed
   * before any work: GPTQ spills its calibration activations to a temporary file when they do not
   * fit beside one block, its Hessians and its working set, and refuses up front
   * (LOWBIT_RESOURCE, with the numbers) when even one window would not; RTN refuses when its
   * largest module would not fit. @default no budget (activations in memory)
   */
  maxMemory?: number;
}

/** Summary of a quantize run (what the CLI prints as a table or JSON). */
export interface QuantizeResult {
  out: string;
  method: NormalizedQuantizeConfig['method'];
  /** GPTQ: the calibration run (windows, tokens, seed, text hash, peak estimate, seconds). */
  calibration?: CalibrationSummary;
  format: NormalizedQuantizeConfig['format'];
  /** A GGUF output: what the GGUF writer did (`out` is then the file). */
  gguf?: ExportGgufResult;
  /** What `evaluate` measured (quantized against the source), when it was asked for. */
  evaluation?: QualityResult;
  bits: number;
  groupSize: number;
  sym: boolean;
  clip: string;
  codebook: string;
  modules: ModuleLog[];
  quantizedModules: number;
  skippedModules: number;
  /** Parameter-weighted mean of the per-module relative Frobenius errors. */
  meanRelError: number;
  /** Mean squared weight error over every quantized weight. */
  mse: number;
  /** Bytes of tensor data in the source. */
  sourceBytes: number;
  /** Bytes of every file written. */
  outputBytes: number;
  files: string[];
  seconds: number;
}

const COPY_FILES = ['tokenizer.json', 'tokenizer.bin', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json',
  'generation_config.json', 'added_tokens.json', 'vocab.json', 'merges.txt'];

const TORCH_DTYPE: Record<string, TorchDtype> = { F16: 'float16', BF16: 'bfloat16', F32: 'float32' };

/**
 * Quantize a model directory (or an opened {@link Model}) and write the result to `run.out`.
 *
 * @example
 * const r = await quantize('models/tinyllama', { method: 'rtn', bits: 4, groupSize: 128 }, { out: 'out/tinyllama-w4' });
 */
export async function quantize(model: Model | string, config: QuantizeConfig, run: QuantizeRunOptions): Promise<QuantizeResult> {
  const t0 = performance.now();
  const cfg = normalizeQuantizeConfig(config);
  const opts = normalizeRunOptions(cfg, run);
  if (opts.signal?.aborted) throw new LowbitError('LOWBIT_ABORTED', 'quantize: aborted by signal before start (no output written)');
  if (typeof model !== 'string') {
    const named = { ...opts, sourceName: path.basename(model.dir) };
    if (cfg.transforms.length) return withTransforms(model.dir, cfg, named, t0);
    return cfg.ggufType ? quantizeToGguf(model, cfg, named, t0) : runPipeline(model, cfg, named, t0);
  }
  // any source kind: an HF directory as it is; llama2.c and GGUF through a staged HF directory
  const vocabFile = opts.tokenizers.find((f) => f.endsWith('.bin')) ?? null;
  const staged = await stageQuantizeSource(model, opts.out, { allowRequantize: opts.allowRequantize, tokenizer: vocabFile, signal: opts.signal });
  try {
    // a tokenizer copied into the staged directory is carried by it: not copied a second time
    const run = { ...opts, sourceName: sourceNameOf(model, staged.source), sourcePath: staged.source.dir ?? staged.source.path,
      tokenizers: staged.tokenizer ? opts.tokenizers.filter((t) => t !== staged.tokenizer) : opts.tokenizers };
    if (cfg.transforms.length) return await withTransforms(staged.dir, cfg, run, t0);
    if (cfg.ggufType) return await quantizeToGguf(staged.dir, cfg, run, t0);
    const m = openModel(staged.dir, { lmHead: cfg.lmHead });
    try {
      return await runPipeline(m, cfg, run, t0);
    } finally {
      m.close();
    }
  } finally {
    staged.cleanup();
  }
}

/**
 * Transforms first (an F32 HF directory staged beside the output, removed afterwards), then the
 * method on the transformed model; the quant log records what the transforms did.
 */
async function withTransforms(dir: string, cfg: NormalizedQuantizeConfig, opts: NormalizedRunOptions, t0: number): Promise<QuantizeResult> {
  const outAbs = path.resolve(opts.out);
  const tdir = path.join(path.dirname(outAbs), `.${path.basename(outAbs)}.transformed-${process.pid}`);
  fs.rmSync(tdir, { recursive: true, force: true });
  try {
    // SmoothQuant's α search simulates the run's own quantization: each module's quantizer as the
    // plan gives it (kept modules stay full precision), the recipe's activation bits (else 8)
    // (GGUF: the type's own blocks; the run's bits and groups stand in, a short last group allowed)
    let planned: Map<string, string> | null = null;
    if (!cfg.ggufType && cfg.transforms.some((t) => t.kind === 'smoothquant' && t.alpha === 'search')) {
      const src = openModel(dir, { lmHead: cfg.lmHead });
      try {
        planned = new Map([...planModules(src, cfg).modules].map(([w, mod]) => [w, mod.name]));
      } finally {
        src.close();
      }
    }
    const quantizerOf = (weight: string) => {
      if (!planned) return { ...cfg.quantizer, raggedLastGroup: true };
      const mod = planned.get(weight);
      return mod === undefined ? null : quantizerFor(cfg, mod);
    };
    const target = { quantizer: cfg.quantizer, actBits: cfg.recipe?.activations?.bits ?? 8, quantizerOf };
    const report = await applyTransforms(dir, tdir, cfg.transforms, { calibration: opts.calibration, threads: opts.threads, signal: opts.signal, target });
    const run = { ...opts, transformReport: report };
    const plain = { ...cfg, transforms: [] };
    if (cfg.ggufType) return await quantizeToGguf(tdir, plain, run, t0);
    const m = openModel(tdir, { lmHead: cfg.lmHead });
    try {
      return await runPipeline(m, plain, run, t0);
    } finally {
      m.close();
    }
  } finally {
    fs.rmSync(tdir, { recursive: true, force: true });
  }
}

function must<T>(x: T | null | undefined, what: string): T {
  if (x === null || x === undefined) throw new LowbitError('LOWBIT_INTERNAL', `quantize: ${what} is missing`);
  return x;
}

/** What {@link transformModel} returns. */
export interface TransformResult {
  out: string;
  report: TransformReport;
  outputBytes: number;
  seconds: number;
}

/**
 * Apply transforms only (no quantization; CLI `--method none`): the source (any kind lowbit reads)
 * becomes an F32 Hugging Face checkpoint in `run.out`, written atomically, with a quant_log.json
 * saying what was done. Rotation without `down` gives a standard Llama checkpoint that any runtime
 * loads unchanged.
 */
export async function transformModel(model: string, transforms: (Transform | string)[],
  run: { out: string; calibration?: CalibrationOptions; threads?: number; signal?: AbortSignal; overwrite?: boolean; tokenizer?: string; command?: string }): Promise<TransformResult> {
  const t0 = performance.now();
  if (typeof model !== 'string' || !model) throw invalidOption('model', 'a path', model);
  const list = normalizeTransforms(transforms);
  if (list.length === 0) throw invalidOption('transforms', 'at least one transform', transforms);
  checkObject('run', run, 'an object with at least {out}');
  if (typeof run.out !== 'string' || run.out.length === 0) throw invalidOption('out', 'an output directory path', run.out);
  const calibration = run.calibration === undefined ? null : normalizeCalibration(run.calibration);
  if (calibration && !list.some((t) => t.kind === 'smoothquant')) throw optionError('calibration', 'calibration: only transform smoothquant uses calibration data');
  const threads = checkThreads(run.threads);
  const signal = checkSignal(run.signal);
  const overwrite = run.overwrite === undefined ? false : checkBool('overwrite', run.overwrite);
  if (run.tokenizer !== undefined && (typeof run.tokenizer !== 'string' || !fs.existsSync(run.tokenizer))) {
    throw new LowbitError('LOWBIT_NOT_FOUND', `tokenizer: no such file ${JSON.stringify(run.tokenizer)}`, { option: 'tokenizer' });
  }
  const staged = await stageQuantizeSource(model, run.out, { allowRequantize: false, tokenizer: run.tokenizer ?? null, signal });
  try {
    const out = await stageDir(run.out, overwrite);
    try {
      const report = await applyTransforms(staged.dir, out.tmp, list, { calibration, threads, signal });
      if (run.tokenizer && !staged.tokenizer) fs.copyFileSync(run.tokenizer, path.join(out.tmp, path.basename(run.tokenizer).endsWith('.bin') ? 'tokenizer.bin' : path.basename(run.tokenizer)));
      await writeJsonAtomic(path.join(out.tmp, 'quant_log.json'), {
        tool: `lowbit ${LOWBIT_VERSION}`, created: new Date().toISOString(), source: sourceNameOf(model, staged.source), method: 'none', transforms: report,
        command: run.command === undefined ? null : checkCommand(run.command), seconds: (performance.now() - t0) / 1000,
      });
      if (signal?.aborted) throw new LowbitError('LOWBIT_ABORTED', 'transform: aborted by signal before commit (no output written)');
      await out.commit();
      let outputBytes = 0;
      for (const f of fs.readdirSync(out.target)) outputBytes += fs.statSync(path.join(out.target, f)).size;
      return { out: out.target, report, outputBytes, seconds: (performance.now() - t0) / 1000 };
    } catch (e) {
      await out.abort();
      throw e;
    }
  } finally {
    staged.cleanup();
  }
}

/**
 * The source's name in what is written: a Hugging Face id as the user wrote it, an HF directory's
 * base name (also when a .safetensors file inside it was given), a file's base name without its
 * extension — never an absolute path.
 */
function sourceNameOf(spec: string, source: ModelSource): string {
  if (looksLikeRepoId(spec)) return spec;
  if (source.kind === 'hf-dir' && source.dir !== null) return path.basename(source.dir);
  return path.basename(source.path).replace(/\.(gguf|bin)$/, '');
}

/** Run options after their one check. @internal */
export interface NormalizedRunOptions {
  out: string;
  evaluate: { text: string; ctx: number | undefined; maxChunks: number | undefined; name: string } | null;
  command: string | null;
  /** The source's name for what is written (its base name, extension dropped; never an absolute path). */
  sourceName: string;
  /** The source as given (a file or directory; its fingerprint is part of the resume key), or null when an opened Model was given. */
  sourcePath: string | null;
  allowRequantize: boolean;
  overwrite: boolean;
  tokenizers: string[];
  calibration: NormalizedCalibration | null;
  threads: number | undefined;
  /** Bytes (Infinity: no budget). */
  maxMemory: number;
  signal: AbortSignal | undefined;
  report: (p: Progress) => void;
  /** What the transforms did (set by withTransforms), for the quant log. */
  transformReport?: TransformReport;
}

function normalizeRunOptions(cfg: NormalizedQuantizeConfig, run: QuantizeRunOptions): NormalizedRunOptions {
  checkObject('run', run, 'an object with at least {out}');
  if (typeof run.out !== 'string' || run.out.length === 0) throw invalidOption('out', cfg.ggufType ? 'an output .gguf path' : 'an output directory path', run.out);
  const tokenizers = run.tokenizer === undefined ? [] : Array.isArray(run.tokenizer) ? run.tokenizer : [run.tokenizer];
  for (const t of tokenizers) {
    if (typeof t !== 'string' || !fs.existsSync(t)) throw new LowbitError('LOWBIT_NOT_FOUND', `tokenizer: no such file ${JSON.stringify(t)}`, { option: 'tokenizer' });
  }
  if (cfg.ggufType) {
    const notBin = tokenizers.find((t) => !t.endsWith('.bin'));
    if (notBin !== undefined) throw optionError('tokenizer', `tokenizer: ${path.basename(notBin)} is not a llama2.c tokenizer.bin; a GGUF output's vocabulary comes from a tokenizer.bin or the model directory's own tokenizer.json`, { file: notBin });
  }
  const method = METHODS[cfg.method];
  const smooth = cfg.transforms.some((t) => t.kind === 'smoothquant');
  if (cfg.recipe?.activations?.scheme === 'static' && run.calibration === undefined) {
    throw optionError('calibration', 'calibration: the recipe\'s static activation scales are measured on calibration data ({calibration: {file | text}}, CLI --calib FILE)');
  }
  const staticScales = cfg.recipe?.activations?.scheme === 'static';
  if (smooth && run.calibration === undefined) {
    throw optionError('calibration', 'calibration: transform smoothquant needs calibration data ({calibration: {file | text}}, CLI --calib FILE)');
  }
  if (cfg.ggufType && cfg.transforms.some((t) => t.kind === 'rotate' && t.down)) {
    throw optionError('transforms', `transforms: rotate:down needs lowbit's runtime to rotate down_proj's input online; a GGUF file (${cfg.format}) cannot record it, so llama.cpp would compute wrong outputs — use rotate without down`);
  }
  if (run.calibration !== undefined && !method.needsCalibration && !smooth && !staticScales) {
    throw optionError('calibration', `calibration: method "${cfg.method}" uses no calibration data (leave it out, or use method "gptq")`);
  }
  if (method.needsCalibration && run.calibration === undefined) {
    throw optionError('calibration', `calibration: ${cfg.method.toUpperCase()} needs calibration data ({calibration: {file | text, samples, seqLen, seed}}, CLI --calib FILE)`);
  }
  if (run.overwrite !== undefined && typeof run.overwrite !== 'boolean') throw invalidOption('overwrite', 'a boolean', run.overwrite);
  if (run.maxMemory !== undefined && cfg.ggufType && cfg.method === 'rtn') {
    throw optionError('maxMemory', 'maxMemory: a GGUF RTN export encodes tensor by tensor and has no budget to apply it to (it applies to GPTQ, and to RTN into safetensors)');
  }
  return {
    out: run.out,
    sourceName: '',
    sourcePath: null,
    command: run.command === undefined ? null : checkCommand(run.command),
    evaluate: run.evaluate === undefined ? null : normalizeEvaluate(run.evaluate),
    overwrite: run.overwrite ?? false,
    allowRequantize: run.allowRequantize === undefined ? false : checkBool('allowRequantize', run.allowRequantize),
    tokenizers,
    calibration: run.calibration === undefined ? null : normalizeCalibration(run.calibration),
    threads: checkThreads(run.threads),
    maxMemory: run.maxMemory === undefined ? Infinity : checkInt('maxMemory', run.maxMemory, 1 << 20, Number.MAX_SAFE_INTEGER),
    signal: checkSignal(run.signal),
    report: safeReporter(run.onProgress),
  };
}

function normalizeEvaluate(v: unknown): NonNullable<NormalizedRunOptions['evaluate']> {
  const e = checkObject('evaluate', v as { text?: string; file?: string; ctx?: number; maxChunks?: number } | null, 'an object {text | file, ctx?, maxChunks?}');
  if ((e.text === undefined) === (e.file === undefined)) throw invalidOption('evaluate', 'exactly one of text and file', e);
  let text: string;
  if (e.file !== undefined) {
    if (typeof e.file !== 'string' || !e.file) throw invalidOption('evaluate.file', 'a path to a UTF-8 text file', e.file);
    try {
      text = fs.readFileSync(e.file, 'utf8');
    } catch {
      throw new LowbitError('LOWBIT_NOT_FOUND', `evaluate: cannot read ${e.file}`, { option: 'evaluate', file: e.file });
    }
  } else {
    if (typeof e.text !== 'string') throw invalidOption('evaluate.text', 'a string', e.text);
    text = e.text;
  }
  return {
    text, name: e.file !== undefined ? path.basename(e.file) : 'text',
    ctx: e.ctx === undefined ? undefined : checkInt('evaluate.ctx', e.ctx, 2, 1 << 24),
    maxChunks: e.maxChunks === undefined ? undefined : checkInt('evaluate.maxChunks', e.maxChunks, 1, 1e9),
  };
}

/** Evaluate `quantized` against `source` (both loadable models) on the run's evaluation text. */
async function measureQuality(quantized: string, source: string, opts: NormalizedRunOptions): Promise<QualityResult | undefined> {
  const ev = opts.evaluate;
  if (!ev) return undefined;
  const q = await loadModel(quantized, { threads: opts.threads });
  try {
    const ref = await loadModel(source, { threads: opts.threads });
    try {
      const r = await evaluate(q, { text: ev.text, ctx: ev.ctx, maxChunks: ev.maxChunks, reference: ref, signal: opts.signal, onProgress: (p) => { opts.report({ ...p, phase: 'evaluate' }); } });
      return { text: ev.name, ctx: r.ctx, tokens: r.tokens, ppl: r.ppl, referencePpl: r.referencePpl ?? NaN, kl: r.kl ?? NaN, top1: r.top1 ?? NaN };
    } finally {
      ref.dispose();
    }
  } finally {
    q.dispose();
  }
}

/** A GGUF result with the run's evaluation of the written file (a failed evaluation removes the file: no output). */
async function withQuality(r: QuantizeResult, file: string, source: string, opts: NormalizedRunOptions): Promise<QuantizeResult> {
  if (!opts.evaluate) return r;
  try {
    const evaluation = await measureQuality(file, source, opts);
    return evaluation ? { ...r, evaluation } : r;
  } catch (e) {
    fs.rmSync(file, { force: true });
    throw e;
  }
}

/** A command line for the model card, with every absolute path reduced to its base name. */
function checkCommand(v: unknown): string {
  if (typeof v !== 'string' || v.length > 10000) throw invalidOption('command', 'a command line (string of at most 10000 characters)', v);
  return v.replace(/(^|\s)(\/[^\s]*)/g, (_m, pre: string, p: string) => `${pre}${path.basename(p)}`);
}

/**
 * GGUF output. RTN: ggml's own block encoders on the source. GPTQ: a GPTQ checkpoint on the
 * type's grid, staged beside the output, then its codes into the blocks; the staging directory is
 * removed whatever happens.
 */
async function quantizeToGguf(model: Model | string, cfg: NormalizedQuantizeConfig, opts: NormalizedRunOptions, t0: number): Promise<QuantizeResult> {
  const type = cfg.ggufType;
  if (type === null) throw new LowbitError('LOWBIT_INTERNAL', 'quantizeToGguf: not a GGUF format');
  const source = typeof model === 'string' ? model : model.dir;
  const vocab = opts.tokenizers.find((f) => f.endsWith('.bin'));
  const outAbs = path.resolve(opts.out);
  if (fs.existsSync(outAbs) && !opts.overwrite) throw new LowbitError('LOWBIT_IO', `${outAbs}: exists (pass overwrite / --force to replace it)`, { file: outAbs });
  const exclude = cfg.exclude as string[] | undefined;
  const summary = (r: ExportGgufResult, q: QuantizeResult | null): QuantizeResult => ({
    out: r.file, method: cfg.method, ...(q?.calibration ? { calibration: q.calibration } : {}), format: cfg.format, gguf: r,
    bits: q ? q.bits : 0, groupSize: q ? q.groupSize : 0, sym: q ? q.sym : false, clip: q ? q.clip : 'ggml', codebook: 'uniform',
    modules: q?.modules ?? [], quantizedModules: q?.quantizedModules ?? 0, skippedModules: q?.skippedModules ?? 0,
    meanRelError: q?.meanRelError ?? 0, mse: q?.mse ?? 0, sourceBytes: r.sourceBytes, outputBytes: r.bytes, files: [path.basename(r.file)],
    seconds: (performance.now() - t0) / 1000,
  });
  if (cfg.method === 'rtn') {
    const r = await exportGgufNormalized(source, outAbs, { type, tokenizer: vocab, overwrite: opts.overwrite, exclude, signal: opts.signal, name: opts.sourceName, onProgress: opts.report });
    return withQuality(summary(r, null), outAbs, source, opts);
  }
  // the GPTQ checkpoint's directory: a fixed name, so that a killed run's staging (and resume state) is found again
  const tmp = path.join(path.dirname(outAbs), `.${path.basename(outAbs)}.gptq`);
  try {
    const m = typeof model === 'string' ? openModel(model, { lmHead: cfg.lmHead }) : model;
    let q: QuantizeResult;
    try {
      // (a checkpoint a killed run committed but did not export is replaced: it is this run's)
      q = await runPipeline(m, { ...cfg, format: cfg.checkpointFormat }, { ...opts, out: tmp, overwrite: true }, t0);
    } finally {
      if (typeof model === 'string') m.close();
    }
    opts.report({ phase: 'export', done: 0, total: 1 });
    const r = await exportGgufNormalized(tmp, outAbs, { type, tokenizer: vocab, overwrite: opts.overwrite, exclude, signal: opts.signal, name: opts.sourceName, onProgress: opts.report });
    return await withQuality({ ...summary(r, q), format: cfg.format }, outAbs, source, opts);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * What names a resumable run (issue 18): lowbit's version, the kernels that compute it (another
 * ISA rounds differently), the normalized configuration, the calibration options and the
 * fingerprint (names, sizes, mtimes) of every input file. The same command over the same files
 * gives the same key, so a killed run's staging directory is found again; a changed input or
 * option gives another key, and the old state is removed as abandoned. Threads are not part of
 * it: results do not depend on them.
 */
function resumeKey(m: Model, cfg: NormalizedQuantizeConfig, opts: NormalizedRunOptions): string {
  const info = nativeInfo();
  const calib = opts.calibration;
  return keyOf({
    v: 1, lowbit: LOWBIT_VERSION, isa: info.isa, kernelMode: getKernelMode(), config: cfg,
    calibration: calib && { ...calib, file: calib.file && fingerprint(path.resolve(calib.file)), tokenizer: calib.tokenizer && fingerprint(path.resolve(calib.tokenizer)) },
    tokenizers: opts.tokenizers.map((t) => fingerprint(path.resolve(t))),
    source: fingerprint(path.resolve(opts.sourcePath ?? m.dir)),
  });
}

async function runPipeline(m: Model, cfg: NormalizedQuantizeConfig, opts: NormalizedRunOptions, t0: number): Promise<QuantizeResult> {
  const { signal, report } = opts;
  const q = cfg.quantizer;
  const packed = cfg.checkpointFormat !== 'dequant';
  const reader = m.tensors;
  if (cfg.recipe) checkRecipeRuntime(cfg.recipe, { headDim: m.config.headDim, seqLen: m.config.maxPositionEmbeddings, nLayers: m.config.numLayers });
  const { modules: plan, kept } = planModules(m, cfg);
  const logs = new Map<string, ModuleLog>(kept);
  const method = METHODS[cfg.method];
  const key = method.resumable ? resumeKey(m, cfg, opts) : undefined;
  const staged = await stageDir(opts.out, opts.overwrite, { resumeKey: key });
  try {
    const resume = staged.resumeDir !== null && key !== undefined ? await ResumeState.open(staged.resumeDir, key) : null;
    const methodRun: MethodRun = await method.start({ model: m, config: cfg, plan, calibration: opts.calibration, threads: opts.threads, maxMemory: opts.maxMemory, resume, signal, report });
    // Each module is produced once, when the writer first asks for one of its tensors.
    const produced = new Map<string, Promise<QuantizedModule>>();
    const part = (mod: LinearModule, name: string) => async (): Promise<Uint8Array> => {
      let p = produced.get(mod.name);
      if (!p) {
        p = methodRun.quantizeModule(mod).then((r) => {
          logs.set(mod.name, r.log);
          return r;
        });
        produced.set(mod.name, p);
      }
      const r = await p;
      const b = r.tensors.get(name);
      if (!b) throw new LowbitError('LOWBIT_INTERNAL', `${name}: produced twice or never`);
      r.tensors.delete(name);
      if (r.tensors.size === 0) produced.delete(mod.name);
      return b;
    };
    const total = plan.size;
    // compressed-tensors: each module's GPTQ v2 tensors (what the method stores) re-encoded once,
    // when the writer first asks for one of its tensors (lib/formats/compressed-tensors.ts).
    const ctScheme: CtScheme | null = cfg.checkpointFormat === 'ct-w4a16' ? 'w4a16' : cfg.checkpointFormat === 'ct-w8a8' ? 'w8a8' : null;
    // act-order: "group" when the groups follow the permuted order (g_idx stored), "weight" when the layout is unchanged
    const ctActorder = cfg.gptq?.actOrder ? (q.groupSize !== -1 && !cfg.gptq.staticGroups ? 'group' : 'weight') : null;
    const ctLayout = (scheme: CtScheme, mod: LinearModule): CtModuleLayout => ({
      scheme, rows: mod.rows, cols: mod.cols, bits: q.bits, groups: q.groupSize === -1 ? 1 : mod.cols / q.groupSize, sym: q.sym, gIdx: ctActorder === 'group',
    });
    const ctProduced = new Map<string, Promise<Map<string, Uint8Array>>>();
    const ctPart = (scheme: CtScheme, mod: LinearModule, name: string) => async (): Promise<Uint8Array> => {
      let p = ctProduced.get(mod.name);
      if (!p) {
        const gptq = (suffix: string) => part(mod, `${mod.name}.${suffix}`)();
        p = (async () => ctTensorsFromGptq(mod.name, ctLayout(scheme, mod),
          { qweight: await gptq('qweight'), qzeros: await gptq('qzeros'), scales: await gptq('scales'), gIdx: await gptq('g_idx') }))();
        ctProduced.set(mod.name, p);
      }
      const tensors = await p;
      const b = tensors.get(name);
      if (!b) throw new LowbitError('LOWBIT_INTERNAL', `${name}: produced twice or never`);
      tensors.delete(name);
      if (tensors.size === 0) ctProduced.delete(mod.name);
      return b;
    };
    // Tensors to write.
    const entries: TensorEntry[] = [];
    // the last copied tensor, whose source pages are dropped when the next one is read
    const lastCopied: { name: string | null } = { name: null };
    const copy = (name: string, outDtype: Dtype) => (): Uint8Array => {
      if (lastCopied.name !== null) reader.release(lastCopied.name);
      lastCopied.name = name;
      const info = reader.info(name);
      // (the reader refuses a NaN or Inf in any tensor it hands out, passed through or quantized)
      const b = reader.bytes(name);
      if (info.dtype === outDtype) return b;
      return fromFloat32(toFloat32(b, info.dtype), outDtype as 'F16' | 'BF16' | 'F32', name);
    };
    // Unquantized tensors keep the source's float type (an F32 model stays F32 around its packed
    // layers: nothing is rounded that the user did not ask to quantize); scales are always F16.
    const keepDtype = (d: string): Dtype => d as Dtype;
    let sourceDtype: string | null = null;
    for (const name of reader.names()) {
      const info = reader.info(name);
      if (sourceDtype === null && /\.weight$/.test(name) && ['F32', 'F16', 'BF16'].includes(info.dtype)) sourceDtype = info.dtype;
      const mod = plan.get(name);
      if (!mod) {
        const isBiasOfPacked = packed && name.endsWith('.bias') && plan.has(name.replace(/\.bias$/, '.weight'));
        entries.push({ name, dtype: isBiasOfPacked ? 'F16' : keepDtype(info.dtype), shape: info.shape, data: copy(name, isBiasOfPacked ? 'F16' : keepDtype(info.dtype)) });
        continue;
      }
      if (ctScheme) {
        for (const t of ctTensorSpecs(mod.name, ctLayout(ctScheme, mod))) entries.push({ ...t, data: ctPart(ctScheme, mod, t.name) });
      } else if (packed) {
        const gsz = q.groupSize === -1 ? mod.cols : q.groupSize;
        const G = Math.ceil(mod.cols / gsz);
        entries.push({ name: `${mod.name}.qweight`, dtype: 'I32', shape: [(mod.cols * q.bits) / 32, mod.rows], data: part(mod, `${mod.name}.qweight`) });
        entries.push({ name: `${mod.name}.qzeros`, dtype: 'I32', shape: [G, (mod.rows * q.bits) / 32], data: part(mod, `${mod.name}.qzeros`) });
        entries.push({ name: `${mod.name}.scales`, dtype: 'F16', shape: [G, mod.rows], data: part(mod, `${mod.name}.scales`) });
        entries.push({ name: `${mod.name}.g_idx`, dtype: 'I32', shape: [mod.cols], data: part(mod, `${mod.name}.g_idx`) });
      } else {
        entries.push({ name, dtype: info.dtype, shape: info.shape, data: part(mod, name) });
      }
    }
    const skipped = [...logs.values()].filter((l) => l.storage === 'fp16');
    const metadata: Record<string, string> = { format: 'pt', quantizer: `lowbit:${LOWBIT_VERSION}`, quant_method: ctScheme ? 'compressed-tensors' : packed ? 'gptq' : 'lowbit-dequant', bits: String(q.bits), group_size: String(q.groupSize) };
    try {
      await writeSafetensors(staged.tmp, entries, { metadata, maxShardBytes: cfg.maxShardBytes, signal });
    } finally {
      await methodRun.close?.();
    }
    // (a streaming method's summary is complete once the writer has asked for every module)
    const calibration = methodRun.calibration;
    if (lastCopied.name !== null) reader.release(lastCopied.name);
    report({ phase: 'write', done: total, total });
    // config.json (+ quantize_config.json)
    const outDtype = sourceDtype ? keepDtype(sourceDtype) : 'F16';
    const configJson = hfConfigToJson(m.config);
    // transformers records where it loaded the model from: an absolute path must not be shared
    if (typeof configJson._name_or_path === 'string' && path.isAbsolute(configJson._name_or_path)) configJson._name_or_path = opts.sourceName;
    configJson.torch_dtype = TORCH_DTYPE[outDtype] ?? 'float16';
    delete configJson.dtype;
    delete configJson.quantization_config;
    if (ctScheme) {
      // modules kept in float (the plan's, lm_head always) are named in `ignore`
      configJson.quantization_config = ctQuantizationConfig({
        scheme: ctScheme, bits: q.bits, groupSize: q.groupSize, sym: q.sym, actorder: ctActorder, clip: q.clip, ignore: skipped.map((l) => l.module),
      });
    } else if (packed) {
      const dynamic: Record<string, unknown> = {};
      for (const s of skipped) dynamic[`-:^${s.module.replace(/\./g, '\\.')}$`] = {};
      const qc = gptqQuantizationConfig({
        bits: q.bits, groupSize: q.groupSize, descAct: !!cfg.gptq && cfg.gptq.actOrder && !cfg.gptq.staticGroups, staticGroups: !!cfg.gptq && cfg.gptq.staticGroups,
        // the signed-max grid's zeros are 2^(b−1) or 2^(b−1) − 1: not "sym" to readers that assume 2^(b−1)
        sym: q.sym && !q.signedMax, dampPercent: cfg.gptq?.dampPercent ?? 0.01, trueSequential: cfg.gptq?.trueSequential ?? true, checkpointFormat: cfg.checkpointFormat === 'gptq' ? 'gptq' : 'gptq_v2', version: LOWBIT_VERSION,
        ...(skipped.length ? { dynamic } : {}),
      });
      configJson.quantization_config = qc;
      await writeJsonAtomic(path.join(staged.tmp, 'quantize_config.json'), qc);
    }
    if (cfg.recipe) {
      // the run-time part of the recipe, applied by loadModel without flags (static scales measured below)
      const r = cfg.recipe;
      configJson.lowbit = { ...(typeof configJson.lowbit === 'object' && configJson.lowbit !== null ? configJson.lowbit : {}), recipe: r,
        ...(r.kv ? { kv: r.kv } : {}), ...(r.activations ? { actQuant: r.activations } : {}) };
    }
    await writeJsonAtomic(path.join(staged.tmp, 'config.json'), configJson);

    const copyInto = async (src: string, as = path.basename(src)) => {
      try {
        await fs.promises.copyFile(src, path.join(staged.tmp, as));
      } catch (e) {
        throw toLowbitError(e, `${src}: cannot copy into the output`);
      }
    };
    for (const f of COPY_FILES) if (fs.existsSync(path.join(m.dir, f))) await copyInto(path.join(m.dir, f));
    // a tokenizer given by the user goes in under the name loaders look for (tok512.bin → tokenizer.bin),
    // so the output runs with no --tokenizer
    for (const t of opts.tokenizers) await copyInto(t, t.endsWith('.bin') ? 'tokenizer.bin' : t.endsWith('.json') ? 'tokenizer.json' : path.basename(t));
    if (cfg.recipe?.activations?.scheme === 'static') {
      // static activation scales: measured on the quantized model as written, on the calibration data
      const calib = must(opts.calibration, 'calibration for static activation scales');
      const probe = await loadModel(staged.tmp, { threads: opts.threads, kv: null, actQuant: null, ...(calib.tokenizer ? { tokenizer: calib.tokenizer } : {}) });
      try {
        const data = calib.text !== null ? calibrationTexts([calib.text], 'text') : calib.texts !== null ? calibrationTexts(calib.texts, 'texts') : readCalibrationFile(calib.file ?? '');
        if (!data.texts) throw optionError('calibration', 'calibration: static activation scales are measured on text; token-id records (input_ids) are not supported for them');
        const scales = await measureActScales(probe, data.texts, { bits: cfg.recipe.activations.bits, samples: calib.samples, seqLen: calib.seqLen, seed: calib.seed, ...(opts.signal ? { signal: opts.signal } : {}) });
        (configJson.lowbit as Record<string, unknown>).actQuant = { ...cfg.recipe.activations, scales: Array.from(scales) };
      } finally {
        probe.dispose();
      }
      await writeJsonAtomic(path.join(staged.tmp, 'config.json'), configJson);
    }
    // the complete checkpoint is in the staging directory: measure it against the source before it is committed
    const evaluation = await measureQuality(staged.tmp, m.dir, opts);
    // quant_log.json
    const modules = m.linears.map((l) => logs.get(l.name)).filter((l): l is ModuleLog => l !== undefined);
    let sumErr = 0, sumW = 0, sumSq = 0, nEl = 0;
    for (const l of modules) {
      if (!l.stats) continue;
      const n = l.rows * l.cols;
      sumErr += l.stats.relError * n;
      sumW += n;
      sumSq += l.stats.mse * n;
      nEl += n;
    }
    const seconds = (performance.now() - t0) / 1000;
    const info = nativeInfo();
    const log = {
      tool: `lowbit ${LOWBIT_VERSION}`,
      created: new Date().toISOString(),
      // the source as the user named it (its base name): no absolute path in a file meant to be shared
      source: opts.sourceName,
      method: cfg.method,
      format: cfg.format,
      calibration: calibration ?? null,
      transforms: opts.transformReport ?? null,
      recipe: cfg.recipe,
      evaluation: evaluation ?? null,
      parameters: { ...q, ...(cfg.gptq ?? {}), lmHead: cfg.lmHead, include: cfg.include?.map(String) ?? null, exclude: cfg.exclude?.map(String) ?? null },
      machine: { isa: info.isa, threads: opts.threads ?? info.threads, cpu: info.cpuModel, kernelMode: getKernelMode() },
      seconds,
      modules: modules.map((l) => ({ ...l, stats: l.stats ? { ...l.stats, sqnrDb: Number.isFinite(l.stats.sqnrDb) ? l.stats.sqnrDb : null } : undefined })),
    };
    await writeJsonAtomic(path.join(staged.tmp, 'quant_log.json'), log);
    try {
      await fs.promises.writeFile(path.join(staged.tmp, 'README.md'), modelCard({
        sourceName: opts.sourceName, config: cfg, calibration: calibration ?? null, modules, command: opts.command, meanRelError: sumW ? sumErr / sumW : 0, evaluation: evaluation ?? null,
      }));
    } catch (e) {
      throw toLowbitError(e, `${staged.tmp}: cannot write the model card`);
    }
    if (signal?.aborted) throw new LowbitError('LOWBIT_ABORTED', 'quantize: aborted by signal before commit (no output written)');
    await staged.commit();
    let outputBytes = 0;
    const files: string[] = [];
    for (const f of fs.readdirSync(staged.target)) {
      files.push(f);
      outputBytes += fs.statSync(path.join(staged.target, f)).size;
    }
    return {
      out: staged.target, method: cfg.method, ...(calibration ? { calibration } : {}), ...(evaluation ? { evaluation } : {}), format: cfg.format, bits: q.bits, groupSize: q.groupSize, sym: q.sym, clip: q.clip,
      codebook: q.codebook, modules, quantizedModules: modules.filter((l) => l.storage !== 'fp16').length, skippedModules: skipped.length,
      meanRelError: sumW ? sumErr / sumW : 0, mse: nEl ? sumSq / nEl : 0, sourceBytes: reader.totalBytes(), outputBytes, files: files.sort(), seconds,
    };
  } catch (e) {
    await staged.abort();
    throw e;
  }
}
