/**
 * GPTQ / AWQ packing: fast == native reference == the test-side plain decoder (bit-exact), the §9
 * test vectors of docs/formats.md, round trips, and refusal of out-of-range values and of
 * undecodable all-ones v1 zero fields.
 */
import { strict as assert } from 'node:assert';
import { packValues, unpackValues, packGptq, quantizeGptq, type PackLayout } from '../../lib/ops/pack';
import { quantizeTensor } from '../../lib/ops/quantize';
import { setKernelMode } from '../../lib/native';
import { isLowbitError } from '../../lib/errors';
import { PACK_SHAPES } from '../helpers/shapes';
import { testSeed, withSeed } from '../helpers/rng';
import { assertArraysEqual } from '../helpers/assert';

async function both<T>(fn: () => Promise<T>): Promise<[T, T]> {
  setKernelMode('ref');
  try {
    const r = await fn();
    setKernelMode('fast');
    return [await fn(), r];
  } finally {
    setKernelMode('fast');
  }
}

/** Plain bit-stream reader: field j of a run of 32 values starting at word `w0`, stride `stride`. */
function plainField(words: Int32Array, w0: number, stride: number, bits: number, j: number): number {
  let v = 0;
  for (let b = 0; b < bits; b++) {
    const bit = j * bits + b;
    const word = words[w0 + Math.floor(bit / 32) * stride] >>> 0;
    v |= ((word >>> (bit % 32)) & 1) << b;
  }
  return v;
}

describe('native packing', function () {
  it('§9 vectors: GPTQ 4/2/8/3-bit qweight, sym zeros v1/v2, AWQ', async function () {
    // one output column (rows = out = 1 is not a valid GPTQ shape for qzeros, but qweight only needs in % 32)
    const col = (codes: number[]) => Uint8Array.from({ length: 32 }, (_, i) => codes[i % codes.length]);
    const q4 = await packValues('gptq-qweight', 4, col([1, 2, 3, 4, 5, 6, 7, 8]), 1, 32);
    assert.equal(q4[0] >>> 0, 0x87654321);
    const q2 = await packValues('gptq-qweight', 2, col([0, 1, 2, 3]), 1, 32);
    assert.equal(q2[0] >>> 0, 0xe4e4e4e4);
    const q8 = await packValues('gptq-qweight', 8, col([0x11, 0x22, 0x33, 0xf0]), 1, 32);
    assert.equal(q8[0] >>> 0, 0xf0332211);
    const q3 = await packValues('gptq-qweight', 3, Uint8Array.from({ length: 32 }, (_, i) => i % 8), 1, 32);
    assert.deepEqual(Array.from(q3, (x) => x >>> 0), [0x88fac688, 0xc688fac6, 0xfac688fa]);
    const z1 = await packValues('gptq-qzeros', 4, new Uint8Array(32).fill(8), 1, 32, 1);
    assert.equal(z1[0] >>> 0, 0x77777777);
    const z2 = await packValues('gptq-qzeros', 4, new Uint8Array(32).fill(8), 1, 32, 0);
    assert.equal(z2[0] >>> 0, 0x88888888);
    // AWQ: codes 1..8 for output channels 0..7 of one input row: values (out = 8, in = 1)
    const awq = await packValues('awq-qweight', 4, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]), 8, 1);
    assert.equal(awq[0] >>> 0, 0x86427531);
    const awqz = await packValues('awq-qzeros', 4, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]), 1, 8);
    assert.equal(awqz[0] >>> 0, 0x86427531);
  });

  for (const sh of PACK_SHAPES) {
    for (const bits of [2, 3, 4, 8]) {
      for (const layout of ['gptq-qweight', 'gptq-qzeros'] as PackLayout[]) {
        for (const offset of [0, 1]) {
          it(`${layout} ${bits}-bit ${sh.rows}x${sh.cols} offset ${offset}: fast == ref == plain decoder, round trip`, async function () {
            await withSeed(testSeed(sh.rows + bits * 7 + offset), async (rng) => {
              const { rows, cols } = sh;
              const maxv = (1 << bits) - 1 - offset; // v1: never the all-ones field
              const values = Uint8Array.from({ length: rows * cols }, () => offset + rng.int(0, maxv - (offset ? 0 : 0)));
              const [fast, ref] = await both(() => packValues(layout, bits, values, rows, cols, offset));
              assertArraysEqual(fast, ref, 'packed words');
              // plain decode
              for (let t = 0; t < 200; t++) {
                const r = rng.int(0, rows - 1), c = rng.int(0, cols - 1);
                const got = layout === 'gptq-qweight'
                  ? plainField(fast, Math.floor(c / 32) * bits * rows + r, rows, bits, c % 32)
                  : plainField(fast, r * (cols * bits / 32) + Math.floor(c / 32) * bits, 1, bits, c % 32);
                assert.equal(got + offset, values[r * cols + c], `plain decode at (${r}, ${c})`);
              }
              const [u1, u2] = await both(() => unpackValues(layout, bits, fast, rows, cols, offset));
              assertArraysEqual(u1, values, 'unpack fast');
              assertArraysEqual(u2, values, 'unpack ref');
            });
          });
        }
      }
    }
  }

  it('AWQ qweight/qzeros: fast == ref, round trip', async function () {
    await withSeed(testSeed(99), async (rng) => {
      const rows = 64, cols = 96;
      const codes = Uint8Array.from({ length: rows * cols }, () => rng.int(0, 15));
      const [a, b] = await both(() => packValues('awq-qweight', 4, codes, rows, cols));
      assertArraysEqual(a, b, 'awq qweight');
      assertArraysEqual(await unpackValues('awq-qweight', 4, a, rows, cols), codes, 'awq unpack');
      const zeros = Uint8Array.from({ length: 3 * 64 }, () => rng.int(0, 15));
      const [c, d] = await both(() => packValues('awq-qzeros', 4, zeros, 3, 64));
      assertArraysEqual(c, d, 'awq qzeros');
      assertArraysEqual(await unpackValues('awq-qzeros', 4, c, 3, 64), zeros, 'awq zeros unpack');
    });
  });

  it('refuses values outside the field (never corrupts a neighbour) and all-ones v1 fields', async function () {
    const v = new Uint8Array(32 * 32).fill(3);
    v[5 * 32 + 7] = 16;
    for (const mode of ['ref', 'fast'] as const) {
      setKernelMode(mode);
      await assert.rejects(packValues('gptq-qweight', 4, v, 32, 32), (e: unknown) => isLowbitError(e, 'LOWBIT_INVALID_OPTION') && /value 16 at \(5, 7\)/.test((e as Error).message));
      const z = new Uint8Array(32).fill(0);
      await assert.rejects(packValues('gptq-qzeros', 4, z, 1, 32, 1), (e: unknown) => isLowbitError(e, 'LOWBIT_INVALID_OPTION') && /outside \[1, 16\]/.test((e as Error).message));
      const ones = new Int32Array(4).fill(-1);
      await assert.rejects(unpackValues('gptq-qzeros', 4, ones, 1, 32, 1), (e: unknown) => isLowbitError(e, 'LOWBIT_BAD_FORMAT') && /all-ones v1 zero field/.test((e as Error).message));
    }
    setKernelMode('fast');
    await assert.rejects(packValues('gptq-qweight', 4, new Uint8Array(40), 1, 40), (e: unknown) => isLowbitError(e, 'LOWBIT_SHAPE_MISMATCH'));
    await assert.rejects(packValues('awq-qweight', 3, new Uint8Array(64), 8, 8), (e: unknown) => isLowbitError(e, 'LOWBIT_INVALID_OPTION'));
  });
});

describe('fused quantize + GPTQ pack', function () {
  for (const [rows, cols, bits, groupSize, sym] of [[32, 32, 4, 32, true], [64, 4096, 4, 128, false], [96, 96, 3, 32, false], [33 * 32, 256, 2, -1, true], [96, 512, 8, 64, false]] as const) {
    it(`${rows}x${cols} ${bits}-bit g${groupSize} ${sym ? 'sym' : 'asym'}: == quantizeTensor + packGptq, fast and ref`, async function () {
      await withSeed(testSeed(rows + cols + bits), async (rng) => {
        const w = rng.weights(rows, cols);
        for (const format of ['gptq', 'gptq_v2'] as const) {
          const zeroMin = format === 'gptq' && !sym ? 1 : 0;
          for (const mode of ['ref', 'fast'] as const) {
            setKernelMode(mode);
            try {
              const a = await quantizeGptq(w, [rows, cols], { bits, groupSize, sym, format });
              const q = await quantizeTensor(w, [rows, cols], { bits, groupSize, sym, zeroMin });
              const b = await packGptq(q, format);
              assertArraysEqual(a.qweight, b.qweight, `${mode} ${format} qweight`);
              assertArraysEqual(a.qzeros, b.qzeros, `${mode} ${format} qzeros`);
              assertArraysEqual(a.scales, b.scales, `${mode} ${format} scales`);
              assertArraysEqual(a.gIdx, b.gIdx, `${mode} ${format} g_idx`);
              assert.ok(Math.abs(a.stats.mse - q.stats.mse) <= 1e-5 * q.stats.mse);
            } finally {
              setKernelMode('fast');
            }
          }
        }
      });
    });
  }
});
