/** The fuzzer's shared types: targets, cases, outcomes and violations. */
import type { FuzzRng } from './rng';
import type { Corpus, FileSet } from './seeds';

/** Every fuzz target, in the order `--target all` runs them. */
export const TARGETS = ['safetensors', 'gguf', 'llama2c', 'tokenizer', 'config', 'calib'] as const;
export type TargetName = (typeof TARGETS)[number];

/** What can go wrong with a case (anything here fails the run). */
export type ViolationKind =
  | 'untyped-error' // a thrown value that is not a LowbitError
  | 'internal-error' // a LowbitError with code LOWBIT_INTERNAL (a bug, by definition)
  | 'unnamed-error' // LOWBIT_BAD_FORMAT whose message names no input file
  | 'wrong-result' // accepted, but the result breaks an invariant (lengths, ids in range)
  | 'partial-output' // quantize threw and left files behind
  | 'hang' // over the per-case time limit
  | 'memory' // grew RSS or ArrayBuffer memory beyond the cap
  | 'crash'; // the worker (or the whole process) died

/** One input of a case. */
export interface FuzzCase {
  /** Relative path → bytes, written into the case directory. */
  files: FileSet;
  /** Extra directories (relative) to create, e.g. a directory named like a file. */
  dirs?: string[];
  /** Symbolic links to create: [relative path, link target] (dangling links and loops included). */
  links?: [string, string][];
  /** What was done to the seed, for the report. */
  mutation: string;
  /** Relative path handed to the API (a file or a directory). */
  entry: string;
  /** The vocabulary size handed to tokenizer readers (tokenizer target). */
  vocabSize?: number;
  /** The seed was a quantized GGUF (quantize needs allowRequantize). */
  quantized?: boolean;
}

/** A violation, thrown out of a case by the checks. */
export class Violation extends Error {
  constructor(readonly kind: ViolationKind, readonly step: string, message: string, readonly detail?: string) {
    super(message);
    this.name = 'Violation';
  }
}

/** What a target's `run` gets. */
export interface CaseContext {
  /** Absolute path of the case directory (the inputs are inside). */
  readonly dir: string;
  /** Absolute path of the case's entry. */
  readonly entry: string;
  /** Run the expensive steps too (quantize, load, forward). */
  readonly full: boolean;
  /**
   * Run one API step: its value, or undefined when it threw a typed LowbitError (recorded as the
   * case's outcome when it is the first). Any other failure throws a {@link Violation}.
   */
  probe<T>(step: string, fn: () => T | Promise<T>): Promise<T | undefined>;
  /** An accepted result broke an invariant. */
  wrong(step: string, message: string): never;
}

/** A fuzz target: how to make a case from the corpus, and how to run it through the API. */
export interface FuzzTarget {
  readonly name: TargetName;
  make(rng: FuzzRng, corpus: Corpus): FuzzCase;
  run(c: FuzzCase, ctx: CaseContext, corpus: Corpus): Promise<void>;
}

/** Per-target counts. */
export interface TargetReport {
  target: TargetName;
  cases: number;
  /** Cases whose every step succeeded. */
  accepted: number;
  /** Cases ended by a typed error, by code (the first error of the case). */
  errors: Record<string, number>;
  /** Cases that ran the full steps (quantize, load, forward). */
  fullCases: number;
  violations: number;
  seconds: number;
  casesPerSecond: number;
}

/** One violation as reported. */
export interface ViolationRecord {
  target: TargetName;
  seed: number;
  index: number;
  kind: ViolationKind;
  step: string;
  mutation: string;
  message: string;
  /** Where the input was saved (null when saving is off). */
  saved: string | null;
}
