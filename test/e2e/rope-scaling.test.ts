/**
 * RoPE scaling in config.json is applied or refused, never dropped (issue 18): "linear" and
 * "llama3" frequencies as transformers computes them (checked against a float64 transcription of
 * its formulas), other types (dynamic NTK, YaRN, …) refused by the runtime, and GGUF export refuses
 * what it cannot write yet.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadModel, writeSyntheticModel, exportGguf, readHfConfig } from '../../lib/index';
import { ropeFrequencies } from '../../lib/runtime/model';
import { writeByteTokenizer } from '../helpers/tiny-llama';
import { rejectsCode, throwsCode } from '../helpers/errors';

/** transformers' _compute_llama3_parameters, in float64. */
function llama3Ref(theta: number, hd: number, factor: number, low: number, high: number, old: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < hd / 2; i++) {
    const f = 1 / Math.pow(theta, (2 * i) / hd);
    const wavelen = (2 * Math.PI) / f;
    let g = wavelen > old / low ? f / factor : f;
    const smooth = (old / wavelen - low) / (high - low);
    if (!(wavelen < old / high) && !(wavelen > old / low)) g = (1 - smooth) * (g / factor) + smooth * g;
    out.push(g);
  }
  return out;
}

describe('RoPE scaling: applied (linear, llama3) or refused, never dropped', function () {
  this.timeout(120000);
  let root: string;
  before(function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-rope-'));
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('frequencies match transformers\' formulas (float64 reference, relative 1e-6); other types are refused', function () {
    for (const hd of [64, 128]) {
      const got = ropeFrequencies({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 }, 500000, hd, 'x');
      assert.ok(got);
      const want = llama3Ref(500000, hd, 8, 1, 4, 8192);
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= 1e-6 * want[i], `llama3 hd ${hd} [${i}]: ${got[i]} vs ${want[i]}`);
      // some frequencies are kept, some divided by the factor, some blended
      assert.equal(got[0], Math.fround(want[0]));
      assert.ok(Math.abs(got[hd / 2 - 1] - want[hd / 2 - 1]) <= 1e-6 * want[hd / 2 - 1]);
      const lin = ropeFrequencies({ type: 'linear', factor: 4 }, 10000, hd, 'x');
      assert.ok(lin);
      for (let i = 0; i < hd / 2; i++) {
        const w = 1 / Math.pow(10000, (2 * i) / hd) / 4;
        assert.ok(Math.abs(lin[i] - w) <= 1e-6 * w);
      }
    }
    assert.equal(ropeFrequencies(null, 10000, 64, 'x'), null);
    for (const type of ['dynamic', 'yarn', 'longrope']) throwsCode(() => ropeFrequencies({ type, factor: 2 }, 10000, 64, 'x'), 'LOWBIT_UNSUPPORTED', type);
    throwsCode(() => ropeFrequencies({ type: 'llama3', factor: 8 }, 10000, 64, 'x'), 'LOWBIT_BAD_FORMAT', 'original_max_position_embeddings');
  });

  it('a model with rope_scaling runs with it (other logits than without); unsupported types and GGUF export are refused', async function () {
    const dir = await writeSyntheticModel(path.join(root, 'm'), { shape: 'tiny', dtype: 'F32', seed: 2 });
    const cfgFile = path.join(dir, 'config.json');
    const base = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
    const tokens = Int32Array.from([1, 5, 9, 14, 3, 77, 100, 2, 8, 31, 64, 90]);
    const logits = async (extra: Record<string, unknown>): Promise<Float32Array> => {
      fs.writeFileSync(cfgFile, JSON.stringify({ ...base, ...extra }));
      const m = await loadModel(dir);
      try {
        return await m.forward(tokens, 0, tokens.length);
      } finally {
        m.dispose();
      }
    };
    const plain = await logits({});
    // rope_theta as an explicit llama3 scaling with factor 1 and every frequency kept: the same bytes
    const same = await logits({ rope_scaling: { rope_type: 'linear', factor: 1 } });
    assert.deepEqual(Buffer.from(same.buffer), Buffer.from(plain.buffer));
    const scaled = await logits({ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } });
    assert.ok(!Buffer.from(scaled.buffer).equals(Buffer.from(plain.buffer)), 'llama3 scaling changes the logits');
    const linear = await logits({ rope_scaling: { type: 'linear', factor: 2 } });
    assert.ok(!Buffer.from(linear.buffer).equals(Buffer.from(plain.buffer)), 'linear scaling changes the logits');
    assert.equal(readHfConfig(dir).ropeScaling?.type, 'linear');
    fs.writeFileSync(cfgFile, JSON.stringify({ ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } }));
    await rejectsCode(loadModel(dir), 'LOWBIT_UNSUPPORTED', 'yarn');
    fs.writeFileSync(cfgFile, JSON.stringify({ ...base, rope_scaling: { rope_type: 'llama3', factor: 8, original_max_position_embeddings: 16 } }));
    writeByteTokenizer(dir, 128); // the tiny preset's vocabulary, so that export gets as far as the config
    await rejectsCode(exportGguf(dir, path.join(root, 'x.gguf'), { type: 'F32' }), 'LOWBIT_UNSUPPORTED', 'rope_scaling');
    assert.ok(!fs.existsSync(path.join(root, 'x.gguf')));
    fs.writeFileSync(cfgFile, JSON.stringify({ ...base, rope_scaling: 'big' }));
    await rejectsCode(loadModel(dir), 'LOWBIT_BAD_FORMAT', 'rope_scaling');
  });
});
