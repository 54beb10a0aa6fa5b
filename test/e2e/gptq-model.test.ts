/**
 * GPTQ on the real stories260K (converted to an HF directory): beats RTN at the same setting on the
 * dev text; the packed GPTQ checkpoint of the attention layers reloads to exactly the figures of
 * the same quantization stored dequantized; quant_log records damping, loss and calibration.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readLlama2cModel } from '../../lib/formats/llama2c';
import { writeHfFromLlama2c } from '../../lib/formats/convert';
import { quantize } from '../../lib/pipeline/quantize';
import { loadModel } from '../../lib/runtime/model';
import { evaluate } from '../../lib/runtime/evaluate';
import { isLowbitError } from '../../lib/errors';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';

/** The parts of a GPTQ run's quant_log.json read here. */
interface GptqQuantLogJson {
  method: string;
  calibration: { samples: number; tokens: number; textSha256: string };
  modules: { gptqLoss: number; dampUsed: number; samples: number }[];
}

/** The parts of a GPTQ checkpoint's config.json read here. */
interface GptqConfigJson {
  quantization_config: { desc_act: boolean; dynamic: Record<string, unknown> };
}

describe('GPTQ pipeline on stories260K', function () {
  let fx: string, root: string, hf: string, tok: string, dev: string, calibFile: string;
  before(async function (this: Mocha.Context) {
    const d = fixturesDir();
    if (!d) {
      console.log(`      ${NO_FIXTURES}`);
      this.skip();
    }
    fx = d;
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-gptq-'));
    hf = await writeHfFromLlama2c(readLlama2cModel(path.join(fx, 'stories260K', 'stories260K.bin')), path.join(root, 'hf'), 'F32');
    tok = path.join(fx, 'stories260K', 'tok512.bin');
    dev = fs.readFileSync(path.join(fx, 'text', 'tinystories-dev.txt'), 'utf8');
    calibFile = path.join(fx, 'text', 'tinystories-calib.txt');
  });
  after(function () {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  const calib = () => ({ file: calibFile, samples: 32, seqLen: 256, seed: 1, tokenizer: tok });
  const ppl = async (dir: string, packed = true, activations: 'int8' | 'f32' = 'f32') => {
    const m = await loadModel(dir, { tokenizer: tok, packed, activations });
    try {
      return (await evaluate(m, { text: dev, ctx: 512, maxChunks: 8 })).ppl;
    } finally {
      m.dispose();
    }
  };

  it('3-bit g32 asym: GPTQ perplexity below RTN (every linear layer, dequant format)', async function () {
    const g = await quantize(hf, { method: 'gptq', bits: 3, groupSize: 32, sym: false, format: 'dequant' }, { out: path.join(root, 'g3'), calibration: calib() });
    const r = await quantize(hf, { method: 'rtn', bits: 3, groupSize: 32, sym: false, format: 'dequant' }, { out: path.join(root, 'r3') });
    const pg = await ppl(g.out), pr = await ppl(r.out);
    assert.ok(pg < pr, `GPTQ ppl ${pg} not below RTN ${pr}`);
    const log = JSON.parse(fs.readFileSync(path.join(g.out, 'quant_log.json'), 'utf8')) as GptqQuantLogJson;
    assert.equal(log.method, 'gptq');
    assert.equal(log.calibration.samples, 32);
    assert.equal(log.calibration.tokens, 32 * 256);
    assert.match(log.calibration.textSha256, /^1017b36e/);
    const m0 = log.modules[0];
    assert.ok(m0.gptqLoss > 0 && m0.dampUsed > 0 && m0.samples === 8192);
  });

  it('the packed GPTQ checkpoint of the attention layers reloads to the same perplexity as its dequantized twin', async function () {
    const cfg = { method: 'gptq' as const, bits: 4, groupSize: 32, sym: true, actOrder: true, exclude: ['mlp.'] };
    const packed = await quantize(hf, { ...cfg, format: 'gptq' }, { out: path.join(root, 'gp'), calibration: calib() });
    const deq = await quantize(hf, { ...cfg, format: 'dequant' }, { out: path.join(root, 'gd'), calibration: calib() });
    assert.equal(packed.quantizedModules, 20);
    const cfgJson = JSON.parse(fs.readFileSync(path.join(packed.out, 'config.json'), 'utf8')) as GptqConfigJson;
    assert.equal(cfgJson.quantization_config.desc_act, true);
    assert.ok(Object.keys(cfgJson.quantization_config.dynamic).some((k) => k.includes('mlp')));
    // the file decodes to exactly the same weights (dequantized at load) …
    const a = await ppl(packed.out, false), b = await ppl(deq.out);
    assert.ok(Math.abs(a - b) <= 1e-9 * b, `packed file ${a} vs dequant ${b}`);
    // … and running it from the packed words agrees within the int4 kernel's float bound
    const c = await ppl(packed.out, true);
    assert.ok(Math.abs(c - b) <= 1e-5 * b, `packed kernel ${c} vs dequant ${b}`);
    // … and with int8 activations (W4A8, act-order layers repacked in processing order) within 1%
    const d = await ppl(packed.out, true, 'int8');
    assert.ok(Math.abs(d - b) <= 0.01 * b, `W4A8 ${d} vs dequant ${b}`);
  });

  it('GPTQ without calibration data, or with a text shorter than a window, is refused; no output', async function () {
    const out = path.join(root, 'bad');
    await assert.rejects(quantize(hf, { method: 'gptq', groupSize: 32 }, { out }), (e: unknown) => isLowbitError(e, 'LOWBIT_INVALID_OPTION') && /calibration/.test((e as Error).message));
    await assert.rejects(quantize(hf, { method: 'gptq', groupSize: 32, format: 'dequant' }, { out, calibration: { text: 'Once upon a time.', samples: 2, seqLen: 64, tokenizer: tok } }),
      (e: unknown) => isLowbitError(e, 'LOWBIT_INVALID_OPTION') && /shorter than one calibration window/.test((e as Error).message));
    assert.ok(!fs.existsSync(out));
  });
});
