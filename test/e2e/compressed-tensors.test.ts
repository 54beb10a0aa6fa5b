/**
 * compressed-tensors output (`ct-w4a16`, `ct-w8a8`) on the real stories260K: every quantized module,
 * read back by the plain test decoder (test/helpers/ct-decoder.ts, written from the format's
 * description), equals bit for bit the same quantization stored dequantized; the safetensors
 * header holds exactly the format's tensors with their dtypes and shapes; config.json carries the
 * `quantization_config` vLLM reads; and the combinations the format cannot hold are refused.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readLlama2cModel } from '../../lib/formats/llama2c';
import { writeHfFromLlama2c } from '../../lib/formats/convert';
import { openSafetensors } from '../../lib/formats/safetensors';
import { quantize, type QuantizeResult } from '../../lib/pipeline/quantize';
import { ctQuantizationConfig, ctTensorsFromGptq } from '../../lib/formats/compressed-tensors';
import type { QuantizeConfig } from '../../lib/config/quantize';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { plainDecodeCtInt8, plainDecodeCtPacked, type PlainCtDecoded } from '../helpers/ct-decoder';
import { assertArraysEqual, must } from '../helpers/assert';
import { isCode, rejectsCode } from '../helpers/errors';

/** The parts of config.json read here. */
interface ConfigJson {
  quantization_config: Record<string, unknown> & { ignore: string[] };
}

/** One run: the config (without format) and the compressed-tensors format to write. */
interface Case {
  name: string;
  format: 'ct-w4a16' | 'ct-w8a8';
  config: QuantizeConfig;
  /** What the config's weight arguments must say. */
  bits: number;
  groupSize: number;
  sym: boolean;
  actorder: 'group' | 'weight' | null;
}

const MLP = ['gate_proj', 'up_proj', 'down_proj'];
const ATTN = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];

describe('compressed-tensors checkpoints of stories260K', function () {
  let root: string, hf: string, tok: string, calibFile: string;
  before(async function (this: Mocha.Context) {
    const d = fixturesDir();
    if (!d) {
      console.log(`      ${NO_FIXTURES}`);
      this.skip();
    }
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-ct-'));
    hf = await writeHfFromLlama2c(readLlama2cModel(path.join(d, 'stories260K', 'stories260K.bin')), path.join(root, 'hf'), 'F32');
    tok = path.join(d, 'stories260K', 'tok512.bin');
    calibFile = path.join(d, 'text', 'tinystories-calib.txt');
  });
  after(function () {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  const calib = () => ({ file: calibFile, samples: 8, seqLen: 128, seed: 1, tokenizer: tok });
  let runs = 0;
  const run = (config: QuantizeConfig): Promise<QuantizeResult> => {
    const out = path.join(root, `q${runs++}`);
    return quantize(hf, config, { out, ...(config.method === 'gptq' ? { calibration: calib() } : {}) });
  };

  const cases: Case[] = [
    { name: 'RTN 4-bit g32 sym', format: 'ct-w4a16', config: { method: 'rtn', bits: 4, groupSize: 32, sym: true }, bits: 4, groupSize: 32, sym: true, actorder: null },
    { name: 'RTN 4-bit per channel asym (packed zero points)', format: 'ct-w4a16', config: { method: 'rtn', bits: 4, groupSize: -1, sym: false }, bits: 4, groupSize: -1, sym: false, actorder: null },
    { name: 'RTN 8-bit g32 asym', format: 'ct-w4a16', config: { method: 'rtn', bits: 8, groupSize: 32, sym: false }, bits: 8, groupSize: 32, sym: false, actorder: null },
    { name: 'RTN 2-bit g32 asym, MSE clip', format: 'ct-w4a16', config: { method: 'rtn', bits: 2, groupSize: 32, sym: false, clip: 'mse' }, bits: 2, groupSize: 32, sym: false, actorder: null },
    { name: 'RTN int8 (bits, groupSize, sym filled in)', format: 'ct-w8a8', config: { method: 'rtn' }, bits: 8, groupSize: -1, sym: true, actorder: null },
    { name: 'GPTQ 4-bit g32 asym act-order (weight_g_idx)', format: 'ct-w4a16', config: { method: 'gptq', bits: 4, groupSize: 32, sym: false, actOrder: true }, bits: 4, groupSize: 32, sym: false, actorder: 'group' },
    { name: 'GPTQ 4-bit g32 sym act-order with static groups', format: 'ct-w4a16', config: { method: 'gptq', bits: 4, groupSize: 32, sym: true, actOrder: true, staticGroups: true }, bits: 4, groupSize: 32, sym: true, actorder: 'weight' },
    { name: 'GPTQ 4-bit per channel sym', format: 'ct-w4a16', config: { method: 'gptq', bits: 4, groupSize: -1, sym: true }, bits: 4, groupSize: -1, sym: true, actorder: null },
    { name: 'GPTQ int8 per channel', format: 'ct-w8a8', config: { method: 'gptq', bits: 8, groupSize: -1, sym: true }, bits: 8, groupSize: -1, sym: true, actorder: null },
  ];

  for (const c of cases) {
    it(`${c.format}, ${c.name}: decodes to the dequantized twin exactly; header and config as the format says`, async function () {
      const ct = await run({ ...c.config, format: c.format });
      // the twin quantizes the same modules (the MLP's 172 channels are not a multiple of 32, which the packed layout needs: kept in float by both)
      const twin = await run({ ...c.config, bits: c.bits, groupSize: c.groupSize, sym: c.sym, format: 'dequant', exclude: ['mlp.'] });
      assert.equal(ct.format, c.format);
      assert.equal(ct.quantizedModules, 20);
      assert.equal(ct.skippedModules, 15);
      assert.equal(twin.quantizedModules, 20);
      const quantized = ct.modules.filter((m) => m.storage === 'packed');
      const kept = ct.modules.filter((m) => m.storage === 'fp16').map((m) => m.module);
      assert.ok(quantized.every((m) => ATTN.some((a) => m.module.endsWith(a))));
      assert.ok(kept.every((m) => MLP.some((a) => m.endsWith(a))));

      // config.json: every field of quantization_config
      const cfg = JSON.parse(fs.readFileSync(path.join(ct.out, 'config.json'), 'utf8')) as ConfigJson;
      const qc = cfg.quantization_config;
      const grouped = c.groupSize > 0;
      assert.deepEqual(qc, {
        quant_method: 'compressed-tensors',
        format: c.format === 'ct-w8a8' ? 'int-quantized' : 'pack-quantized',
        quantization_status: 'compressed',
        version: qc.version,
        config_groups: {
          group_0: {
            targets: ['Linear'],
            weights: {
              num_bits: c.bits, type: 'int', symmetric: c.sym, group_size: grouped ? c.groupSize : null, strategy: grouped ? 'group' : 'channel',
              block_structure: null, dynamic: false, actorder: c.actorder, observer: (c.config as { clip?: string }).clip ?? 'minmax', observer_kwargs: {},
            },
            input_activations: c.format === 'ct-w8a8'
              ? { num_bits: 8, type: 'int', symmetric: true, group_size: null, strategy: 'token', block_structure: null, dynamic: true, actorder: null, observer: null, observer_kwargs: {} }
              : null,
            output_activations: null,
          },
        },
        ignore: ['lm_head', ...kept],
        kv_cache_scheme: null,
        global_compression_ratio: null,
        sparsity_config: {},
      });
      assert.match(String(qc.version), /^\d+\.\d+\.\d+$/);
      assert.ok(!fs.existsSync(path.join(ct.out, 'quantize_config.json')), 'no GPTQ quantize_config.json');
      const log = JSON.parse(fs.readFileSync(path.join(ct.out, 'quant_log.json'), 'utf8')) as { format: string };
      assert.equal(log.format, c.format);

      const dst = openSafetensors(ct.out);
      const ref = openSafetensors(twin.out);
      const src = openSafetensors(hf);
      try {
        let gIdxMoved = false;
        for (const mod of quantized) {
          const m = mod.module;
          const { rows, cols } = mod;
          const groups = grouped ? cols / c.groupSize : 1;
          const expect = (name: string, dtype: string, shape: number[]) => {
            const t = `${m}.${name}`;
            assert.ok(dst.has(t), `${t} missing`);
            assert.deepEqual({ dtype: dst.info(t).dtype, shape: [...dst.info(t).shape] }, { dtype, shape }, t);
          };
          // exactly the format's tensors, nothing of GPTQ's
          const names = dst.names().filter((n) => n.startsWith(`${m}.`)).sort();
          let decoded: PlainCtDecoded;
          if (c.format === 'ct-w8a8') {
            assert.deepEqual(names, [`${m}.weight`, `${m}.weight_scale`]);
            expect('weight', 'I8', [rows, cols]);
            expect('weight_scale', 'F16', [rows, 1]);
            decoded = plainDecodeCtInt8({ weight: dst.bytes(`${m}.weight`), weightScale: dst.bytes(`${m}.weight_scale`), rows, cols });
          } else {
            const want = ['weight_packed', 'weight_scale', 'weight_shape', ...(c.sym ? [] : ['weight_zero_point']), ...(c.actorder === 'group' ? ['weight_g_idx'] : [])];
            assert.deepEqual(names, want.map((n) => `${m}.${n}`).sort());
            expect('weight_packed', 'I32', [rows, (cols * c.bits) / 32]);
            expect('weight_scale', 'F16', [rows, groups]);
            expect('weight_shape', 'I64', [2]);
            const shape = new DataView(dst.bytes(`${m}.weight_shape`).slice().buffer);
            assert.deepEqual([Number(shape.getBigInt64(0, true)), Number(shape.getBigInt64(8, true))], [rows, cols]);
            if (!c.sym) expect('weight_zero_point', 'I32', [Math.ceil((rows * c.bits) / 32), groups]);
            if (c.actorder === 'group') expect('weight_g_idx', 'I32', [cols]);
            decoded = plainDecodeCtPacked({
              weightPacked: dst.bytes(`${m}.weight_packed`), weightScale: dst.bytes(`${m}.weight_scale`),
              weightZeroPoint: c.sym ? undefined : dst.bytes(`${m}.weight_zero_point`), weightGIdx: c.actorder === 'group' ? dst.bytes(`${m}.weight_g_idx`) : undefined,
              bits: c.bits, rows, cols, groupSize: c.groupSize,
            });
            if (decoded.groupOf.some((g, k) => g !== Math.floor(k / (cols / groups)))) gIdxMoved = true;
          }
          // codes within the signed range
          const lo = -(2 ** (c.bits - 1)), hi = 2 ** (c.bits - 1) - 1;
          assert.ok(decoded.q.every((v) => v >= lo && v <= hi) && decoded.zp.every((v) => v >= lo && v <= hi), `${m}: codes outside [${lo}, ${hi}]`);
          if (c.sym) assert.ok(decoded.zp.every((v) => v === 0));
          assertArraysEqual(decoded.weight, ref.toFloat32(`${m}.weight`), `${m} decoded by the plain compressed-tensors decoder vs the dequantized twin`);
        }
        if (c.actorder === 'group') assert.ok(gIdxMoved, 'act-order without static groups should move some input channels out of column order');
        // modules kept in float (and everything else) are carried over unchanged
        for (const name of src.names()) {
          if (quantized.some((q) => name === `${q.module}.weight`)) continue;
          assert.ok(dst.has(name), `${name} missing`);
          assert.deepEqual(Buffer.from(dst.bytes(name)), Buffer.from(src.bytes(name)), name);
        }
      } finally {
        dst.close();
        ref.close();
        src.close();
      }
    });
  }

  describe('combinations the format cannot hold', function () {
    const out = () => path.join(root, 'never');
    const refused = async (config: QuantizeConfig, option: string, ...parts: (string | RegExp)[]) => {
      await rejectsCode(quantize(hf, config, { out: out() }), 'LOWBIT_INVALID_OPTION', `${option}:`, ...parts);
      assert.ok(!fs.existsSync(out()), 'no output written');
    };
    it('ct-w8a8: bits other than 8, groups, asymmetric, signedMax', async function () {
      await refused({ method: 'rtn', format: 'ct-w8a8', bits: 4 }, 'bits', 'format ct-w8a8', 'received 4');
      await refused({ method: 'rtn', format: 'ct-w8a8', groupSize: 32 }, 'groupSize', 'format ct-w8a8', 'received 32');
      await refused({ method: 'rtn', format: 'ct-w8a8', sym: false }, 'sym', 'format ct-w8a8', 'received false');
      await refused({ method: 'rtn', format: 'ct-w8a8', signedMax: true }, 'signedMax', 'format ct-w8a8');
      // the grid given explicitly is accepted
      const r = await run({ method: 'rtn', format: 'ct-w8a8', bits: 8, groupSize: -1, sym: true, include: ['layers.0.self_attn.q_proj'] });
      assert.equal(r.quantizedModules, 1);
    });
    it('ct-w4a16: 3 bits, signedMax, codebooks, per-tensor scales, ragged groups', async function () {
      await refused({ method: 'rtn', format: 'ct-w4a16', bits: 3 }, 'bits', 'format ct-w4a16', '2, 4, 8', 'received 3');
      await refused({ method: 'rtn', format: 'ct-w4a16', bits: 5 }, 'bits', 'format ct-w4a16', 'received 5');
      await refused({ method: 'gptq', format: 'ct-w4a16', bits: 3 }, 'bits', 'format ct-w4a16');
      await refused({ method: 'rtn', format: 'ct-w4a16', signedMax: true }, 'signedMax', 'format ct-w4a16');
      await refused({ method: 'rtn', format: 'ct-w4a16', codebook: 'nf4' }, 'codebook');
      await refused({ method: 'rtn', format: 'ct-w4a16', perTensor: true }, 'perTensor');
      await refused({ method: 'rtn', format: 'ct-w4a16', groupSize: 48, raggedLastGroup: true }, 'raggedLastGroup');
      await refused({ method: 'rtn', format: 'ct-w4a16', scaleF16: false }, 'scaleF16');
      await refused({ method: 'rtn', format: 'ct-w9' as never }, 'format');
    });
    it('ct-w4a16: a group size that does not divide a module\'s columns names the tensor and groupSize', async function () {
      await assert.rejects(quantize(hf, { method: 'rtn', format: 'ct-w4a16', groupSize: 48 }, { out: out() }),
        isCode('LOWBIT_SHAPE_MISMATCH', 'groupSize 48', 'q_proj'));
      assert.ok(!fs.existsSync(out()));
    });
  });

  describe('the format functions on their own', function () {
    it('ctQuantizationConfig refuses what the format cannot say', function () {
      const base = { scheme: 'w4a16' as const, bits: 4, groupSize: 32, sym: true, actorder: null, clip: 'minmax' as const, ignore: [] };
      assert.deepEqual(ctQuantizationConfig(base).ignore, ['lm_head']);
      assert.deepEqual(ctQuantizationConfig({ ...base, ignore: ['a', 'lm_head', 'a'] }).ignore, ['lm_head', 'a']);
      assert.throws(() => ctQuantizationConfig({ ...base, bits: 3 }), isCode('LOWBIT_INVALID_OPTION', 'bits:'));
      assert.throws(() => ctQuantizationConfig({ ...base, scheme: 'w8a8', bits: 8 }), isCode('LOWBIT_INVALID_OPTION', 'scheme:'));
      assert.throws(() => ctQuantizationConfig({ ...base, groupSize: -1, actorder: 'group' }), isCode('LOWBIT_INVALID_OPTION', 'actorder:'));
      assert.throws(() => ctQuantizationConfig({ ...base, groupSize: 0 }), isCode('LOWBIT_INVALID_OPTION', 'groupSize:'));
    });
    it('ctTensorsFromGptq refuses a zero the symmetric layout cannot hold, and groups out of column order without g_idx', function () {
      // one output run of 32 channels × 32 inputs, 4 bits, one group; codes all 8
      const rows = 32, cols = 32;
      const qweight = new Uint8Array(4 * (cols / 8) * rows).fill(0x88);
      const zeros = (z: number) => new Uint8Array(4 * (rows / 8)).fill(z * 17);
      const scales = new Uint8Array(2 * rows).fill(0x3c);
      const gIdx = new Uint8Array(4 * cols);
      const layout = { scheme: 'w4a16' as const, rows, cols, bits: 4, groups: 1, sym: true, gIdx: false };
      const ok = ctTensorsFromGptq('m', layout, { qweight, qzeros: zeros(8), scales, gIdx });
      assert.deepEqual([...ok.keys()], ['m.weight_packed', 'm.weight_scale', 'm.weight_shape']);
      assert.throws(() => ctTensorsFromGptq('m', layout, { qweight, qzeros: zeros(7), scales, gIdx }), isCode('LOWBIT_INTERNAL', 'zero 7 is not 8'));
      const moved = gIdx.slice();
      moved[0] = 1;
      assert.throws(() => ctTensorsFromGptq('m', { ...layout, groups: 1 }, { qweight, qzeros: zeros(8), scales, gIdx: moved }), isCode('LOWBIT_INTERNAL', 'g_idx[0] = 1'));
      const asym = ctTensorsFromGptq('m', { ...layout, sym: false }, { qweight, qzeros: zeros(3), scales, gIdx });
      const zp = must(asym.get('m.weight_zero_point'), 'weight_zero_point');
      assert.deepEqual([...zp.slice(0, 4)], [0x33, 0x33, 0x33, 0x33]);
    });
  });
});
