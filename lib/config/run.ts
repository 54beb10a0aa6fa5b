/**
 * Options every long-running call shares: progress reports, cancellation and compute threads.
 */
import { checkInt, invalidOption } from './validate';

/** A progress report ("latest wins": reports may be merged, so never count calls). */
export interface Progress {
  /** What is running, e.g. 'quantize', 'pack', 'write'. */
  phase: string;
  /** Layer/module index (0-based) when the operation walks a model. */
  layer?: number;
  /** Number of layers/modules. */
  layers?: number;
  /** Units done within the phase. */
  done: number;
  /** Units in total within the phase. */
  total: number;
  /** Module name, when known. */
  module?: string;
  /** Training: the step's loss. */
  loss?: number;
}


/** The largest thread count any call accepts (one bound, one message, everywhere). */
export const MAX_THREADS = 1024;

/**
 * Validate a per-call `threads` option: an integer in [1, {@link MAX_THREADS}], or undefined for
 * the process default (physical cores, `LOWBIT_THREADS`, or what `setThreads` set). Native calls
 * receive 0 for "the process default".
 */
export function checkThreads(v: unknown, name = 'threads'): number | undefined {
  if (v === undefined) return undefined;
  return requireThreads(v, name);
}

/** A thread count that must be given (setThreads): the same bound and message as {@link checkThreads}. */
export function requireThreads(v: unknown, name = 'threads'): number {
  return checkInt(name, v, 1, MAX_THREADS);
}

/** The value a native job carries: the per-call thread count, or 0 for the process default. @internal */
export function nativeThreads(threads: number | undefined): number {
  return threads ?? 0;
}

/** A progress callback that can never break the run that calls it ("latest wins"). @internal */
export function safeReporter(onProgress: ((p: Progress) => void) | undefined): (p: Progress) => void {
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalidOption('onProgress', 'a function', onProgress);
  return (p) => {
    try {
      onProgress?.(p);
    } catch {
      /* a throwing callback must not break the run */
    }
  };
}

/** The native progress callback of a task reporting `phase` to `onProgress`, as spread into a native job (nothing when there is none). @internal */
export function progressCallback(onProgress: ((p: Progress) => void) | undefined, phase: string): { onProgress?: (done: number, total: number) => void } {
  if (!onProgress) return {};
  return {
    onProgress: (done: number, total: number) => {
      onProgress({ phase, done, total });
    },
  };
}
