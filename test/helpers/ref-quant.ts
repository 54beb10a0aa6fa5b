/**
 * A plain TypeScript reference of the uniform quantizer, written from the formulas in
 * native/kernels/quant.h (and docs/algorithms.md §2.5), independent of the native code.
 * Float32 arithmetic is emulated with Math.fround after every operation (exact: double rounding
 * is innocuous for +, −, ×, ÷ of float32 operands).
 */
import { f16BitsToF32, f32ToF16Bits } from '../../lib/formats/dtype';

const f = Math.fround;

/** Round half to even (what torch.round and C's nearbyint do). */
export function rint(x: number): number {
  const fl = Math.floor(x);
  const d = x - fl;
  if (d < 0.5) return fl;
  if (d > 0.5) return fl + 1;
  return fl % 2 === 0 ? fl : fl + 1;
}

function roundF16(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x, 'scale', { saturate: true }));
}

export interface RefSpec {
  bits: number;
  groupSize: number; // effective (>= 1)
  sym: boolean;
  zeroMin: number;
  scaleF16: boolean;
  /** llama.cpp's Q4_0 grid: scale |e| / 2^(bits−1) of the largest-magnitude e, zero by its sign (needs sym). */
  signedMax?: boolean;
}

export function refParams(xmin: number, xmax: number, q: RefSpec): { scale: number; zero: number } {
  const maxq = (1 << q.bits) - 1;
  if (q.sym && q.signedMax) {
    const half = (maxq + 1) / 2, neg = -xmin >= xmax;
    const e = (neg ? -xmin : xmax) || 1;
    let scale = f(e / half);
    if (q.scaleF16) scale = roundF16(scale);
    if (!(scale > 0)) scale = 5.9604644775390625e-8;
    return { scale, zero: neg ? half : half - 1 };
  }
  if (q.sym) {
    const m = Math.max(-xmin, xmax);
    xmin = -m;
    xmax = m;
  }
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  let scale = f(f(xmax - xmin) / maxq);
  if (q.scaleF16) scale = roundF16(scale);
  if (!(scale > 0)) scale = 5.9604644775390625e-8;
  let zero: number;
  if (q.sym) zero = (maxq + 1) / 2;
  else {
    zero = rint(f(-xmin / scale));
    if (zero < q.zeroMin) {
      zero = q.zeroMin;
      let s2 = f(xmax / (maxq - zero));
      if (q.scaleF16) s2 = roundF16(s2);
      if (s2 > scale) scale = s2;
    }
    if (zero > maxq) zero = maxq;
  }
  return { scale, zero };
}

/** Quantize (rows, cols) with minmax ranges; returns codes, scales, zeros (rows × G), dequant. */
export function refQuantize(w: Float32Array, rows: number, cols: number, q: RefSpec) {
  const gs = q.groupSize, G = Math.ceil(cols / gs), maxq = (1 << q.bits) - 1;
  const codes = new Uint8Array(rows * cols), scales = new Float32Array(rows * G), zeros = new Uint8Array(rows * G);
  const deq = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < G; g++) {
      const b = g * gs, e = Math.min(cols, b + gs);
      let lo = 0, hi = 0;
      for (let c = b; c < e; c++) { lo = Math.min(lo, w[r * cols + c]); hi = Math.max(hi, w[r * cols + c]); }
      const p = refParams(lo, hi, q);
      scales[r * G + g] = p.scale;
      zeros[r * G + g] = p.zero;
      for (let c = b; c < e; c++) {
        let v = rint(f(w[r * cols + c] / p.scale)) + p.zero;
        v = Math.min(maxq, Math.max(0, v));
        codes[r * cols + c] = v;
        deq[r * cols + c] = f(p.scale * (v - p.zero));
      }
    }
  }
  return { codes, scales, zeros, deq };
}
