/**
 * Seeded random numbers for tests (xorshift128+ → uniform; Box–Muller → normal). Every test that
 * draws random inputs prints its seed on failure through `withSeed`.
 */
export class Rng {
  private s0: bigint;
  private s1: bigint;
  constructor(readonly seed: number) {
    let z = BigInt(seed >>> 0) + 0x9e3779b97f4a7c15n;
    const next = () => {
      z = (z + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
      let x = z;
      x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
      x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
      return x ^ (x >> 31n);
    };
    this.s0 = next();
    this.s1 = next();
  }
  /** Uniform in [0, 1). */
  next(): number {
    let s1 = this.s0;
    const s0 = this.s1;
    this.s0 = s0;
    s1 ^= (s1 << 23n) & 0xffffffffffffffffn;
    this.s1 = s1 ^ s0 ^ (s1 >> 17n) ^ (s0 >> 26n);
    const r = (this.s1 + s0) & 0xffffffffffffffffn;
    return Number(r >> 11n) / 2 ** 53;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  normal(): number {
    const u = Math.max(this.next(), 1e-300);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  /** Weight-like data: normal with a few large outliers and some per-row scale variation. */
  weights(rows: number, cols: number, outlierRate = 0.002): Float32Array {
    const a = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const rs = 0.02 * (0.5 + this.next());
      for (let c = 0; c < cols; c++) {
        let v = this.normal() * rs;
        if (this.next() < outlierRate) v *= 10 + 20 * this.next();
        a[r * cols + c] = v;
      }
    }
    return a;
  }
}

/** Run `fn` with a fresh seed; on failure the seed is added to the error message. */
export async function withSeed(seed: number, fn: (rng: Rng) => void | Promise<void>): Promise<void> {
  try {
    await fn(new Rng(seed));
  } catch (e) {
    if (e instanceof Error) e.message = `[seed ${seed}] ${e.message}`;
    throw e;
  }
}

/** A seed that differs per run unless LOWBIT_TEST_SEED is set (fresh random inputs each run). */
export function testSeed(offset = 0): number {
  const env = process.env.LOWBIT_TEST_SEED;
  const base = env ? Number(env) : (Date.now() % 1_000_000);
  return base + offset;
}
