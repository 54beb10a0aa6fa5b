/**
 * `lowbit eval` and `lowbit generate` with a quantized KV cache (`--kv-*`) and quantized activations
 * (`--act-*`), as a user runs them on the real stories260K fixture (skipped without it):
 * - against the same file as `--reference`, each setting costs KL (more than the plain run's, 4-bit
 *   activations more than 8-bit) and the reference itself runs unquantized (its perplexity is the plain
 *   run's);
 * - the JSON carries what ran (`quantization`: kv bits/axis/window/rotate, bytes per token vs f32/f16;
 *   activation bits/scheme/inputs, integer-kernel vs fake counts); the text output prints it;
 * - `--act-scheme static --calib FILE` measures scales on the calibration text (and differs from dynamic);
 * - `--no-kv` turns off the KV settings a checkpoint stores (a tiny HF checkpoint written here);
 * - every bad flag (a value, a refinement without its main flag, a clash) exits 2 naming the flag.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { lowbit } from '../helpers/cli';
import { Rng, testSeed } from '../helpers/rng';
import { randomTinyModel, writeHfDir, writeTinyTokenizer, type TinyShape } from '../helpers/tiny-llama';

/** The `quantization` report in the JSON (the fields read here). */
interface QuantizationJson {
  weights: string;
  kv: { bits: number; group: number; sym: boolean; axis: string; block: number; window: number; rotate: boolean; bytesPerToken: number; f32BytesPerToken: number; f16BytesPerToken: number; from: string } | null;
  activations: { bits: number; scheme: string; inputs: string[]; from: string; kernel: number; fake: number } | null;
}

/** What `lowbit eval --json` prints (the fields read here). */
interface EvalJson {
  ok: boolean;
  ppl: number;
  kl: number | null;
  referencePpl: number | null;
  quantization: QuantizationJson;
  actScales?: number[];
}

/** What `lowbit generate --json` prints (the fields read here). */
interface GenerateJson {
  ok: boolean;
  text: string;
  quantization: QuantizationJson;
}

/** stories260K: 5 layers, 4 KV heads of 8 values. */
const LAYERS = 5, KV_DIM = 4 * 8;

describe('lowbit eval / generate --kv-* --act-* (e2e, stories260K)', function () {
  this.timeout(300000);
  const F = fixturesDir();
  let model: string;
  let dev: string;
  let calib: string;
  let plain: EvalJson;
  const evalJson = (...args: string[]): EvalJson => {
    const r = lowbit('eval', model, '--text', dev, '--max-chunks', '2', '--reference', model, '--json', ...args);
    assert.equal(r.code, 0, `eval ${args.join(' ')}: ${r.stderr}`);
    const j = JSON.parse(r.stdout) as EvalJson;
    assert.equal(j.ok, true);
    return j;
  };
  /** The run costs KL against the unquantized reference, which itself ran as the plain run did. */
  const costsKl = (j: EvalJson, what: string) => {
    assert.ok(j.kl !== null && plain.kl !== null && j.kl > plain.kl && j.kl > 1e-6, `${what}: KL ${String(j.kl)} vs the plain run's ${String(plain.kl)}`);
    assert.equal(j.referencePpl, plain.ppl, `${what}: the reference ran with the settings (ppl ${String(j.referencePpl)}, plain ${plain.ppl})`);
  };

  before(function () {
    if (!F) {
      console.log(`      skipped: ${NO_FIXTURES}`);
      this.skip();
      return;
    }
    model = path.join(F, 'stories260K', 'stories260K.gguf');
    dev = path.join(F, 'text', 'tinystories-dev.txt');
    calib = path.join(F, 'text', 'tinystories-calib.txt');
    if (![model, dev, calib].every((f) => fs.existsSync(f))) {
      console.log(`      skipped: ${[model, dev, calib].filter((f) => !fs.existsSync(f)).join(', ')} not found`);
      this.skip();
      return;
    }
    plain = evalJson();
  });

  it('plain: no KV or activation quantization, KL about 0 against itself', function () {
    assert.equal(plain.quantization.kv, null);
    assert.equal(plain.quantization.activations, null);
    assert.ok(plain.kl !== null && plain.kl < 1e-6, `KL ${String(plain.kl)}`);
    assert.equal(plain.referencePpl, plain.ppl);
  });

  it('--kv-bits 4: KL above the plain run, the report with bytes per token vs f32/f16', function () {
    const j = evalJson('--kv-bits', '4');
    costsKl(j, '--kv-bits 4');
    const kv = j.quantization.kv;
    assert.ok(kv, 'quantization.kv');
    assert.deepEqual({ bits: kv.bits, group: kv.group, sym: kv.sym, axis: kv.axis, window: kv.window, rotate: kv.rotate, from: kv.from },
      { bits: 4, group: 0, sym: false, axis: 'token', window: 0, rotate: false, from: 'options' });
    assert.equal(kv.f32BytesPerToken, LAYERS * 2 * KV_DIM * 4);
    assert.equal(kv.f16BytesPerToken, LAYERS * 2 * KV_DIM * 2);
    // 4-bit codes of K and V, a scale and a minimum (f16 each) per head row
    assert.equal(kv.bytesPerToken, LAYERS * 2 * (KV_DIM / 2 + 4 * 4));
    assert.equal(j.quantization.activations, null);
  });

  it('every --kv-* flag reaches the cache: sym, group, per-channel K with blocks, window, rotation', function () {
    const j = evalJson('--kv-bits', '2', '--kv-group', '4', '--kv-sym', '--kv-axis', 'channel', '--kv-block', '16', '--kv-window', '8', '--kv-rotate');
    costsKl(j, '2-bit KV');
    const kv = j.quantization.kv;
    assert.ok(kv, 'quantization.kv');
    assert.deepEqual({ bits: kv.bits, group: kv.group, sym: kv.sym, axis: kv.axis, block: kv.block, window: kv.window, rotate: kv.rotate },
      { bits: 2, group: 4, sym: true, axis: 'channel', block: 16, window: 8, rotate: true });
    const head = evalJson('--kv-bits', '4', '--kv-group', 'head');
    assert.equal(head.quantization.kv?.group, 0);
  });

  it('--act-bits 8 and 4: KL above the plain run, 4 bits above 8; the report counts kernel and fake inputs', function () {
    const a8 = evalJson('--act-bits', '8'), a4 = evalJson('--act-bits', '4');
    costsKl(a8, '--act-bits 8');
    costsKl(a4, '--act-bits 4');
    assert.ok(a4.kl !== null && a8.kl !== null && a4.kl > a8.kl, `KL at 4 bits ${String(a4.kl)}, at 8 bits ${String(a8.kl)}`);
    for (const [j, bits] of [[a8, 8], [a4, 4]] as const) {
      const a = j.quantization.activations;
      assert.ok(a, 'quantization.activations');
      // f32 weights: no layer runs the integer kernel, every input is fake-quantized
      assert.deepEqual(a, { bits, scheme: 'dynamic', inputs: ['qkv', 'o', 'gate_up', 'down'], from: 'options', kernel: 0, fake: LAYERS * 4 });
      assert.equal(j.quantization.kv, null);
    }
    const some = evalJson('--act-bits', '8', '--act-inputs', 'o,down');
    assert.deepEqual(some.quantization.activations?.inputs, ['o', 'down']);
    assert.equal(some.quantization.activations.fake, LAYERS * 2);
    costsKl(some, '--act-inputs o,down');
  });

  it('--act-scheme static --calib FILE: scales measured on the calibration text, a result unlike dynamic', function () {
    const args = ['--act-bits', '8', '--calib-samples', '8', '--calib-seqlen', '128'];
    const st = evalJson(...args, '--act-scheme', 'static', '--calib', calib);
    const dyn = evalJson('--act-bits', '8');
    costsKl(st, 'static');
    assert.equal(st.quantization.activations?.scheme, 'static');
    assert.equal(st.quantization.activations.fake, LAYERS * 4);
    const scales = st.actScales;
    assert.ok(scales, 'actScales in the JSON');
    assert.equal(scales.length, LAYERS * 4);
    assert.ok(scales.every((s) => s > 0 && Number.isFinite(s)), `scales ${scales.join(', ')}`);
    assert.notEqual(st.kl, dyn.kl);
    assert.notEqual(st.ppl, dyn.ppl);
    // more calibration windows can only raise each max |x|
    const more = evalJson('--act-bits', '8', '--calib-samples', '32', '--calib-seqlen', '128', '--act-scheme', 'static', '--calib', calib);
    assert.ok(more.actScales?.every((s, i) => s >= scales[i] * (1 - 1e-6)), 'scales from 32 windows below those from 8');
  });

  it('prints what ran without --json: eval on stdout, generate on stderr (and in its --json)', function () {
    const e = lowbit('eval', model, '--text', dev, '--max-chunks', '1', '--quiet', '--kv-bits', '8', '--act-bits', '8');
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /^kv cache: 8-bit asym, group head, K per token, window 0, rotate off \(options\): \d+ B\/token \(f32 1280 B: [\d.]+× smaller; f16 640 B: [\d.]+× smaller\)$/m);
    assert.match(e.stdout, /^activations: 8-bit dynamic on qkv,o,gate_up,down \(options\): 0 module inputs through the integer kernel, 20 fake-quantized$/m);
    const plainText = lowbit('eval', model, '--text', dev, '--max-chunks', '1', '--quiet');
    assert.doesNotMatch(plainText.stdout, /kv cache|activations/);
    const g = lowbit('generate', model, '--temperature', '0', '--steps', '20', '--kv-bits', '4', '--kv-window', '4', '--act-bits', '8');
    assert.equal(g.code, 0, g.stderr);
    assert.match(g.stderr, /kv cache: 4-bit .* window 4, .*B\/token/);
    assert.match(g.stderr, /activations: 8-bit dynamic/);
    const gj = lowbit('generate', model, '--temperature', '0', '--steps', '20', '--kv-bits', '4', '--act-bits', '4', '--json');
    assert.equal(gj.code, 0, gj.stderr);
    const j = JSON.parse(gj.stdout) as GenerateJson;
    assert.equal(j.quantization.kv?.bits, 4);
    assert.equal(j.quantization.activations?.bits, 4);
    const gs = lowbit('generate', model, '--temperature', '0', '--steps', '20', '--act-bits', '8', '--act-scheme', 'static', '--calib', calib, '--calib-samples', '4', '--calib-seqlen', '64', '--json');
    assert.equal(gs.code, 0, gs.stderr);
    assert.equal((JSON.parse(gs.stdout) as GenerateJson).quantization.activations?.scheme, 'static');
  });

  it('--no-kv turns off the KV settings a checkpoint stores; the reference never runs them', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-cli-kv-'));
    try {
      const shape: TinyShape = { dim: 32, hiddenDim: 48, nLayers: 2, nHeads: 4, nKvHeads: 2, headDim: 8, vocabSize: 40, seqLen: 64, rmsEps: 1e-5, ropeTheta: 10000, tied: false, biases: false };
      const hf = await writeHfDir(path.join(dir, 'hf'), randomTinyModel(new Rng(testSeed(23)), shape), { config: { lowbit: { kv: { bits: 2 } } } });
      const tok = path.join(dir, 'tokenizer.bin');
      writeTinyTokenizer(tok);
      const text = path.join(dir, 'text.txt');
      const rng = new Rng(testSeed(24));
      fs.writeFileSync(text, Array.from({ length: 120 }, () => ['the', 'cat', 'sat', 'on', 'a', 'mat', 'she', 'ran'][rng.int(0, 7)]).join(' '));
      const run = (...args: string[]): EvalJson => {
        const r = lowbit('eval', hf, '--tokenizer', tok, '--text', text, '--reference', hf, '--json', ...args);
        assert.equal(r.code, 0, r.stderr);
        return JSON.parse(r.stdout) as EvalJson;
      };
      const stored = run(), off = run('--no-kv');
      assert.equal(stored.quantization.kv?.from, 'checkpoint');
      assert.equal(stored.quantization.kv.bits, 2);
      assert.ok(stored.kl !== null && stored.kl > 1e-6, `KL with the stored 2-bit cache: ${String(stored.kl)}`);
      assert.equal(off.quantization.kv, null);
      assert.ok(off.kl !== null && off.kl < 1e-6, `KL with --no-kv: ${String(off.kl)}`);
      assert.equal(stored.referencePpl, off.ppl, 'the reference ran the stored cache');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const BAD: [string[], RegExp][] = [
    [['--kv-sym'], /--kv-sym: applies to the quantized KV cache; pass --kv-bits/],
    [['--kv-group', '4'], /--kv-group: applies to the quantized KV cache/],
    [['--kv-axis', 'channel'], /--kv-axis: applies to the quantized KV cache/],
    [['--kv-block', '16'], /--kv-block: applies to the quantized KV cache/],
    [['--kv-window', '4'], /--kv-window: applies to the quantized KV cache/],
    [['--kv-rotate'], /--kv-rotate: applies to the quantized KV cache/],
    [['--kv-bits', '3'], /--kv-bits: expected one of 2, 4, 8, received 3/],
    [['--kv-bits', 'four'], /--kv-bits: expected an integer, received "four"/],
    [['--kv-bits', '4', '--kv-group', '3'], /--kv-group: 3 does not divide the head size 8/],
    [['--kv-bits', '4', '--kv-group', 'x'], /--kv-group: expected an integer, received "x"/],
    [['--kv-bits', '4', '--kv-axis', 'diagonal'], /--kv-axis: expected one of "token", "channel"/],
    [['--kv-bits', '4', '--kv-block', '16'], /--kv-block: applies to per-channel keys only/],
    [['--kv-bits', '4', '--kv-window', '-1'], /--kv-window: expected an integer in \[0, /],
    [['--kv-bits', '4', '--no-kv'], /--no-kv: .*--kv-bits/],
    [['--no-kv', '--kv-rotate'], /--no-kv: .*--kv-rotate/],
    [['--act-scheme', 'dynamic'], /--act-scheme: applies to activation quantization; pass --act-bits/],
    [['--act-inputs', 'o'], /--act-inputs: applies to activation quantization/],
    [['--act-bits', '9'], /--act-bits: expected an integer in \[2, 8\], received 9/],
    [['--act-bits', '8', '--act-scheme', 'per-token'], /--act-scheme: expected one of "dynamic", "static"/],
    [['--act-bits', '8', '--act-inputs', 'qkv,mlp'], /--act-inputs: expected one of "qkv", "o", "gate_up", "down", received "mlp"/],
    [['--act-bits', '8', '--act-scheme', 'static'], /--act-scheme static: .*pass --calib FILE/],
    [['--act-bits', '8', '--calib', 'x.txt'], /--calib: .*--act-scheme static only/],
    [['--calib-samples', '4'], /--calib-samples: .*pass --calib FILE/],
    // a value measureActScales refuses ('(calib)': the calibration fixture)
    [['--act-bits', '8', '--act-scheme', 'static', '--calib', '(calib)', '--calib-seqlen', '1'], /--calib-seqlen: expected an integer in \[2, /],
  ];
  for (const [args, message] of BAD) {
    it(`eval ${args.join(' ')}: exit 2, naming the flag`, function () {
      const r = lowbit('eval', model, '--text', dev, '--max-chunks', '1', '--quiet', ...args.map((a) => (a === '(calib)' ? calib : a)));
      assert.equal(r.code, 2, `exit ${String(r.code)}: ${r.stderr}`);
      assert.match(r.stderr, /LOWBIT_INVALID_OPTION/);
      assert.match(r.stderr, message);
    });
  }
  it('generate refuses the same flags (exit 2, naming the flag), also with --json', function () {
    const r = lowbit('generate', model, '--steps', '4', '--kv-window', '2');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--kv-window: applies to the quantized KV cache/);
    const j = lowbit('generate', model, '--steps', '4', '--act-bits', '8', '--act-scheme', 'static', '--json');
    assert.equal(j.code, 2, j.stderr);
    assert.match((JSON.parse(j.stdout) as { error: { message: string } }).error.message, /--calib FILE/);
    const v = lowbit('generate', model, '--steps', '4', '--kv-bits', '5');
    assert.equal(v.code, 2, v.stderr);
    assert.match(v.stderr, /--kv-bits: expected one of 2, 4, 8/);
  });
});
