/**
 * Options of quantization-aware training (lib/pipeline/qat.ts), checked once here.
 */
import { optionError } from '../errors';
import { checkInt, checkKnownKeys, checkNumber, checkObject, invalidOption } from './validate';

/** Where the training data comes from. */
export type QatData =
  /** Generate this many sequences from the full-precision model (LLM-QAT's data-free data). */
  | { synthetic: number; temperature?: number; topK?: number }
  /** A file: JSONL (`input_ids` or `text` records, e.g. a dataset lowbit generated) or UTF-8 text. */
  | { file: string };

/** Training options of {@link qat}. */
export interface QatOptions {
  /** @default { synthetic: 256 } */
  data?: QatData | string;
  /** Optimizer steps. @default 200 */
  steps?: number;
  /** Sequences per step. @default 8 */
  batch?: number;
  /** Tokens per sequence (capped at the model's context). @default 256 */
  seqLen?: number;
  /** Peak learning rate (AdamW, cosine to lr/10 after a linear warmup). @default 1e-4 */
  lr?: number;
  /** Warmup steps. @default steps / 20 */
  warmupSteps?: number;
  /** @default 0 (LLM-QAT) */
  weightDecay?: number;
  /** Global gradient-norm clip (0: none). @default 1 */
  gradClip?: number;
  /** Seed of the data and the batches. @default 0 */
  seed?: number;
  /** Write a resumable checkpoint every this many steps (0: never). @default 50 */
  checkpointEvery?: number;
}

/** {@link QatOptions} checked, every field present. */
export interface NormalizedQatOptions {
  data: { kind: 'synthetic'; count: number; temperature: number; topK: number } | { kind: 'file'; file: string };
  steps: number;
  batch: number;
  seqLen: number;
  lr: number;
  warmupSteps: number;
  weightDecay: number;
  gradClip: number;
  seed: number;
  checkpointEvery: number;
}

const KEYS = ['data', 'steps', 'batch', 'seqLen', 'lr', 'warmupSteps', 'weightDecay', 'gradClip', 'seed', 'checkpointEvery'] as const;

/** `synthetic:N` or a file path (the CLI's --data), or the object form. */
function normalizeData(d: QatData | string | undefined): NormalizedQatOptions['data'] {
  if (d === undefined) return { kind: 'synthetic', count: 256, temperature: 1, topK: 50 };
  if (typeof d === 'string') {
    const m = /^synthetic:(\d+)$/.exec(d);
    if (m) return { kind: 'synthetic', count: checkInt('data', Number(m[1]), 1, 1e7), temperature: 1, topK: 50 };
    if (d.startsWith('synthetic')) throw invalidOption('data', 'synthetic:N (sequences to generate) or a data file', d);
    if (d.length === 0) throw invalidOption('data', 'synthetic:N or a data file', d);
    return { kind: 'file', file: d };
  }
  checkObject('data', d, 'an object {synthetic: N} or {file}');
  if ('synthetic' in d) {
    checkKnownKeys('data', d, ['synthetic', 'temperature', 'topK']);
    return { kind: 'synthetic', count: checkInt('data.synthetic', d.synthetic, 1, 1e7), temperature: checkNumber('data.temperature', d.temperature ?? 1, 0, 100), topK: checkInt('data.topK', d.topK ?? 50, 0, 1 << 30) };
  }
  if ('file' in d) {
    checkKnownKeys('data', d, ['file']);
    if (typeof d.file !== 'string' || d.file.length === 0) throw invalidOption('data.file', 'a path', d.file);
    return { kind: 'file', file: d.file };
  }
  throw optionError('data', 'data: give {synthetic: N} or {file}');
}

export function normalizeQatOptions(o: QatOptions): NormalizedQatOptions {
  checkObject('training', o, 'an object {data, steps, batch, seqLen, lr, seed}');
  checkKnownKeys('training', o, KEYS);
  const steps = checkInt('steps', o.steps ?? 200, 1, 1e9);
  const lr = checkNumber('lr', o.lr ?? 1e-4, 0, 1);
  if (!(lr > 0)) throw invalidOption('lr', 'a learning rate in (0, 1]', o.lr);
  return {
    data: normalizeData(o.data), steps, batch: checkInt('batch', o.batch ?? 8, 1, 1 << 16), seqLen: checkInt('seqLen', o.seqLen ?? 256, 2, 1 << 20), lr,
    warmupSteps: checkInt('warmupSteps', o.warmupSteps ?? Math.floor(steps / 20), 0, steps), weightDecay: checkNumber('weightDecay', o.weightDecay ?? 0, 0, 10),
    gradClip: checkNumber('gradClip', o.gradClip ?? 1, 0, 1e9), seed: checkInt('seed', o.seed ?? 0, 0, 2 ** 32 - 1), checkpointEvery: checkInt('checkpointEvery', o.checkpointEvery ?? 50, 0, 1e9),
  };
}
