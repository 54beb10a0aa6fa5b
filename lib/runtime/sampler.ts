/**
 * run.c's sampler, reproduced exactly (float32 arithmetic emulated with Math.fround; the same
 * xorshift64* generator; the same nucleus procedure), so a seed gives the same text as llama2.c.
 *   temperature 0: argmax (first maximum);
 *   else logits / T, softmax in float32, coin = random_f32(); top-p ∉ (0, 1): sample the CDF;
 *   otherwise keep p ≥ (1 − top_p)/(n − 1), sort descending (stable, like glibc's merge sort),
 *   cut after the cumulative probability exceeds top_p, and sample r = coin · cumulative.
 */
import { checkInt, checkNumber, invalidOption } from '../config/validate';
const f = Math.fround;
const MASK64 = (1n << 64n) - 1n;

/** xorshift64* exactly as run.c's random_u32 / random_f32. */
export class XorShift {
  private state: bigint;
  constructor(seed: number | bigint) {
    this.state = BigInt.asUintN(64, BigInt(seed));
  }
  u32(): number {
    let s = this.state;
    s ^= s >> 12n;
    s ^= (s << 25n) & MASK64;
    s ^= s >> 27n;
    this.state = s;
    return Number(((s * 0x2545f4914f6cdd1dn) & MASK64) >> 32n);
  }
  f32(): number {
    return f((this.u32() >>> 8) / 16777216.0);
  }
}

/** Sampling options (run.c's -t, -p, -s). */
export interface SamplerOptions {
  /** 0 = greedy; at most 10000. @default 1 */
  temperature?: number;
  /** Nucleus threshold in [0, 1]; 0 or 1 disables it (run.c). @default 0.9 */
  topP?: number;
  /** xorshift seed (run.c takes the clock when absent). @default Date.now() */
  seed?: number | bigint;
}

export class Sampler {
  readonly temperature: number;
  readonly topP: number;
  private rng: XorShift;
  constructor(opts: SamplerOptions = {}) {
    this.temperature = f(checkNumber('temperature', opts.temperature ?? 1.0, 0, 1e4));
    this.topP = f(checkNumber('topP', opts.topP ?? 0.9, 0, 1));
    const seed = opts.seed;
    if (typeof seed === 'bigint' && (seed < 0n || seed >= 1n << 64n)) throw invalidOption('seed', 'an integer in [0, 2^64)', Number(seed));
    this.rng = new XorShift(seed === undefined ? Date.now() : typeof seed === 'bigint' ? seed : checkInt('seed', seed, 0, Number.MAX_SAFE_INTEGER));
  }

  /** Choose the next token from `logits` (modified in place, as run.c does). */
  sample(logits: Float32Array): number {
    const n = logits.length;
    if (this.temperature === 0) {
      let best = 0;
      for (let i = 1; i < n; i++) if (logits[i] > logits[best]) best = i;
      return best;
    }
    for (let i = 0; i < n; i++) logits[i] = f(logits[i] / this.temperature);
    let max = logits[0];
    for (let i = 1; i < n; i++) if (logits[i] > max) max = logits[i];
    let sum = 0;
    for (let i = 0; i < n; i++) {
      logits[i] = f(Math.exp(f(logits[i] - max)));
      sum = f(sum + logits[i]);
    }
    for (let i = 0; i < n; i++) logits[i] = f(logits[i] / sum);
    const coin = this.rng.f32();
    if (this.topP <= 0 || this.topP >= 1) {
      let cdf = 0;
      for (let i = 0; i < n; i++) {
        cdf = f(cdf + logits[i]);
        if (coin < cdf) return i;
      }
      return n - 1;
    }
    const cutoff = f(f(1.0 - this.topP) / (n - 1));
    const idx: number[] = [];
    for (let i = 0; i < n; i++) if (logits[i] >= cutoff) idx.push(i);
    idx.sort((a, b) => (logits[b] - logits[a]) || (a - b));
    let cum = 0;
    let last = idx.length - 1;
    for (let i = 0; i < idx.length; i++) {
      cum = f(cum + logits[idx[i]]);
      if (cum > this.topP) {
        last = i;
        break;
      }
    }
    const r = f(coin * cum);
    let cdf = 0;
    for (let i = 0; i <= last; i++) {
      cdf = f(cdf + logits[idx[i]]);
      if (r < cdf) return idx[i];
    }
    return idx[last];
  }
}
