/**
 * Small option checkers. Every "invalid option" message is built by {@link invalidOption}, so the
 * wording never drifts: `<name>: expected <what>, received <value> (<type>)`.
 */

export { invalidOption, optionError } from '../errors';
import { invalidOption, optionError } from '../errors';

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
      throw optionError(k, `${what}: unknown option ${JSON.stringify(k)} (known: ${allowed.join(', ')})`);
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

/**
 * A plain options object from a caller that may not be typed (JavaScript): anything else is
 * LOWBIT_INVALID_OPTION naming `name`. Returns it typed as the caller declared it.
 */
export function checkObject<T extends object>(name: string, v: T | null | undefined, expected: string): T {
  const u: unknown = v;
  if (typeof u !== 'object' || u === null) throw invalidOption(name, expected, u);
  return v as T;
}

/** One of the given values, for an option whose declared type already is that union (untyped callers still get a typed error). */
export function checkOneOf<T extends string | number>(name: string, v: T, values: readonly T[]): T {
  const u: unknown = v;
  if (!(values as readonly unknown[]).includes(u)) throw invalidOption(name, `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`, u);
  return v;
}
