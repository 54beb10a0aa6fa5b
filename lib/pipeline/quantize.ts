/**
 * The quantize pipeline: open → quantize every linear layer → write the output directory.
 *
 * Streaming: tensors are produced one at a time while the safetensors writer asks for them, and
 * the source pages of each tensor are dropped from memory after use, so peak memory is one layer's
 * work, not the model. (This is why `quantize` writes its output itself instead of returning an
 * in-memory model to a separate `save`: a 70B model does not fit in RAM.) Everything is written
 * into a temp directory that is renamed into place at the end; on error or abort it is removed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, toLowbitError } from '../errors';
import { normalizeRtnConfig, type QuantizeConfig, type NormalizedRtnConfig } from '../config/rtn';
import { gptqPass, type CalibrationOptions, type GptqPassResult } from './gptq';
import { openModel, type Model } from '../model';
import { hfConfigToJson, type TorchDtype } from '../formats/hf-config';
import { gptqLayoutProblem, gptqQuantizationConfig } from '../formats/gptq';
import { writeSafetensors, type TensorEntry, type Dtype } from '../formats/safetensors';
import { fromFloat32, toFloat32 } from '../formats/dtype';
import { quantizeNormalized, type Progress, type QuantStats } from '../quantize-tensor';
import { packGptq, gptqTensorBytes } from '../pack';
import { addon, getKernelMode } from '../native';
import { checkSignal, invalidOption } from '../validate';
import { stageDir, writeJsonAtomic } from './output';
import { LOWBIT_VERSION } from '../version';
import type { LinearModule } from '../formats/hf-model';

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
}

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

/** Summary of a quantize run (what the CLI prints as a table or JSON). */
export interface QuantizeResult {
  out: string;
  method: 'rtn' | 'gptq';
  /** GPTQ: the calibration run (windows, tokens, seed, text hash, peak estimate, seconds). */
  calibration?: GptqPassResult['calibration'];
  format: NormalizedRtnConfig['format'];
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

const COPY_FILES = ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json',
  'generation_config.json', 'added_tokens.json', 'vocab.json', 'merges.txt'];

const TORCH_DTYPE: Record<string, TorchDtype> = { F16: 'float16', BF16: 'bfloat16', F32: 'float32' };

interface Pending {
  module: LinearModule;
  parts: Map<string, Uint8Array>;
  promise: Promise<void> | null;
}

/**
 * Quantize a model directory (or an opened {@link Model}) and write the result to `run.out`.
 *
 * @example
 * const r = await quantize('models/tinyllama', { method: 'rtn', bits: 4, groupSize: 128 }, { out: 'out/tinyllama-w4' });
 */
export async function quantize(model: Model | string, config: QuantizeConfig, run: QuantizeRunOptions): Promise<QuantizeResult> {
  const t0 = performance.now();
  const cfg = normalizeRtnConfig(config);
  if (typeof run !== 'object' || run === null) throw invalidOption('run', 'an object with at least {out}', run);
  if (typeof run.out !== 'string' || run.out.length === 0) throw invalidOption('out', 'an output directory path', run.out);
  const signal = checkSignal(run.signal);
  const tokenizers = run.tokenizer === undefined ? [] : Array.isArray(run.tokenizer) ? run.tokenizer : [run.tokenizer];
  for (const t of tokenizers) {
    if (typeof t !== 'string' || !fs.existsSync(t)) throw new LowbitError('LOWBIT_NOT_FOUND', `tokenizer: no such file ${JSON.stringify(t)}`, { option: 'tokenizer' });
  }
  if (signal?.aborted) throw new LowbitError('LOWBIT_ABORTED', 'quantize: aborted by signal before start (no output written)');
  const owned = typeof model === 'string';
  // Open unfiltered: include/exclude are applied (and logged, and excluded in `dynamic`) below.
  const m = owned ? openModel(model, { lmHead: cfg.lmHead }) : model;
  try {
    return await runPipeline(m, cfg, run, tokenizers, signal, t0);
  } finally {
    if (owned) m.close();
  }
}

async function runPipeline(m: Model, cfg: NormalizedRtnConfig, run: QuantizeRunOptions, tokenizers: string[],
  signal: AbortSignal | undefined, t0: number): Promise<QuantizeResult> {
  const q = cfg.quantizer;
  const packed = cfg.format !== 'dequant';
  const reader = m.tensors;
  // Plan: which modules are quantized, and how each is stored.
  const logs = new Map<string, ModuleLog>();
  const plan = new Map<string, LinearModule>(); // weight tensor name -> module
  const matches = (name: string, pats?: (string | RegExp)[]) => !!pats && pats.some((p) => (typeof p === 'string' ? name.includes(p) : p.test(name)));
  for (const mod of m.linears) {
    const excluded = (cfg.include && !matches(mod.name, cfg.include)) || matches(mod.name, cfg.exclude) || (mod.kind === 'lm_head' && !cfg.lmHead);
    if (excluded) {
      logs.set(mod.name, { module: mod.name, rows: mod.rows, cols: mod.cols, storage: 'fp16', reason: 'excluded by include/exclude', seconds: 0 });
      continue;
    }
    if (packed) {
      // Shapes the packed layout cannot hold (in or out not a multiple of 32) stay in fp16 and are
      // named in quant_log.json and in the config's `dynamic` exclusions: never silently wrong.
      const why = gptqLayoutProblem(mod.rows, mod.cols, q.bits, -1);
      if (why) {
        logs.set(mod.name, { module: mod.name, rows: mod.rows, cols: mod.cols, storage: 'fp16', reason: why, seconds: 0 });
        continue;
      }
    }
    if (!q.raggedLastGroup && q.groupSize !== -1 && mod.cols % q.groupSize !== 0) {
      throw new LowbitError('LOWBIT_SHAPE_MISMATCH',
        `${mod.weight}: expected cols divisible by groupSize ${q.groupSize}, got ${mod.rows}×${mod.cols}${packed ? ' (use a divisor, -1 for per channel, or --format dequant, which allows a shorter last group)' : ''}`,
        { tensor: mod.weight, option: 'groupSize' });
    }
    plan.set(mod.weight, mod);
  }
  const staged = await stageDir(run.out, run.overwrite ?? false);
  try {
    const pending = new Map<string, Pending>();
    let done = 0;
    const total = plan.size;
    const report = (p: Progress) => { try { run.onProgress?.(p); } catch { /* a throwing callback must not break the run */ } };
    const quantizeModule = async (mod: LinearModule): Promise<Map<string, Uint8Array>> => {
      if (signal?.aborted) throw new LowbitError('LOWBIT_ABORTED', `quantize: aborted by signal at module ${done}/${total} (no output written)`);
      report({ phase: 'quantize', layer: done, layers: total, done, total, module: mod.name });
      const ts = performance.now();
      const info = reader.info(mod.weight);
      if (!['F32', 'F16', 'BF16'].includes(info.dtype)) throw new LowbitError('LOWBIT_UNSUPPORTED', `${mod.weight}: dtype ${info.dtype} cannot be quantized (F32, F16 or BF16 expected)`);
      const qt = await quantizeNormalized({ dtype: info.dtype as 'F32' | 'F16' | 'BF16', bytes: reader.bytes(mod.weight) }, mod.rows, mod.cols, q,
        { name: mod.weight, dequantize: !packed, signal, packGptq: packed });
      reader.release(mod.weight);
      const parts = packed
        ? gptqTensorBytes(mod.name, await packGptq(qt, cfg.format === 'gptq' ? 'gptq' : 'gptq_v2', undefined, mod.name, qt.qweight))
        : new Map([[mod.weight, fromFloat32(qt.dequantized!, info.dtype as 'F32' | 'F16' | 'BF16', mod.weight, { saturate: true })]]);
      const seconds = (performance.now() - ts) / 1000;
      logs.set(mod.name, { module: mod.name, rows: mod.rows, cols: mod.cols, storage: packed ? 'packed' : 'dequant', bits: q.bits, groupSize: qt.groupSize, stats: qt.stats, seconds });
      done++;
      report({ phase: 'quantize', layer: done, layers: total, done, total, module: mod.name });
      return parts;
    };
    let gptqRes: GptqPassResult | null = null;
    if (cfg.method === 'gptq') {
      if (!run.calibration) throw new LowbitError('LOWBIT_INVALID_OPTION', 'calibration: GPTQ needs calibration data ({calibration: {file | text, samples, seqLen, seed}}, CLI --calib FILE)', { option: 'calibration' });
      gptqRes = await gptqPass(m, cfg, run.calibration, plan, logs, signal, report);
    }
    const part = (mod: LinearModule, name: string) => async (): Promise<Uint8Array> => {
      if (gptqRes) {
        const pp = gptqRes.parts.get(mod.name)?.get(name);
        if (!pp) throw new LowbitError('LOWBIT_INTERNAL', `${name}: GPTQ produced no data`);
        gptqRes.parts.get(mod.name)!.delete(name);
        return pp;
      }
      let p = pending.get(mod.name);
      if (!p) {
        p = { module: mod, parts: new Map(), promise: null };
        pending.set(mod.name, p);
      }
      if (!p.promise) {
        const pp = p;
        pp.promise = quantizeModule(mod).then((parts) => { pp.parts = parts; });
      }
      await p.promise;
      const b = p.parts.get(name);
      if (!b) throw new LowbitError('LOWBIT_INTERNAL', `${name}: produced twice or never`);
      p.parts.delete(name);
      if (p.parts.size === 0) pending.delete(mod.name);
      return b;
    };
    // Tensors to write.
    const entries: TensorEntry[] = [];
    let releaseLast: string | null = null;
    const copy = (name: string, outDtype: Dtype) => (): Uint8Array => {
      if (releaseLast) reader.release(releaseLast);
      releaseLast = name;
      const info = reader.info(name);
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
      if (packed) {
        const gsz = q.groupSize === -1 ? mod.cols : q.groupSize;
        const G = Math.ceil(mod.cols / gsz);
        entries.push({ name: `${mod.name}.qweight`, dtype: 'I32', shape: [(mod.cols * q.bits) / 32, mod.rows], data: part(mod, `${mod.name}.qweight`) });
        entries.push({ name: `${mod.name}.qzeros`, dtype: 'I32', shape: [G, (mod.rows * q.bits) / 32], data: part(mod, `${mod.name}.qzeros`) });
        entries.push({ name: `${mod.name}.scales`, dtype: 'F16', shape: [G, mod.rows], data: part(mod, `${mod.name}.scales`) });
        entries.push({ name: `${mod.name}.g_idx`, dtype: 'I32', shape: [mod.cols], data: part(mod, `${mod.name}.g_idx`) });
      } else {
        entries.push({ name, dtype: info.dtype as Dtype, shape: info.shape, data: part(mod, name) });
      }
    }
    const skipped = [...logs.values()].filter((l) => l.storage === 'fp16');
    const metadata: Record<string, string> = { format: 'pt', quantizer: `lowbit:${LOWBIT_VERSION}`, quant_method: packed ? 'gptq' : 'lowbit-dequant', bits: String(q.bits), group_size: String(q.groupSize) };
    await writeSafetensors(staged.tmp, entries, { metadata, maxShardBytes: cfg.maxShardBytes, signal });
    if (releaseLast) reader.release(releaseLast);
    report({ phase: 'write', done: total, total });
    // config.json (+ quantize_config.json)
    const outDtype = sourceDtype ? keepDtype(sourceDtype) : 'F16';
    const configJson = hfConfigToJson(m.config);
    configJson.torch_dtype = TORCH_DTYPE[outDtype] ?? 'float16';
    delete configJson.dtype;
    delete configJson.quantization_config;
    if (packed) {
      const dynamic: Record<string, unknown> = {};
      for (const s of skipped) dynamic[`-:^${s.module.replace(/\./g, '\\.')}$`] = {};
      const qc = gptqQuantizationConfig({
        bits: q.bits, groupSize: q.groupSize, descAct: !!cfg.gptq?.actOrder && !cfg.gptq?.staticGroups, staticGroups: !!cfg.gptq?.staticGroups,
        // the signed-max grid's zeros are 2^(b−1) or 2^(b−1) − 1: not "sym" to readers that assume 2^(b−1)
        sym: q.sym && !q.signedMax, dampPercent: cfg.gptq?.dampPercent ?? 0.01, trueSequential: cfg.gptq?.trueSequential ?? true, checkpointFormat: cfg.format === 'gptq' ? 'gptq' : 'gptq_v2', version: LOWBIT_VERSION,
        ...(skipped.length ? { dynamic } : {}),
      });
      configJson.quantization_config = qc;
      await writeJsonAtomic(path.join(staged.tmp, 'quantize_config.json'), qc);
    }
    await writeJsonAtomic(path.join(staged.tmp, 'config.json'), configJson);
    const copyInto = async (src: string) => {
      try {
        await fs.promises.copyFile(src, path.join(staged.tmp, path.basename(src)));
      } catch (e) {
        throw toLowbitError(e, `${src}: cannot copy into the output`);
      }
    };
    for (const f of COPY_FILES) if (fs.existsSync(path.join(m.dir, f))) await copyInto(path.join(m.dir, f));
    for (const t of tokenizers) await copyInto(t);
    // quant_log.json
    const modules = m.linears.map((l) => logs.get(l.name)!).filter(Boolean);
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
    const info = addon().info();
    const log = {
      tool: `lowbit ${LOWBIT_VERSION}`,
      created: new Date().toISOString(),
      source: m.dir,
      method: cfg.method,
      format: cfg.format,
      calibration: gptqRes ? gptqRes.calibration : null,
      parameters: { ...q, ...(cfg.gptq ?? {}), lmHead: cfg.lmHead, include: cfg.include?.map(String) ?? null, exclude: cfg.exclude?.map(String) ?? null },
      machine: { isa: info.isa, threads: info.threads, cpu: info.cpuModel, kernelMode: getKernelMode() },
      seconds,
      modules: modules.map((l) => ({ ...l, stats: l.stats ? { ...l.stats, sqnrDb: Number.isFinite(l.stats.sqnrDb) ? l.stats.sqnrDb : null } : undefined })),
    };
    await writeJsonAtomic(path.join(staged.tmp, 'quant_log.json'), log);
    if (signal?.aborted) throw new LowbitError('LOWBIT_ABORTED', 'quantize: aborted by signal before commit (no output written)');
    await staged.commit();
    let outputBytes = 0;
    const files: string[] = [];
    for (const f of fs.readdirSync(staged.target)) {
      files.push(f);
      outputBytes += fs.statSync(path.join(staged.target, f)).size;
    }
    return {
      out: staged.target, method: cfg.method, ...(gptqRes ? { calibration: gptqRes.calibration } : {}), format: cfg.format, bits: q.bits, groupSize: q.groupSize, sym: q.sym, clip: q.clip,
      codebook: q.codebook, modules, quantizedModules: modules.filter((l) => l.storage !== 'fp16').length, skippedModules: skipped.length,
      meanRelError: sumW ? sumErr / sumW : 0, mse: nEl ? sumSq / nEl : 0, sourceBytes: reader.totalBytes(), outputBytes, files: files.sort(), seconds,
    };
  } catch (e) {
    await staged.abort();
    throw e;
  }
}
