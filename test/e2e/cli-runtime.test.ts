/**
 * `lowbit generate` and `lowbit eval` as a user runs them, on the stories260K fixtures (skipped
 * without them): run.c's greedy test output, the fixture perplexity, and a missing --text file.
 */
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { fixturesDir, NO_FIXTURES, readExpected } from '../helpers/fixtures';
import { lowbit } from '../helpers/cli';

/** What `lowbit generate --json` prints (the fields read here). */
interface GenerateJson {
  ok: boolean;
  text: string;
  ids: number[];
  stoppedBy: string;
  promptTokens: number;
  generatedTokens: number;
}

/** What `lowbit eval --json` prints (the fields read here). */
interface EvalJson {
  ok: boolean;
  chunks: number;
  tokens: number;
  ctx: number;
  ppl: number;
  kl: number | null;
}

/** What a failing command prints with --json. */
interface ErrorJson {
  ok: false;
  error: { code: string; message: string };
}

describe('lowbit generate / eval (e2e, stories260K)', function () {
  this.timeout(120000);
  const F = fixturesDir();
  let dir: string;
  let dev: string;
  before(function () {
    if (!F) {
      console.log(`      skipped: ${NO_FIXTURES}`);
      this.skip();
    }
    dir = path.join(F, 'stories260K');
    dev = path.join(F, 'text', 'tinystories-dev.txt');
  });

  it("generate --temperature 0 --steps 200 --json reproduces llama2.c's test_all.py output", function () {
    const expected = readExpected(dir).generate[0];
    assert.equal(expected.id, 'llama2c_test_all_greedy_n200');
    const r = lowbit('generate', path.join(dir, 'stories260K.bin'), '--tokenizer', path.join(dir, 'tok512.bin'),
      '--temperature', '0', '--steps', '200', '--json');
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as GenerateJson;
    assert.equal(j.ok, true);
    assert.equal(j.text, expected.expected_text);
    assert.deepEqual(j.ids, expected.expected_ids);
    assert.equal(j.stoppedBy, expected.stopped_by);
    assert.equal(j.promptTokens, 1);
    assert.equal(j.generatedTokens, expected.expected_ids.length - 1); // run.c runs 200 steps: BOS + 200 tokens
  });

  it('generate without --json prints the text itself', function () {
    const expected = readExpected(dir).generate[0];
    const r = lowbit('generate', path.join(dir, 'stories260K.gguf'), '--temperature', '0', '--steps', '200');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, expected.expected_text + '\n');
    assert.match(r.stderr, /\(steps\)/);
  });

  it('eval <gguf> --text tinystories-dev.txt --max-chunks 8 --json gives ppl 6.142632', function () {
    const r = lowbit('eval', path.join(dir, 'stories260K.gguf'), '--text', dev, '--max-chunks', '8', '--json');
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as EvalJson;
    assert.equal(j.ok, true);
    assert.equal(j.chunks, 8);
    assert.equal(j.tokens, 4088);
    assert.equal(j.ctx, 512);
    assert.ok(Math.abs(j.ppl / 6.142632 - 1) < 1e-4, `ppl ${j.ppl}`);
    assert.equal(j.kl, null);
  });

  it('eval with a missing --text file exits non-zero with LOWBIT_NOT_FOUND on stderr', function () {
    const missing = path.join(dir, 'no-such-text.txt');
    const r = lowbit('eval', path.join(dir, 'stories260K.gguf'), '--text', missing);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /LOWBIT_NOT_FOUND/);
    assert.match(r.stderr, /no-such-text\.txt/);
    const j = lowbit('eval', path.join(dir, 'stories260K.gguf'), '--text', missing, '--json');
    assert.notEqual(j.code, 0);
    assert.match(j.stderr, /LOWBIT_NOT_FOUND/);
    assert.equal((JSON.parse(j.stdout) as ErrorJson).error.code, 'LOWBIT_NOT_FOUND');
  });
});
