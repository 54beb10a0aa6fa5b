/**
 * ggml's block encoders in native code (kernels/ggml_encode.h, used by encodeGgml from 4096 values)
 * against the TypeScript reference encoders (formats/ggml-blocks: Q8_0/Q4_0/Q4_1 checked byte for
 * byte against llama.cpp's own files in test/unit; Q4_K follows quantize_row_q4_K_ref): identical bytes on fresh random tensors with the cases that
 * decide rounding — exact .5 ties of x·id, all-zero blocks, a block whose largest magnitude is
 * negative, one nonzero value, subnormal scales — and the same typed errors for a non-finite value
 * or an fp16 scale overflow, which the native path hands back to the reference.
 */
import { strict as assert } from 'node:assert';
import { decodeGgml, encodeGgml, encodeQ4_0, encodeQ4_1, encodeQ4_K, encodeQ8_0 } from '../../lib/formats/ggml-blocks';
import { addon, ggmlEncodeNative, hasAddon } from '../../lib/native';
import { runnableIsas } from '../helpers/isa';
import { isLowbitError } from '../../lib/errors';
import { testSeed, withSeed } from '../helpers/rng';

const REF = { Q8_0: encodeQ8_0, Q4_0: encodeQ4_0, Q4_1: encodeQ4_1, Q4_K: encodeQ4_K } as const;
const TYPES = ['Q8_0', 'Q4_0', 'Q4_1', 'Q4_K'] as const;

describe('native ggml block encoders (Q8_0, Q4_0, Q4_1, Q4_K)', function () {
  before(function () {
    if (!hasAddon()) this.skip();
  });

  for (const type of TYPES) {
    it(`${type}: the same bytes as the reference encoder on fresh random tensors and edge blocks`, async function () {
      await withSeed(testSeed(type.charCodeAt(1) * 7 + type.length), (rng) => {
        for (const blocks of [128, 1000, 4104]) {  // blocks of 32 values; multiples of 8 for Q4_K's 256
          const x = Float32Array.from({ length: blocks * 32 }, () => rng.normal() * (rng.next() < 0.01 ? 30 : 1));
          // edge blocks: all zero; one nonzero; negative extreme; ties (x·id = k + 0.5 for Q8_0's id = 127/amax = 1)
          x.fill(0, 0, 32);
          x.fill(0, 32, 64); x[40] = -3.25;
          for (let j = 64; j < 96; j++) x[j] = j - 80;
          x[96] = 127; for (let j = 97; j < 128; j++) x[j] = (j - 112) + 0.5;
          for (let j = 128; j < 160; j++) x[j] = 1e-6 * (j - 140);  // scales far below fp16's normal range
          x.fill(0.5, 160, 192);  // constant sub-blocks: positive (min clamps to 0) and negative (max == min)
          x.fill(-2, 192, 224);
          const ref = REF[type](x, 't');
          const bb = type === 'Q4_K' ? 144 : ref.length / blocks;
          // every variant this CPU runs (Q4_K's search: scalar C++ under generic, AVX2 lanes otherwise)
          const best = addon().info().isa;
          try {
            for (const isa of runnableIsas()) {
              addon().setIsa(isa);
              const out = encodeGgml(type, x, 't');
              assert.equal(out.length, ref.length);
              const direct = new Uint8Array(ref.length);
              assert.ok(ggmlEncodeNative(type, x, direct), 'the native path ran');
              for (let i = 0; i < ref.length; i++) if (direct[i] !== ref[i] || out[i] !== ref[i]) assert.fail(`${type} [${isa}] blocks ${blocks}: byte ${i} (block ${Math.floor(i / bb)}): native ${direct[i]} vs reference ${ref[i]}`);
            }
          } finally {
            addon().setIsa(best);
          }
        }
      });
    });

    if (type === 'Q4_K') {
      it('Q4_K: decodes closer to the input than Q4_0 and Q4_1 (its fitted scales and mins at 4.5 bits per weight)', async function () {
        await withSeed(testSeed(91), (rng) => {
          const x = Float32Array.from({ length: 256 * 64 }, () => rng.normal());
          const mse = (t: 'Q4_K' | 'Q4_0' | 'Q4_1') => {
            const d = decodeGgml(t, encodeGgml(t, x, 'x'), x.length);
            let s = 0;
            for (let i = 0; i < x.length; i++) s += (d[i] - x[i]) ** 2;
            return s / x.length;
          };
          const k = mse('Q4_K'), q0 = mse('Q4_0'), q1 = mse('Q4_1');
          assert.ok(k < q1 && k < q0 && k > 0, `mse Q4_K ${k}, Q4_0 ${q0}, Q4_1 ${q1}`);
        });
      });
    }

    it(`${type}: a non-finite value or an fp16 scale overflow is the reference's LOWBIT_NUMERICAL, naming the tensor`, function () {
      const x = new Float32Array(8192).fill(0.5);
      x[5000] = NaN;
      assert.throws(() => encodeGgml(type, x, 'blk.3.ffn_up.weight'), (e: unknown) => isLowbitError(e, 'LOWBIT_NUMERICAL') && /blk\.3\.ffn_up\.weight: element 5000 is NaN/.test((e as Error).message));
      const big = new Float32Array(8192).fill(1);
      big[6000] = 3e38;
      assert.throws(() => encodeGgml(type, big, 'blk.0.attn_q.weight'), (e: unknown) => isLowbitError(e, 'LOWBIT_NUMERICAL') && /blk\.0\.attn_q\.weight: block scale/.test((e as Error).message));
    });
  }
});
