/**
 * No flag is ever ignored: a flag that does not apply to the chosen method, format or source is
 * refused with LOWBIT_INVALID_OPTION (exit 2) naming it, and nothing is written.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSyntheticModel } from '../../lib/runtime/synthetic';
import { lowbit } from '../helpers/cli';

describe('lowbit CLI: no flag ignored', function () {
  this.timeout(120000);
  let root: string;
  let model: string;
  let calib: string;
  before(async function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-flags-'));
    model = await writeSyntheticModel(path.join(root, 'm'), { shape: 'tiny', dtype: 'F16' });
    calib = path.join(root, 'calib.txt');
    fs.writeFileSync(calib, 'Once upon a time there was a model. '.repeat(200));
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  const cases: [string, string[], RegExp][] = [
    ['RTN into GGUF with --bits', ['--format', 'gguf:q4_0', '--bits', '8'], /--bits 8: format gguf:q4_0 with method "rtn" uses ggml's own Q4_0 encoder/],
    ['RTN into GGUF with --asym', ['--format', 'gguf:q4_0', '--asym'], /--asym: format gguf:q4_0 with method "rtn"/],
    ['RTN into GGUF with --group-size', ['--format', 'gguf:q4_0', '--group-size', '64'], /--group-size 64: format gguf:q4_0 with method "rtn"/],
    ['RTN into GGUF with --clip mse', ['--format', 'gguf:q4_0', '--clip', 'mse'], /--clip mse: format gguf:q4_0 with method "rtn"/],
    ['GGUF with --max-shard', ['--format', 'gguf:q8_0', '--max-shard', '100000'], /--max-shard 100000: does not apply to format gguf:q8_0/],
    ['GGUF with --include', ['--format', 'gguf:q8_0', '--include', 'q_proj'], /--include q_proj: does not apply to format gguf:q8_0/],
    ['GGUF with a tokenizer.json', ['--format', 'gguf:q8_0', '--tokenizer', 'TOKJSON'], /--tokenizer \S+tokenizer\.json: tokenizer\.json is not a llama2\.c tokenizer\.bin/],
    ['--calib with RTN', ['--calib', 'CALIB'], /--calib CALIB: method "rtn" uses no calibration data/],
    ['--calib-samples without --calib', ['--calib-samples', '8'], /--calib-samples: applies to the calibration data; pass --calib FILE/],
    ['--eval-ctx without --eval', ['--eval-ctx', '64'], /--eval-ctx: applies to the evaluation; pass --eval FILE/],
    ['--act-order with RTN', ['--act-order'], /--act-order: a GPTQ option, but method is "rtn"/],
    ['--damp with RTN', ['--damp', '0.05'], /--damp 0\.05: a GPTQ option, but method is "rtn"/],
    ['GPTQ into Q4_0 with --bits 3', ['--method', 'gptq', '--calib', 'CALIB', '--format', 'gguf:q4_0', '--bits', '3'], /--bits 3: format gguf:q4_0 stores 4-bit symmetric groups of 32/],
    ['--allow-requantize on an HF source', ['--allow-requantize'], /--allow-requantize: applies to a GGUF source/],
    ['--sym and --asym', ['--sym', '--asym'], /sym\/asym: expected one of --sym or --asym, received both/],
  ];
  for (const [what, flags, re] of cases) {
    it(`quantize: ${what} → exit 2, LOWBIT_INVALID_OPTION naming the flag, nothing written`, function () {
      const out = path.join(root, 'out');
      const tokJson = path.join(root, 'tokenizer.json');
      fs.writeFileSync(tokJson, '{}');
      const args = flags.map((a) => (a === 'CALIB' ? calib : a === 'TOKJSON' ? tokJson : a));
      const r = lowbit('quantize', model, '--out', out, ...args);
      assert.equal(r.code, 2, `${what}: exit ${String(r.code)}: ${r.stderr}`);
      assert.match(r.stderr, /LOWBIT_INVALID_OPTION: /);
      assert.match(r.stderr.replace(calib, 'CALIB'), re);
      assert.ok(!fs.existsSync(out), `${what}: output written`);
    });
  }

  it('generate: --top-p and --temperature have ranges; --steps and --max-tokens exclude each other', function () {
    // option checks come before the model's tokenizer is needed (the synthetic model has none)
    const top = lowbit('generate', model, '--top-p', '5');
    assert.equal(top.code, 2, top.stderr);
    assert.match(top.stderr, /LOWBIT_INVALID_OPTION: topP: expected a number in \[0, 1\], received 5/);
    const temp = lowbit('generate', model, '--temperature', '-1');
    assert.equal(temp.code, 2, temp.stderr);
    assert.match(temp.stderr, /temperature: expected a number in \[0, 10000\]/);
    const both = lowbit('generate', model, '--steps', '10', '--max-tokens', '5');
    assert.equal(both.code, 2, both.stderr);
    assert.match(both.stderr, /maxTokens: give steps .* or maxTokens .*, not both/);
  });
});
