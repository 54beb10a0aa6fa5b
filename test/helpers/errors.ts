/**
 * The one set of error assertions for tests: a LowbitError with a given code, and stable
 * fragments (strings) or patterns (RegExps) of its message.
 */
import { strict as assert } from 'node:assert';
import { LowbitError, type ErrorCode } from '../../lib/errors';

/** One expected part of a message: a substring, or a pattern. */
export type MessagePart = string | RegExp;

function check(e: unknown, code: ErrorCode, parts: MessagePart[]): true {
  assert.ok(e instanceof LowbitError, `expected a LowbitError ${code}, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
  for (const p of parts) {
    if (typeof p === 'string') assert.ok(e.message.includes(p), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(p)}`);
    else assert.match(e.message, p);
  }
  return true;
}

/** A predicate for `assert.throws` / `assert.rejects`: a LowbitError with this code whose message has every part. */
export function isCode(code: ErrorCode, ...parts: MessagePart[]): (e: unknown) => true {
  return (e: unknown) => check(e, code, parts);
}

/** `fn()` throws a LowbitError with this code and message parts. */
export function throwsCode(fn: () => unknown, code: ErrorCode, ...parts: MessagePart[]): void {
  assert.throws(fn, isCode(code, ...parts));
}

/** The promise rejects with a LowbitError with this code and message parts. */
export async function rejectsCode(p: Promise<unknown> | (() => Promise<unknown>), code: ErrorCode, ...parts: MessagePart[]): Promise<void> {
  await assert.rejects(p, isCode(code, ...parts));
}
