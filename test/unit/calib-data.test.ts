/** Calibration data files: text, JSONL (text or input_ids), a directory of .txt; their hashes and errors. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { calibrationTexts, readCalibrationFile } from '../../lib/formats/calib';
import { normalizeCalibration } from '../../lib/config/calibration';
import { throwsCode } from '../helpers/errors';

const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');

describe('calibration data', function () {
  let root: string;
  before(function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-calib-'));
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('a text file: one record, the sha256 of its bytes', function () {
    const f = path.join(root, 'a.txt');
    fs.writeFileSync(f, 'Once upon a time.\n');
    assert.deepEqual(readCalibrationFile(f), { kind: 'text', texts: ['Once upon a time.\n'], ids: null, records: 1, bytes: 18, sha256: sha('Once upon a time.\n') });
  });

  it('JSONL: text records or input_ids records (blank lines skipped), one kind per file', function () {
    const t = path.join(root, 't.jsonl');
    const body = '{"text": "one"}\n\n{"text": "two", "meta": 1}\n';
    fs.writeFileSync(t, body);
    const r = readCalibrationFile(t);
    assert.deepEqual([r.kind, r.texts, r.ids, r.records, r.sha256], ['jsonl', ['one', 'two'], null, 2, sha(body)]);
    const i = path.join(root, 'i.jsonl');
    fs.writeFileSync(i, '{"input_ids": [1, 2, 3]}\n{"input_ids": [4]}\n');
    const ri = readCalibrationFile(i);
    assert.deepEqual([ri.texts, ri.ids, ri.records], [null, [[1, 2, 3], [4]], 2]);
    const bad = (name: string, text: string, ...parts: string[]) => {
      const f = path.join(root, name);
      fs.writeFileSync(f, text);
      throwsCode(() => readCalibrationFile(f), 'LOWBIT_BAD_FORMAT', ...parts);
    };
    bad('mixed.jsonl', '{"text": "a"}\n{"input_ids": [1]}\n', 'line 2', 'one kind per file');
    bad('notjson.jsonl', '{"text": "a"}\n{text}\n', 'line 2: not JSON');
    bad('nofield.jsonl', '{"content": "a"}\n', 'line 1: no "text" string or "input_ids" array');
    bad('negid.jsonl', '{"input_ids": [1, -2]}\n', 'line 1: "input_ids" must be non-negative integer token ids');
    bad('array.jsonl', '[1, 2]\n', 'line 1: expected an object');
    bad('empty.jsonl', '\n\n', 'no records');
  });

  it('a directory of .txt files in name order (other files ignored); empty directory is an error', function () {
    const d = path.join(root, 'dir');
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'b.txt'), 'second');
    fs.writeFileSync(path.join(d, 'a.txt'), 'first');
    fs.writeFileSync(path.join(d, 'notes.md'), 'ignored');
    const r = readCalibrationFile(d);
    assert.deepEqual([r.kind, r.texts, r.records, r.bytes, r.sha256], ['dir', ['first', 'second'], 2, 11, sha('firstsecond')]);
    const e = path.join(root, 'emptydir');
    fs.mkdirSync(e);
    throwsCode(() => readCalibrationFile(e), 'LOWBIT_BAD_FORMAT', 'must hold .txt files');
    throwsCode(() => readCalibrationFile(path.join(root, 'nope.txt')), 'LOWBIT_NOT_FOUND', 'calibration: cannot read');
  });

  it('strings from the API hash like the same text; options: exactly one of text, texts, file', function () {
    assert.equal(calibrationTexts(['abc'], 'text').sha256, sha('abc'));
    assert.deepEqual(normalizeCalibration({ texts: ['a', 'b'], samples: 4 }).texts, ['a', 'b']);
    throwsCode(() => normalizeCalibration({ text: 'a', file: 'b' }), 'LOWBIT_INVALID_OPTION', 'give one of text, texts and file, received text and file');
    throwsCode(() => normalizeCalibration({ texts: [] }), 'LOWBIT_INVALID_OPTION', 'calibration.texts: expected a non-empty array of strings');
    throwsCode(() => normalizeCalibration({}), 'LOWBIT_INVALID_OPTION', 'calibration: GPTQ needs calibration data');
    throwsCode(() => normalizeCalibration({ text: 'a', windows: 3 } as never), 'LOWBIT_INVALID_OPTION', 'unknown option "windows"');
  });
});
