/**
 * Small option checkers. Every "invalid option" message is built by {@link invalidOption}, so the
 * wording never drifts: `<name>: expected <what>, received <value> (<type>)`.
 */
import { LowbitError } from './errors';

function describe(value: unknown): string {
  if (typeof value === 'string') return `${JSON.stringify(value)} (string)`;
  if (typeof value === 'number') return `${String(value)} (number)`;
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as { length: number }).length}`;
  return `${String(value)} (${typeof value})`;
}

/** The one builder of "invalid option" errors. */
export function invalidOption(name: string, expected: string, received: unknown): LowbitError {
  return new LowbitError('LOWBIT_INVALID_OPTION', `${name}: expected ${expected}, received ${describe(received)}`, { option: name });
}

/** An integer in [min, max]. */
export function checkInt(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalidOption(name, `an integer in [${min}, ${max}]`, v);
  }
  return v;
}

/** A finite number in [min, max]. */
export function checkNumber(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw invalidOption(name, `a number in [${min}, ${max}]`, v);
  }
  return v;
}

/** A boolean. */
export function checkBool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw invalidOption(name, 'a boolean', v);
  return v;
}

/** One of the given string values. */
export function checkEnum<T extends string>(name: string, v: unknown, values: readonly T[]): T {
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    throw invalidOption(name, `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`, v);
  }
  return v as T;
}

/** A non-empty string. */
export function checkString(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0) throw invalidOption(name, 'a non-empty string', v);
  return v;
}

/** Reject keys not in `allowed` (catches typos such as `groupsize`). */
export function checkKnownKeys(what: string, obj: object, allowed: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      throw new LowbitError('LOWBIT_INVALID_OPTION', `${what}: unknown option ${JSON.stringify(k)} (known: ${allowed.join(', ')})`, { option: k });
    }
  }
}

/** An AbortSignal or undefined. */
export function checkSignal(v: unknown): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || typeof (v as AbortSignal).aborted !== 'boolean') {
    throw invalidOption('signal', 'an AbortSignal', v);
  }
  return v as AbortSignal;
}
