/**
 * formats/dtype: the dtype table and the f32 ⇄ fp16/bf16 reference conversions, checked against the
 * docs/formats.md §9 vectors, exhaustively over every fp16 value, and against an independent
 * (double-arithmetic) rounding rule on seeded random f32 patterns.
 */
import { strict as assert } from 'node:assert';
import {
  DTYPES, DTYPE_SIZES, byteLengthOf, bf16BitsToF32, dtypeSize, f16BitsToF32, f16BitsToF32Bits, f32Bits, f32BitsToBf16Bits,
  f32FromBits, f32ToBf16Bits, f32ToF16Bits, fromFloat32, isDtype, numelOf, toFloat32, type Dtype,
} from '../../lib/formats/dtype';
import * as native from '../../lib/native';
import { isCode } from '../helpers/errors';

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex').replace(/(..)(?!$)/g, '$1 ');
}

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

/** Seeded 32-bit LCG (Numerical Recipes constants); returns uint32. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

describe('formats/dtype', () => {
  describe('table', () => {
    it('knows every safetensors dtype of §2.1 with its size', () => {
      const want: Record<string, number> = {
        BOOL: 1, U8: 1, I8: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8, F8_E4M3: 1, F8_E5M2: 1,
      };
      assert.deepEqual({ ...DTYPE_SIZES }, want);
      assert.deepEqual(DTYPES, Object.keys(want));
      for (const d of DTYPES) assert.equal(dtypeSize(d), want[d]);
      assert.ok(isDtype('BF16'));
      assert.ok(!isDtype('bf16'));
      assert.ok(!isDtype('toString'));
      assert.ok(!isDtype(4));
    });

    it('computes element counts and byte lengths, including 0-rank and zero-size shapes', () => {
      assert.equal(numelOf([]), 1);
      assert.equal(numelOf([3, 0, 5]), 0);
      assert.equal(byteLengthOf('BF16', [4, 3]), 24);
      assert.ok(Number.isNaN(byteLengthOf('F64', [2 ** 26, 2 ** 26])));
    });
  });

  describe('fp16', () => {
    it('encodes the §9 vectors', () => {
      const cases: [number, string][] = [
        [1.0, '00 3c'], [0.5, '00 38'], [-2.0, '00 c0'], [0.125, '00 30'], [65504, 'ff 7b'], [65519, 'ff 7b'],
      ];
      for (const [x, want] of cases) {
        const h = f32ToF16Bits(x, 'v');
        assert.equal(hex(new Uint8Array([h & 0xff, h >> 8])), want, `scalar ${x}`);
      }
      assert.equal(hex(fromFloat32(new Float32Array(cases.map((c) => c[0])), 'F16', 'v')), cases.map((c) => c[1]).join(' '));
    });

    it('reports 65520 as LOWBIT_NUMERICAL naming the tensor, and saturates on request', () => {
      assert.throws(() => f32ToF16Bits(65520, 'layer.0.w'), isCode('LOWBIT_NUMERICAL', 'layer.0.w'));
      assert.throws(() => f32ToF16Bits(-1e30, 'x'), isCode('LOWBIT_NUMERICAL', 'x'));
      // A finite double beyond the f32 range is still a finite overflow, not an infinity.
      assert.throws(() => f32ToF16Bits(1e300, 'x'), isCode('LOWBIT_NUMERICAL'));
      assert.equal(f32ToF16Bits(65520, 'x', { saturate: true }), 0x7bff);
      assert.equal(f32ToF16Bits(-70000, 'x', { saturate: true }), 0xfbff);
      const data = new Float32Array([1, 2, 65520, 3]);
      assert.throws(() => fromFloat32(data, 'F16', 'model.embed'), isCode('LOWBIT_NUMERICAL', 'model.embed: element 2 value 65520'));
      assert.equal(hex(fromFloat32(data, 'F16', 'model.embed', { saturate: true })), '00 3c 00 40 ff 7b 00 42');
    });

    it('keeps infinities and makes NaN quiet without an error', () => {
      assert.equal(f32ToF16Bits(Infinity), 0x7c00);
      assert.equal(f32ToF16Bits(-Infinity), 0xfc00);
      assert.equal(f32ToF16Bits(NaN) & 0x7e00, 0x7e00);
      const sNaN = new Float32Array(new Uint32Array([0x7f800001]).buffer); // signalling NaN
      const h = new Uint16Array(fromFloat32(sNaN, 'F16', 's').buffer)[0];
      assert.equal(h & 0x7e00, 0x7e00, `0x${h.toString(16)} is not a quiet NaN`);
    });

    it('decodes specials, subnormals and signed zero', () => {
      assert.equal(f16BitsToF32(0x3c00), 1);
      assert.equal(f16BitsToF32(0x0001), 2 ** -24);
      assert.equal(f16BitsToF32(0x03ff), 1023 * 2 ** -24);
      assert.equal(f16BitsToF32(0x0400), 2 ** -14);
      assert.equal(f16BitsToF32(0x7bff), 65504);
      assert.equal(f16BitsToF32(0x7c00), Infinity);
      assert.equal(f16BitsToF32(0xfc00), -Infinity);
      assert.ok(Number.isNaN(f16BitsToF32(0x7e00)));
      assert.ok(Object.is(f16BitsToF32(0x8000), -0));
      assert.equal(f16BitsToF32Bits(0x7e01), 0x7fc02000); // payload kept
    });

    it('round-trips every fp16 value exactly', () => {
      for (let h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue; // NaN
        const x = f16BitsToF32(h);
        assert.equal(f32ToF16Bits(x), h, `0x${h.toString(16)} (${x})`);
      }
    });

    it('rounds every midpoint between neighbouring fp16 values to even, and just past it away', () => {
      for (let h = 0; h < 0x7bff; h++) {
        const lo = f16BitsToF32(h);
        const hi = f16BitsToF32(h + 1);
        const mid = (lo + hi) / 2; // exact in f32: it needs one more mantissa bit than fp16 has
        assert.equal(Math.fround(mid), mid);
        const even = (h & 1) === 0 ? h : h + 1;
        assert.equal(f32ToF16Bits(mid), even, `midpoint of 0x${h.toString(16)}`);
        assert.equal(f32ToF16Bits(-mid), even | 0x8000, `negative midpoint of 0x${h.toString(16)}`);
        const above = f32FromBits(f32Bits(mid) + 1);
        const below = f32FromBits(f32Bits(mid) - 1);
        assert.equal(f32ToF16Bits(above), h + 1, `above midpoint of 0x${h.toString(16)}`);
        assert.equal(f32ToF16Bits(below), h, `below midpoint of 0x${h.toString(16)}`);
      }
      // Between 65504 and the overflow threshold everything rounds down to 65504.
      assert.equal(f32ToF16Bits(f32FromBits(0x477ff000 - 1)), 0x7bff);
      // Below half the smallest subnormal: zero, with the sign kept.
      assert.equal(f32ToF16Bits(2 ** -26), 0);
      assert.equal(f32ToF16Bits(-(2 ** -26)), 0x8000);
    });
  });

  describe('bf16', () => {
    it('encodes the §9 tie vectors', () => {
      assert.equal(f32BitsToBf16Bits(0x3f808000), 0x3f80);
      assert.equal(f32BitsToBf16Bits(0x3f818000), 0x3f82);
      assert.equal(f32BitsToBf16Bits(0x3f800001), 0x3f80);
      assert.equal(f32ToBf16Bits(1.00390625), 0x3f80);
      const bytes = fromFloat32(new Float32Array(new Uint32Array([0x3f808000, 0x3f818000, 0x3f800001]).buffer), 'BF16', 't');
      assert.equal(hex(bytes), '80 3f 82 3f 80 3f');
    });

    it('forces NaN quiet and keeps the sign and infinities', () => {
      assert.equal(f32BitsToBf16Bits(0x7f800001), 0x7fc0);
      assert.equal(f32BitsToBf16Bits(0xff800001), 0xffc0);
      assert.equal(f32BitsToBf16Bits(0x7f800000), 0x7f80);
      assert.equal(f32BitsToBf16Bits(0xff800000), 0xff80);
      assert.equal(f32BitsToBf16Bits(0x7f7fffff), 0x7f80); // overflow to inf, as torch does
      assert.equal(bf16BitsToF32(0x3f80), 1);
      assert.equal(bf16BitsToF32(0xc040), -3);
    });

    it('matches nearest-even rounding computed in doubles on random f32 patterns (seed 12345)', () => {
      const seed = 12345;
      const next = lcg(seed);
      for (let i = 0; i < 20000; i++) {
        const u = next();
        if ((u & 0x7fffffff) >= 0x7f7f8000) continue; // NaN/inf/overflow handled above
        const x = f32FromBits(u);
        const lo = f32FromBits((u & 0xffff0000) >>> 0);
        const hi = f32FromBits(((u & 0xffff0000) + 0x10000) >>> 0);
        const dLo = Math.abs(x - lo);
        const dHi = Math.abs(hi - x);
        const loBits = u >>> 16;
        const want = dLo < dHi ? loBits : dHi < dLo ? loBits + 1 : (loBits & 1) === 0 ? loBits : loBits + 1;
        assert.equal(f32BitsToBf16Bits(u), want & 0xffff, `seed ${seed} i ${i} u 0x${u.toString(16)}`);
      }
    });
  });

  describe('toFloat32 / fromFloat32', () => {
    it('decodes every numeric dtype by value', () => {
      const cases: [Dtype, ArrayBufferView, number[]][] = [
        ['BOOL', new Uint8Array([0, 1, 2]), [0, 1, 1]],
        ['U8', new Uint8Array([0, 7, 255]), [0, 7, 255]],
        ['I8', new Int8Array([-128, -1, 127]), [-128, -1, 127]],
        ['I16', new Int16Array([-32768, 5, 32767]), [-32768, 5, 32767]],
        ['U16', new Uint16Array([0, 5, 65535]), [0, 5, 65535]],
        ['F16', new Uint16Array([0x3c00, 0xc000, 0x3800]), [1, -2, 0.5]],
        ['BF16', new Uint16Array([0x3f80, 0xc040, 0x3f00]), [1, -3, 0.5]],
        ['I32', new Int32Array([-7, 0, 1 << 20]), [-7, 0, 1 << 20]],
        ['U32', new Uint32Array([0, 3, 0xffffffff]), [0, 3, 4294967296]],
        ['F32', new Float32Array([1.5, -0.25, 3]), [1.5, -0.25, 3]],
        ['F64', new Float64Array([0.1, -2, 1e40]), [Math.fround(0.1), -2, Infinity]],
        ['I64', new BigInt64Array([-5n, 0n, 1n << 40n]), [-5, 0, 2 ** 40]],
        ['U64', new BigUint64Array([0n, 9n, 1n << 63n]), [0, 9, 2 ** 63]],
      ];
      for (const [dtype, arr, want] of cases) {
        const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
        assert.deepEqual([...toFloat32(bytes, dtype)], want, dtype);
        // The same bytes at an odd byteOffset (unaligned for every multi-byte dtype).
        const shifted = new Uint8Array(bytes.byteLength + 1);
        shifted.set(bytes, 1);
        const view = shifted.subarray(1);
        assert.equal(view.byteOffset, 1);
        assert.deepEqual([...toFloat32(view, dtype)], want, `${dtype} unaligned`);
      }
    });

    it('fills a caller-provided output and checks its length', () => {
      const out = new Float32Array(2);
      assert.equal(toFloat32(f32Bytes([4, 5]), 'F32', out), out);
      assert.deepEqual([...out], [4, 5]);
      assert.throws(() => toFloat32(f32Bytes([4, 5]), 'F32', new Float32Array(3)), isCode('LOWBIT_INVALID_OPTION', 'out'));
      assert.throws(() => toFloat32(new Uint8Array(3), 'F16'), isCode('LOWBIT_INVALID_OPTION', 'bytes'));
      assert.throws(() => toFloat32(new Uint8Array(3), 'X' as Dtype), isCode('LOWBIT_INVALID_OPTION', 'dtype'));
      assert.equal(toFloat32(new Uint8Array(0), 'BF16').length, 0);
    });

    it('uses the native converter when it answers, and the reference loops when it throws', () => {
      const mod = native as unknown as { convertToF32Sync: typeof native.convertToF32Sync };
      const real = native.convertToF32Sync;
      const bytes = new Uint8Array(new Uint16Array([0x3c00, 0x4000]).buffer);
      try {
        const seen: string[] = [];
        mod.convertToF32Sync = (src, dtype, dst) => {
          seen.push(dtype);
          dst.fill(42);
          return true;
        };
        assert.deepEqual([...toFloat32(bytes, 'F16')], [42, 42]);
        assert.deepEqual([...toFloat32(bytes, 'I16')], [0x3c00, 0x4000]); // integers never go native
        assert.deepEqual(seen, ['F16']);
        mod.convertToF32Sync = () => { throw new Error('addon broken'); };
        assert.deepEqual([...toFloat32(bytes, 'F16')], [1, 2]);
        mod.convertToF32Sync = () => false;
        assert.deepEqual([...toFloat32(bytes, 'BF16')], [bf16BitsToF32(0x3c00), bf16BitsToF32(0x4000)]);
      } finally {
        mod.convertToF32Sync = real;
      }
    });

    it('reads fp8 only as bytes', () => {
      assert.throws(() => toFloat32(new Uint8Array([1]), 'F8_E4M3'), isCode('LOWBIT_UNSUPPORTED', 'F8_E4M3'));
    });

    it('round-trips f32 through F32, F16 and BF16 encodings', () => {
      const f = new Float32Array([0, -0, 1, -1.5, 0.125, 65504, 2 ** -24, -(2 ** -14), 3.140625]);
      for (const dtype of ['F32', 'F16', 'BF16'] as const) {
        const back = toFloat32(fromFloat32(f, dtype, 't'), dtype);
        for (let i = 0; i < f.length; i++) {
          const want = dtype === 'BF16' ? f32FromBits(f32BitsToBf16Bits(f32Bits(f[i])) << 16) : f[i];
          assert.ok(Object.is(back[i], want), `${dtype}[${i}]: ${back[i]} vs ${want}`);
        }
      }
      // F32 is a copy, not a view, and honours a sub-array.
      const sub = new Float32Array([9, 1, 2]).subarray(1);
      const enc = fromFloat32(sub, 'F32', 's');
      assert.equal(hex(enc), '00 00 80 3f 00 00 00 40');
      assert.throws(() => fromFloat32(sub, 'I8' as 'F32', 's'), isCode('LOWBIT_INVALID_OPTION', 'dtype'));
    });
  });
});
