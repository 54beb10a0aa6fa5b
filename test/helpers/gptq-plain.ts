/**
 * A plain implementation of the published GPTQ algorithm (docs/algorithms.md §2.4 pseudocode:
 * dead columns, static groups, act-order, damping, Cholesky → explicit inverse → upper Cholesky
 * factor, column loop with lazy block updates, group params from W when a group starts), in
 * float64, written for the tests from the description alone. The quantization grid is lowbit's
 * documented one (refParams: fp16-rounded scale, half-to-even), so the comparison is of the
 * algorithm, not of the grid.
 */
import { refParams, rint } from './ref-quant';

export interface PlainGptqOptions {
  bits: number;
  groupSize: number; // effective: cols for per channel
  sym: boolean;
  actOrder: boolean;
  staticGroups: boolean;
  damp: number;
  blockSize: number;
  zeroMin: number;
}

function cholLower(A: Float64Array, n: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let s = A[j * n + j];
    for (let k = 0; k < j; k++) s -= L[j * n + k] ** 2;
    if (!(s > 0)) throw new Error('not positive definite');
    const d = Math.sqrt(s);
    L[j * n + j] = d;
    for (let i = j + 1; i < n; i++) {
      let t = A[i * n + j];
      for (let k = 0; k < j; k++) t -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = t / d;
    }
  }
  return L;
}

function inverseSpd(A: Float64Array, n: number): Float64Array {
  const L = cholLower(A, n);
  const inv = new Float64Array(n * n);
  const y = new Float64Array(n);
  for (let c = 0; c < n; c++) {
    for (let i = 0; i < n; i++) {
      let t = i === c ? 1 : 0;
      for (let k = 0; k < i; k++) t -= L[i * n + k] * y[k];
      y[i] = t / L[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let t = y[i];
      for (let k = i + 1; k < n; k++) t -= L[k * n + i] * inv[k * n + c];
      inv[i * n + c] = t / L[i * n + i];
    }
  }
  return inv;
}

function params(x: ArrayLike<number>, q: PlainGptqOptions) {
  let lo = 0, hi = 0;
  for (let i = 0; i < x.length; i++) { lo = Math.min(lo, Math.fround(x[i])); hi = Math.max(hi, Math.fround(x[i])); }
  return refParams(lo, hi, { bits: q.bits, groupSize: q.groupSize, sym: q.sym, zeroMin: q.zeroMin, scaleF16: true });
}

function qdq(w: number, p: { scale: number; zero: number }, maxq: number): number {
  const c = Math.min(maxq, Math.max(0, rint(Math.fround(Math.fround(w) / p.scale)) + p.zero));
  return Math.fround(p.scale * (c - p.zero));
}

/** Returns Q (rows × cols) in the original column order. */
export function plainGptq(W0: Float32Array, H0: Float32Array, rows: number, cols: number, o: PlainGptqOptions): Float64Array {
  const maxq = (1 << o.bits) - 1, g = o.groupSize, groups = g < cols;
  const W = Float64Array.from(W0), H = Float64Array.from(H0);
  const prow = groups ? [] : Array.from({ length: rows }, (_, r) => params(W0.subarray(r * cols, (r + 1) * cols), o));
  for (let j = 0; j < cols; j++) if (H[j * cols + j] === 0) { H[j * cols + j] = 1; for (let r = 0; r < rows; r++) W[r * cols + j] = 0; }
  const pstatic: { scale: number; zero: number }[][] = [];
  if (groups && o.staticGroups) for (let r = 0; r < rows; r++) {
    pstatic.push([]);
    for (let k = 0; k * g < cols; k++) pstatic[r].push(params(W.subarray(r * cols + k * g, r * cols + Math.min(cols, (k + 1) * g)), o));
  }
  let perm = Array.from({ length: cols }, (_, j) => j);
  if (o.actOrder) perm = perm.sort((a, b) => (H[b * cols + b] - H[a * cols + a]) || (a - b));
  const Wp = new Float64Array(rows * cols), Hp = new Float64Array(cols * cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) Wp[r * cols + j] = W[r * cols + perm[j]];
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) Hp[i * cols + j] = H[perm[i] * cols + perm[j]];
  let mean = 0;
  for (let j = 0; j < cols; j++) mean += Hp[j * cols + j];
  mean /= cols;
  for (let j = 0; j < cols; j++) Hp[j * cols + j] += o.damp * mean;
  const Hinv = inverseSpd(Hp, cols);
  const M = cholLower(Hinv, cols); // Hinv = M Mᵀ → U = Mᵀ
  const U = (i: number, j: number) => M[j * cols + i];
  const Q = new Float64Array(rows * cols);
  for (let b0 = 0; b0 < cols; b0 += o.blockSize) {
    const b1 = Math.min(cols, b0 + o.blockSize);
    const W1 = new Float64Array(rows * (b1 - b0)), E = new Float64Array(rows * (b1 - b0));
    for (let r = 0; r < rows; r++) for (let t = 0; t < b1 - b0; t++) W1[r * (b1 - b0) + t] = Wp[r * cols + b0 + t];
    const P: { scale: number; zero: number }[] = groups ? [] : prow;
    for (let t = 0; t < b1 - b0; t++) {
      const j = b0 + t;
      for (let r = 0; r < rows; r++) {
        if (groups) {
          if (o.staticGroups) P[r] = pstatic[r][Math.floor(perm[j] / g)];
          else if (j % g === 0) P[r] = params(Wp.subarray(r * cols + j, r * cols + Math.min(cols, j + g)), o);
        }
        const w = W1[r * (b1 - b0) + t];
        const q = qdq(w, P[r], maxq);
        Q[r * cols + j] = q;
        const e = (w - q) / U(j, j);
        for (let u = t + 1; u < b1 - b0; u++) W1[r * (b1 - b0) + u] -= e * U(j, b0 + u);
        E[r * (b1 - b0) + t] = e;
      }
    }
    for (let r = 0; r < rows; r++) for (let c = b1; c < cols; c++) {
      let s = 0;
      for (let t = 0; t < b1 - b0; t++) s += E[r * (b1 - b0) + t] * U(b0 + t, c);
      Wp[r * cols + c] -= s;
    }
  }
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) out[r * cols + perm[j]] = Q[r * cols + j];
  return out;
}

/** tr((W − Q) H (W − Q)ᵀ): the layer's output error on the calibration inputs (up to H's scale). */
export function layerError(W: ArrayLike<number>, Q: ArrayLike<number>, H: ArrayLike<number>, rows: number, cols: number): number {
  let s = 0;
  const d = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) d[c] = W[r * cols + c] - Q[r * cols + c];
    for (let i = 0; i < cols; i++) {
      if (d[i] === 0) continue;
      let t = 0;
      for (let j = 0; j < cols; j++) t += H[i * cols + j] * d[j];
      s += d[i] * t;
    }
  }
  return s;
}

/** Correlated, outlier-bearing inputs → H = 2/n XᵀX (float32), as calibration would give. */
export function makeHessian(rng: { normal(): number; next(): number }, n: number, cols: number): Float32Array {
  const mix = Float64Array.from({ length: cols * cols }, (_, i) => (i % (cols + 1) === 0 ? 1 : 0) + 0.15 * rng.normal() / Math.sqrt(cols));
  const scale = Float64Array.from({ length: cols }, () => (rng.next() < 0.05 ? 10 + 10 * rng.next() : 0.5 + rng.next()));
  const H = new Float64Array(cols * cols);
  const z = new Float64Array(cols), x = new Float64Array(cols);
  for (let t = 0; t < n; t++) {
    for (let i = 0; i < cols; i++) z[i] = rng.normal() * scale[i];
    for (let i = 0; i < cols; i++) { let s = 0; for (let k = 0; k < cols; k++) s += z[k] * mix[k * cols + i]; x[i] = s; }
    for (let i = 0; i < cols; i++) for (let j = i; j < cols; j++) H[i * cols + j] += x[i] * x[j];
  }
  const out = new Float32Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = i; j < cols; j++) out[i * cols + j] = out[j * cols + i] = (2 / n) * H[i * cols + j];
  return out;
}
