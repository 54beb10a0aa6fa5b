/**
 * Job data of the queue without Redis: the checks (the same messages as the library calls), the
 * idempotent ids (canonical JSON, paths, input files' size and mtime), the Redis URL and queue name
 * checks, LOWBIT_QUEUE, and `lowbit submit`'s parsing of an inner command line by that command's
 * own definition.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ERROR_CODES, LowbitError } from '../../lib/errors';
import { checkJobData, jobIdOf, parseFailedReason, resolveJobPaths, type JobData, type QuantizeJobData } from '../../lib/queue/job';
import { canonicalJson } from '../../lib/formats/fingerprint';
import { checkQueueName, checkRedisUrl, redactUrl } from '../../lib/queue/connection';
import { jobFromCommandLine } from '../../lib/cli/submit';
import { throwsCode, rejectsCode } from '../helpers/errors';

describe('queue job data', function () {
  let dir: string;
  let model: string;
  before(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-queue-job-'));
    model = path.join(dir, 'm');
    fs.mkdirSync(model);
    fs.writeFileSync(path.join(model, 'config.json'), '{}');
    fs.writeFileSync(path.join(model, 'model.safetensors'), Buffer.alloc(64));
  });
  after(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const q = (over: Partial<QuantizeJobData> = {}): QuantizeJobData => ({ kind: 'quantize', model, config: { method: 'rtn', bits: 4, groupSize: 32 }, out: path.join(dir, 'out'), ...over });

  it('accepts each kind, and refuses bad data with the library\'s own messages', function () {
    assert.equal(checkJobData(q()).kind, 'quantize');
    checkJobData({ kind: 'eval', model, textFile: 'a.txt', ctx: 64, maxChunks: 2, activations: 'f32', packed: false });
    checkJobData({ kind: 'export', model, out: 'x.gguf', type: 'Q4_0', exclude: ['lm_head'] });
    throwsCode(() => checkJobData(null), 'LOWBIT_INVALID_OPTION', 'job: expected an object');
    throwsCode(() => checkJobData({ kind: 'shrink' }), 'LOWBIT_INVALID_OPTION', 'job.kind: expected one of "quantize", "eval", "export", received "shrink"');
    throwsCode(() => checkJobData({ ...q(), bitz: 4 }), 'LOWBIT_INVALID_OPTION', 'unknown option "bitz"');
    throwsCode(() => checkJobData(q({ model: 5 as unknown as string })), 'LOWBIT_INVALID_OPTION', 'model: expected a non-empty string, received 5 (number)');
    throwsCode(() => checkJobData(q({ config: { method: 'rtn', bits: 9 } })), 'LOWBIT_INVALID_OPTION', 'bits');
    throwsCode(() => checkJobData(q({ config: { method: 'rtn', include: [/q_proj/] } })), 'LOWBIT_INVALID_OPTION', 'config.include');
    throwsCode(() => checkJobData(q({ threads: 0 })), 'LOWBIT_INVALID_OPTION', 'threads');
    throwsCode(() => checkJobData(q({ calibration: { file: 'c.txt', samples: -1 } })), 'LOWBIT_INVALID_OPTION', 'calibration.samples');
    throwsCode(() => checkJobData({ kind: 'eval', model, text: 'x', textFile: 'a.txt' }), 'LOWBIT_INVALID_OPTION', 'exactly one of text and textFile');
    throwsCode(() => checkJobData({ kind: 'export', model, out: 'x.gguf', type: 'Q5_0' }), 'LOWBIT_INVALID_OPTION', 'type: expected one of');
    throwsCode(() => checkJobData({ ...q(), overwrite: NaN }), 'LOWBIT_INVALID_OPTION', 'finite number');
  });

  it('ids: <kind>-<sha256> of the canonical data and the input files; same job, same id', function () {
    const a = resolveJobPaths(q(), dir);
    const id = jobIdOf(a);
    assert.match(id, /^quantize-[0-9a-f]{64}$/);
    // key order, relative paths and undefined members do not matter
    const reordered = { out: 'out', config: { groupSize: 32, bits: 4, method: 'rtn' }, model: 'm', kind: 'quantize', threads: undefined } as unknown as JobData;
    assert.equal(jobIdOf(resolveJobPaths(reordered, dir)), id);
    assert.equal(canonicalJson({ b: [1, { d: 1, c: undefined }], a: 'x' }), '{"a":"x","b":[1,{"d":1}]}');
    // another output, another job
    assert.notEqual(jobIdOf(resolveJobPaths(q({ out: 'other' }), dir)), id);
    // the model's files changed: another job
    const t = new Date(Date.now() + 10000);
    fs.utimesSync(path.join(model, 'model.safetensors'), t, t);
    assert.notEqual(jobIdOf(a), id);
    // a missing model still has an id (the worker reports LOWBIT_NOT_FOUND)
    assert.match(jobIdOf(resolveJobPaths(q({ model: path.join(dir, 'none') }), dir)), /^quantize-/);
  });

  it('Redis URLs, queue names, failed reasons and LOWBIT_QUEUE', function () {
    assert.ok((ERROR_CODES as readonly string[]).includes('LOWBIT_QUEUE'));
    assert.equal(new LowbitError('LOWBIT_QUEUE', 'redis://h:1/: cannot connect').code, 'LOWBIT_QUEUE');
    assert.equal(checkRedisUrl('redis://127.0.0.1:6379'), 'redis://127.0.0.1:6379');
    throwsCode(() => checkRedisUrl('http://127.0.0.1:6379'), 'LOWBIT_INVALID_OPTION', 'redis: expected a redis:// or rediss:// URL');
    throwsCode(() => checkRedisUrl(6379), 'LOWBIT_INVALID_OPTION', 'redis:');
    throwsCode(() => checkQueueName('a:b'), 'LOWBIT_INVALID_OPTION', 'queue: expected a queue name');
    assert.equal(checkQueueName(undefined), 'lowbit');
    assert.equal(redactUrl('redis://u:secret@h:1/0'), 'redis://u:***@h:1/0');
    assert.deepEqual(parseFailedReason('LOWBIT_NOT_FOUND: /m: no such model'), { code: 'LOWBIT_NOT_FOUND', message: '/m: no such model' });
    assert.equal(parseFailedReason(''), null);
  });

  it('lowbit submit parses the inner command line with that command\'s own definition', async function () {
    const quant = await jobFromCommandLine(['quantize', 'm', '--bits', '3', '--group-size', '64', '--asym', '--out', 'o', '--json', '--quiet']);
    assert.deepEqual(quant.data, { kind: 'quantize', model: 'm', config: { method: 'rtn', bits: 3, groupSize: 64, sym: false }, out: 'o', overwrite: false });
    const gptq = await jobFromCommandLine(['quantize', 'm', '--method', 'gptq', '--calib', 'c.txt', '--calib-samples', '8', '--out', 'o', '--force', '--threads', '2']);
    assert.deepEqual(gptq.data, { kind: 'quantize', model: 'm', config: { method: 'gptq' }, out: 'o', overwrite: true, calibration: { file: 'c.txt', samples: 8 }, threads: 2 });
    const ev = await jobFromCommandLine(['eval', 'q', '--text', 't.txt', '--ctx', '64', '--no-packed']);
    assert.deepEqual(ev.data, { kind: 'eval', model: 'q', textFile: 't.txt', ctx: 64, packed: false });
    const ex = await jobFromCommandLine(['export', 'm', '--type', 'Q8_0', '--out', 'm.gguf', '--tokenizer', 'tok.bin']);
    assert.deepEqual(ex.data, { kind: 'export', model: 'm', out: 'm.gguf', type: 'Q8_0', tokenizer: 'tok.bin' });
    // the command's own rules and flag names
    await rejectsCode(jobFromCommandLine(['quantize', 'm', '--calib-samples', '8', '--out', 'o']), 'LOWBIT_INVALID_OPTION', '--calib-samples: applies to the calibration data');
    await rejectsCode(jobFromCommandLine(['quantize', 'm', '--out', 'o', '--download']), 'LOWBIT_INVALID_OPTION', '--download: a job does not download');
    await rejectsCode(jobFromCommandLine(['frobnicate', 'm']), 'LOWBIT_INVALID_OPTION', 'expected a quantize, eval or export command line');
    const stderr = process.stderr.write.bind(process.stderr);
    process.stderr.write = () => true; // commander prints its own message first
    try {
      await rejectsCode(jobFromCommandLine(['quantize', 'm', '--bogus', '--out', 'o']), 'LOWBIT_INVALID_OPTION', "unknown option '--bogus'");
      await rejectsCode(jobFromCommandLine(['export', 'm', '--type', 'Q5_0', '--out', 'x']), 'LOWBIT_INVALID_OPTION', 'Q5_0');
    } finally {
      process.stderr.write = stderr;
    }
  });
});
