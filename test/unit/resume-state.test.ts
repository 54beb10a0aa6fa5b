/**
 * The resume state a GPTQ run keeps in its staging directory (lib/formats/resume.ts): steps read
 * back exactly as saved, the attachment follows the latest step, and a state of another key, or
 * one whose files are missing or unreadable, is discarded (the run starts over) — never half-used.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ResumeState } from '../../lib/formats/resume';
import { ActivationStore } from '../../lib/runtime/activations';
import { Rng } from '../helpers/rng';

const KEY = 'a'.repeat(64), OTHER = 'b'.repeat(64);

function bytes(rng: Rng, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => rng.int(0, 255));
}

describe('resume state (formats/resume.ts)', function () {
  let dir: string;
  beforeEach(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-resume-'));
  });
  afterEach(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('saves steps with their parts and an attachment, and reads them back in a new process\'s view', async function () {
    const rng = new Rng(3);
    const s = await ResumeState.open(dir, KEY);
    assert.equal(s.steps, 0);
    const parts = [0, 1].map((step) => [
      { name: `m${step}.a`, meta: { rows: 3, stats: { sqnrDb: null, mse: 0.5 } }, tensors: new Map([['x', bytes(rng, 17)], ['y', bytes(rng, 0)], ['z', bytes(rng, 1)]]) },
      { name: `m${step}.b`, meta: 'plain', tensors: new Map<string, Uint8Array>() },
    ]);
    for (const step of [0, 1]) {
      await s.saveStep(step, parts[step], `act-${step}.f32`, (f) => fs.promises.writeFile(f, `state after ${step}`));
    }
    await assert.rejects(s.saveStep(3, [], null), /step 3 saved after 2 steps/);
    // only the latest attachment is kept
    assert.ok(!fs.existsSync(path.join(dir, 'act-0.f32')));
    const t = await ResumeState.open(dir, KEY);
    assert.equal(t.steps, 2);
    assert.equal(fs.readFileSync(t.attachment ?? '', 'utf8'), 'state after 1');
    for (const step of [0, 1]) {
      const got = await t.loadStep(step);
      assert.deepEqual(got.map((p) => [p.name, p.meta]), parts[step].map((p) => [p.name, p.meta]));
      for (const [i, p] of got.entries()) {
        assert.deepEqual([...p.tensors.keys()], [...parts[step][i].tensors.keys()]);
        for (const [k, v] of p.tensors) assert.deepEqual(v, parts[step][i].tensors.get(k));
      }
    }
    await assert.rejects(t.loadStep(2), /not recorded/);
  });

  it('another key, a missing step file, a missing attachment or an unreadable state.json: discarded, the run starts over', async function () {
    const fill = async () => {
      const s = await ResumeState.open(dir, KEY);
      await s.saveStep(0, [{ name: 'a', meta: 1, tensors: new Map([['t', new Uint8Array([1, 2, 3])]]) }], 'act-0.f32', (f) => fs.promises.writeFile(f, 'x'));
      await s.saveStep(1, [], 'act-1.f32', (f) => fs.promises.writeFile(f, 'y'));
    };
    const damage: [string, () => void][] = [
      ['another key', () => undefined],
      ['a missing step file', () => fs.rmSync(path.join(dir, 'step-0.bin'))],
      ['a missing attachment', () => fs.rmSync(path.join(dir, 'act-1.f32'))],
      ['a truncated state.json', () => fs.writeFileSync(path.join(dir, 'state.json'), '{"v":1,"key"')],
    ];
    for (const [what, hurt] of damage) {
      await fill();
      hurt();
      const s = await ResumeState.open(dir, what === 'another key' ? OTHER : KEY);
      assert.equal(s.steps, 0, what);
      assert.deepEqual(fs.readdirSync(dir), [], `${what}: the old files are removed`);
    }
  });

  it('a damaged step file is a typed error naming it and the staging directory to remove', async function () {
    const s = await ResumeState.open(dir, KEY);
    await s.saveStep(0, [{ name: 'a', meta: 1, tensors: new Map([['t', new Uint8Array(100)]]) }], null);
    const f = path.join(dir, 'step-0.bin');
    fs.truncateSync(f, fs.statSync(f).size - 10);
    await assert.rejects((await ResumeState.open(dir, KEY)).loadStep(0), (e: Error & { code?: string }) => e.code === 'LOWBIT_BAD_FORMAT' && e.message.includes(f) && /tensor t past the end/.test(e.message));
  });
});

describe('activation store: saveTo / loadFrom (a resume point), in memory and spilled', function () {
  it('the windows written by one store are read back byte for byte by another, whatever each one\'s placement', async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-act-'));
    try {
      const rng = new Rng(9);
      const samples = 7, row = 13; // odd sizes: chunks of 2 windows leave a last chunk of 1
      const want = Float32Array.from({ length: samples * row }, () => rng.normal());
      for (const [saveBudget, loadBudget] of [[Infinity, 2 * row * 4], [2 * row * 4, Infinity], [3 * row * 4, 2 * row * 4]]) {
        const a = await ActivationStore.create(samples, row, saveBudget, dir);
        const b = await ActivationStore.create(samples, row, loadBudget, dir);
        try {
          await a.forEach((first, count, data) => {
            data.set(want.subarray(first * row, (first + count) * row));
            return Promise.resolve();
          }, true);
          const file = path.join(dir, `point-${saveBudget}-${loadBudget}.f32`);
          await a.saveTo(file);
          assert.equal(fs.statSync(file).size, want.byteLength);
          await assert.rejects(a.saveTo(file), (e: Error & { code?: string }) => e.code === 'LOWBIT_IO');
          await b.loadFrom(file);
          const got = new Float32Array(samples * row);
          await b.forEach((first, count, data) => {
            got.set(data.subarray(0, count * row), first * row);
            return Promise.resolve();
          }, false);
          assert.deepEqual(got, want);
          const short = path.join(dir, 'short.f32');
          fs.writeFileSync(short, new Uint8Array(8));
          await assert.rejects(b.loadFrom(short), (e: Error & { code?: string }) => e.code === 'LOWBIT_BAD_FORMAT' && e.message.includes(short));
        } finally {
          await a.dispose();
          await b.dispose();
        }
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
