/**
 * formats/ggml-blocks: every ggml vector of docs/formats.md §9, hand-checked rounding rules of §7,
 * the encoders against an independent f32 emulation of llama.cpp's `quantize_row_*_ref`, seeded
 * encode → decode round trips with the error bounded by the block's step, and the Q4_K / Q6_K
 * decoders against §7.4 / §7.5's formulas on seeded random blocks.
 */
import { strict as assert } from 'node:assert';
import {
  encodeQ8_0, encodeQ4_0, encodeQ4_1, decodeQ8_0, decodeQ4_0, decodeQ4_1, decodeQ4_K, decodeQ6_K,
  q4kScaleMin, packQ4kScales, encodeGgml, decodeGgml, ggmlByteLength,
} from '../../lib/formats/ggml-blocks';
import { GGML_TYPES } from '../../lib/formats/gguf';
import { f16BitsToF32, f32ToF16Bits } from '../../lib/formats/dtype';
import { Rng, withSeed } from '../helpers/rng';
import { isCode } from '../helpers/errors';

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
const fromHex = (s: string) => Uint8Array.from(s.split(/\s+/).filter(Boolean).map((h) => parseInt(h, 16)));
const f32FromBits = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0];

/** §9's input: x[i] = (i − 16)/16. */
const ramp = () => Float32Array.from({ length: 32 }, (_, i) => (i - 16) / 16);

// ---- an independent emulation of the reference encoders: f32 through a Float32Array slot ----
const slot = new Float32Array(1);
const f = (v: number): number => { slot[0] = v; return slot[0]; };
const c99roundf = (v: number) => Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
const int8Cast = (v: number) => (v < 0 ? Math.ceil(v) : Math.floor(v));
const putH = (o: Uint8Array, at: number, v: number) => { const h = f32ToF16Bits(v, 't', { saturate: false }); o[at] = h & 255; o[at + 1] = h >> 8; };

function refQ8_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 34);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
    const d = f(amax / 127);
    const id = d ? f(1 / d) : 0;
    putH(out, b * 34, d);
    for (let j = 0; j < 32; j++) out[b * 34 + 2 + j] = c99roundf(f(x[b * 32 + j] * id)) & 255;
  }
  return out;
}
function refQ4_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 18);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) { const v = x[b * 32 + j]; if (amax < Math.abs(v)) { amax = Math.abs(v); max = v; } }
    const d = f(max / -8);
    const id = d ? f(1 / d) : 0;
    putH(out, b * 18, d);
    for (let j = 0; j < 16; j++) {
      const a = Math.min(15, int8Cast(f(f(x[b * 32 + j] * id) + 8.5)));
      const c = Math.min(15, int8Cast(f(f(x[b * 32 + 16 + j] * id) + 8.5)));
      out[b * 18 + 2 + j] = a | (c << 4);
    }
  }
  return out;
}
function refQ4_1(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 20);
  for (let b = 0; b < x.length / 32; b++) {
    let min = Number.MAX_VALUE, max = -Number.MAX_VALUE;
    for (let j = 0; j < 32; j++) { const v = x[b * 32 + j]; if (v < min) min = v; if (v > max) max = v; }
    const d = f(f(max - min) / 15);
    const id = d ? f(1 / d) : 0;
    putH(out, b * 20, d);
    putH(out, b * 20 + 2, min);
    for (let j = 0; j < 16; j++) {
      const a = Math.min(15, int8Cast(f(f(f(x[b * 32 + j] - min) * id) + 0.5)));
      const c = Math.min(15, int8Cast(f(f(f(x[b * 32 + 16 + j] - min) * id) + 0.5)));
      out[b * 20 + 4 + j] = a | (c << 4);
    }
  }
  return out;
}

/** Random test data: blocks of different character (normal, outliers, all zero, constant, tiny, one sign, ties). */
function testData(rng: Rng, blocks: number): Float32Array {
  const x = new Float32Array(blocks * 32);
  for (let b = 0; b < blocks; b++) {
    const kind = b % 8;
    const scale = [1, 0.02, 0, 3, 1e-6, 1, 100, 0.5][kind];
    for (let j = 0; j < 32; j++) {
      let v = rng.normal() * scale;
      if (kind === 1 && rng.next() < 0.05) v *= 30; // outliers
      if (kind === 3) v = 1.25; // constant block: Q4_1 d = 0
      if (kind === 5) v = Math.abs(v); // one-signed
      if (kind === 7) v = (rng.int(-8, 8) / 8) * scale; // many exact ties of |max|
      x[b * 32 + j] = v;
    }
  }
  return x;
}

describe('formats/ggml-blocks', () => {
  describe('§9 test vectors', () => {
    it('Q4_0: x = (i − 16)/16 → 00 30 80 91 … f7 f8; element 31 decodes to 0.875', () => {
      const q = encodeQ4_0(ramp());
      assert.equal(hex(q), '00 30 80 91 91 a2 a2 b3 b3 c4 c4 d5 d5 e6 e6 f7 f7 f8');
      assert.equal(f16BitsToF32(q[0] | (q[1] << 8)), 0.125);
      assert.equal(decodeQ4_0(q, 32)[31], 0.875);
    });

    it('Q4_0 all-zero block → 00 80 (d = −0.0) + sixteen 88', () => {
      const q = encodeQ4_0(new Float32Array(32));
      assert.equal(hex(q), `00 80 ${Array(16).fill('88').join(' ')}`);
      const d = decodeQ4_0(q, 32);
      assert.ok(d.every((v) => v === 0));
    });

    it('Q8_0: same input → d bytes 08 20 (1/127), first codes −127, −119, −111, −103', () => {
      const q = encodeQ8_0(ramp());
      assert.equal(hex(q.subarray(0, 2)), '08 20');
      assert.deepEqual(Array.from(new Int8Array(q.buffer, q.byteOffset + 2, 4)), [-127, -119, -111, -103]);
    });

    it('Q8_0 x·id rounding: 0x4039C9C1, 0x3FD9F8CC, 0… → da 25 7f 4b + thirty 00 (x·id = 74.5 → 75)', () => {
      const x = new Float32Array(32);
      x[0] = f32FromBits(0x4039c9c1);
      x[1] = f32FromBits(0x3fd9f8cc);
      const q = encodeQ8_0(x);
      assert.equal(hex(q), `da 25 7f 4b ${Array(30).fill('00').join(' ')}`);
      // the vector discriminates: dividing by d instead gives 74 (4a)
      const d = Math.fround(x[0] / 127);
      assert.equal(Math.round(Math.fround(x[1] / d)), 74);
    });

    it('Q4_K scales: sc = [1,2,3,4,40,50,60,63], m = [5,6,7,8,33,17,48,20] ↔ 81 c2 c3 c4 85 46 c7 48 18 12 0c 4f', () => {
      const bytes = fromHex('81 c2 c3 c4 85 46 c7 48 18 12 0c 4f');
      const sc = [1, 2, 3, 4, 40, 50, 60, 63];
      const m = [5, 6, 7, 8, 33, 17, 48, 20];
      for (let j = 0; j < 8; j++) assert.deepEqual(q4kScaleMin(bytes, j), [sc[j], m[j]], `sub-block ${j}`);
      assert.equal(hex(packQ4kScales(sc, m)), hex(bytes));
      // and through the block decoder: d = dmin = 1, codes c → value sc_j·c − m_j
      const block = new Uint8Array(144);
      block.set([0x00, 0x3c, 0x00, 0x3c], 0);
      block.set(bytes, 4);
      const rng = new Rng(7);
      for (let i = 0; i < 128; i++) block[16 + i] = rng.int(0, 255);
      const v = decodeQ4_K(block, 256);
      for (let c = 0; c < 4; c++) {
        for (let l = 0; l < 32; l++) {
          const q = block[16 + 32 * c + l];
          assert.equal(v[64 * c + l], sc[2 * c] * (q & 15) - m[2 * c]);
          assert.equal(v[64 * c + 32 + l], sc[2 * c + 1] * (q >> 4) - m[2 * c + 1]);
        }
      }
    });

    it('Q6_K: q(0)=45, q(32)=7, q(64)=63, q(96)=0 ↔ ql[0] = 0xFD, ql[32] = 0x07, qh[0] = 0x32', () => {
      // pack by §7.5's bit positions
      const q = new Array<number>(256).fill(32);
      q[0] = 45; q[32] = 7; q[64] = 63; q[96] = 0;
      const block = new Uint8Array(210);
      for (let h = 0; h < 2; h++) {
        for (let l = 0; l < 32; l++) {
          const [a, b, c, d] = [0, 32, 64, 96].map((k) => q[128 * h + l + k]);
          block[64 * h + l] = (a & 15) | ((c & 15) << 4);
          block[64 * h + l + 32] = (b & 15) | ((d & 15) << 4);
          block[128 + 32 * h + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((d >> 4) << 6);
        }
      }
      assert.equal(block[0], 0xfd);
      assert.equal(block[32], 0x07);
      assert.equal(block[128], 0x32);
      block.fill(1, 192, 208); // scales = 1
      block.set([0x00, 0x3c], 208); // d = 1
      const v = decodeQ6_K(block, 256);
      assert.deepEqual([v[0], v[32], v[64], v[96]], [13, -25, 31, -32]);
      for (let i = 0; i < 256; i++) if (![0, 32, 64, 96].includes(i)) assert.equal(v[i], 0, `value ${i}`);
    });
  });

  describe('reference rounding rules (§7)', () => {
    it('Q4_0 truncates (int8_t)(x·inv + 8.5) and clamps at 15; the first of equal magnitudes sets the sign', () => {
      const x = new Float32Array(32);
      x.set([-8, 0.3, 0.5, -0.5, 7.4, 7.6, 8]); // d = −8/−8 = 1, inv = 1
      const q = encodeQ4_0(x);
      const codes = (b: Uint8Array) => Array.from({ length: 32 }, (_, i) => (i < 16 ? b[2 + i] & 15 : b[2 + i - 16] >> 4));
      assert.deepEqual(codes(q).slice(0, 7), [0, 8, 9, 8, 15, 15, 15]); // 0.3 → 8.8 → 8 (not 9); 8 → 16.5 → 15
      assert.equal(f16BitsToF32(q[0] | (q[1] << 8)), 1);
      const y = new Float32Array(32);
      y[3] = 2; y[9] = -2; // ties: the first (+2) wins → d = −0.25
      assert.equal(f16BitsToF32(encodeQ4_0(y)[0] | (encodeQ4_0(y)[1] << 8)), -0.25);
    });

    it('Q8_0 rounds half away from zero (roundf), not half to even', () => {
      const x = new Float32Array(32);
      x.set([127, -2.5, 2.5, 0.5, -0.5, 1.5, -1.5]); // d = 1, id = 1
      const q = encodeQ8_0(x);
      assert.deepEqual(Array.from(new Int8Array(q.buffer, 2, 7)), [127, -3, 3, 1, -1, 2, -2]);
    });

    it('Q4_1 uses the f32 min and round-half-up codes; a constant block has d = 0 and codes 0', () => {
      const x = Float32Array.from({ length: 32 }, (_, i) => (i === 0 ? 0 : i === 1 ? 15 : i === 2 ? 7.5 : i === 3 ? 0.49 : 3));
      const q = encodeQ4_1(x);
      assert.equal(f16BitsToF32(q[0] | (q[1] << 8)), 1);
      assert.equal(f16BitsToF32(q[2] | (q[3] << 8)), 0);
      assert.deepEqual([q[4] & 15, q[5] & 15, q[6] & 15, q[7] & 15], [0, 15, 8, 0]);
      const c = encodeQ4_1(new Float32Array(32).fill(1.25));
      assert.equal(hex(c.subarray(0, 4)), '00 00 00 3d'); // d = 0, m = 1.25
      assert.ok(c.subarray(4).every((b) => b === 0));
      assert.ok(decodeQ4_1(c, 32).every((v) => v === 1.25));
    });
  });

  describe('encoders vs an independent f32 emulation of quantize_row_*_ref', () => {
    for (const [name, enc, ref] of [['Q8_0', encodeQ8_0, refQ8_0], ['Q4_0', encodeQ4_0, refQ4_0], ['Q4_1', encodeQ4_1, refQ4_1]] as const) {
      it(`${name}: identical bytes on seeded data (64 blocks × 3 seeds)`, async () => {
        for (const seed of [1, 2, 3]) {
          await withSeed(seed, (rng) => {
            const x = testData(rng, 64);
            const a = enc(x), b = ref(x);
            for (let i = 0; i < a.length; i++) assert.equal(a[i], b[i], `byte ${i} (block ${Math.floor(i / (a.length / 64))})`);
          });
        }
      });
    }
  });

  describe('encode → decode round trips', () => {
    /** |fp16(d) − d|: half an ulp of binary16, at least 2^-25 in the subnormal range. */
    const dErr = (d: number) => Math.max(Math.abs(d) * 2 ** -11, 2 ** -25);

    it('Q8_0: |x − x̂| ≤ d/2 + 127·δd + 2^-20·amax, d = amax/127 (δd = fp16 rounding of d)', async () => {
      await withSeed(11, (rng) => {
        const x = testData(rng, 256);
        const y = decodeQ8_0(encodeQ8_0(x), x.length);
        for (let b = 0; b < 256; b++) {
          let amax = 0;
          for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
          const d = amax / 127;
          const bound = d / 2 + 127 * dErr(d) + 2 ** -20 * amax;
          for (let j = 0; j < 32; j++) {
            const i = b * 32 + j;
            assert.ok(Math.abs(x[i] - y[i]) <= bound, `element ${i}: x ${x[i]} x̂ ${y[i]} bound ${bound}`);
          }
        }
      });
    });

    it('Q4_0: |x − x̂| ≤ |d|/2 + 8·δd (|d| + 8·δd where code 15 clips), d = max/−8', async () => {
      await withSeed(12, (rng) => {
        const x = testData(rng, 256);
        const y = decodeQ4_0(encodeQ4_0(x), x.length);
        for (let b = 0; b < 256; b++) {
          let amax = 0, max = 0;
          for (let j = 0; j < 32; j++) if (amax < Math.abs(x[b * 32 + j])) { amax = Math.abs(x[b * 32 + j]); max = x[b * 32 + j]; }
          const d = max / -8;
          for (let j = 0; j < 32; j++) {
            const i = b * 32 + j;
            // codes cover d·(−8 … 7): values beyond d·7.5 on the side opposite the max clip to code 15
            const clipped = d !== 0 && x[i] / d > 7.5;
            const bound = (clipped ? Math.abs(d) : Math.abs(d) / 2) + 8 * dErr(d) + 2 ** -20 * amax;
            assert.ok(Math.abs(x[i] - y[i]) <= bound, `element ${i}: x ${x[i]} x̂ ${y[i]} bound ${bound}`);
          }
        }
      });
    });

    it('Q4_1: |x − x̂| ≤ d/2 + 15·δd + δm, d = (max − min)/15', async () => {
      await withSeed(13, (rng) => {
        const x = testData(rng, 256);
        const y = decodeQ4_1(encodeQ4_1(x), x.length);
        for (let b = 0; b < 256; b++) {
          let min = Infinity, max = -Infinity;
          for (let j = 0; j < 32; j++) { min = Math.min(min, x[b * 32 + j]); max = Math.max(max, x[b * 32 + j]); }
          const d = (max - min) / 15;
          const bound = d / 2 + 15 * dErr(d) + dErr(min) + 2 ** -20 * Math.max(Math.abs(min), Math.abs(max));
          for (let j = 0; j < 32; j++) {
            const i = b * 32 + j;
            assert.ok(Math.abs(x[i] - y[i]) <= bound, `element ${i}: x ${x[i]} x̂ ${y[i]} bound ${bound}`);
          }
        }
      });
    });

    it('decoders follow the block formulas exactly (f32 products from the stored fp16 fields)', async () => {
      await withSeed(14, (rng) => {
        const x = testData(rng, 16);
        const n = x.length;
        const h = (b: Uint8Array, o: number) => f16BitsToF32(b[o] | (b[o + 1] << 8));
        const q8 = encodeQ8_0(x), v8 = decodeQ8_0(q8, n);
        const q40 = encodeQ4_0(x), v40 = decodeQ4_0(q40, n);
        const q41 = encodeQ4_1(x), v41 = decodeQ4_1(q41, n);
        for (let i = 0; i < n; i++) {
          const b = Math.floor(i / 32), j = i % 32;
          assert.equal(v8[i], f(h(q8, b * 34) * ((q8[b * 34 + 2 + j] << 24) >> 24)));
          const nib = (q: Uint8Array, o: number) => (j < 16 ? q[o + j] & 15 : q[o + j - 16] >> 4);
          assert.equal(v40[i], f(h(q40, b * 18) * (nib(q40, b * 18 + 2) - 8)));
          assert.equal(v41[i], f(f(h(q41, b * 20) * nib(q41, b * 20 + 4)) + h(q41, b * 20 + 2)));
        }
      });
    });
  });

  describe('K-quant decoders vs §7.4 / §7.5 formulas', () => {
    /** A random finite fp16 of moderate size. */
    const randF16 = (rng: Rng) => f32ToF16Bits((rng.next() - 0.3) * 2 ** rng.int(-12, 2));

    it('Q4_K: value(v) = d·sc_j·code(v) − dmin·m_j (random blocks; |Δ| ≤ 2^-22·(|d·sc·code| + |dmin·m|))', async () => {
      await withSeed(21, (rng) => {
        const nb = 8;
        const bytes = new Uint8Array(nb * 144);
        for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(0, 255);
        for (let b = 0; b < nb; b++) {
          const d = randF16(rng), dm = randF16(rng);
          bytes.set([d & 255, d >> 8, dm & 255, dm >> 8], b * 144);
        }
        const v = decodeQ4_K(bytes, nb * 256);
        for (let b = 0; b < nb; b++) {
          const o = b * 144;
          const d = f16BitsToF32(bytes[o] | (bytes[o + 1] << 8));
          const dmin = f16BitsToF32(bytes[o + 2] | (bytes[o + 3] << 8));
          const s = bytes.subarray(o + 4, o + 16);
          for (let vi = 0; vi < 256; vi++) {
            const j = Math.floor(vi / 32);
            // §7.4 unpacking, written out again here
            const sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
            const m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
            const c = Math.floor(vi / 64), l = vi % 32;
            const qb = bytes[o + 16 + 32 * c + l];
            const code = vi % 64 < 32 ? qb & 15 : qb >> 4;
            const a = d * sc * code, bb = dmin * m;
            const want = a - bb;
            const got = v[b * 256 + vi];
            assert.ok(Math.abs(got - want) <= 2 ** -22 * (Math.abs(a) + Math.abs(bb)), `block ${b} value ${vi}: ${got} vs ${want}`);
          }
        }
      });
    });

    it('Q6_K: value(v) = d·scales[v div 16]·(q(v) − 32) (random blocks; |Δ| ≤ 2^-22·|value|: two f32 roundings)', async () => {
      await withSeed(22, (rng) => {
        const nb = 8;
        const bytes = new Uint8Array(nb * 210);
        for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(0, 255);
        for (let b = 0; b < nb; b++) {
          const d = randF16(rng);
          bytes.set([d & 255, d >> 8], b * 210 + 208);
        }
        const v = decodeQ6_K(bytes, nb * 256);
        for (let b = 0; b < nb; b++) {
          const o = b * 210;
          const d = f16BitsToF32(bytes[o + 208] | (bytes[o + 209] << 8));
          for (let vi = 0; vi < 256; vi++) {
            const h = vi >> 7, r = vi % 128, l = r % 32, k = r >> 5; // k: which of the four values of (h, l)
            const ql = bytes[o + 64 * h + l + (k & 1 ? 32 : 0)];
            const lo = k < 2 ? ql & 15 : ql >> 4;
            const hi = (bytes[o + 128 + 32 * h + l] >> (2 * k)) & 3;
            const q = lo | (hi << 4);
            const sc = (bytes[o + 192 + (vi >> 4)] << 24) >> 24;
            const want = d * sc * (q - 32);
            const got = v[b * 256 + vi];
            assert.ok(Math.abs(got - want) <= 2 ** -22 * Math.abs(want), `block ${b} value ${vi}: ${got} vs ${want}`);
          }
        }
      });
    });
  });

  describe('dispatch and validation', () => {
    it('encodeGgml / decodeGgml cover every type; byte lengths follow GGML_TYPES', () => {
      const x = new Rng(5).weights(2, 64);
      for (const t of ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1'] as const) {
        const b = encodeGgml(t, x, 't');
        assert.equal(b.length, ggmlByteLength(t, x.length));
        assert.equal(b.length, (x.length / GGML_TYPES[t].blockSize) * GGML_TYPES[t].typeSize);
        const y = decodeGgml(t, b, x.length);
        assert.equal(y.length, x.length);
        if (t === 'F32') assert.deepEqual(y, x);
      }
      assert.equal(decodeGgml('Q4_K', new Uint8Array(144), 256).length, 256);
      assert.equal(decodeGgml('Q6_K', new Uint8Array(210), 256).length, 256);
    });

    it('rejects bad lengths, non-finite values and fp16 scale overflow with typed errors', () => {
      assert.throws(() => encodeQ8_0(new Float32Array(33)), isCode('LOWBIT_INVALID_OPTION', 'multiple of the Q8_0 block size 32'));
      assert.throws(() => encodeQ4_0([1, 2] as unknown as Float32Array), isCode('LOWBIT_INVALID_OPTION', 'Float32Array'));
      const bad = new Float32Array(32);
      bad[5] = NaN;
      assert.throws(() => encodeQ4_1(bad, 'w'), isCode('LOWBIT_NUMERICAL', 'w: element 5'));
      const big = new Float32Array(32).fill(-70000);
      assert.throws(() => encodeQ4_1(big, 'w'), isCode('LOWBIT_NUMERICAL', 'w: block scale m'));
      assert.throws(() => decodeQ8_0(new Uint8Array(33), 32), isCode('LOWBIT_SHAPE_MISMATCH', 'need 34 bytes'));
      assert.throws(() => decodeQ4_K(new Uint8Array(144), 32), isCode('LOWBIT_INVALID_OPTION', 'block size 256'));
      assert.throws(() => encodeGgml('Q6_K' as never, new Float32Array(256)), isCode('LOWBIT_INVALID_OPTION', 'type'));
      assert.throws(() => encodeGgml('Q4_K', new Float32Array(32)), isCode('LOWBIT_INVALID_OPTION', 'block size 256'));
      assert.throws(() => packQ4kScales([64, 0, 0, 0, 0, 0, 0, 0], new Array(8).fill(0)), isCode('LOWBIT_INVALID_OPTION', 'sc[0]'));
    });
  });
});
