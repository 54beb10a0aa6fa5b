/**
 * LowbitError: the one error type lowbit throws, with a stable machine-readable code.
 *
 * Codes are part of the public API; docs/TROUBLESHOOTING.md has one heading per code.
 */

/** Every error code lowbit can produce. */
export const ERROR_CODES = [
  'LOWBIT_INVALID_OPTION',
  'LOWBIT_SHAPE_MISMATCH',
  'LOWBIT_BAD_FORMAT',
  'LOWBIT_UNSUPPORTED',
  'LOWBIT_NOT_FOUND',
  'LOWBIT_NUMERICAL',
  'LOWBIT_IO',
  'LOWBIT_ABORTED',
  'LOWBIT_NO_ADDON',
  'LOWBIT_NO_CUDA',
  'LOWBIT_DISPOSED',
  'LOWBIT_RESOURCE',
  'LOWBIT_QUEUE',
  'LOWBIT_INTERNAL',
] as const;

/** A stable error code, e.g. `LOWBIT_BAD_FORMAT`. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** The error type of every failure lowbit reports. Check `code`, not the message. */
export class LowbitError extends Error {
  /** Stable code, e.g. `LOWBIT_BAD_FORMAT`. */
  readonly code: ErrorCode;
  /** Optional structured details (file, tensor, option, …). */
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LowbitError';
    this.code = code;
    if (details) this.details = details;
  }
}

/** True when `e` is a LowbitError (optionally with the given code). */
export function isLowbitError(e: unknown, code?: ErrorCode): e is LowbitError {
  return e instanceof LowbitError && (code === undefined || e.code === code);
}

/**
 * Wrap any thrown value into a LowbitError. Native errors arrive as `Error` whose message starts
 * with `LOWBIT_XXX: ` (the C++ side's `lowbit::Error{code, message}`); Node fs errors become
 * `LOWBIT_IO` naming the path.
 * @internal
 */
export function toLowbitError(e: unknown, context?: string): LowbitError {
  if (e instanceof LowbitError) return e;
  const err = e as NodeJS.ErrnoException | undefined;
  const msg = err && typeof err.message === 'string' ? err.message : String(e);
  const m = /^(LOWBIT_[A-Z_]+): ([\s\S]*)$/.exec(msg);
  if (m && (ERROR_CODES as readonly string[]).includes(m[1])) {
    return new LowbitError(m[1] as ErrorCode, context ? `${context}: ${m[2]}` : m[2], undefined, { cause: e });
  }
  if (err && typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code)) {
    return new LowbitError('LOWBIT_IO', context ? `${context}: ${msg}` : msg, { errno: err.code, path: err.path }, { cause: e });
  }
  return new LowbitError('LOWBIT_INTERNAL', context ? `${context}: ${msg}` : msg, undefined, { cause: e });
}

/** The error a cancelled operation rejects with. */
export function abortError(what: string, where?: string): LowbitError {
  return new LowbitError('LOWBIT_ABORTED', `${what}: aborted by signal${where ? ` at ${where}` : ''} (no output written)`);
}

/** LOWBIT_BAD_FORMAT naming the file: every format reader builds its errors with this. */
export function badFormat(file: string, msg: string, details?: Record<string, unknown>): LowbitError {
  return new LowbitError('LOWBIT_BAD_FORMAT', `${file}: ${msg}`, { file, ...details });
}

/**
 * A byte count in binary units for messages and tables: `512 B`, `1.50 KiB`, `12.3 MiB`, `512 GiB`
 * (three significant digits), or with a fixed number of decimals when `digits` is given.
 */
export function formatBytes(n: number, digits?: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  if (i === 0) return `${n} B`;
  return `${n.toFixed(digits ?? (n >= 100 ? 0 : n >= 10 ? 1 : 2))} ${units[i]}`;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `${JSON.stringify(value)} (string)`;
  if (typeof value === 'number') return `${String(value)} (number)`;
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as { length: number }).length}`;
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
  const scalar = value as boolean | bigint | symbol; // every other type returned above
  return `${scalar.toString()} (${typeof value})`;
}

/**
 * The one builder of "invalid option" errors for a bad value: `<name>: expected <what>, received
 * <value> (<type>)`, so the wording never drifts.
 */
export function invalidOption(name: string, expected: string, received: unknown): LowbitError {
  return new LowbitError('LOWBIT_INVALID_OPTION', `${name}: expected ${expected}, received ${describe(received)}`, { option: name });
}

/**
 * The builder of "invalid option" errors that are about a rule rather than one value (an option
 * that does not apply, two that clash, input too short for the option): the message names the
 * option or the file it concerns, and `option` is recorded for programs.
 */
export function optionError(option: string, message: string, details?: Record<string, unknown>): LowbitError {
  return new LowbitError('LOWBIT_INVALID_OPTION', message, { option, rule: true, ...details });
}
