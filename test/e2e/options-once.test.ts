/**
 * One option, one check, one message: `groupSize` from the CLI, the API's quantize and
 * quantizeTensor, the GPTQ layer op (CPU and the CUDA face, which validates before any device
 * work) fails with the same message, built in one function; and the structure that makes it so
 * (one builder of that message in lib/) is checked too.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize, quantizeTensor } from '../../lib/index';
import { gptqLayer } from '../../lib/ops/gptq';
import { cudaGptqLayer } from '../../lib/ops/cuda';
import { writeSyntheticModel } from '../../lib/runtime/synthetic';
import { packageRoot } from '../../lib/native';
import { isLowbitError } from '../../lib/errors';
import { lowbit } from '../helpers/cli';

/** The message of the error a call throws or rejects with (LOWBIT_* code asserted). */
async function messageOf(code: string, fn: () => unknown): Promise<string> {
  try {
    await fn();
  } catch (e) {
    assert.ok(isLowbitError(e), `expected a LowbitError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e.message;
  }
  assert.fail('expected an error');
}

describe('one check per option (groupSize from the CLI, the API and the GPTQ layer)', function () {
  let root: string;
  let model: string;
  before(async function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-once-'));
    model = await writeSyntheticModel(path.join(root, 'm'), { shape: 'tiny', dtype: 'F16' });
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  for (const bad of [0, -2, 2.5]) {
    it(`groupSize ${bad}: the same LOWBIT_INVALID_OPTION message everywhere`, async function () {
      const expected = `groupSize: expected a positive integer or -1 (per channel), received ${bad} (number)`;
      const out = path.join(root, 'never');
      const w = new Float32Array(64 * 64), h = new Float32Array(64 * 64);
      const messages = {
        quantize: await messageOf('LOWBIT_INVALID_OPTION', () => quantize(model, { method: 'rtn', groupSize: bad }, { out })),
        quantizeGptq: await messageOf('LOWBIT_INVALID_OPTION', () => quantize(model, { method: 'gptq', groupSize: bad }, { out, calibration: { text: 'x' } })),
        quantizeTensor: await messageOf('LOWBIT_INVALID_OPTION', () => quantizeTensor(w, [64, 64], { groupSize: bad })),
        gptqLayer: await messageOf('LOWBIT_INVALID_OPTION', () => gptqLayer(w, h, { rows: 64, cols: 64, groupSize: bad })),
        cudaGptqLayer: await messageOf('LOWBIT_INVALID_OPTION', () => cudaGptqLayer(w, h, { rows: 64, cols: 64, groupSize: bad })),
      };
      for (const [where, m] of Object.entries(messages)) assert.equal(m, expected, where);
      if (Number.isInteger(bad)) {
        // the CLI parses the integer and hands it on: the library's message, exit 2 (usage)
        const r = lowbit('quantize', model, '--group-size', String(bad), '--out', out);
        assert.equal(r.code, 2, r.stderr);
        assert.ok(r.stderr.includes(`LOWBIT_INVALID_OPTION: ${expected}`), r.stderr);
      }
      assert.ok(!fs.existsSync(out));
    });
  }

  it('a group size that does not divide the columns: one LOWBIT_SHAPE_MISMATCH message from the CLI and the API', async function () {
    const out = path.join(root, 'never');
    const api = await messageOf('LOWBIT_SHAPE_MISMATCH', () => quantize(model, { method: 'rtn', groupSize: 24 }, { out }));
    assert.match(api, /^model\.layers\.0\.self_attn\.q_proj\.weight: expected cols divisible by groupSize 24, got \d+×\d+ \(use groupSize -1/);
    const r = lowbit('quantize', model, '--group-size', '24', '--out', out);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`LOWBIT_SHAPE_MISMATCH: ${api}`), r.stderr);
    assert.ok(!fs.existsSync(out));
  });

  it('lib/ builds the group-size message in exactly one function', function () {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else if (e.name.endsWith('.ts')) files.push(path.join(d, e.name));
      }
    };
    walk(path.join(packageRoot(), 'lib'));
    const hits = files.flatMap((f) => (fs.readFileSync(f, 'utf8').match(/invalidOption\('groupSize'/g) ?? []).map(() => path.relative(packageRoot(), f)));
    assert.deepEqual(hits, ['lib/config/quant.ts']);
    const divides = files.flatMap((f) => (fs.readFileSync(f, 'utf8').match(/expected cols divisible by groupSize/g) ?? []).map(() => path.relative(packageRoot(), f)));
    assert.deepEqual(divides, ['lib/config/quant.ts']);
  });
});
