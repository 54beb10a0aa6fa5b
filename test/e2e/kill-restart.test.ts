/**
 * A quantize run killed with SIGKILL leaves no output and, once the same command runs again, no
 * staging directory either: the next run removes the staging directories whose owner (this host,
 * a process that no longer exists) is gone, and writes the same bytes as an uninterrupted run.
 * Nothing else is removed: a live run's staging and a directory without an owner file stay.
 * A GPTQ run records each finished layer in its staging directory (named by a hash of its inputs
 * and options), so the rerun goes on from the last recorded layer instead of starting over.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize, writeSyntheticModel } from '../../lib/index';
import { removeAbandonedStaging } from '../../lib/formats/output';
import { packageRoot } from '../../lib/native';
import { Rng } from '../helpers/rng';
import { writeByteTokenizer } from '../helpers/tiny-llama';

function staging(parent: string, base: string): string[] {
  return fs.readdirSync(parent).filter((f) => f.startsWith(`.${base}.tmp-`));
}

function safetensorsOf(dir: string): Buffer[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort().map((f) => fs.readFileSync(path.join(dir, f)));
}

describe('kill -9 mid-run, then the same command: the same bytes, no staging left', function () {
  this.timeout(600000);
  let root: string;
  let model: string;
  let calib: string;
  before(async function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-kill-'));
    model = await writeSyntheticModel(path.join(root, 'demo'), { shape: 'demo', dtype: 'F16', seed: 4 });
    const rng = new Rng(5);
    const lines: string[] = [];
    for (let i = 0; i < 20; i++) lines.push(JSON.stringify({ input_ids: Array.from({ length: 300 }, () => rng.int(0, 2047)) }));
    calib = path.join(root, 'ids.jsonl');
    fs.writeFileSync(calib, lines.join('\n') + '\n');
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  const common = ['--method', 'gptq', '--calib-samples', '32', '--calib-seqlen', '256', '--quiet', '--threads', '1'];
  const args = [...common, '--bits', '4', '--group-size', '64'];
  const gptqRun = (out: string) => quantize(model, { method: 'gptq', bits: 4, groupSize: 64 }, { out, calibration: { file: calib, samples: 32, seqLen: 256 }, threads: 1 });
  const stepsRecorded = (parent: string, base: string): number => {
    for (const d of staging(parent, base)) {
      try {
        return (JSON.parse(fs.readFileSync(path.join(parent, d, '.resume', 'state.json'), 'utf8')) as { steps: number }).steps;
      } catch {
        // not written yet
      }
    }
    return 0;
  };
  /** Start the CLI on `out`, SIGKILL it once `when` says so (polled every 2 ms); resolves to whether it was killed mid-run. */
  const startAndKill = async (out: string, flags: string[], when: (t: number) => boolean): Promise<boolean> => {
    const child = spawn(process.execPath, [path.join(packageRoot(), 'bin', 'lowbit.js'), 'quantize', model, ...flags, '--calib', calib, '--out', out], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const t0 = Date.now();
    let killed = false;
    while (child.exitCode === null && Date.now() - t0 < 120000) {
      if (when(Date.now() - t0)) {
        child.kill('SIGKILL');
        killed = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    await exited;
    return killed && !fs.existsSync(out);
  };

  it('GPTQ killed at several points (before the first layer is recorded, between layers, mid-layer, after the last); each rerun resumes and equals an uninterrupted run', async function () {
    const reference = await gptqRun(path.join(root, 'reference'));
    const want = safetensorsOf(reference.out);
    assert.equal(reference.calibration?.resumedLayers, 0);
    const layers = reference.calibration.layers ?? 0;
    assert.ok(layers >= 4);
    // kill points: a staging directory and nothing recorded; right after layer 1 is recorded;
    // 150 ms into the layer after 2 were; once every layer is recorded (writing the output)
    const points: { name: string; when: (base: string) => (t: number) => boolean; minResumed: number }[] = [
      { name: 'nothing recorded', when: (base) => () => staging(root, base).length > 0 && stepsRecorded(root, base) === 0, minResumed: 0 },
      { name: 'between layers', when: (base) => () => stepsRecorded(root, base) >= 1, minResumed: 1 },
      { name: 'mid-layer', when: (base) => { let at = -1; return (t) => { if (at < 0 && stepsRecorded(root, base) >= 2) at = t; return at >= 0 && t - at >= 150; }; }, minResumed: 2 },
      { name: 'all recorded', when: (base) => () => stepsRecorded(root, base) >= layers, minResumed: layers },
    ];
    let resumedRuns = 0;
    for (const [i, pt] of points.entries()) {
      const base = `out-${i}`, out = path.join(root, base);
      const killed = await startAndKill(out, args, pt.when(base));
      if (!killed) continue; // it finished before the kill point (a fast machine): nothing to recover
      assert.equal(staging(root, base).length, 1, `${pt.name}: the killed run left its staging directory`);
      const seen = stepsRecorded(root, base);
      // the same command again, in this process
      const r = await gptqRun(out);
      assert.equal(r.calibration?.resumedLayers, seen, `${pt.name}: resumed from what the killed run recorded`);
      assert.ok(seen >= pt.minResumed, `${pt.name}: ${seen} layers recorded`);
      if (seen > 0) resumedRuns++;
      const got = safetensorsOf(r.out);
      assert.equal(got.length, want.length);
      for (let k = 0; k < got.length; k++) assert.ok(got[k].equals(want[k]), `${pt.name}: shard ${k} differs from the uninterrupted run`);
      assert.deepEqual(staging(root, base), [], 'no staging directory left');
      for (const f of ['.lowbit-owner.json', '.resume']) assert.ok(!fs.existsSync(path.join(out, f)), f);
    }
    assert.ok(resumedRuns >= 2, `only ${resumedRuns} reruns resumed`);
  });

  it('GPTQ into GGUF killed mid-run: the rerun resumes its checkpoint and writes the same file', async function () {
    const ref = path.join(root, 'ref.gguf');
    const vocab = writeByteTokenizer(fs.mkdtempSync(path.join(root, 'tok-')), 2048);
    const gguf = (out: string) => quantize(model, { method: 'gptq', format: 'gguf:q4_0' }, { out, tokenizer: vocab, calibration: { file: calib, samples: 32, seqLen: 256, tokenizer: vocab }, threads: 1 });
    await gguf(ref);
    const out = path.join(root, 'k.gguf');
    const killed = await startAndKill(out, [...common, '--format', 'gguf:q4_0', '--tokenizer', vocab], () => stepsRecorded(root, '.k.gguf.gptq') >= 2);
    if (!killed) this.skip();
    const r = await gguf(out);
    assert.ok((r.calibration?.resumedLayers ?? 0) >= 2);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(ref)), 'the resumed GGUF differs');
    assert.deepEqual(fs.readdirSync(root).filter((f) => f.includes('k.gguf.')), [], 'no checkpoint or staging left');
  });

  it('a changed option starts over (the old state is removed as abandoned); a live run of the same key is an error, not a second writer', async function () {
    const base = 'changed', out = path.join(root, base);
    assert.ok(await startAndKill(out, args, () => stepsRecorded(root, base) >= 1), 'killed after one layer');
    const before = staging(root, base);
    const r = await quantize(model, { method: 'gptq', bits: 4, groupSize: 32 }, { out, calibration: { file: calib, samples: 32, seqLen: 256 }, threads: 1 });
    assert.equal(r.calibration?.resumedLayers, 0);
    assert.deepEqual(staging(root, base), []);
    assert.ok(!fs.existsSync(path.join(root, before[0])));
    // a live run (a child still computing) and the same command here
    const live = 'live', liveOut = path.join(root, live);
    const child = spawn(process.execPath, [path.join(packageRoot(), 'bin', 'lowbit.js'), 'quantize', model, ...args, '--calib', calib, '--out', liveOut], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    try {
      const t0 = Date.now();
      while (staging(root, live).length === 0 && child.exitCode === null && Date.now() - t0 < 60000) await new Promise((res) => setTimeout(res, 2));
      if (child.exitCode !== null) this.skip();
      await assert.rejects(gptqRun(liveOut), (e: Error & { code?: string }) => e.code === 'LOWBIT_IO' && /another live run/.test(e.message));
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
  });

  it('removes dead runs\' staging (this host: no such process; another host: a stale heartbeat) and converted sources; leaves alone a live run\'s, another live host\'s and one without an owner file', function () {
    const target = path.join(root, 'keep');
    const mk = (name: string, owner: object | null) => {
      const d = path.join(root, name);
      fs.mkdirSync(d);
      if (owner) fs.writeFileSync(path.join(d, '.lowbit-owner.json'), JSON.stringify(owner));
      return d;
    };
    const live = mk('.keep.tmp-aaaaaaaaaaaa', { host: os.hostname(), pid: process.pid });
    const other = mk('.keep.tmp-bbbbbbbbbbbb', { host: `${os.hostname()}-elsewhere`, pid: 999999 });
    const bare = mk('.keep.tmp-cccccccccccc', null);
    const unrelated = mk('.keepx.tmp-dddddddddddd', { host: os.hostname(), pid: 2 ** 22 + 7 });
    const dead = mk('.keep.tmp-eeeeeeeeeeee', { host: os.hostname(), pid: 2 ** 22 + 7 });
    // another host's run whose heartbeat stopped eleven minutes ago
    const stale = mk('.keep.tmp-ffffffffffff', { host: `${os.hostname()}-elsewhere`, pid: 999999 });
    const old = new Date(Date.now() - 11 * 60_000);
    fs.utimesSync(path.join(stale, '.lowbit-owner.json'), old, old);
    // a converted source (llama2.c, GGUF) a killed run left
    const source = mk('.keep.source-999999999999', { host: os.hostname(), pid: 2 ** 22 + 7 });
    // a staging directory being made (no owner file yet): kept while fresh, removed once a minute old
    const claimFresh = mk('.keep.claim-111111111111', null);
    const claimOld = mk('.keep.claim-222222222222', null);
    const ago = new Date(Date.now() - 2 * 60_000);
    fs.utimesSync(claimOld, ago, ago);
    assert.deepEqual(removeAbandonedStaging(target).sort(), [source, dead, stale, claimOld].sort());
    for (const d of [live, other, bare, unrelated, claimFresh]) assert.ok(fs.existsSync(d), d);
  });
});
