/**
 * A plain simulation of lowbit's quantized KV cache for tests, written from the descriptions in
 * native/kernels/rtquant.h and native/runtime/llama.h (it does not import lib/ops): the group
 * encoder, per-token and per-channel (KIVI) keys, and which positions a query reads in full
 * precision (its window; for per-channel keys, a block not complete at the query).
 */
import { f16BitsToF32, f32ToF16Bits } from '../../lib/formats/dtype';

const f16 = (x: number): number => f16BitsToF32(f32ToF16Bits(x, 'x', { saturate: true }));
const halfEven = (v: number): number => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));

/** One group: codes and the fp16 scale and offset (decoded value = s·code + z). */
export function encodeGroup(vals: number[], bits: number, sym: boolean): { codes: number[]; s: number; z: number } {
  let mn = Infinity, mx = -Infinity;
  for (const v of vals) { mn = Math.min(mn, v); mx = Math.max(mx, v); }
  let s: number, z: number, lo: number, hi: number, off: number;
  if (sym) {
    const qmax = 2 ** (bits - 1) - 1;
    s = f16(Math.fround(Math.max(Math.abs(mn), Math.abs(mx)) / qmax));
    z = f16(Math.fround(-(2 ** (bits - 1)) * s));
    lo = -qmax; hi = qmax; off = 2 ** (bits - 1);
  } else {
    z = f16(mn);
    s = f16(Math.fround(Math.fround(mx - mn) / (2 ** bits - 1)));
    lo = 0; hi = 2 ** bits - 1; off = 0;
  }
  const codes = vals.map((v) => {
    if (!(s > 0)) return sym ? off : 0;
    const r = halfEven(Math.fround(sym ? Math.fround(v / s) : Math.fround(Math.fround(v - z) / s)));
    return Math.min(Math.max(r, lo), hi) + off;
  });
  return { codes, s, z };
}

export interface KvSimOptions { bits: number; group: number; sym: boolean; axis: 'token' | 'channel'; block: number; window: number; headDim: number }

/** The rows a query reads: `read(kind, layer, p, last, rows)` for test/helpers/slow-forward.ts's kvRead hook. */
export class KvSim {
  private cache = new Map<string, Float64Array>();
  constructor(private readonly o: KvSimOptions) {}

  private decodeRow(row: Float64Array): Float64Array {
    const { bits, sym } = this.o, g = this.o.group || this.o.headDim;
    const out = new Float64Array(row.length);
    for (let j = 0; j < row.length / g; j++) {
      const vals = Array.from(row.subarray(j * g, (j + 1) * g), (x) => Math.fround(x));
      const e = encodeGroup(vals, bits, sym);
      for (let i = 0; i < g; i++) out[j * g + i] = Math.fround(Math.fround(e.s * e.codes[i]) + e.z);
    }
    return out;
  }

  private decodeBlockRow(rows: Float64Array[], p: number): Float64Array {
    const T = this.o.block, b0 = p - (p % T), n = rows[p].length;
    const out = new Float64Array(n);
    for (let c = 0; c < n; c++) {
      const e = encodeGroup(Array.from({ length: T }, (_, i) => Math.fround(rows[b0 + i][c])), this.o.bits, this.o.sym);
      out[c] = Math.fround(Math.fround(e.s * e.codes[p - b0]) + e.z);
    }
    return out;
  }

  read(kind: 'k' | 'v', layer: number, p: number, last: number, rows: Float64Array[]): Float64Array {
    const { window: W, block: T } = this.o;
    if (W > 0 && last - p < W) return rows[p];
    const channel = kind === 'k' && this.o.axis === 'channel';
    if (channel && !(last >= p - (p % T) + T - 1)) return rows[p];  // its block is not complete at this query
    const key = `${kind}${layer}:${p}`;
    let r = this.cache.get(key);
    if (!r) {
      r = channel ? this.decodeBlockRow(rows, p) : this.decodeRow(rows[p]);
      this.cache.set(key, r);
    }
    return r;
  }
}
