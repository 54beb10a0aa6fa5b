/**
 * Run one job's data: the library call each kind stands for (`quantize`, `loadModel` + `evaluate`,
 * `exportGguf`), with the caller's AbortSignal and progress callback. The sandboxed processor
 * (`processor.ts`) calls this in its child process; it works in any process.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError } from '../errors';
import type { Progress } from '../config/run';
import { quantize, type QuantizeResult } from '../pipeline/quantize';
import { exportGguf, type ExportGgufResult } from '../pipeline/gguf-export';
import { loadModel, type LanguageModel } from '../runtime/model';
import { evaluate, type EvaluateResult } from '../runtime/evaluate';
import type { EvalJobData, JobData } from './job';

/** What a job resolves to: the result of the library call it stands for (as JSON, once stored). */
export type JobResult = QuantizeResult | EvaluateResult | ExportGgufResult;

/** Options of {@link runJob}. @internal */
export interface RunJobOptions {
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /**
   * This is a rerun of a job whose earlier attempt was cut off (its worker died): staging left by
   * that attempt beside the output is removed, and an output it finished is replaced.
   */
  rerun?: { attemptStartedAt: number; enqueuedAt: number };
}

/**
 * Before a rerun: delete what an attempt that was killed left beside `out` — the staging
 * directories and temp files the writers name `[.]<name>.<what>-<12 hex>` — when they are older than
 * this attempt; and say whether `out` itself was made after the job was enqueued (then by an earlier
 * attempt of this job, which finished its rename just before it died), so it may be replaced. A
 * resumable run's staging (`.<name>.tmp-r<24 hex>`, named by its inputs and options) is not
 * matched: the rerun takes it over and goes on from the layers it recorded (formats/output.ts).
 */
function prepareRerun(out: string, rerun: NonNullable<RunJobOptions['rerun']>): boolean {
  const abs = path.resolve(out);
  const dir = path.dirname(abs);
  const base = path.basename(abs).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const leftover = new RegExp(`^\\.?${base}\\.[a-z]+-[0-9a-f]{12}$`);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return false;
  }
  for (const n of names.filter((x) => leftover.test(x))) {
    const p = path.join(dir, n);
    try {
      if (fs.statSync(p).mtimeMs < rerun.attemptStartedAt) fs.rmSync(p, { recursive: true, force: true });
    } catch {
      /* gone already */
    }
  }
  try {
    return fs.statSync(abs).mtimeMs >= rerun.enqueuedAt;
  } catch {
    return false;
  }
}

async function runEval(d: EvalJobData, opts: RunJobOptions): Promise<EvaluateResult> {
  let text: string;
  if (d.textFile !== undefined) {
    try {
      text = fs.readFileSync(d.textFile, 'utf8');
    } catch {
      throw new LowbitError('LOWBIT_NOT_FOUND', `text: cannot read ${d.textFile}`, { option: 'text', file: d.textFile });
    }
  } else {
    text = d.text ?? '';
  }
  const load = { tokenizer: d.tokenizer, activations: d.activations, packed: d.packed, threads: d.threads, maxContext: d.maxContext };
  let model: LanguageModel | null = null;
  let reference: LanguageModel | null = null;
  try {
    model = await loadModel(d.model, load);
    if (d.reference !== undefined) reference = await loadModel(d.reference, { tokenizer: d.tokenizer, threads: d.threads, maxContext: d.maxContext });
    return await evaluate(model, { text, ctx: d.ctx, maxChunks: d.maxChunks, reference: reference ?? undefined, signal: opts.signal, onProgress: opts.onProgress });
  } finally {
    model?.dispose();
    reference?.dispose();
  }
}

/** Run a job's (checked) data. Rejects with the library call's LowbitError. @internal */
export async function runJob(data: JobData, opts: RunJobOptions = {}): Promise<JobResult> {
  const { signal, onProgress } = opts;
  if (data.kind === 'eval') return runEval(data, opts);
  const replace = opts.rerun ? prepareRerun(data.out, opts.rerun) : false;
  const overwrite = (data.overwrite ?? false) || replace;
  if (data.kind === 'quantize') {
    return quantize(data.model, data.config, {
      out: data.out, overwrite, tokenizer: data.tokenizer, calibration: data.calibration, threads: data.threads, evaluate: data.evaluate,
      allowRequantize: data.allowRequantize, maxMemory: data.maxMemory, signal, onProgress,
    });
  }
  return exportGguf(data.model, data.out, {
    type: data.type, tokenizer: data.tokenizer, name: data.name, embeddingType: data.embeddingType, exclude: data.exclude, overwrite, signal, onProgress,
  });
}
