/**
 * Every command takes every model source lowbit reads: an HF directory, a llama2.c `.bin` and an
 * F32 GGUF file (the real stories260K), decided by magic bytes. Quantizing each into GGUF Q4_0 and
 * into a GPTQ checkpoint works, the outputs carry their tokenizer (generate and eval need no
 * --tokenizer), and no written file holds an absolute path. A quantized GGUF is refused as a source
 * unless --allow-requantize; a file that is no model gets one error naming what was tried.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readLlama2cModel } from '../../lib/formats/llama2c';
import { writeHfFromLlama2c } from '../../lib/formats/convert';
import { detectModelSource } from '../../lib/formats/source';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { throwsCode } from '../helpers/errors';
import { lowbit } from '../helpers/cli';

interface InspectJson { ok: boolean; kind: string; layers: number; vocabSize: number }
interface GenerateJson { text: string; generatedTokens: number }
interface EvalJson { ppl: number; tokens: number }

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

describe('model sources: HF directory, llama2.c .bin and GGUF through every command (e2e, stories260K)', function () {
  this.timeout(300000);
  let root: string;
  let fx: string;
  const sources: Record<string, string> = {};
  let calib: string, dev: string;
  before(async function () {
    const f = fixturesDir();
    if (!f) {
      console.log(`      skipped: ${NO_FIXTURES}`);
      this.skip();
    }
    fx = path.join(f, 'stories260K');
    calib = path.join(f, 'text', 'tinystories-calib.txt');
    dev = path.join(f, 'text', 'tinystories-dev.txt');
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-sources-'));
    // llama2.c: the checkpoint with its vocabulary next to it as tokenizer.bin (run.c's default name)
    fs.mkdirSync(path.join(root, 'l2c'));
    fs.copyFileSync(path.join(fx, 'stories260K.bin'), path.join(root, 'l2c', 'stories260K.bin'));
    fs.copyFileSync(path.join(fx, 'tok512.bin'), path.join(root, 'l2c', 'tokenizer.bin'));
    sources.llama2c = path.join(root, 'l2c', 'stories260K.bin');
    // an HF directory holding a llama2.c tokenizer.bin (no tokenizer.json)
    const hf = path.join(root, 'hf');
    await writeHfFromLlama2c(readLlama2cModel(sources.llama2c), hf, 'F16');
    fs.copyFileSync(path.join(fx, 'tok512.bin'), path.join(hf, 'tokenizer.bin'));
    sources['hf-dir'] = hf;
    // GGUF F32 (its vocabulary is in the file)
    sources.gguf = path.join(fx, 'stories260K.gguf');
  });
  after(function () {
    if (typeof root === 'string') fs.rmSync(root, { recursive: true, force: true });
  });

  for (const kind of ['hf-dir', 'llama2c', 'gguf']) {
    it(`${kind}: inspect, quantize to gguf:q4_0 and to GPTQ, then generate and eval each output with no --tokenizer`, function () {
      const src = sources[kind];
      assert.equal(detectModelSource(src).kind, kind);
      const ins = lowbit('inspect', src, '--json');
      assert.equal(ins.code, 0, ins.stderr);
      const s = JSON.parse(ins.stdout) as InspectJson;
      assert.equal(s.kind, kind);
      assert.equal(s.layers, 5);
      assert.equal(s.vocabSize, 512);

      const gguf = path.join(root, `${kind}.q4_0.gguf`);
      const q = lowbit('quantize', src, '--format', 'gguf:q4_0', '--out', gguf, '--quiet');
      assert.equal(q.code, 0, q.stderr);
      const gdir = path.join(root, `${kind}-gptq`);
      const g = lowbit('quantize', src, '--method', 'gptq', '--calib', calib, '--calib-samples', '4', '--calib-seqlen', '128', '--group-size', '32', '--out', gdir, '--quiet',
        '--eval', dev, '--eval-ctx', '128', '--eval-chunks', '4');
      assert.equal(g.code, 0, g.stderr);
      // --eval: measured before the checkpoint is committed, written into quant_log.json and the model card
      const log = JSON.parse(fs.readFileSync(path.join(gdir, 'quant_log.json'), 'utf8')) as { evaluation: { ppl: number; referencePpl: number; kl: number; top1: number; tokens: number } };
      assert.ok(log.evaluation.ppl > 1 && log.evaluation.kl > 0 && log.evaluation.top1 > 0.5 && log.evaluation.tokens > 0, JSON.stringify(log.evaluation));
      assert.ok(fs.readFileSync(path.join(gdir, 'README.md'), 'utf8').includes(`| this model | ${log.evaluation.ppl.toFixed(4)} |`));
      assert.ok(fs.readdirSync(root).every((f) => !f.includes('.source-') && !f.includes('.tmp-')), `staging left behind: ${fs.readdirSync(root).join(', ')}`);

      for (const out of [gguf, gdir]) {
        const gen = lowbit('generate', out, '--prompt', 'Once upon a time', '--steps', '40', '--temperature', '0', '--json');
        assert.equal(gen.code, 0, `${out}: ${gen.stderr}`);
        const gj = JSON.parse(gen.stdout) as GenerateJson;
        assert.ok(gj.text.startsWith('Once upon a time') && gj.text.length > 40, gj.text);
        const ev = lowbit('eval', out, '--text', dev, '--ctx', '128', '--max-chunks', '4', '--json', '--quiet');
        assert.equal(ev.code, 0, `${out}: ${ev.stderr}`);
        const ej = JSON.parse(ev.stdout) as EvalJson;
        // stories260K's ppl at ctx 512 is 6.82; a 4-bit model on 4 short windows stays far below 30
        assert.ok(ej.ppl > 1 && ej.ppl < 30, `${out}: ppl ${ej.ppl}`);
      }
      // no absolute path in any written file (the quant log names the source by its base name)
      for (const file of [gguf, ...filesUnder(gdir)]) {
        const text = fs.readFileSync(file).toString('latin1');
        for (const abs of [root, fx, os.tmpdir()]) assert.ok(!text.includes(abs), `${file} contains ${abs}`);
      }
    });
  }

  it('GPTQ calibrated on JSONL text records and on a directory of .txt: the data recorded in quant_log.json and the model card', function () {
    const text = fs.readFileSync(calib, 'utf8');
    const jsonl = path.join(root, 'calib.jsonl');
    fs.writeFileSync(jsonl, text.split('\n').filter((t) => t.trim() !== '').slice(0, 200).map((t) => JSON.stringify({ text: t })).join('\n'));
    const dir = path.join(root, 'calib-dir');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'a.txt'), text.slice(0, 100000));
    fs.writeFileSync(path.join(dir, 'b.txt'), text.slice(100000, 200000));
    for (const [data, kind, records] of [[jsonl, 'jsonl', 200], [dir, 'dir', 2]] as const) {
      const out = path.join(root, `gptq-on-${kind}`);
      const r = lowbit('quantize', sources['hf-dir'], '--method', 'gptq', '--calib', data, '--calib-samples', '4', '--calib-seqlen', '128', '--group-size', '32', '--out', out, '--quiet');
      assert.equal(r.code, 0, r.stderr);
      const log = JSON.parse(fs.readFileSync(path.join(out, 'quant_log.json'), 'utf8')) as { calibration: { data: { kind: string; records: number; sha256: string }; textSha256: string } };
      assert.equal(log.calibration.data.kind, kind);
      assert.equal(log.calibration.data.records, records);
      assert.equal(log.calibration.textSha256, log.calibration.data.sha256);
      const card = fs.readFileSync(path.join(out, 'README.md'), 'utf8');
      assert.ok(card.includes(log.calibration.data.sha256), 'the model card names the calibration data hash');
      assert.match(card, /lowbit quantize .*--method gptq/);
    }
  });

  it('a tokenizer given with --tokenizer (tok512.bin) is carried into the output as tokenizer.bin: generate on it needs no flag', function () {
    const bare = path.join(root, 'hf-bare');
    fs.mkdirSync(bare);
    for (const f of fs.readdirSync(sources['hf-dir'])) if (f !== 'tokenizer.bin') fs.copyFileSync(path.join(sources['hf-dir'], f), path.join(bare, f));
    // transformers writes where it loaded from into config.json: that path must not reach the output
    const cfg = JSON.parse(fs.readFileSync(path.join(bare, 'config.json'), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(bare, 'config.json'), JSON.stringify({ ...cfg, _name_or_path: bare }));
    const out = path.join(root, 'bare-rtn');
    const q = lowbit('quantize', bare, '--tokenizer', path.join(fx, 'tok512.bin'), '--group-size', '32', '--out', out, '--quiet');
    assert.equal(q.code, 0, q.stderr);
    assert.ok(fs.existsSync(path.join(out, 'tokenizer.bin')));
    for (const f of filesUnder(out)) assert.ok(!fs.readFileSync(f).toString('latin1').includes(root), `${f} contains ${root}`);
    const gen = lowbit('generate', out, '--prompt', 'Once upon a time', '--max-tokens', '20', '--temperature', '0', '--json');
    assert.equal(gen.code, 0, gen.stderr);
    assert.ok((JSON.parse(gen.stdout) as GenerateJson).text.startsWith('Once upon a time'));
  });

  it('a quantized GGUF is refused as a source unless --allow-requantize; --allow-requantize with another source is refused', function () {
    const q4 = path.join(root, 'gguf.q4_0.gguf');
    if (!fs.existsSync(q4)) this.skip(); // made by the gguf case above
    const out = path.join(root, 'requant');
    const r = lowbit('quantize', q4, '--out', out);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /LOWBIT_UNSUPPORTED: .*already quantized \(.* is Q4_0\).*--allow-requantize/);
    assert.ok(!fs.existsSync(out));
    const ok = lowbit('quantize', q4, '--allow-requantize', '--format', 'dequant', '--out', out, '--quiet');
    assert.equal(ok.code, 0, ok.stderr);
    const bad = lowbit('quantize', sources['hf-dir'], '--allow-requantize', '--out', path.join(root, 'never'));
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--allow-requantize: applies to a GGUF source/);
  });

  it('a file that is no model: one LOWBIT_BAD_FORMAT naming every kind tried; a lone .safetensors needs its config.json', function () {
    const txt = path.join(root, 'notes.txt');
    fs.writeFileSync(txt, 'This is a text file, long enough to look like something. '.repeat(10));
    throwsCode(() => detectModelSource(txt), 'LOWBIT_BAD_FORMAT', 'not a model lowbit reads', 'GGUF', 'safetensors', 'llama2.c');
    for (const cmd of ['inspect', 'generate', 'eval']) {
      const r = cmd === 'eval' ? lowbit(cmd, txt, '--text', dev) : lowbit(cmd, txt);
      assert.equal(r.code, 1, `${cmd}: ${r.stderr}`);
      assert.match(r.stderr, /LOWBIT_BAD_FORMAT: .*not a model lowbit reads \(tried GGUF/, cmd);
    }
    const q = lowbit('quantize', txt, '--out', path.join(root, 'never'));
    assert.match(q.stderr, /LOWBIT_BAD_FORMAT: .*not a model lowbit reads/);
    // a safetensors file: its directory is the model when config.json is there, an error otherwise
    assert.deepEqual(detectModelSource(path.join(sources['hf-dir'], 'model.safetensors')), { kind: 'hf-dir', path: path.join(sources['hf-dir'], 'model.safetensors'), dir: sources['hf-dir'] });
    const lone = path.join(root, 'lone');
    fs.mkdirSync(lone);
    fs.copyFileSync(path.join(sources['hf-dir'], 'model.safetensors'), path.join(lone, 'model.safetensors'));
    throwsCode(() => detectModelSource(path.join(lone, 'model.safetensors')), 'LOWBIT_BAD_FORMAT', 'without its config.json');
  });
});
