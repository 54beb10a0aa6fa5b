/**
 * Quantization-aware training (lib/pipeline/qat.ts) on the real stories260K:
 * - data-free: the model generates its own data; a few steps of distillation leave a W3 g32
 *   checkpoint closer to the full-precision model (KL on held-out text) than RTN at the same
 *   setting; the data ships beside the checkpoint and serves as GPTQ calibration data;
 * - a recipe with A8 and per-token KV4 trains with them and stores them for the runtime;
 * - `lowbit qat` killed (SIGKILL) after a checkpoint and run again resumes and writes the same bytes
 *   as a run that was not killed;
 * - bad input is a typed error naming the option, and nothing is written.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { qat } from '../../lib/pipeline/qat';
import { quantize } from '../../lib/pipeline/quantize';
import { loadModel } from '../../lib/runtime/model';
import { evaluate } from '../../lib/runtime/evaluate';
import { useStories260K } from '../helpers/fixtures';
import { rejectsCode } from '../helpers/errors';
import { lowbit, LOWBIT_BIN } from '../helpers/cli';

describe('quantization-aware training (LLM-QAT) on stories260K', function () {
  this.timeout(600000);
  const fx = useStories260K('qat');
  const { bin, tok, dev } = fx;
  const W3 = { method: 'rtn' as const, bits: 3, groupSize: 32, sym: false, format: 'dequant' as const };

  async function klAgainstFp(model: string): Promise<number> {
    const ref = await loadModel(bin(), { tokenizer: tok() }), m = await loadModel(model);
    try {
      const r = await evaluate(m, { text: dev(), ctx: 256, maxChunks: 6, reference: ref });
      return r.kl ?? NaN;
    } finally {
      m.dispose();
      ref.dispose();
    }
  }

  it('data-free QAT at W3 g32 beats RTN on held-out KL; the generated data ships and calibrates GPTQ', async () => {
    const out = path.join(fx.dir(), 'w3');
    const r = await qat(bin(), W3, { data: 'synthetic:24', steps: 30, batch: 4, seqLen: 96, lr: 1e-3, checkpointEvery: 10 }, { out, tokenizer: tok() });
    assert.equal(r.losses.length, 30);
    assert.ok(r.losses.slice(-5).reduce((a, b) => a + b) < 0.6 * r.losses.slice(0, 5).reduce((a, b) => a + b), `training KL ${r.losses.slice(0, 5).join(',')} → ${r.losses.slice(-5).join(',')}`);
    const rtn = path.join(fx.dir(), 'w3-rtn');
    await quantize(bin(), W3, { out: rtn, tokenizer: tok() });
    const [kq, kr] = [await klAgainstFp(out), await klAgainstFp(rtn)];
    assert.ok(kq < 0.8 * kr, `held-out KL: QAT ${kq} vs RTN ${kr}`);
    // what ships: the data (JSONL token ids + what made it), the training in the quant log, no work directory
    const lines = fs.readFileSync(path.join(out, 'qat_data.jsonl'), 'utf8').trim().split('\n');
    assert.equal(lines.length, 24);
    for (const l of lines) assert.equal((JSON.parse(l) as { input_ids: number[] }).input_ids.length, 96);
    const meta = JSON.parse(fs.readFileSync(path.join(out, 'qat_data.jsonl.meta.json'), 'utf8')) as { kind: string; count: number; topK: number; seed: number };
    assert.deepEqual([meta.kind, meta.count, meta.topK, meta.seed], ['lowbit-synthetic', 24, 50, 0]);
    const log = JSON.parse(fs.readFileSync(path.join(out, 'quant_log.json'), 'utf8')) as { qat: { losses: number[]; quantized: { weightModules: number } } };
    assert.equal(log.qat.losses.length, 30);
    assert.equal(log.qat.quantized.weightModules, 35);
    assert.ok(!fs.readdirSync(fx.dir()).some((f) => f.includes('qat-work')), 'the work directory is removed');
    // the generated data calibrates a post-training method too
    const g = await quantize(bin(), { ...W3, method: 'gptq' }, { out: path.join(fx.dir(), 'gptq-syn'), tokenizer: tok(), calibration: { file: path.join(out, 'qat_data.jsonl'), samples: 8, seqLen: 64 } });
    assert.equal(g.calibration?.samples, 8);
  });

  it('a recipe with A8 and per-token KV4 trains with them and the checkpoint carries them', async () => {
    const out = path.join(fx.dir(), 'w4a8kv4');
    const recipe = { name: 'w4a8kv4-token', weights: { method: 'rtn' as const, bits: 4, groupSize: 32, sym: false }, activations: { bits: 8 }, kv: { bits: 4 as const } };
    const r = await qat(bin(), { recipe, format: 'dequant' }, { data: 'synthetic:8', steps: 4, batch: 2, seqLen: 64, lr: 1e-3 }, { out, tokenizer: tok() });
    const log = JSON.parse(fs.readFileSync(path.join(out, 'quant_log.json'), 'utf8')) as { qat: { quantized: { activationBits: number; kv: { bits: number; group: number } } } };
    assert.equal(log.qat.quantized.activationBits, 8);
    assert.deepEqual(log.qat.quantized.kv, { bits: 4, group: 8, sym: false });
    const m = await loadModel(r.out);
    try {
      assert.equal(m.quantization.activations?.bits, 8);
      assert.equal(m.quantization.kv?.bits, 4);
      assert.equal(m.quantization.kv.axis, 'token');
    } finally {
      m.dispose();
    }
  });

  it('lowbit qat killed after a checkpoint resumes and writes the same bytes as an uninterrupted run', async () => {
    const args = (out: string) => ['qat', bin(), '--tokenizer', tok(), '--bits', '3', '--group-size', '32', '--asym', '--format', 'dequant', '--data', 'synthetic:8', '--steps', '12', '--batch', '2', '--seq-len', '64', '--lr', '1e-3', '--checkpoint-every', '3', '--threads', '2', '--quiet', '--out', out];
    const whole = path.join(fx.dir(), 'cli-whole'), killed = path.join(fx.dir(), 'cli-killed');
    assert.equal(lowbit(...args(whole)).code, 0);
    const ckpt = path.join(fx.dir(), '.cli-killed.qat-work', 'checkpoint', 'train_state.safetensors');
    const child = spawn(process.execPath, [LOWBIT_BIN, ...args(killed)], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    for (let i = 0; i < 6000 && !fs.existsSync(ckpt) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(fs.existsSync(ckpt), 'a checkpoint was written before the kill');
    child.kill('SIGKILL');
    await exited;
    assert.ok(!fs.existsSync(path.join(killed, 'model.safetensors')), 'killed before the output');
    const r = lowbit(...args(killed), '--json');
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout) as { resumedFrom: number };
    assert.ok(res.resumedFrom >= 3, `resumed from step ${res.resumedFrom}`);
    assert.deepEqual(fs.readFileSync(path.join(killed, 'model.safetensors')), fs.readFileSync(path.join(whole, 'model.safetensors')));
  });

  it('bad input: typed errors naming the option, nothing written', async () => {
    const out = path.join(fx.dir(), 'bad');
    const run = { out, tokenizer: tok() };
    await rejectsCode(qat(bin(), W3, { data: 'synthetic:x' }, run), 'LOWBIT_INVALID_OPTION', /data/);
    await rejectsCode(qat(bin(), W3, { steps: 0 }, run), 'LOWBIT_INVALID_OPTION', /steps/);
    await rejectsCode(qat(bin(), W3, { lr: 0 }, run), 'LOWBIT_INVALID_OPTION', /lr/);
    await rejectsCode(qat(bin(), W3, { colour: 1 } as never, run), 'LOWBIT_INVALID_OPTION', /colour/);
    await rejectsCode(qat(bin(), { ...W3, method: 'gptq' }, {}, run), 'LOWBIT_INVALID_OPTION', /method: QAT exports with RTN/);
    await rejectsCode(qat(bin(), { ...W3, actOrder: true }, {}, run), 'LOWBIT_INVALID_OPTION', /actOrder: a GPTQ option/);
    await rejectsCode(qat(bin(), { recipe: 'w4a8kv4', groupSize: 32 }, {}, run), 'LOWBIT_INVALID_OPTION', /recipe\.kv: QAT trains the KV cache per token/);
    await rejectsCode(qat(bin(), { method: 'rtn', format: 'gguf:q4_0' }, {}, run), 'LOWBIT_INVALID_OPTION', /format: gguf:q4_0 is a GGUF file/);
    await rejectsCode(qat(bin(), W3, { data: path.join(fx.dir(), 'nope.jsonl'), steps: 1 }, run), 'LOWBIT_NOT_FOUND', /nope\.jsonl/);
    assert.ok(!fs.existsSync(out), 'nothing written');
    const cli = lowbit('qat', bin(), '--tokenizer', tok(), '--data', 'synthetic:0', '--out', out);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /LOWBIT_INVALID_OPTION/);
  });
});
