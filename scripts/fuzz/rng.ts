/**
 * The fuzzer's seeded generator: xorshift128 (Marsaglia 2003) on four 32-bit words, period
 * 2^128 − 1, seeded through splitmix32 so nearby seeds give unrelated streams.
 *
 * Every case draws from its own generator, seeded by (run seed, target name, case index), so any
 * one case can be rebuilt alone from those three numbers (a hang or crash is reproduced without
 * replaying the cases before it).
 */

/** splitmix32 step: a well-mixed 32-bit value from a 32-bit state. */
function splitmix32(x: number): number {
  let z = (x + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** FNV-1a of a string (UTF-16 code units), as an unsigned 32-bit integer. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** A small deterministic generator; not for cryptography. */
export class FuzzRng {
  private _x: number;
  private _y: number;
  private _z: number;
  private _w: number;

  /** Seed from any number of integers (each folded in with splitmix32). */
  constructor(...seeds: number[]) {
    let s = 0x6a09e667;
    for (const v of seeds) s = splitmix32((s ^ (v >>> 0)) >>> 0);
    this._x = splitmix32(s);
    this._y = splitmix32(this._x ^ 0x1b873593);
    this._z = splitmix32(this._y ^ 0xcc9e2d51);
    this._w = splitmix32(this._z ^ 0xe6546b64) || 1; // the all-zero state is a fixed point
  }

  /** The next unsigned 32-bit value. */
  u32(): number {
    const t = (this._x ^ (this._x << 11)) >>> 0;
    this._x = this._y;
    this._y = this._z;
    this._z = this._w;
    this._w = (this._w ^ (this._w >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    return this._w;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** An integer in [0, n) (n ≥ 1, at most 2^32). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** An integer in [lo, hi], both included. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** n random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /** An approximately normal value (mean 0, standard deviation `std`), Irwin–Hall of four uniforms. */
  normal(std: number): number {
    return (this.float() + this.float() + this.float() + this.float() - 2) * std * Math.sqrt(3);
  }
}

/** The generator of one case: (run seed, target, case index) → an independent stream. */
export function caseRng(seed: number, target: string, index: number): FuzzRng {
  return new FuzzRng(seed, hashString(target), index, Math.floor(index / 2 ** 32));
}
