/**
 * The integer-dot path (W4A8 / W8A8, native/kernels/qdot.h), on fresh random inputs:
 * - the activation quantizer: every runnable ISA variant == the native reference == an independent
 *   TS implementation, bit for bit (codes, scales, code sums), with and without a permutation;
 * - the product: the native reference == a TS double evaluation of the same integer arithmetic
 *   (relative 1e-6 of Σ|terms|: the reference only rounds its double sum to f32); every runnable
 *   fast variant within (B + 4)·2⁻²³·Σ|terms| of the reference, where the terms are the per-block
 *   products sx·(d·Σq·xq + m·Σxq) and B the number of blocks — each term is exact in int32 and
 *   carries at most three float roundings, and each lane sums at most B of them before the
 *   horizontal sum;
 * - the whole path against f32 math: relative error of a W4A8 product ≤ 2% on normal data (int8
 *   activations per block cost ≈ 0.6%; a wrong permutation or scale costs ~100%);
 * - repacking: GPTQ (2/3/4/8 bits, groups 32…256 and per channel, sym/asym, act-order) and ggml
 *   (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K) sources decode to exactly the checkpoint's weights.
 * Shapes: 1 row, odd output counts (not multiples of the 8-column tile: padded columns), token
 * counts that are not multiples of the 4-token tile, 32 input channels (one block), LLM shapes.
 */
import { strict as assert } from 'node:assert';
import { addon } from '../../lib/native';
import { isLowbitError } from '../../lib/errors';
import { packValues } from '../../lib/ops/pack';
import { f16BitsToF32, f32ToF16Bits } from '../../lib/formats/dtype';
import { decodeGgml, encodeQ4_0, encodeQ4_1, encodeQ8_0 } from '../../lib/formats/ggml-blocks';
import { qblockCodeBytes, qblockFromGgml, qblockFromGptq, qblockScale, qblockWeight, qdotLinear, qdotLinearMulti, quantizeActivations, type QBlock } from '../../lib/ops/qdot';
import { testSeed, withSeed, type Rng } from '../helpers/rng';
import { runnableIsas } from '../helpers/isa';
import { must } from '../helpers/assert';

function halfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : r;
}

function tsQuantizeActs(x: Float32Array, rows: number, inF: number, kb: number, perm: Int32Array | null) {
  const B = inF / kb;
  const xq = new Int8Array(rows * inF), sx = new Float32Array(rows * B), sum = new Int32Array(rows * B);
  for (let t = 0; t < rows; t++) for (let b = 0; b < B; b++) {
    const g = (k: number) => x[t * inF + (perm ? perm[k] : k)];
    let amax = 0;
    for (let k = b * kb; k < (b + 1) * kb; k++) amax = Math.max(amax, Math.abs(g(k)));
    const id = amax > 0 ? Math.fround(127 / amax) : 0;
    let s = 0;
    for (let k = b * kb; k < (b + 1) * kb; k++) {
      const q = halfEven(Math.min(127, Math.max(-127, Math.fround(g(k) * id))));
      xq[t * inF + k] = q;
      s += q;
    }
    sx[t * B + b] = Math.fround(amax / 127);
    sum[t * B + b] = s;
  }
  return { xq, sx, sum };
}

function withIsas(fn: (isa: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const orig = addon().info().isa;
    try {
      for (const isa of runnableIsas()) {
        addon().setIsa(isa);
        await fn(isa);
      }
    } finally {
      addon().setIsa(orig);
    }
  };
}

function randomPerm(rng: Rng, n: number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) { const j = rng.int(0, i); [p[i], p[j]] = [p[j], p[i]]; }
  return p;
}

function activations(rng: Rng, rows: number, inF: number): Float32Array {
  const x = Float32Array.from({ length: rows * inF }, () => rng.normal() * (rng.next() < 0.01 ? 20 : 1));
  if (inF >= 64) for (let k = 0; k < 32; k++) x[k] = 0;                     // an all-zero block (kb = 32)
  if (inF >= 128) { x[64] = 127; x[65] = 0.5; x[66] = -1.5; x[67] = 2.5; }   // exact ties after scaling (id = 1)
  return x;
}

/**
 * A random matrix in the kernel layout. `twoLevel`: the GGUF k-quants' scales — fp16 per super-block
 * of 256 channels times an int8 per block (Q4_K: 0…63 scales, offsets from an fp16 × 0…63 min;
 * Q6_K, kb 16: signed scales).
 */
function randomQBlock(rng: Rng, bits: 2 | 3 | 4 | 8, kb: 16 | 32 | 64 | 128 | 256, out: number, inF: number, asym: boolean, perm: boolean, twoLevel = false): QBlock {
  const B = inF / kb, out8 = Math.ceil(out / 8) * 8;
  const scale = () => Math.fround((0.002 + 0.03 * rng.next()) * (rng.next() < 0.5 ? -1 : 1));
  const sbk = twoLevel ? 256 / kb : 1, supers = out8 * (B / sbk);
  const half = () => f32ToF16Bits(Math.fround(0.0005 + 0.004 * rng.next()));
  return {
    bits, kb, inFeatures: inF, outFeatures: out,
    q: Uint8Array.from({ length: qblockCodeBytes(bits, out, inF) }, () => rng.int(0, 255)),
    d: twoLevel ? Uint16Array.from({ length: supers }, half) : Uint16Array.from({ length: out8 * B }, () => f32ToF16Bits(scale())),
    m: asym && !twoLevel ? Float32Array.from({ length: out8 * B }, () => Math.fround(rng.normal() * 0.05)) : null,
    ds: twoLevel ? Int8Array.from({ length: out8 * B }, () => (kb === 16 ? rng.int(-128, 127) : rng.int(0, 63))) : null,
    mh: asym && twoLevel ? Uint16Array.from({ length: supers }, half) : null,
    ms: asym && twoLevel ? Int8Array.from({ length: out8 * B }, () => rng.int(0, 63)) : null,
    sbk,
    zeroFixed: bits === 4 ? 8 : bits === 3 ? 4 : bits === 2 ? 2 : 0,
    perm: perm ? randomPerm(rng, inF) : null,
  };
}

/** The integer code at output n, layout channel k (read from the layout bytes independently of the native code). */
function layoutCode(w: QBlock, n: number, k: number): number {
  const T = Math.floor(n / 8), j = n % 8;
  if (w.bits === 8) return (w.q[(T * (w.inFeatures / 4) + Math.floor(k / 4)) * 32 + j * 4 + (k % 4)] << 24) >> 24;
  if (w.bits === 2) {  // unit of 16 channels: byte i holds channels i, 4+i, 8+i, 12+i in bit pairs 0–1 … 6–7
    const byte2 = w.q[(T * (w.inFeatures / 16) + Math.floor(k / 16)) * 32 + j * 4 + (k % 4)];
    return (byte2 >> (2 * Math.floor((k % 16) / 4))) & 3;
  }
  if (w.bits === 3) {  // 48-byte unit: the 2-bit layout's 32 bytes, then a nibble of high bits per crumb byte
    const base = (T * (w.inFeatures / 16) + Math.floor(k / 16)) * 48, sub = Math.floor((k % 16) / 4), pos = j * 4 + (k % 4);
    const lo = (w.q[base + pos] >> (2 * sub)) & 3;
    const nibble = pos < 16 ? w.q[base + 32 + pos] & 15 : w.q[base + 32 + pos - 16] >> 4;
    return lo | (((nibble >> sub) & 1) << 2);
  }
  const byte = w.q[(T * (w.inFeatures / 8) + Math.floor(k / 8)) * 32 + j * 4 + (k % 4)];
  return k % 8 < 4 ? byte & 15 : byte >> 4;
}

/** Σ over blocks of |sx·d·Σq·xq| + |sx·m·Σxq| and the double value, from the quantized activations. */
function tsProduct(w: QBlock, a: { xq: Int8Array; sx: Float32Array; sum: Int32Array }, t: number, n: number): { y: number; mag: number } {
  const B = w.inFeatures / w.kb;
  let y = 0, mag = 0;
  for (let b = 0; b < B; b++) {
    let dot = 0;
    const si = (Math.floor(n / 8) * B + b) * 8 + (n % 8);
    const { d, m } = qblockScale(w, si);
    for (let k = b * w.kb; k < (b + 1) * w.kb; k++) dot += layoutCode(w, n, k) * a.xq[t * w.inFeatures + k];
    const sx = a.sx[t * B + b], s = a.sum[t * B + b];
    y += sx * (d * dot + m * s);
    mag += Math.abs(sx * d * dot) + Math.abs(sx * m * s);
  }
  return { y, mag };
}

// rows, out, in, kb, bits, asym, perm, two-level scales (the GGUF k-quants; kb 16 only with 8 bits: Q6_K)
const SHAPES: [number, number, number, 16 | 32 | 64 | 128 | 256, 2 | 3 | 4 | 8, boolean, boolean, boolean?][] = [
  // 3-bit (48-byte units: crumbs + high-bit plane)
  [1, 13, 64, 32, 3, false, false], [5, 24, 256, 256, 3, true, false], [3, 9, 128, 64, 3, false, true], [7, 40, 512, 128, 3, true, true],
  [1, 1000, 4096, 128, 3, false, false],
  // 2-bit (units of 16 channels): one row, odd outputs, 4-token tiles and their rest, permuted, every kb
  [1, 13, 64, 32, 2, false, false], [5, 24, 256, 256, 2, true, false], [3, 9, 128, 64, 2, false, true], [7, 40, 512, 128, 2, true, true],
  [1, 1000, 4096, 128, 2, false, false],
  [1, 11, 256, 16, 8, false, false, true], [5, 24, 512, 16, 8, false, false, true], [3, 13, 256, 32, 4, true, false, true], [4, 9, 64, 16, 8, true, true],
  [1, 1, 64, 32, 4, false, false], [1, 7, 64, 64, 4, false, false], [1, 13, 128, 128, 4, true, false], [3, 33, 256, 256, 4, false, false],
  [4, 17, 192, 64, 8, false, false], [5, 9, 320, 32, 8, true, false], [9, 40, 512, 128, 4, false, true], [7, 3, 64, 32, 4, true, false],
  [8, 2, 128, 32, 4, false, true], [6, 5, 256, 128, 8, true, true], [2, 31, 1024, 256, 8, false, false], [1, 1000, 4096, 128, 4, false, false],
  [1, 9, 32, 32, 4, true, false], [3, 15, 96, 32, 8, false, true], [5, 16, 96, 32, 4, false, false], [1, 264, 4096, 32, 8, false, false],
];

describe('integer-dot matmul (W4A8 / W8A8)', function () {
  it('activation quantizer: every ISA == reference == TS, bit for bit', withIsas(async (isa) => {
    for (const [rows, inF, kb, perm] of [[1, 64, 32, false], [3, 192, 64, true], [5, 4096, 128, false], [2, 256, 256, true], [7, 128, 32, true], [3, 48, 16, false], [2, 256, 16, true]] as const) {
      await withSeed(testSeed(rows * 7 + inF + kb), (rng) => {
        const x = activations(rng, rows, inF);
        const p = perm ? randomPerm(rng, inF) : null;
        const ts = tsQuantizeActs(x, rows, inF, kb, p);
        const ref = quantizeActivations(x, rows, inF, kb, p, { mode: 'ref' });
        const fast = quantizeActivations(x, rows, inF, kb, p, { mode: 'fast' });
        for (const [name, a] of [['reference', ref], [isa, fast]] as const) {
          assert.deepEqual(Array.from(a.xq), Array.from(ts.xq), `${name} codes ${rows}×${inF} kb${kb}`);
          assert.deepEqual(Array.from(a.sx), Array.from(ts.sx), `${name} scales`);
          assert.deepEqual(Array.from(a.sum), Array.from(ts.sum), `${name} sums`);
        }
      });
    }
  }));

  for (const [rows, out, inF, kb, bits, asym, perm, f32s] of SHAPES) {
    const name = `${rows}×${inF} · (${out}×${inF})ᵀ W${bits}A8 kb${kb}${asym ? ' asym' : ''}${perm ? ' permuted' : ''}${f32s ? ' f32 scales' : ''}`;
    it(`${name}: reference == TS integer arithmetic; every ISA within the bound`, withIsas(async (isa) => {
      await withSeed(testSeed(rows + out + inF + kb + bits + (f32s ? 1 : 0)), async (rng) => {
        const w = randomQBlock(rng, bits, kb, out, inF, asym, perm, !!f32s);
        const x = activations(rng, rows, inF);
        const a = quantizeActivations(x, rows, inF, kb, w.perm, { mode: 'ref' });
        const ref = await qdotLinear(w, x, rows, undefined, { mode: 'ref' });
        const fast = await qdotLinear(w, x, rows, undefined, { mode: 'fast' });
        const B = inF / kb;
        const check = Math.min(out, 64);  // the TS evaluation is slow: a spread of columns on the big shape
        for (let t = 0; t < rows; t++) for (let j = 0; j < out; j++) {
          const n = out <= 64 ? j : Math.floor((j * 977) % out);
          const { y, mag } = j < check ? tsProduct(w, a, t, n) : { y: NaN, mag: NaN };
          if (j < check && !(Math.abs(ref[t * out + n] - y) <= 1e-6 * mag + 1e-30)) assert.fail(`reference [${t}, ${n}]: ${ref[t * out + n]} vs TS ${y}`);
          if (j < check) {
            const bound = (B + 4) * 2 ** -23 * mag + 1e-30;
            if (!(Math.abs(fast[t * out + n] - ref[t * out + n]) <= bound)) assert.fail(`${isa} [${t}, ${n}]: ${fast[t * out + n]} vs ${ref[t * out + n]} (bound ${bound})`);
          }
        }
      });
    }));
  }

  it('W4A8 and W8A8 products are within 2% of f32 math on normal data (permuted too)', async function () {
    await withSeed(testSeed(11), async (rng) => {
      for (const [bits, kb, perm] of [[4, 128, false], [4, 32, true], [8, 64, true]] as const) {
        const rows = 3, out = 24, inF = 512;
        const w = randomQBlock(rng, bits, kb, out, inF, true, perm);
        const x = Float32Array.from({ length: rows * inF }, () => rng.normal());
        const y = await qdotLinear(w, x, rows);
        let num = 0, den = 0;
        for (let t = 0; t < rows; t++) for (let n = 0; n < out; n++) {
          let s = 0;
          for (let k = 0; k < inF; k++) s += qblockWeight(w, n, k) * x[t * inF + (w.perm ? w.perm[k] : k)];
          num += (y[t * out + n] - s) ** 2;
          den += s * s;
        }
        const rel = Math.sqrt(num / den);
        assert.ok(rel < 0.02, `W${bits}A8 kb${kb}: relative error ${rel}`);
      }
    });
  });

  it('several matrices on one x (q/k/v-style, one region): each output == its own qdotLinear, bit for bit', withIsas(async (isa) => {
    await withSeed(testSeed(12), async (rng) => {
      // odd output counts (tiles split between parts), sym and asym parts (different offset terms), f32 scales
      for (const [bits, kb, rows, outs, perm] of [[4, 32, 1, [37, 8, 13], false], [4, 128, 5, [48, 16, 16], true], [8, 64, 3, [1, 19, 40, 7], false],
        [4, 32, 2, [21, 300], false]] as const) {
        const inF = 256;
        const ws = outs.map((out, i) => randomQBlock(rng, bits, kb, out, inF, i % 2 === 1, false, i === 2));
        if (perm) { const p = randomPerm(rng, inF); for (const w of ws) w.perm = p; }
        const x = activations(rng, rows, inF);
        for (const mode of ['fast', 'ref'] as const) {
          const ys = await qdotLinearMulti(ws, x, rows, { mode });
          for (let i = 0; i < ws.length; i++) {
            const one = await qdotLinear(ws[i], x, rows, undefined, { mode });
            assert.deepEqual(ys[i], one, `${isa} ${mode} ${bits}-bit kb${kb} part ${i} (out ${outs[i]})`);
          }
        }
      }
      // matrices that need different quantizations of x are refused, naming the part
      const a = randomQBlock(rng, 4, 32, 16, 256, false, false), b = randomQBlock(rng, 4, 64, 16, 256, false, false);
      await assert.rejects(qdotLinearMulti([a, b], activations(rng, 1, 256), 1), (e: unknown) => isLowbitError(e) && e.code === 'LOWBIT_INVALID_OPTION' && /matrix 1/.test(e.message));
    });
  }));

  describe('repacking', function () {
    // bits, in, out, group size (-1 per channel), act-order, uniform zeros
    const GPTQ: [number, number, number, number, boolean, boolean][] = [
      [4, 64, 32, 32, false, true], [4, 256, 40, 128, false, false], [4, 512, 64, 128, true, false], [4, 192, 32, -1, false, false],
      [4, 512, 32, 256, false, false], [4, 128, 33, 64, true, true], [8, 256, 32, 64, false, false], [8, 128, 16, 128, true, true],
      [3, 256, 32, 128, false, false], [3, 128, 33, 32, true, false], [3, 192, 9, -1, false, true], [2, 128, 32, 32, true, false], [2, 256, 40, 64, false, true], [2, 192, 17, -1, false, false],
    ];
    for (const [bits, inF, out, gs, act, uniform] of GPTQ) {
      it(`GPTQ ${bits}-bit in ${inF} out ${out} g${gs}${act ? ' act-order' : ''}${uniform ? ' sym' : ''}: the layout decodes to the checkpoint's weights exactly`, async function () {
        await withSeed(testSeed(bits * 100 + inF + out), async (rng) => {
          const G = gs < 0 ? 1 : inF / gs, g = gs < 0 ? inF : gs, maxq = 2 ** bits - 1;
          const codes = Uint8Array.from({ length: out * inF }, () => rng.int(0, maxq));
          const padOut = Math.ceil(out / 32) * 32;
          const padded = new Uint8Array(padOut * inF);
          padded.set(codes);
          const qw = await packValues('gptq-qweight', bits, padded, padOut, inF);
          const rowsW = (inF * bits) / 32;
          const qweight = new Int32Array(rowsW * out);
          for (let r = 0; r < rowsW; r++) for (let n = 0; n < out; n++) qweight[r * out + n] = qw[r * padOut + n];
          const gIdx = Int32Array.from({ length: inF }, (_, k) => Math.floor(k / g));
          if (act) for (let k = inF - 1; k > 0; k--) { const j = rng.int(0, k); [gIdx[k], gIdx[j]] = [gIdx[j], gIdx[k]]; }
          const scales = Float32Array.from({ length: G * out }, () => f16BitsToF32(f32ToF16Bits(Math.fround(0.001 + 0.02 * rng.next()))));
          const z0 = 2 ** (bits - 1);
          const zeros = Uint8Array.from({ length: G * out }, () => (uniform ? z0 : rng.int(0, maxq)));
          const qb = await qblockFromGptq({ bits, inFeatures: inF, outFeatures: out, groups: G, qweight, scales, zeros, gIdx });
          assert.equal(qb.bits, bits);  // every width keeps its own layout (every fast variant has its kernels)
          assert.equal(qb.perm !== null, act && G > 1);  // one group: every order is consecutive
          assert.equal(qb.m === null, uniform);
          for (let n = 0; n < out; n++) for (let kl = 0; kl < inF; kl++) {
            const k = qb.perm ? qb.perm[kl] : kl;
            const want = scales[gIdx[k] * out + n] * (codes[n * inF + k] - zeros[gIdx[k] * out + n]);
            const got = qblockWeight(qb, n, kl);
            if (got !== want) assert.fail(`[${n}, ${k}] (layout ${kl}): ${got} vs ${want}`);
          }
        });
      });
    }

    for (const type of ['Q4_0', 'Q4_1', 'Q8_0'] as const) {
      it(`ggml ${type}: the layout decodes to ggml's own dequantization exactly`, async function () {
        await withSeed(testSeed(type.length * 3 + type.charCodeAt(1)), async (rng) => {
          const out = 9, inF = 192;
          const wf = rng.weights(out, inF);
          const enc = type === 'Q4_0' ? encodeQ4_0(wf) : type === 'Q4_1' ? encodeQ4_1(wf) : encodeQ8_0(wf);
          const dec = decodeGgml(type, enc, out * inF);
          const qb = await qblockFromGgml(type, enc, out, inF);
          for (let n = 0; n < out; n++) for (let k = 0; k < inF; k++) {
            const got = Math.fround(qblockWeight(qb, n, k));
            if (got !== dec[n * inF + k]) assert.fail(`[${n}, ${k}]: ${got} vs ${dec[n * inF + k]}`);
          }
        });
      });
    }

    for (const type of ['Q4_K', 'Q6_K'] as const) {
      it(`ggml ${type} (k-quants, random blocks): the layout decodes to ggml's own dequantization exactly; products within the bound`, withIsas(async (isa) => {
        await withSeed(testSeed(type.charCodeAt(1) * 5 + 1), async (rng) => {
          const out = 11, inF = 512, nb = (out * inF) / 256, bsz = type === 'Q4_K' ? 144 : 210;
          const enc = Uint8Array.from({ length: nb * bsz }, () => rng.int(0, 255));
          const half = () => f32ToF16Bits(Math.fround(0.0005 + 0.004 * rng.next()));
          for (let b = 0; b < nb; b++) {  // valid fp16 super-block scales (random bytes could be NaN/inf)
            const dv = new DataView(enc.buffer, b * bsz);
            if (type === 'Q4_K') { dv.setUint16(0, half(), true); dv.setUint16(2, half(), true); } else dv.setUint16(208, half(), true);
          }
          const dec = decodeGgml(type, enc, out * inF);
          const qb = await qblockFromGgml(type, enc, out, inF);
          // two-level scales: fp16 per super-block of 256 channels, int8 per block — the file's own arrangement
          const out8 = Math.ceil(out / 8) * 8;
          assert.equal(qb.sbk, 256 / qb.kb);
          assert.equal(qb.d.length, out8 * (inF / 256));
          assert.equal(must(qb.ds, 'qb.ds').length, out8 * (inF / qb.kb));
          assert.equal(qb.ms ? qb.ms.length : 0, type === 'Q4_K' ? out8 * (inF / qb.kb) : 0);
          assert.deepEqual([qb.bits, qb.kb], type === 'Q4_K' ? [4, 32] : [8, 16]);
          for (let n = 0; n < out; n++) for (let k = 0; k < inF; k++) {
            const got = Math.fround(qblockWeight(qb, n, k));
            if (got !== dec[n * inF + k]) assert.fail(`[${n}, ${k}]: ${got} vs ${dec[n * inF + k]}`);
          }
          const rows = 3, x = activations(rng, rows, inF);
          const a = quantizeActivations(x, rows, inF, qb.kb, null, { mode: 'ref' });
          const ref = await qdotLinear(qb, x, rows, undefined, { mode: 'ref' }), fast = await qdotLinear(qb, x, rows, undefined, { mode: 'fast' });
          for (let t = 0; t < rows; t++) for (let n = 0; n < out; n++) {
            const { y, mag } = tsProduct(qb, a, t, n);
            if (!(Math.abs(ref[t * out + n] - y) <= 1e-6 * mag + 1e-30)) assert.fail(`reference [${t}, ${n}]: ${ref[t * out + n]} vs TS ${y}`);
            const bound = ((inF / qb.kb) + 4) * 2 ** -23 * mag + 1e-30;
            if (!(Math.abs(fast[t * out + n] - ref[t * out + n]) <= bound)) assert.fail(`${isa} [${t}, ${n}]: ${fast[t * out + n]} vs ${ref[t * out + n]} (bound ${bound})`);
          }
        });
      }));
    }

    it('layers the layout cannot hold are LOWBIT_UNSUPPORTED naming the reason', async function () {
      const code = async (p: Promise<unknown>) => { try { await p; return 'resolved'; } catch (e) { assert.ok(isLowbitError(e), String(e)); return `${e.code}: ${e.message}`; } };
      assert.match(await code(qblockFromGgml('Q4_0', new Uint8Array(36), 1, 48)), /LOWBIT_UNSUPPORTED: .*multiple of 32/);
      assert.match(await code(qblockFromGgml('Q4_K', new Uint8Array(144 * 2), 1, 288)), /LOWBIT_UNSUPPORTED: .*multiple of 256/);
      const w = { bits: 4, inFeatures: 64, outFeatures: 8, groups: 4, qweight: new Int32Array(64), scales: new Float32Array(32), zeros: new Uint8Array(32), gIdx: Int32Array.from({ length: 64 }, (_, k) => k >> 4) };
      assert.match(await code(qblockFromGptq(w)), /LOWBIT_UNSUPPORTED: .*group size must be a multiple of 32/);
      const w2 = { ...w, groups: 2, scales: new Float32Array(16), zeros: new Uint8Array(16), gIdx: Int32Array.from({ length: 64 }, (_, k) => (k < 40 ? 0 : 1)) };
      assert.match(await code(qblockFromGptq(w2)), /LOWBIT_UNSUPPORTED: .*unequal/);
      assert.match(await code(qdotLinear(randomQBlock(new (await import('../helpers/rng')).Rng(1), 4, 32, 2, 64, false, false), new Float32Array(10), 1)), /LOWBIT_SHAPE_MISMATCH/);
    });
  });
});
