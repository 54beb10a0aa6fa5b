/**
 * Calibration data options (GPTQ, and every calibrated method after it): validated once here.
 */
import { optionError } from '../errors';
import { checkInt, checkKnownKeys, checkOneOf, invalidOption, checkObject } from './validate';

/** Calibration data of a calibrated method (GPTQ). */
export interface CalibrationOptions {
  /** Calibration text. Exactly one of `text`, `texts` and `file`. */
  text?: string;
  /** Calibration samples as strings (joined with a blank line, then windows are sampled). */
  texts?: string[];
  /**
   * A file or directory to read: UTF-8 text, JSONL (`.jsonl`: one object per line with a `text`
   * string or an `input_ids` array), or a directory of `.txt` files (name order).
   */
  file?: string;
  /** Windows. @default 128 */
  samples?: number;
  /** Tokens per window (capped at the model's context). @default 2048 */
  seqLen?: number;
  /** Seed of the window sampler. @default 0 */
  seed?: number;
  /** A llama2.c tokenizer.bin to tokenize the text with. @default the model's own tokenizer (tokenizer.json, tokenizer.bin next to it, or the GGUF vocabulary) */
  tokenizer?: string;
  /**
   * The calibration forward's matrix products: 'f32', or 'bf16' — operands rounded to bf16, sums
   * in f32 (AVX-512 BF16 `vdpbf16ps` where the CPU has it: 2–3× the f32 GEMM here). The Hessians
   * are still collected from f32 activations and GPTQ itself runs in f32; the effect on quality is
   * measured in docs/QUALITY.md. @default 'f32'
   */
  compute?: 'f32' | 'bf16';
}

/** @internal */
export interface NormalizedCalibration {
  /** Exactly one of text, texts and file. */
  text: string | null;
  texts: string[] | null;
  file: string | null;
  samples: number;
  /** Requested tokens per window (the method caps it at the model's context). */
  seqLen: number;
  seed: number;
  tokenizer: string | null;
  compute: 'f32' | 'bf16';
}

const KEYS = ['text', 'texts', 'file', 'samples', 'seqLen', 'seed', 'tokenizer', 'compute'] as const;

/** Validate calibration options and fill the defaults. */
export function normalizeCalibration(c: CalibrationOptions): NormalizedCalibration {
  checkObject('calibration', c, 'an object {text | file, samples, seqLen, seed}');
  checkKnownKeys('calibration', c, KEYS);
  if (c.text !== undefined && typeof c.text !== 'string') throw invalidOption('calibration.text', 'a string', c.text);
  if (c.file !== undefined && (typeof c.file !== 'string' || c.file.length === 0)) throw invalidOption('calibration.file', 'a path to a UTF-8 text file', c.file);
  if (c.texts !== undefined && (!Array.isArray(c.texts) || c.texts.length === 0 || !c.texts.every((t) => typeof t === 'string'))) {
    throw invalidOption('calibration.texts', 'a non-empty array of strings', c.texts);
  }
  const given = (['text', 'texts', 'file'] as const).filter((k) => c[k] !== undefined);
  if (given.length === 0) throw optionError('calib', 'calibration: GPTQ needs calibration data (calibration.text, .texts or .file; --calib FILE)');
  if (given.length > 1) throw optionError(given[1], `calibration: give one of text, texts and file, received ${given.join(' and ')}`);
  if (c.tokenizer !== undefined && (typeof c.tokenizer !== 'string' || c.tokenizer.length === 0)) throw invalidOption('calibration.tokenizer', 'a path to a tokenizer.bin', c.tokenizer);
  return {
    text: c.text ?? null,
    texts: c.texts ?? null,
    file: c.file ?? null,
    samples: checkInt('calibration.samples', c.samples ?? 128, 1, 1e6),
    seqLen: checkInt('calibration.seqLen', c.seqLen ?? 2048, 2, 1 << 24),
    seed: checkInt('calibration.seed', c.seed ?? 0, 0, 2 ** 32 - 1),
    tokenizer: c.tokenizer ?? null,
    compute: c.compute === undefined ? 'f32' : checkOneOf('calibration.compute', c.compute, ['f32', 'bf16'] as const),
  };
}
