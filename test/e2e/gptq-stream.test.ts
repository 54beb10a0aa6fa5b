/**
 * GPTQ in bounded memory (issue 18): the model is calibrated one decoder block at a time from its
 * mapped source (runtime/stream-model.ts), layers run as the writer asks for them, and the
 * calibration activations spill to a temporary file under a `maxMemory` budget. None of it may
 * change a byte of the output: the streaming run equals the in-memory one (the whole model loaded
 * with loadModel, as GPTQ ran before), and a spilled run equals an unspilled one. A budget below
 * what the run needs at the least is refused before any work, naming the numbers.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize, loadModel, writeSyntheticModel, type QuantizeResult } from '../../lib/index';
import { _setGptqModelOpener } from '../../lib/methods/gptq';
import { readLlama2cModel } from '../../lib/formats/llama2c';
import { writeHfFromLlama2c } from '../../lib/formats/convert';
import { fixturesDir } from '../helpers/fixtures';
import { rejectsCode } from '../helpers/errors';
import { Rng } from '../helpers/rng';

function safetensorsOf(dir: string): Buffer[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort().map((f) => fs.readFileSync(path.join(dir, f)));
}

function spillFiles(): string[] {
  return fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith(`lowbit-activations-${process.pid}-`));
}

describe('GPTQ in bounded memory: one block resident, activations spilled under a budget', function () {
  this.timeout(600000);
  let root: string;
  before(function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-gptq-stream-'));
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('stories260K: the block-by-block run writes the same bytes as the whole model in memory (act-order and not)', async function () {
    const f = fixturesDir();
    if (!f) this.skip();
    const hf = path.join(root, 'stories-hf');
    await writeHfFromLlama2c(readLlama2cModel(path.join(f, 'stories260K', 'stories260K.bin')), hf, 'F32');
    fs.copyFileSync(path.join(f, 'stories260K', 'tok512.bin'), path.join(hf, 'tokenizer.bin'));
    const text = fs.readFileSync(path.join(f, 'text', 'tinystories-calib.txt'), 'utf8').slice(0, 40000);
    for (const actOrder of [false, true]) {
      const config = { method: 'gptq' as const, bits: 4, groupSize: 32, sym: false, actOrder };
      const calibration = { text, samples: 8, seqLen: 128 };
      const streamed = await quantize(hf, config, { out: path.join(root, `stream-${actOrder}`), calibration });
      const prev = _setGptqModelOpener((dir, o) => loadModel(dir, { ...o, f32Weights: true }));
      let inMemory: QuantizeResult;
      try {
        inMemory = await quantize(hf, config, { out: path.join(root, `memory-${actOrder}`), calibration });
      } finally {
        _setGptqModelOpener(prev);
      }
      const a = safetensorsOf(streamed.out), b = safetensorsOf(inMemory.out);
      assert.equal(a.length, b.length);
      for (let i = 0; i < a.length; i++) assert.ok(a[i].equals(b[i]), `actOrder ${actOrder}: shard ${i} differs between the streaming and in-memory runs`);
      assert.deepEqual(streamed.modules.map((m) => m.gptqLoss), inMemory.modules.map((m) => m.gptqLoss));
      // the expected peak was stated and recorded
      const cal = streamed.calibration;
      assert.ok(cal?.activations && (cal.expectedRunPeakBytes ?? 0) > 0);
      assert.equal(cal.layers, 5);
      assert.equal(cal.activations.spilled, false);
    }
  });

  describe('a synthetic model (demo shape, token-id calibration data)', function () {
    let model: string;
    let calib: string;
    before(async function () {
      model = await writeSyntheticModel(path.join(root, 'demo'), { shape: 'demo', dtype: 'F16', seed: 3 });
      const rng = new Rng(11);
      const lines: string[] = [];
      for (let i = 0; i < 30; i++) lines.push(JSON.stringify({ input_ids: Array.from({ length: 200 }, () => rng.int(0, 2047)) }));
      calib = path.join(root, 'ids.jsonl');
      fs.writeFileSync(calib, lines.join('\n') + '\n');
    });

    it('activations spilled to a file under maxMemory: the same bytes as in memory; the spill file is removed', async function () {
      const config = { method: 'gptq' as const, bits: 4, groupSize: 64 };
      const calibration = { file: calib, samples: 32, seqLen: 128 };
      const free = await quantize(model, config, { out: path.join(root, 'free'), calibration });
      const c = free.calibration;
      assert.ok(c?.activations && c.expectedRunPeakBytes !== undefined);
      assert.equal(c.activations.spilled, false);
      assert.equal(c.activations.totalBytes, 32 * 128 * 256 * 4);
      // a budget that leaves room for 5 windows beside everything else
      const fixed = c.expectedRunPeakBytes - c.activations.totalBytes;
      const maxMemory = Math.max(fixed + 5 * 128 * 256 * 4 + 100, 1 << 20);
      const spilled = await quantize(model, config, { out: path.join(root, 'spilled'), calibration, maxMemory });
      const s = spilled.calibration?.activations;
      assert.ok(s?.spilled, 'spilled');
      assert.equal(s.chunkSamples, 5);
      assert.ok((spilled.calibration?.expectedRunPeakBytes ?? Infinity) <= maxMemory);
      const a = safetensorsOf(free.out), b = safetensorsOf(spilled.out);
      for (let i = 0; i < a.length; i++) assert.ok(a[i].equals(b[i]), `shard ${i} differs between the spilled and in-memory runs`);
      assert.deepEqual(spillFiles(), []);
    });

    it('a budget below one block, its Hessians and one window → LOWBIT_RESOURCE up front with the numbers; no output', async function () {
      const out = path.join(root, 'refused');
      await rejectsCode(quantize(model, { method: 'gptq', bits: 4, groupSize: 64 }, { out, calibration: { file: calib, samples: 8, seqLen: 64 }, maxMemory: 4 << 20 }),
        'LOWBIT_RESOURCE', /GPTQ needs at least [\d.]+ GiB \(one block [\d.]+ GiB.*but maxMemory is 0\.00 GiB/);
      assert.ok(!fs.existsSync(out));
      await rejectsCode(quantize(model, { method: 'rtn', bits: 4, groupSize: 64 }, { out, maxMemory: 1 << 20 }), 'LOWBIT_RESOURCE', /RTN needs about/);
      assert.ok(!fs.existsSync(out));
      await rejectsCode(quantize(model, { method: 'rtn', bits: 4, groupSize: 64 }, { out, maxMemory: 1000 }), 'LOWBIT_INVALID_OPTION', 'maxMemory');
      await rejectsCode(quantize(model, { method: 'rtn', format: 'gguf:q4_0' }, { out: `${out}.gguf`, maxMemory: 1 << 30 }), 'LOWBIT_INVALID_OPTION', 'maxMemory');
      assert.deepEqual(spillFiles(), []);
    });

    it('loadModel allocates min(the model\'s context, 4096) positions unless maxContext says otherwise', async function () {
      const dir = await writeSyntheticModel(path.join(root, 'long'), { shape: 'tiny', dtype: 'F16', seed: 1 });
      const cfgFile = path.join(dir, 'config.json');
      const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
      cfg.max_position_embeddings = 1 << 20;
      fs.writeFileSync(cfgFile, JSON.stringify(cfg));
      const m = await loadModel(dir);
      assert.equal(m.config.seqLen, 4096);
      m.dispose();
      const m2 = await loadModel(dir, { maxContext: 8192 });
      assert.equal(m2.config.seqLen, 8192);
      m2.dispose();
    });
  });
});
