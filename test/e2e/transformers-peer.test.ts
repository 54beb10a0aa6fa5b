/**
 * transformers reads what lowbit's rotation writes: stories260K rotated (RMSNorm folded, R1, R2) is a
 * standard Llama checkpoint, and transformers' LlamaForCausalLM gives the original model's logits
 * from it (1e-4 of the largest; measured 1.4e-6). Runs when python3 can import torch and
 * transformers (test/peer/transformers_logits.py); skips with the reason otherwise.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { transformModel } from '../../lib/pipeline/quantize';
import { loadModel } from '../../lib/runtime/model';
import { packageRoot } from '../../lib/native';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { maxRelError } from '../helpers/slow-forward';

describe('transformers reads a rotated checkpoint', function () {
  this.timeout(300000);
  let dir = '';
  before(function () {
    if (!fixturesDir()) {
      console.log(`      (skipped: ${NO_FIXTURES})`);
      this.skip();
    }
    const probe = spawnSync('python3', ['-c', 'import torch, transformers'], { encoding: 'utf8' });
    if (probe.status !== 0) {
      console.log(`      (skipped: python3 with torch and transformers not available: ${(probe.stderr || String(probe.error)).trim().split('\n').pop() ?? ''})`);
      this.skip();
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-tf-peer-'));
  });
  after(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });

  it('LlamaForCausalLM on the rotated checkpoint gives the original logits', async () => {
    const fx = fixturesDir() ?? '';
    const bin = path.join(fx, 'stories260K', 'stories260K.bin'), tok = path.join(fx, 'stories260K', 'tok512.bin');
    const rot = path.join(dir, 'rotated');
    await transformModel(bin, ['rotate'], { out: rot, tokenizer: tok });
    const ids = Array.from({ length: 64 }, (_, i) => (i === 0 ? 1 : ((i * 131) % 509) + 3));
    const m = await loadModel(bin, { tokenizer: tok });
    const ours = await m.forward(ids, 0, ids.length);
    m.dispose();
    fs.writeFileSync(path.join(dir, 'ids.json'), JSON.stringify(ids));
    const out = path.join(dir, 'logits.f32');
    const r = spawnSync('python3', [path.join(packageRoot(), 'test', 'peer', 'transformers_logits.py'), rot, path.join(dir, 'ids.json'), out], { encoding: 'utf8', timeout: 240000 });
    assert.equal(r.status, 0, r.stderr);
    const b = fs.readFileSync(out);
    const theirs = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    assert.equal(theirs.length, ours.length);
    const err = maxRelError(theirs, ours);
    console.log(`      transformers on the rotated checkpoint vs lowbit on the original: ${err.toExponential(2)} of the largest logit`);
    assert.ok(err < 1e-4, `${err}`);
  });
});
