/**
 * The run-time quantizers (native/kernels/rtquant.h) on fresh random inputs:
 * - the KV row encoder == an independent TS encoder written from the format's description (codes and
 *   fp16 {scale, offset} bit for bit), per group and per channel, symmetric and asymmetric, 2/4/8 bits,
 *   odd row counts, one row, groups of 2 … the whole row; decoding == s·code + z;
 * - the attention primitives on codes (Σ q·code per group; y += w·code) fast == reference;
 * - activation fake quantization fast == reference == TS (per row and with a static scale);
 * - rotations: Q is orthogonal (QQᵀ = I to 1e-6) for powers of two, Hadamard-constructible sizes
 *   (12, 20, 28, 44, 80, 96, 172 = Goethals–Seidel, 5632 and 11008 as m·2^k) and the rest (43, 6:
 *   a random orthogonal factor), and
 *   the fast transform == the explicit matrix.
 */
import { strict as assert } from 'node:assert';
import { f16BitsToF32, f32ToF16Bits } from '../../lib/formats/dtype';
import { actFakeQuant, kvAxpyGroups, kvDequantize, kvDotGroups, kvQuantize, rotateRows, rotationInfo } from '../../lib/ops/rtquant';
import { testSeed, withSeed, type Rng } from '../helpers/rng';
import { runnableIsas } from '../helpers/isa';
import { addon } from '../../lib/native';
import { must } from '../helpers/assert';
import { encodeGroup } from '../helpers/kv-sim';

const f16bits = (x: number): number => f32ToF16Bits(x, 'x', { saturate: true });
const halfEven = (v: number): number => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));

/** The encoder of one group, from the format description (test/helpers/kv-sim.ts), with its fp16 bits. */
function tsGroup(vals: number[], bits: number, sym: boolean): { codes: number[]; s: number; z: number; hs: number; hz: number } {
  const e = encodeGroup(vals, bits, sym);
  return { ...e, hs: f16bits(e.s), hz: f16bits(e.z) };
}

function codeAt(codes: Uint8Array, rowBytes: number, r: number, i: number, bits: number): number {
  const bit = i * bits;
  return (codes[r * rowBytes + (bit >> 3)] >> (bit & 7)) & ((1 << bits) - 1);
}

function kvData(rng: Rng, rows: number, n: number): Float32Array {
  // K-like: a few channels carry large values (the outliers per-channel K is for)
  const out = new Set<number>();
  for (let i = 0; i < Math.max(1, n >> 4); i++) out.add(rng.int(0, n - 1));
  return Float32Array.from({ length: rows * n }, (_, j) => rng.normal() * (out.has(j % n) ? 8 : 1));
}

describe('run-time quantizers (kernels/rtquant.h)', () => {
  it('KV rows: the encoder equals a TS encoder from the format description, per group, bit for bit', async () => {
    for (const bits of [2, 4, 8] as const) {
      for (const [rows, n, g] of [[1, 8, 8], [5, 64, 32], [3, 128, 64], [7, 96, 4], [2, 16, 2], [1, 256, 256]]) {
        if ((g * bits) % 8) continue;
        for (const sym of [false, true]) {
          await withSeed(testSeed(bits * 1000 + rows * 10 + n + g + (sym ? 1 : 0)), (rng) => {
            const x = kvData(rng, rows, n);
            if (rows > 2) x.fill(0, n, n + g);  // an all-zero group: scale 0
            const { codes, sz } = kvQuantize(x, { rows, n, bits, group: g, sym });
            const rb = (n * bits) / 8, G = n / g;
            assert.equal(codes.length, rows * rb);
            const dec = kvDequantize(codes, sz, { rows, n, bits, group: g, sym });
            for (let r = 0; r < rows; r++) for (let j = 0; j < G; j++) {
              const t = tsGroup(Array.from(x.subarray(r * n + j * g, r * n + (j + 1) * g)), bits, sym);
              assert.equal(sz[(r * G + j) * 2], t.hs, `scale r${r} g${j}`);
              assert.equal(sz[(r * G + j) * 2 + 1], t.hz, `offset r${r} g${j}`);
              for (let i = 0; i < g; i++) {
                const c = codeAt(codes, rb, r, j * g + i, bits);
                assert.equal(c, t.codes[i], `code r${r} i${j * g + i} (${bits} bits, ${sym ? 'sym' : 'asym'})`);
                assert.equal(dec[r * n + j * g + i], Math.fround(Math.fround(t.s * c) + t.z));
              }
            }
          });
        }
      }
    }
  });

  it('KV per channel (KIVI keys): one {s, z} per channel over the block, codes per token row', async () => {
    for (const bits of [2, 4, 8] as const) {
      for (const [T, n] of [[32, 64], [1, 8], [17, 24]]) {
        for (const sym of [false, true]) {
          await withSeed(testSeed(T * 3 + n + bits + (sym ? 7 : 0)), (rng) => {
            const x = kvData(rng, T, n);
            const { codes, sz } = kvQuantize(x, { rows: T, n, bits, group: 1, sym, channel: true });
            assert.equal(sz.length, n * 2);
            const rb = (n * bits) / 8;
            for (let c = 0; c < n; c++) {
              const t = tsGroup(Array.from({ length: T }, (_, r) => x[r * n + c]), bits, sym);
              assert.equal(sz[c * 2], t.hs);
              assert.equal(sz[c * 2 + 1], t.hz);
              for (let r = 0; r < T; r++) assert.equal(codeAt(codes, rb, r, c, bits), t.codes[r], `channel ${c} token ${r}`);
            }
            // reconstruction error is bounded by half a step per channel
            const dec = kvDequantize(codes, sz, { rows: T, n, bits, group: 1, sym, channel: true });
            for (let c = 0; c < n; c++) {
              const s = f16BitsToF32(sz[c * 2]);
              for (let r = 0; r < T; r++) assert.ok(Math.abs(dec[r * n + c] - x[r * n + c]) <= s * 0.5 + 1e-3 * Math.abs(x[r * n + c]) + 1e-6, `channel ${c} token ${r}`);
            }
          });
        }
      }
    }
  });

  it('attention primitives on codes: fast == reference on every runnable ISA', async () => {
    const orig = addon().info().isa;
    try {
      for (const isa of runnableIsas()) {
        addon().setIsa(isa);
        for (const bits of [2, 4, 8] as const) {
          for (const [n, g] of [[8, 8], [64, 32], [128, 128], [96, 4], [512, 64], [40, 8]]) {
            if ((g * bits) % 8) continue;
            await withSeed(testSeed(n + g + bits), (rng) => {
              const x = kvData(rng, 1, n);
              const { codes } = kvQuantize(x, { rows: 1, n, bits, group: g });
              const q = Float32Array.from({ length: n }, () => rng.normal());
              const a = kvDotGroups(q, codes, { n, bits, group: g }, 'fast'), b = kvDotGroups(q, codes, { n, bits, group: g }, 'ref');
              for (let j = 0; j < n / g; j++) {
                let mag = 0;
                for (let i = j * g; i < (j + 1) * g; i++) mag += Math.abs(q[i]) * (2 ** bits);
                assert.ok(Math.abs(a[j] - b[j]) <= 1e-6 * mag + 1e-6, `${isa} dot ${bits}b n${n} g${g} group ${j}: ${a[j]} vs ${b[j]}`);
              }
              const w = Float32Array.from({ length: n / g }, () => rng.normal());
              const y0 = Float32Array.from({ length: n }, () => rng.normal());
              const y1 = y0.slice(), y2 = y0.slice();
              kvAxpyGroups(w, codes, y1, { n, bits, group: g }, 'fast');
              kvAxpyGroups(w, codes, y2, { n, bits, group: g }, 'ref');
              for (let i = 0; i < n; i++) assert.ok(Math.abs(y1[i] - y2[i]) <= 1e-6 * (Math.abs(y2[i]) + 2 ** bits), `${isa} axpy ${i}`);
            });
          }
        }
      }
    } finally {
      addon().setIsa(orig);
    }
  });

  it('activation fake quantization: fast == reference == TS, per token and static', async () => {
    for (const bits of [8, 4, 3]) {
      for (const [rows, n] of [[1, 7], [5, 64], [3, 172]]) {
        for (const stat of [false, true]) {
          await withSeed(testSeed(bits + rows + n + (stat ? 5 : 0)), (rng) => {
            const x = Float32Array.from({ length: rows * n }, () => rng.normal() * (rng.next() < 0.02 ? 30 : 1));
            const scale = stat ? 0.05 : undefined;
            const a = x.slice(), b = x.slice();
            actFakeQuant(a, rows, n, bits, scale, 'fast');
            actFakeQuant(b, rows, n, bits, scale, 'ref');
            assert.deepEqual(a, b);
            const qmax = 2 ** (bits - 1) - 1;
            for (let r = 0; r < rows; r++) {
              let amax = 0;
              for (let i = 0; i < n; i++) amax = Math.max(amax, Math.abs(x[r * n + i]));
              const s = scale !== undefined ? Math.fround(scale) : Math.fround(amax / qmax);
              for (let i = 0; i < n; i++) {
                const c = Math.min(Math.max(halfEven(Math.fround(x[r * n + i] / s)), -qmax), qmax);
                assert.equal(a[r * n + i], Math.fround(c * s), `row ${r} value ${i}`);
              }
            }
          });
        }
      }
    }
  });

  it('rotations are orthogonal, Hadamard where constructible, and the fast transform equals the matrix', async () => {
    const cases: [number, boolean][] = [[8, true], [64, true], [12, true], [20, true], [44, true], [80, true], [96, true], [28, true], [172, true], [43, false], [1, true], [6, false]];
    for (const [n, hadamard] of cases) {
      await withSeed(testSeed(n), async (rng) => {
        const seed = rng.int(1, 1e6);
        const info = rotationInfo(n, seed, true);
        assert.equal(info.m * info.p, n);
        assert.equal(info.hadamard, hadamard, `n ${n}: m ${info.m}`);
        const M = must(info.matrix, 'matrix');
        for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) {
          let d = 0;
          for (let k = 0; k < n; k++) d += M[a * n + k] * M[b * n + k];
          assert.ok(Math.abs(d - (a === b ? 1 : 0)) < 1e-6, `n ${n}: (QQᵀ)[${a}][${b}] = ${d}`);
        }
        if (hadamard && n > 1) for (const v of M) assert.ok(Math.abs(Math.abs(v) * Math.sqrt(n) - 1) < 1e-6, `n ${n}: entries ±1/√n`);
        const rows = rng.int(1, 5);
        const x = Float32Array.from({ length: rows * n }, () => rng.normal());
        const fast = x.slice(), ref = x.slice();
        await rotateRows(fast, rows, n, seed, { mode: 'fast' });
        await rotateRows(ref, rows, n, seed, { mode: 'ref' });
        for (let r = 0; r < rows; r++) for (let a = 0; a < n; a++) {
          let y = 0;
          for (let b = 0; b < n; b++) y += M[a * n + b] * x[r * n + b];
          assert.ok(Math.abs(fast[r * n + a] - y) < 1e-5 * Math.sqrt(n), `n ${n} fast [${r}][${a}]: ${fast[r * n + a]} vs ${y}`);
          assert.ok(Math.abs(ref[r * n + a] - y) < 1e-6, `n ${n} ref [${r}][${a}]`);
        }
      });
    }
    // the LLM sizes build (11008 = 2^8·43, 5632 = 2^7·44, 5120 = 2^8·20, 4096) and keep norms
    for (const n of [4096, 5120, 5632, 11008]) {
      const info = rotationInfo(n, 3);
      assert.equal(info.m * info.p, n);
      assert.ok(info.hadamard, `n ${n}: m ${info.m} is a Hadamard factor`);
      const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) + (i === 5 ? 40 : 0));
      const y = x.slice();
      await rotateRows(y, 1, n, 3);
      let nx = 0, ny = 0, my = 0;
      for (let i = 0; i < n; i++) { nx += x[i] * x[i]; ny += y[i] * y[i]; my = Math.max(my, Math.abs(y[i])); }
      assert.ok(Math.abs(nx - ny) / nx < 1e-5, `n ${n}: norm kept`);
      assert.ok(my < 40 / 4, `n ${n}: the outlier is spread (max ${my})`);
    }
  });
});
