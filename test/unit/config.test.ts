/** Option validation and normalization (pure TS, no addon). */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { normalizeQuantizer, effectiveGroupSize } from '../../lib/config/quant';
import { normalizeQuantizeConfig } from '../../lib/config/quantize';
import { checkBool, checkEnum, checkInt, checkKnownKeys, checkNumber, checkSignal, checkString, invalidOption } from '../../lib/config/validate';
import { toLowbitError, LowbitError } from '../../lib/errors';
import { LOWBIT_VERSION } from '../../lib/version';
import { throwsCode } from '../helpers/errors';

const rejects = throwsCode;

describe('validation and config', function () {
  it('version matches package.json', function () {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
    assert.equal(LOWBIT_VERSION, pkg.version);
  });

  it('checkers: accept good values, one wording for bad ones', function () {
    assert.equal(checkInt('n', 3, 1, 5), 3);
    rejects(() => checkInt('n', 3.5, 1, 5), 'LOWBIT_INVALID_OPTION', /^n: expected an integer in \[1, 5\], received 3\.5 \(number\)$/);
    rejects(() => checkInt('n', '3', 1, 5), 'LOWBIT_INVALID_OPTION', /received "3" \(string\)/);
    assert.equal(checkNumber('x', 0.5, 0, 1), 0.5);
    rejects(() => checkNumber('x', NaN, 0, 1), 'LOWBIT_INVALID_OPTION', /x: expected a number in \[0, 1\]/);
    assert.equal(checkBool('b', false), false);
    rejects(() => checkBool('b', 1), 'LOWBIT_INVALID_OPTION', /b: expected a boolean, received 1 \(number\)/);
    assert.equal(checkEnum('e', 'a', ['a', 'b'] as const), 'a');
    rejects(() => checkEnum('e', 'c', ['a', 'b'] as const), 'LOWBIT_INVALID_OPTION', /e: expected one of "a", "b", received "c"/);
    assert.equal(checkString('s', 'x'), 'x');
    rejects(() => checkString('s', ''), 'LOWBIT_INVALID_OPTION', /non-empty string/);
    rejects(() => { checkKnownKeys('opts', { bitz: 1 }, ['bits']); }, 'LOWBIT_INVALID_OPTION', /unknown option "bitz"/);
    assert.equal(checkSignal(undefined), undefined);
    rejects(() => checkSignal({}), 'LOWBIT_INVALID_OPTION', /signal: expected an AbortSignal/);
    assert.match(invalidOption('o', 'x', null).message, /received null/);
    assert.match(invalidOption('o', 'x', undefined).message, /received undefined/);
    assert.match(invalidOption('o', 'x', [1, 2]).message, /an array of length 2/);
    assert.match(invalidOption('o', 'x', new Float32Array(3)).message, /a Float32Array of length 3/);
  });

  it('toLowbitError maps native "CODE: message" errors and fs errors', function () {
    const a = toLowbitError(new Error('LOWBIT_BAD_FORMAT: x.gguf: bad magic'));
    assert.equal(a.code, 'LOWBIT_BAD_FORMAT');
    assert.equal(a.message, 'x.gguf: bad magic');
    const e = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT', path: '/x' });
    assert.equal(toLowbitError(e).code, 'LOWBIT_IO');
    assert.equal(toLowbitError('weird').code, 'LOWBIT_INTERNAL');
    const l = new LowbitError('LOWBIT_NUMERICAL', 'm');
    assert.equal(toLowbitError(l), l);
  });

  it('quantizer defaults and errors', function () {
    const q = normalizeQuantizer({});
    assert.deepEqual(q, { bits: 4, groupSize: 128, perTensor: false, sym: true, clip: 'minmax', clipGrid: 100, clipMaxShrink: 0.8, clipNorm: 2.4,
      codebook: 'uniform', zeroMin: 0, scaleF16: true, signedMax: false, raggedLastGroup: false });
    rejects(() => normalizeQuantizer({ sym: false, signedMax: true }), 'LOWBIT_INVALID_OPTION', /signedMax: expected false with asymmetric groups/);
    rejects(() => normalizeQuantizer({ codebook: 'nf4', signedMax: true }), 'LOWBIT_INVALID_OPTION', /signedMax/);
    rejects(() => normalizeQuantizer({ groupSize: -2 }), 'LOWBIT_INVALID_OPTION', /groupSize: expected a positive integer or -1/);
    rejects(() => normalizeQuantizer(null as never), 'LOWBIT_INVALID_OPTION', /options/);
    rejects(() => normalizeQuantizer({ zeroMin: 2 }), 'LOWBIT_INVALID_OPTION', /zeroMin/);
    rejects(() => normalizeQuantizer({ clipMaxShrink: 0 }), 'LOWBIT_INVALID_OPTION', /clipMaxShrink/);
    assert.equal(effectiveGroupSize(normalizeQuantizer({ groupSize: -1 }), 100, 't'), 100);
    assert.equal(effectiveGroupSize(normalizeQuantizer({ groupSize: 256 }), 256, 't'), 256);
    rejects(() => effectiveGroupSize(normalizeQuantizer({ groupSize: 64 }), 100, 'w'), 'LOWBIT_SHAPE_MISMATCH', /w: expected cols divisible by groupSize 64, got 100/);
    assert.equal(effectiveGroupSize(normalizeQuantizer({ groupSize: 64, raggedLastGroup: true }), 100, 'w'), 64);
  });

  it('RTN config: GPTQ v1 asym quantizes with zeroMin 1; format rules', function () {
    assert.equal(normalizeQuantizeConfig({ method: 'rtn', sym: false }).quantizer.zeroMin, 1);
    assert.equal(normalizeQuantizeConfig({ method: 'rtn', sym: false, format: 'gptq-v2' }).quantizer.zeroMin, 0);
    assert.equal(normalizeQuantizeConfig({ method: 'rtn', format: 'dequant' }).quantizer.raggedLastGroup, true);
    rejects(() => normalizeQuantizeConfig({ method: 'rtn', perTensor: true }), 'LOWBIT_INVALID_OPTION', /perTensor/);
    rejects(() => normalizeQuantizeConfig({ method: 'rtn', raggedLastGroup: true }), 'LOWBIT_INVALID_OPTION', /raggedLastGroup/);
    rejects(() => normalizeQuantizeConfig({ method: 'rtn', lmHead: true }), 'LOWBIT_UNSUPPORTED', /lmHead/);
    rejects(() => normalizeQuantizeConfig({ method: 'rtn', include: ['a', 3] as never }), 'LOWBIT_INVALID_OPTION', /include/);
    rejects(() => normalizeQuantizeConfig({ method: 'rtn', maxShardBytes: 10 }), 'LOWBIT_INVALID_OPTION', /maxShardBytes/);
    assert.equal(normalizeQuantizeConfig({ method: 'rtn', bits: 6, format: 'dequant' }).quantizer.bits, 6);
  });
});
