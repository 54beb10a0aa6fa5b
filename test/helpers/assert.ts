/** Comparison helpers that report the first mismatches with their index and the max errors. */
import { strict as assert } from 'node:assert';

/** Exact equality of two integer arrays; reports the first few mismatches. */
export function assertArraysEqual(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} != ${expected.length}`);
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (!(a === e || (Number.isNaN(a) && Number.isNaN(e)))) {
      if (bad.length < 5) bad.push(`[${i}] ${a} != ${e}`);
      count++;
    }
  }
  if (count) assert.fail(`${what}: ${count} mismatches; first: ${bad.join(', ')}`);
}

/** |a − e| ≤ atol + rtol·|e| elementwise; reports max abs / rel error and the first mismatches. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} != ${expected.length}`);
  let maxAbs = 0, maxRel = 0, count = 0;
  const bad: string[] = [];
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    maxAbs = Math.max(maxAbs, d);
    if (expected[i] !== 0) maxRel = Math.max(maxRel, d / Math.abs(expected[i]));
    if (!(d <= atol + rtol * Math.abs(expected[i]))) {
      if (bad.length < 5) bad.push(`[${i}] ${actual[i]} vs ${expected[i]}`);
      count++;
    }
  }
  if (count) assert.fail(`${what}: ${count} outside atol ${atol} + rtol ${rtol}; max abs ${maxAbs}, max rel ${maxRel}; first: ${bad.join(', ')}`);
}

/** `x`, after asserting that it is neither null nor undefined (`what` names it in the failure). */
export function must<T>(x: T, what: string): NonNullable<T> {
  assert.ok(x !== null && x !== undefined, `${what}: expected a value, got ${String(x)}`);
  return x;
}
