/**
 * fp32 <-> fp16 <-> bf16 conversion: every fast variant vs the native reference vs the TypeScript
 * reference (lib/formats/dtype.ts). Exact match required (bits), including NaN, ±inf, ±0,
 * subnormals, the 65504/65519/65520 boundary and odd lengths around the vector widths.
 */
import { strict as assert } from 'node:assert';
import { addon } from '../../lib/native';
import { f16BitsToF32, f32ToF16Bits, f32ToBf16Bits, bf16BitsToF32, firstNonFinite, firstNonFiniteRef } from '../../lib/formats/dtype';
import { testSeed, withSeed } from '../helpers/rng';
import { assertArraysEqual } from '../helpers/assert';
import { runnableIsas } from '../helpers/isa';

const F32 = 0, F16 = 1, BF16 = 2;

function specials(): number[] {
  return [0, -0, 1, -1, 65504, 65519, 65520, -65520, 1e6, -1e9, Infinity, -Infinity, NaN, 5.96e-8, 2.98e-8, 3e-8,
    6.1e-5, 6.09e-5, 1e-40, -1e-42, 1.00390625, 1.01171875, 3.4e38];
}

describe('native conversion', function () {
  const isas = runnableIsas();
  for (const n of [1, 7, 8, 9, 15, 16, 17, 31, 33, 1000, 65537 * 2 + 3]) {
    it(`${n} elements: f32 -> f16/bf16 -> f32, every variant == reference`, async function () {
      await withSeed(testSeed(n), (rng) => {
        const x = new Float32Array(n);
        const sp = specials();
        for (let i = 0; i < n; i++) {
          const u = rng.next();
          x[i] = u < 0.1 ? sp[rng.int(0, sp.length - 1)] : u < 0.2 ? (rng.normal() * 1e-6) : rng.normal() * 10 ** rng.int(-3, 4);
        }
        for (const [dt, toBits] of [[F16, (v: number) => f32ToF16Bits(v, 'x', { saturate: false, })], [BF16, f32ToBf16Bits]] as const) {
          // TS reference (f16 without saturation: overflow values are reported, stored as inf)
          const tsBits = new Uint16Array(n);
          let overflow = 0;
          for (let i = 0; i < n; i++) {
            try { tsBits[i] = toBits(x[i]); } catch { overflow++; tsBits[i] = x[i] > 0 ? 0x7c00 : 0xfc00; }
          }
          for (const mode of [1, 0]) {
            for (const isa of mode === 1 ? ['ref'] : isas) {
              if (isa !== 'ref') addon().setIsa(isa);
              const out = new Uint16Array(n);
              const r = addon().convertSync({ src: x, srcDtype: F32, dst: out, dstDtype: dt, saturate: false, mode });
              assertArraysEqual(out, tsBits, `f32->${dt === F16 ? 'f16' : 'bf16'} ${isa}`);
              if (dt === F16) assert.equal(r.overflow, overflow, `${isa} overflow count`);
              // back to f32
              const back = new Float32Array(n);
              addon().convertSync({ src: out, srcDtype: dt, dst: back, dstDtype: F32, saturate: false, mode });
              const tsBack = new Float32Array(n);
              for (let i = 0; i < n; i++) tsBack[i] = dt === F16 ? f16BitsToF32(out[i]) : bf16BitsToF32(out[i]);
              assertArraysEqual(back, tsBack, `${dt === F16 ? 'f16' : 'bf16'}->f32 ${isa}`);
              // saturating f16
              if (dt === F16) {
                const sat = new Uint16Array(n);
                const rs = addon().convertSync({ src: x, srcDtype: F32, dst: sat, dstDtype: F16, saturate: true, mode });
                assert.equal(rs.overflow, 0);
                for (let i = 0; i < n; i++) {
                  const exp = Number.isFinite(x[i]) || Number.isNaN(x[i]) ? f32ToF16Bits(x[i], 'x', { saturate: true }) : tsBits[i];
                  if (sat[i] !== exp) assert.fail(`${isa} saturate [${i}] x=${x[i]}: ${sat[i].toString(16)} != ${exp.toString(16)}`);
                }
              }
            }
            addon().setIsa(addon().info().isa);
          }
        }
      });
    });
  }

  it('all 65536 fp16 bit patterns round-trip through f32 exactly, in every variant', function () {
    const all = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) all[i] = i;
    for (const isa of isas) {
      addon().setIsa(isa);
      const f = new Float32Array(65536);
      addon().convertSync({ src: all, srcDtype: F16, dst: f, dstDtype: F32, saturate: false, mode: 0 });
      const back = new Uint16Array(65536);
      addon().convertSync({ src: f, srcDtype: F32, dst: back, dstDtype: F16, saturate: false, mode: 0 });
      const fb = new Uint32Array(f.buffer);
      for (let i = 0; i < 65536; i++) {
        const isNan = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
        if (isNan) {
          // every NaN keeps its bits, signaling ones too (vcvtph2ps / fcvtl would quiet them)
          const want = (((i & 0x8000) << 16) | 0x7f800000 | ((i & 0x3ff) << 13)) >>> 0;
          if (fb[i] !== want) assert.fail(`${isa}: NaN 0x${i.toString(16)} -> f32 bits 0x${fb[i].toString(16)}, expected 0x${want.toString(16)}`);
          continue;
        }
        if (back[i] !== i) assert.fail(`${isa}: 0x${i.toString(16)} -> ${f[i]} -> 0x${back[i].toString(16)}`);
        if (!Object.is(f[i], f16BitsToF32(i))) assert.fail(`${isa}: 0x${i.toString(16)} -> ${f[i]}, TS ${f16BitsToF32(i)}`);
      }
    }
    addon().setIsa(addon().info().isa);
  });

  it('the async convert reports overflow with its first index', async function () {
    const x = new Float32Array(100000).fill(1);
    x[70001] = 70000;
    x[90000] = -1e30;
    const out = new Uint16Array(100000);
    const r = await addon().convert({ src: x, srcDtype: F32, dst: out, dstDtype: F16, saturate: false, mode: 0 }).promise;
    assert.equal(r.overflow, 2);
    assert.equal(r.firstOverflow, 70001);
  });

  it('a conversion to the same type is the identity, bit for bit (signaling NaN payloads too), in every variant', function () {
    const f16 = Uint16Array.from([0x7c01, 0xfd55, 0x7e00, 0x3c00, 0x0001, 0x7c00, 0x8000, 0x7dff, 0x1234, 0xfc01, 0x7c02, 0x3555, 0x4000, 0x7c03, 0xffff, 0x7fff, 0x7c04]);
    const f32 = Uint32Array.from([0x7f800001, 0xff812345, 0x7fc00000, 0x3f800000, 0x00000001, 0x7f800000, 0x80000000, 0x7fbfffff, 0x12345678]);
    for (const mode of [1, 0]) {
      for (const isa of mode === 1 ? ['ref'] : runnableIsas()) {
        if (isa !== 'ref') addon().setIsa(isa);
        for (const dt of [F16, BF16]) {
          const out = new Uint16Array(f16.length);
          addon().convertSync({ src: f16, srcDtype: dt, dst: out, dstDtype: dt, saturate: dt === F16, mode });
          assertArraysEqual(out, f16, `${isa} ${dt === F16 ? 'f16' : 'bf16'} -> itself`);
        }
        const out = new Uint32Array(f32.length);
        addon().convertSync({ src: f32, srcDtype: F32, dst: out, dstDtype: F32, saturate: false, mode });
        assertArraysEqual(out, f32, `${isa} f32 -> itself`);
      }
    }
    addon().setIsa(addon().info().isa);
  });

  // firstNonFiniteSync: every variant == the native reference (mode 1) == the TypeScript reference
  // (firstNonFiniteRef), on random finite data with 0, 1 or several NaN/±Inf planted anywhere
  // (first element, inside a vector, at 64-element block edges, in the tail, across the threads'
  // 1 Mi chunks), at byte offsets 0..3 of the buffer, with threads 1 and 2.
  for (const n of [1, 2, 15, 31, 63, 64, 65, 127, 129, 1000, 4099, (1 << 20) + 77, 2 * (1 << 20) + 5]) {
    it(`firstNonFinite over ${n} elements: every variant and thread count == reference`, async function () {
      await withSeed(testSeed(7000 + n), (rng) => {
        for (const [dt, size, name] of [[F32, 4, 'F32'], [F16, 2, 'F16'], [BF16, 2, 'BF16']] as const) {
          const off = rng.int(0, 3);
          const buf = new Uint8Array(n * size + off);
          const view = buf.subarray(off);
          for (let i = 0; i < view.length; i++) view[i] = rng.int(0, 255);
          // clear the top exponent bit of every element (finite), then plant some non-finite ones
          for (let i = 0; i < n; i++) view[i * size + size - 1] &= 0xbf;
          const plants = rng.int(0, 3);
          const where: number[] = [];
          for (let k = 0; k < plants; k++) {
            const edges = [0, 63, 64, n - 1, 1 << 20, rng.int(0, n - 1)].map((e) => Math.min(e, n - 1));
            const at = edges[rng.int(0, edges.length - 1)];
            where.push(at);
            const bits = size === 4 ? [0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001][rng.int(0, 3)] : dt === F16 ? [0x7c00, 0xfc00, 0x7e00, 0x7c01][rng.int(0, 3)] : [0x7f80, 0xff80, 0x7fc0, 0x7f81][rng.int(0, 3)];
            for (let b = 0; b < size; b++) view[at * size + b] = (bits >>> (8 * b)) & 0xff;
          }
          const want = where.length === 0 ? -1 : Math.min(...where);
          assert.equal(firstNonFiniteRef(view, name), want, `${name} TS reference`);
          assert.equal(addon().firstNonFiniteSync({ src: view, dtype: dt, mode: 1 }), want, `${name} native reference`);
          for (const isa of runnableIsas()) {
            addon().setIsa(isa);
            for (const threads of [1, 2]) {
              assert.equal(addon().firstNonFiniteSync({ src: view, dtype: dt, mode: 0, threads }), want, `${name} ${isa} threads ${threads} (planted at ${where.join(', ') || 'none'})`);
            }
          }
          addon().setIsa(addon().info().isa);
          assert.equal(firstNonFinite(view, name), want, `${name} firstNonFinite`);
        }
      });
    });
  }
});
