/**
 * quantize → save → reload: the GPTQ checkpoints lowbit writes decode (with the independent
 * test-side decoder written from the format description) to exactly the values lowbit reports,
 * for bits 2/3/4/8, group sizes 32/64/128/−1, sym, asym v1 and asym v2; plus the dequant format,
 * the files around the weights, and every bad-input case of the issue: typed errors, no output.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize, type QuantizeResult } from '../../lib/pipeline/quantize';
import { writeSyntheticModel, type SyntheticShape } from '../../lib/runtime/synthetic';
import { openSafetensors, writeSafetensors } from '../../lib/formats/safetensors';
import { toFloat32 } from '../../lib/formats/dtype';
import { quantizeTensor } from '../../lib/ops/quantize';
import { inspectModel } from '../../lib/formats/source';
import { parseGptqConfig, decodeGptqModule } from '../../lib/formats/gptq';
import { plainDecodeGptq } from '../helpers/gptq-decoder';
import { assertArraysEqual, must } from '../helpers/assert';
import { rejectsCode as expectError } from '../helpers/errors';

/** The parts of a written config.json read here (lowbit keeps the source's fields and adds quantization_config). */
interface ConfigJson {
  architectures?: string[];
  model_type?: string;
  torch_dtype?: string;
  quantization_config?: { bits: number; dynamic: Record<string, unknown> };
}

/** The parts of quant_log.json read here. */
interface QuantLogJson {
  method: string;
  parameters: { bits: number };
  modules: { module: string; storage: string; reason?: string; seconds: number; stats?: { relError: number } }[];
}

const SMALL: SyntheticShape = { hiddenSize: 128, intermediateSize: 256, layers: 1, heads: 4, kvHeads: 2, vocabSize: 64, maxPositions: 64 };

function tmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-e2e-'));
}

/** Nothing named like the output, and no temp directories, next to it. */
function assertNoOutput(out: string): void {
  assert.ok(!fs.existsSync(out), `${out} exists after a failed run`);
  const leftovers = fs.readdirSync(path.dirname(out)).filter((f) => f.includes(`${path.basename(out)}.tmp-`));
  assert.deepEqual(leftovers, [], 'temporary directories left behind');
}

describe('quantize pipeline (e2e)', function () {
  let root: string;
  let small: string;
  let tiny: string;
  before(async function () {
    root = tmp();
    small = await writeSyntheticModel(path.join(root, 'small'), { shape: SMALL, dtype: 'F16', seed: 3 });
    tiny = await writeSyntheticModel(path.join(root, 'tiny'), { shape: 'tiny', dtype: 'F32', seed: 4 });
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  for (const bits of [2, 3, 4, 8]) {
    for (const groupSize of [32, 64, 128, -1]) {
      for (const mode of ['sym', 'asym-v1', 'asym-v2'] as const) {
        it(`GPTQ ${bits}-bit g${groupSize} ${mode}: the test decoder reads back exactly what lowbit reports`, async function () {
          const out = path.join(root, `q-${bits}-${groupSize}-${mode}`);
          const sym = mode === 'sym';
          const format = mode === 'asym-v2' ? 'gptq-v2' : 'gptq';
          const r = await quantize(small, { method: 'rtn', bits, groupSize, sym, format }, { out });
          assert.equal(r.skippedModules, 0);
          assert.equal(r.quantizedModules, 7);
          const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as ConfigJson;
          const qc = parseGptqConfig(cfg.quantization_config, 'config.json');
          assert.equal(qc.bits, bits);
          assert.equal(qc.groupSize, groupSize);
          assert.equal(qc.sym, sym);
          assert.equal(qc.checkpointFormat, format === 'gptq' ? 'gptq' : 'gptq_v2');
          assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'quantize_config.json'), 'utf8')), cfg.quantization_config);
          const src = openSafetensors(small);
          const dst = openSafetensors(out);
          try {
            for (const mod of r.modules) {
              const w = src.toFloat32(`${mod.module}.weight`);
              const expected = await quantizeTensor(w, [mod.rows, mod.cols], { bits, groupSize, sym, zeroMin: format === 'gptq' && !sym ? 1 : 0, name: mod.module });
              const gs = groupSize === -1 ? mod.cols : groupSize;
              const plain = plainDecodeGptq({
                qweight: dst.bytes(`${mod.module}.qweight`), qzeros: dst.bytes(`${mod.module}.qzeros`), scales: dst.bytes(`${mod.module}.scales`),
                gIdx: dst.bytes(`${mod.module}.g_idx`), bits, rows: mod.rows, cols: mod.cols, groups: mod.cols / gs, format: format === 'gptq' ? 'gptq' : 'gptq_v2',
              });
              assertArraysEqual(plain.weight, must(expected.dequantized, 'expected.dequantized'), `${mod.module} decoded by the test decoder`);
              const lib = decodeGptqModule(dst, mod.module, qc);
              assertArraysEqual(lib.weight, must(expected.dequantized, 'expected.dequantized'), `${mod.module} decoded by lib/formats/gptq`);
              assert.ok(Math.abs(must(mod.stats, `${mod.module} stats`).mse - expected.stats.mse) <= 1e-12 + 1e-5 * expected.stats.mse);
            }
            // everything else is carried over unchanged
            for (const name of src.names()) {
              if (r.modules.some((m) => name === `${m.module}.weight`)) continue;
              assert.deepEqual(Buffer.from(dst.bytes(name)), Buffer.from(src.bytes(name)), name);
            }
          } finally {
            src.close();
            dst.close();
          }
          fs.rmSync(out, { recursive: true });
        });
      }
    }
  }

  it('shapes the packed layout cannot hold stay fp16, are named in quant_log.json and excluded in `dynamic`', async function () {
    const out = path.join(root, 'tiny-gptq');
    const r = await quantize(tiny, { method: 'rtn', bits: 4, groupSize: 32 }, { out });
    const skipped = r.modules.filter((m) => m.storage === 'fp16').map((m) => m.module);
    assert.deepEqual(skipped.sort(), ['model.layers.0.mlp.down_proj', 'model.layers.0.mlp.gate_proj', 'model.layers.0.mlp.up_proj',
      'model.layers.1.mlp.down_proj', 'model.layers.1.mlp.gate_proj', 'model.layers.1.mlp.up_proj'].sort());
    const log = JSON.parse(fs.readFileSync(path.join(out, 'quant_log.json'), 'utf8')) as QuantLogJson;
    assert.equal(log.method, 'rtn');
    assert.equal(log.parameters.bits, 4);
    const down = must(log.modules.find((m) => m.module === 'model.layers.0.mlp.down_proj'), 'down_proj in quant_log.json');
    assert.equal(down.storage, 'fp16');
    assert.match(must(down.reason, 'down_proj reason'), /32/);
    const q = must(log.modules.find((m) => m.module === 'model.layers.0.self_attn.q_proj'), 'q_proj in quant_log.json');
    assert.equal(q.storage, 'packed');
    const qStats = must(q.stats, 'q_proj stats');
    assert.ok(qStats.relError > 0 && qStats.relError < 0.3 && q.seconds >= 0);
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as ConfigJson;
    assert.ok('-:^model\\.layers\\.0\\.mlp\\.down_proj$' in must(cfg.quantization_config, 'quantization_config').dynamic);
    assert.equal(cfg.torch_dtype, 'float32'); // unquantized tensors keep the source's type
    const st = openSafetensors(out);
    try {
      assert.equal(st.info('model.layers.0.mlp.down_proj.weight').dtype, 'F32');
      assert.equal(st.info('model.layers.0.self_attn.q_proj.scales').dtype, 'F16');
      assert.ok(!st.has('model.layers.0.self_attn.q_proj.weight'));
    } finally { st.close(); }
    const s = inspectModel(out);
    assert.equal(must(s.quantization, 'quantization').bits, 4);
  });

  it('dequant format: every linear quantized (any width, shorter last group), same architecture', async function () {
    const out = path.join(root, 'tiny-dequant');
    const r = await quantize(tiny, { method: 'rtn', bits: 3, groupSize: 32, sym: false, format: 'dequant' }, { out });
    assert.equal(r.skippedModules, 0);
    assert.equal(r.quantizedModules, 14);
    const src = openSafetensors(tiny);
    const dst = openSafetensors(out);
    try {
      assert.deepEqual(dst.names().sort(), src.names().sort());
      const w = src.toFloat32('model.layers.1.mlp.down_proj.weight');
      const exp = await quantizeTensor(w, [64, 100], { bits: 3, groupSize: 32, sym: false, raggedLastGroup: true });
      assertArraysEqual(dst.toFloat32('model.layers.1.mlp.down_proj.weight'), must(exp.dequantized, 'exp.dequantized'), 'dequantized down_proj (F32 model)');
    } finally { src.close(); dst.close(); }
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as ConfigJson;
    assert.equal(cfg.quantization_config, undefined);
    assert.equal(cfg.torch_dtype, 'float32');
  });

  it('copies tokenizer files and --tokenizer, reports progress, and refuses a non-empty output unless overwrite', async function () {
    fs.writeFileSync(path.join(small, 'tokenizer.json'), '{"model": {}}');
    const extra = path.join(root, 'tokenizer.bin');
    fs.writeFileSync(extra, Buffer.from([1, 2, 3]));
    const out = path.join(root, 'tok');
    let last = { done: -1, total: -1, phase: '' };
    await quantize(small, { method: 'rtn' }, { out, tokenizer: extra, onProgress: (p) => { last = p; } });
    assert.ok(fs.existsSync(path.join(out, 'tokenizer.json')));
    assert.ok(fs.existsSync(path.join(out, 'tokenizer.bin')));
    assert.equal(last.phase, 'write');
    assert.equal(last.done, 7);
    await expectError(quantize(small, { method: 'rtn' }, { out }), 'LOWBIT_IO', /not empty/);
    const r2: QuantizeResult = await quantize(small, { method: 'rtn', bits: 8 }, { out, overwrite: true });
    assert.equal(r2.bits, 8);
    assert.equal(must((JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as ConfigJson).quantization_config, 'quantization_config').bits, 8);
    fs.rmSync(path.join(small, 'tokenizer.json'));
  });

  describe('bad input: a typed error naming the culprit, never a partial output', function () {
    it('missing config.json → LOWBIT_NOT_FOUND', async function () {
      const d = path.join(root, 'noconfig');
      fs.mkdirSync(d);
      fs.copyFileSync(path.join(small, 'model.safetensors'), path.join(d, 'model.safetensors'));
      const out = path.join(root, 'out-noconfig');
      await expectError(quantize(d, { method: 'rtn' }, { out }), 'LOWBIT_NOT_FOUND', /config\.json/);
      assertNoOutput(out);
      await expectError(quantize(path.join(root, 'nope'), { method: 'rtn' }, { out }), 'LOWBIT_NOT_FOUND', /nope/);
    });

    it('unsupported architecture → LOWBIT_UNSUPPORTED', async function () {
      const d = path.join(root, 'gpt2');
      fs.cpSync(small, d, { recursive: true });
      const cfg = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8')) as ConfigJson;
      cfg.architectures = ['GPT2LMHeadModel'];
      cfg.model_type = 'gpt2';
      fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(cfg));
      const out = path.join(root, 'out-gpt2');
      await expectError(quantize(d, { method: 'rtn' }, { out }), 'LOWBIT_UNSUPPORTED', /GPT2LMHeadModel/);
      assertNoOutput(out);
    });

    it('truncated and corrupt safetensors → LOWBIT_BAD_FORMAT naming the file', async function () {
      for (const [label, mutate] of [
        ['truncated', (b: Buffer) => b.subarray(0, b.length - 100)],
        ['header length beyond the file', (b: Buffer) => { const c = Buffer.from(b); c.writeBigUInt64LE(BigInt(c.length * 2), 0); return c; }],
        ['garbage header', (b: Buffer) => { const c = Buffer.from(b); c.fill(0x41, 8, 40); return c; }],
      ] as const) {
        const d = path.join(root, `corrupt-${label.replace(/\W+/g, '-')}`);
        fs.cpSync(small, d, { recursive: true });
        const f = path.join(d, 'model.safetensors');
        fs.writeFileSync(f, mutate(fs.readFileSync(f)));
        const out = path.join(root, `out-corrupt-${label.replace(/\W+/g, '-')}`);
        await expectError(quantize(d, { method: 'rtn' }, { out }), 'LOWBIT_BAD_FORMAT', /model\.safetensors/);
        assertNoOutput(out);
      }
    });

    it('bits outside 2–8, bad formats and options → LOWBIT_INVALID_OPTION', async function () {
      const out = path.join(root, 'out-bits');
      await expectError(quantize(small, { method: 'rtn', bits: 9 }, { out }), 'LOWBIT_INVALID_OPTION', /bits: expected an integer in \[2, 8\], received 9/);
      await expectError(quantize(small, { method: 'rtn', bits: 1 }, { out }), 'LOWBIT_INVALID_OPTION', /bits/);
      await expectError(quantize(small, { method: 'rtn', bits: 5 }, { out }), 'LOWBIT_INVALID_OPTION', /2, 3, 4 or 8 bits, received 5/);
      await expectError(quantize(small, { method: 'rtn', codebook: 'nf4' }, { out }), 'LOWBIT_INVALID_OPTION', /codebook/);
      await expectError(quantize(small, { method: 'rtn', format: 'awq' as never }, { out }), 'LOWBIT_INVALID_OPTION', /format/);
      await expectError(quantize(small, { method: 'gptq' }, { out }), 'LOWBIT_INVALID_OPTION', /calibration: GPTQ needs calibration data/);
      await expectError(quantize(small, { method: 'awq' as never }, { out }), 'LOWBIT_UNSUPPORTED', /method/);
      await expectError(quantize(small, { method: 'fast' as never }, { out }), 'LOWBIT_INVALID_OPTION', /method/);
      assertNoOutput(out);
    });

    it('a group size that does not divide the columns → LOWBIT_SHAPE_MISMATCH naming the tensor', async function () {
      const out = path.join(root, 'out-group');
      await expectError(quantize(small, { method: 'rtn', groupSize: 48 }, { out }), 'LOWBIT_SHAPE_MISMATCH', /q_proj\.weight: expected cols divisible by groupSize 48, got 128×128/);
      assertNoOutput(out);
    });

    it('NaN in a weight, found mid-way → LOWBIT_NUMERICAL naming the tensor; nothing written', async function () {
      const d = path.join(root, 'nan');
      fs.mkdirSync(d);
      fs.copyFileSync(path.join(small, 'config.json'), path.join(d, 'config.json'));
      const src = openSafetensors(small);
      const bad = 'model.layers.0.mlp.up_proj.weight';
      await writeSafetensors(d, src.names().map((n) => {
        const info = src.info(n);
        let data = src.bytes(n);
        if (n === bad) {
          toFloat32(data, 'F16');
          data = Buffer.from(data);
          new DataView(data.buffer, data.byteOffset).setUint16(2 * (5 * 128 + 7), 0x7e00, true); // NaN at [5, 7]
        }
        return { name: n, dtype: info.dtype, shape: info.shape, data };
      }), { allowNonFinite: true });
      src.close();
      const out = path.join(root, 'out-nan');
      await expectError(quantize(d, { method: 'rtn' }, { out }), 'LOWBIT_NUMERICAL', /model\.layers\.0\.mlp\.up_proj\.weight: non-finite weight .* at \[5, 7\]/);
      assertNoOutput(out);
    });

    it('an unwritable output directory → LOWBIT_IO naming it', async function () {
      const file = path.join(root, 'a-file');
      fs.writeFileSync(file, 'x');
      const out = path.join(file, 'sub', 'out');
      await expectError(quantize(small, { method: 'rtn' }, { out }), 'LOWBIT_IO', /a-file/);
      await expectError(quantize(small, { method: 'rtn' }, { out: file }), 'LOWBIT_IO', /is a file/);
    });

    it('cancellation mid-way → LOWBIT_ABORTED; no output and no temp directory', async function () {
      const out = path.join(root, 'out-abort');
      const ac = new AbortController();
      await expectError(quantize(small, { method: 'rtn' }, {
        out, signal: ac.signal, onProgress: (p) => { if (p.phase === 'quantize' && p.done >= 2) ac.abort(); },
      }), 'LOWBIT_ABORTED', /aborted/);
      assertNoOutput(out);
      const pre = new AbortController();
      pre.abort();
      await expectError(quantize(small, { method: 'rtn' }, { out, signal: pre.signal }), 'LOWBIT_ABORTED', /aborted/);
      assertNoOutput(out);
    });
  });
});

describe('quantize pipeline: include / exclude', function () {
  it('excluded modules stay unquantized, are logged, and are excluded in `dynamic`', async function () {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-e2e-'));
    try {
      const src = await writeSyntheticModel(path.join(root, 'm'), { shape: SMALL, dtype: 'F16' });
      const out = path.join(root, 'q');
      const r = await quantize(src, { method: 'rtn', exclude: ['mlp.down_proj'], include: ['model.layers.0.'] }, { out });
      const down = must(r.modules.find((m) => m.module === 'model.layers.0.mlp.down_proj'), 'down_proj module');
      assert.equal(down.storage, 'fp16');
      assert.match(must(down.reason, 'down_proj reason'), /excluded/);
      assert.equal(r.quantizedModules, 6);
      const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as ConfigJson;
      assert.ok('-:^model\\.layers\\.0\\.mlp\\.down_proj$' in must(cfg.quantization_config, 'quantization_config').dynamic);
      const st = openSafetensors(out);
      try { assert.ok(st.has('model.layers.0.mlp.down_proj.weight') && !st.has('model.layers.0.mlp.down_proj.qweight')); } finally { st.close(); }
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
