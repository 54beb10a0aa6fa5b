/**
 * What a queued job holds: one plain JSON object per job, of three kinds — `quantize`, `eval` and
 * `export` — checked by {@link checkJobData} when it is enqueued and again by the worker that runs
 * it (a job written into Redis by another program is not trusted), and named by {@link jobIdOf}: a
 * SHA-256 over the canonical JSON of the data and the size and mtime of every input file, so the
 * same inputs give the same id and BullMQ keeps one job per id.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, invalidOption, optionError } from '../errors';
import { checkBool, checkEnum, checkInt, checkKnownKeys, checkObject, checkString } from '../config/validate';
import { normalizeQuantizeConfig, GGUF_EXPORT_TYPES, type QuantizeConfig } from '../config/quantize';
import type { ExportGgufOptions } from '../pipeline/gguf-export';
import { normalizeCalibration, type CalibrationOptions } from '../config/calibration';
import { checkThreads } from '../config/run';
import { looksLikeRepoId } from '../formats/hf-cache';
import { fingerprint, keyOf } from '../formats/fingerprint';

/** The kinds of job a worker runs. */
export const JOB_KINDS = ['quantize', 'eval', 'export'] as const;
/** One of {@link JOB_KINDS}. */
export type JobKind = (typeof JOB_KINDS)[number];

/**
 * A `quantize()` run as a job: `quantize(model, config, {out, overwrite, calibration, tokenizer,
 * threads, evaluate, allowRequantize})` on the worker. Paths are the worker's (`enqueue` makes
 * relative ones absolute against the caller's working directory).
 */
export interface QuantizeJobData {
  kind: 'quantize';
  /** The source: an HF directory, a llama2.c `.bin`, an F32/F16/BF16 GGUF file, or a Hugging Face id in the worker's cache. */
  model: string;
  /** The method and quantizer, as `quantize` takes it; `include`/`exclude` as strings (a RegExp is not JSON). */
  config: QuantizeConfig;
  /** Output directory (or `.gguf` file for a `gguf:*` format). */
  out: string;
  /** Replace a non-empty output (only once the new one is complete). @default false */
  overwrite?: boolean;
  /** GPTQ calibration data; prefer `file` (a path on the worker) to inline `text`. */
  calibration?: CalibrationOptions;
  /** Tokenizer file(s) copied into the output (a llama2.c tokenizer.bin is also the GGUF vocabulary). */
  tokenizer?: string | string[];
  /** Compute threads of the run (1–1024). @default the worker process's default */
  threads?: number;
  /** Measure the result before it is written (as `quantize`'s `evaluate`). */
  evaluate?: { text?: string; file?: string; ctx?: number; maxChunks?: number };
  /** Accept an already quantized GGUF source. @default false */
  allowRequantize?: boolean;
  /** A memory budget in bytes for the run (as `quantize`'s `maxMemory`). @default no budget */
  maxMemory?: number;
}

/** An evaluation as a job: `loadModel(model, {tokenizer, activations, packed, threads})`, then `evaluate`. */
export interface EvalJobData {
  kind: 'eval';
  /** llama2.c `.bin`, `.gguf`, or a model directory (HF or lowbit GPTQ). */
  model: string;
  /** The text to score. Exactly one of `text` and `textFile`. */
  text?: string;
  /** A UTF-8 text file to score (read on the worker). */
  textFile?: string;
  /** Window length in tokens, BOS included. @default min(512, context) */
  ctx?: number;
  /** Score only the first N windows. @default all */
  maxChunks?: number;
  /** A llama2.c tokenizer.bin. @default the model's own vocabulary */
  tokenizer?: string;
  /** An unquantized model to compare against (KL, top-1). */
  reference?: string;
  /** How packed layers multiply. @default 'int8' */
  activations?: 'int8' | 'f32';
  /** false: dequantize quantized layers at load. @default true */
  packed?: boolean;
  /** Compute threads of the model's forward passes (1–1024). @default the worker process's default */
  threads?: number;
  /** Positions the model holds (as `loadModel`'s `maxContext`). */
  maxContext?: number;
}

/** A GGUF export as a job: `exportGguf(model, out, {type, tokenizer, name, embeddingType, exclude, overwrite})`. */
export interface ExportJobData extends Pick<ExportGgufOptions, 'type' | 'tokenizer' | 'name' | 'embeddingType' | 'exclude' | 'overwrite'> {
  kind: 'export';
  /** A llama2.c `.bin` or an HF directory (GPTQ checkpoints included). */
  model: string;
  /** The `.gguf` file to write. */
  out: string;
}

/** The data of one job. */
export type JobData = QuantizeJobData | EvalJobData | ExportJobData;

const KEYS: Record<JobKind, readonly string[]> = {
  quantize: ['kind', 'model', 'config', 'out', 'overwrite', 'calibration', 'tokenizer', 'threads', 'evaluate', 'allowRequantize', 'maxMemory'],
  eval: ['kind', 'model', 'text', 'textFile', 'ctx', 'maxChunks', 'tokenizer', 'reference', 'activations', 'packed', 'threads', 'maxContext'],
  export: ['kind', 'model', 'out', 'type', 'tokenizer', 'name', 'embeddingType', 'exclude', 'overwrite'],
};

/** A JSON value all the way down (no functions, RegExps, typed arrays, non-finite numbers, cycles). */
function checkPlainJson(name: string, v: unknown, depth = 0): void {
  if (depth > 16) throw invalidOption(name, 'JSON data nested at most 16 deep', v);
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw invalidOption(name, 'a finite number (job data is JSON)', v);
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => { checkPlainJson(`${name}[${i}]`, x, depth + 1); });
    return;
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    for (const [k, x] of Object.entries(v)) if (x !== undefined) checkPlainJson(`${name}.${k}`, x, depth + 1);
    return;
  }
  throw invalidOption(name, 'JSON data (strings, numbers, booleans, arrays, plain objects; a job travels through Redis)', v);
}

function optional<T>(v: T | undefined, check: (v: T) => unknown): void {
  if (v !== undefined) check(v);
}

function checkStrings(name: string, v: unknown): void {
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' && s.length > 0)) throw invalidOption(name, 'an array of non-empty strings', v);
}

/**
 * Check one job's data: its kind, the known keys of that kind, every value's type and range, and the
 * quantize config and calibration options by the same normalizers `quantize` uses (so a bad option
 * gets the same message as from the API). Rules that need the worker's file system (a file that
 * must exist, a tokenizer beside the model, calibration a method needs) are left to the run itself.
 * Throws LOWBIT_INVALID_OPTION; returns the data typed.
 */
export function checkJobData(data: unknown): JobData {
  const d = checkObject('job', data as Record<string, unknown> | null, 'an object {kind, model, …}');
  const kind = checkEnum('job.kind', d.kind, JOB_KINDS);
  checkKnownKeys(`job (${kind})`, Object.fromEntries(Object.entries(d).filter(([, v]) => v !== undefined)), KEYS[kind]);
  checkPlainJson('job', d);
  checkString('model', d.model);
  if (kind === 'quantize') {
    const q = d as unknown as QuantizeJobData;
    checkString('out', q.out);
    const config = checkObject('config', q.config as QuantizeConfig | null, 'an object {method, bits, groupSize, …}');
    for (const k of ['include', 'exclude'] as const) optional(config[k], (v) => { checkStrings(`config.${k}`, v); });
    normalizeQuantizeConfig(config);
    optional(q.overwrite, (v) => checkBool('overwrite', v));
    optional(q.allowRequantize, (v) => checkBool('allowRequantize', v));
    optional(q.calibration, (v) => normalizeCalibration(v));
    optional(q.tokenizer, (v) => { if (typeof v === 'string') checkString('tokenizer', v); else checkStrings('tokenizer', v); });
    checkThreads(q.threads);
    optional(q.maxMemory, (v) => checkInt('maxMemory', v, 1, Number.MAX_SAFE_INTEGER));
    optional(q.evaluate, (e) => {
      checkObject('evaluate', e as typeof e | null, 'an object {text | file, ctx?, maxChunks?}');
      checkKnownKeys('evaluate', e, ['text', 'file', 'ctx', 'maxChunks']);
      if ((e.text === undefined) === (e.file === undefined)) throw invalidOption('evaluate', 'exactly one of text and file', e);
      optional(e.file, (f) => checkString('evaluate.file', f));
      optional(e.text, (t) => { if (typeof t !== 'string') throw invalidOption('evaluate.text', 'a string', t); });
      optional(e.ctx, (n) => checkInt('evaluate.ctx', n, 2, 1 << 24));
      optional(e.maxChunks, (n) => checkInt('evaluate.maxChunks', n, 1, 1e9));
    });
  } else if (kind === 'eval') {
    const e = d as unknown as EvalJobData;
    if ((e.text === undefined) === (e.textFile === undefined)) throw optionError('text', 'text: give exactly one of text and textFile');
    optional(e.text, (t) => { if (typeof t !== 'string') throw invalidOption('text', 'a string', t); });
    optional(e.textFile, (f) => checkString('textFile', f));
    optional(e.ctx, (n) => checkInt('ctx', n, 2, 1 << 24));
    optional(e.maxChunks, (n) => checkInt('maxChunks', n, 1, 1e9));
    optional(e.tokenizer, (f) => checkString('tokenizer', f));
    optional(e.reference, (f) => checkString('reference', f));
    optional(e.activations, (a) => checkEnum('activations', a, ['int8', 'f32'] as const));
    optional(e.packed, (v) => checkBool('packed', v));
    optional(e.maxContext, (n) => checkInt('maxContext', n, 1, 1 << 24));
    checkThreads(e.threads);
  } else {
    const x = d as unknown as ExportJobData;
    checkString('out', x.out);
    checkEnum('type', x.type, GGUF_EXPORT_TYPES);
    optional(x.tokenizer, (f) => checkString('tokenizer', f));
    optional(x.name, (f) => checkString('name', f));
    optional(x.embeddingType, (t) => checkEnum('embeddingType', t, ['F32', 'F16', 'BF16'] as const));
    optional(x.exclude, (v) => { checkStrings('exclude', v); });
    optional(x.overwrite, (v) => checkBool('overwrite', v));
  }
  return d as unknown as JobData;
}

/** A model argument made absolute, unless it is a Hugging Face id (no such path here). */
function absModel(model: string, cwd: string): string {
  return looksLikeRepoId(model) && !fs.existsSync(path.resolve(cwd, model)) ? model : path.resolve(cwd, model);
}

/**
 * The same job with every path absolute against `cwd` (the submitter's working directory; the
 * worker runs elsewhere) and undefined keys dropped. @internal
 */
export function resolveJobPaths(data: JobData, cwd: string): JobData {
  const abs = (p: string | undefined) => (p === undefined ? undefined : path.resolve(cwd, p));
  const drop = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
  if (data.kind === 'quantize') {
    return drop({
      ...data, model: absModel(data.model, cwd), out: path.resolve(cwd, data.out),
      tokenizer: Array.isArray(data.tokenizer) ? data.tokenizer.map((t) => path.resolve(cwd, t)) : abs(data.tokenizer),
      calibration: data.calibration && drop({ ...data.calibration, file: abs(data.calibration.file), tokenizer: abs(data.calibration.tokenizer) }),
      evaluate: data.evaluate && drop({ ...data.evaluate, file: abs(data.evaluate.file) }),
    });
  }
  if (data.kind === 'eval') {
    return drop({ ...data, model: absModel(data.model, cwd), textFile: abs(data.textFile), tokenizer: abs(data.tokenizer), reference: data.reference === undefined ? undefined : absModel(data.reference, cwd) });
  }
  return drop({ ...data, model: absModel(data.model, cwd), out: path.resolve(cwd, data.out), tokenizer: abs(data.tokenizer) });
}

/** The input files a job reads (not its output). */
function inputsOf(data: JobData): string[] {
  const list: (string | undefined)[] = [data.model];
  if (data.kind === 'quantize') {
    list.push(...(Array.isArray(data.tokenizer) ? data.tokenizer : [data.tokenizer]), data.calibration?.file, data.calibration?.tokenizer, data.evaluate?.file);
  } else if (data.kind === 'eval') {
    list.push(data.textFile, data.tokenizer, data.reference);
  } else {
    list.push(data.tokenizer);
  }
  return list.filter((p): p is string => p !== undefined);
}

/**
 * The id of a job: `<kind>-<SHA-256 hex>` over the canonical JSON of its (path-resolved) data and
 * the fingerprint of every input file (size and mtime; a directory's files), so resubmitting the
 * same job over the same files gives the same id, and touching the model gives a new one. The
 * output's state is not part of it. @internal
 */
export function jobIdOf(data: JobData): string {
  const inputs = [...new Set(inputsOf(data))].sort().map(fingerprint);
  const hash = keyOf({ v: 1, data, inputs });
  return `${data.kind}-${hash}`;
}

/** A job's error as stored in BullMQ's failedReason (`CODE: message`), parsed back. @internal */
export function parseFailedReason(reason: string | undefined): { code: string; message: string } | null {
  if (!reason) return null;
  const m = /^(LOWBIT_[A-Z_]+): ([\s\S]*)$/.exec(reason);
  return m ? { code: m[1], message: m[2] } : { code: 'LOWBIT_INTERNAL', message: reason };
}

/** The failedReason a LowbitError is stored as. @internal */
export function failedReasonOf(e: LowbitError): string {
  return `${e.code}: ${e.message}`;
}
