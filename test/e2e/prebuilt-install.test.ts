/**
 * Install with no compiler: the packed tarball, installed into a fresh project whose PATH holds only
 * node, npm and sh (no g++, cc, make or python), loads its prebuilt addon — the install script builds
 * nothing, `require('lowbit')` works and `lowbit doctor` reports the addon as prebuilt. The
 * prebuild is made with `npm run prebuild` when the checkout has none.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from '../../lib/native';

interface DoctorJson { addonLoaded: boolean; attempts: { variant: string; path: string; result: string }[] }

function npmCli(): string | null {
  // npm next to this node (a symlink to npm-cli.js in a normal install)
  for (const c of [path.join(path.dirname(process.execPath), 'npm'), '/usr/bin/npm', '/usr/local/bin/npm']) {
    if (fs.existsSync(c)) return fs.realpathSync(c);
  }
  return null;
}

describe('prebuilt addon: a packed tarball installs and loads with no compiler on PATH', function () {
  this.timeout(600000);
  const root = packageRoot();
  const tuple = `${process.platform}-${process.arch}`;
  let work: string;
  before(function () {
    if (!npmCli()) {
      console.log('      skipped: npm not found next to node');
      this.skip();
    }
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-prebuilt-'));
  });
  after(function () {
    if (typeof work === 'string') fs.rmSync(work, { recursive: true, force: true });
  });

  it(`npm pack → npm install into a project with PATH = {node, npm, sh}: no build, require works, doctor says prebuilt (${tuple})`, function () {
    const npm = npmCli() ?? '';
    if (!fs.existsSync(path.join(root, 'prebuilds', tuple))) {
      const pb = spawnSync(process.execPath, [npm, 'run', 'prebuild'], { cwd: root, encoding: 'utf8' });
      assert.equal(pb.status, 0, `npm run prebuild: ${pb.stderr}`);
    }
    const pack = spawnSync(process.execPath, [npm, 'pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8' });
    assert.equal(pack.status, 0, pack.stderr);
    const packed = (JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[])[0];
    assert.ok(packed.files.some((f) => f.path.startsWith(`prebuilds/${tuple}/`)), 'the tarball holds the prebuilt addon');
    assert.ok(packed.files.some((f) => f.path === 'scripts/install.js'));

    // a PATH with node and npm only: nothing could compile
    const bin = path.join(work, 'bin');
    fs.mkdirSync(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    fs.symlinkSync('/bin/sh', path.join(bin, 'sh')); // npm runs lifecycle scripts through sh
    fs.writeFileSync(path.join(bin, 'npm'), `#!/bin/sh\nexec "${process.execPath}" "${npm}" "$@"\n`, { mode: 0o755 });
    const env = { PATH: bin, HOME: process.env.HOME ?? os.homedir(), TMPDIR: os.tmpdir(), npm_config_cache: path.join(os.homedir(), '.npm') };
    const probe = spawnSync('/bin/sh', ['-c', 'command -v g++ || command -v c++ || command -v cc || command -v gcc || command -v make || command -v python3 || echo none'], { env, encoding: 'utf8' });
    assert.equal(probe.stdout.trim(), 'none', `a compiler is reachable: ${probe.stdout}`);

    const proj = path.join(work, 'app');
    fs.mkdirSync(proj);
    fs.writeFileSync(path.join(proj, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const inst = spawnSync(path.join(bin, 'npm'), ['install', path.join(work, packed.filename), '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts'], { cwd: proj, env, encoding: 'utf8' });
    assert.equal(inst.status, 0, `npm install: ${inst.stdout}\n${inst.stderr}`);
    assert.match(inst.stdout + inst.stderr, /lowbit: native addon prebuilds\/.*\(prebuilt\); nothing to compile/);
    assert.ok(!fs.existsSync(path.join(proj, 'node_modules', 'lowbit', 'build')), 'nothing was built');

    const req = spawnSync(path.join(bin, 'node'), ['-e', "const l = require('lowbit'); process.stdout.write(String(l.hasAddon()) + ' ' + l.systemInfo().native.isa)"], { cwd: proj, env, encoding: 'utf8' });
    assert.equal(req.status, 0, req.stderr);
    assert.match(req.stdout, /^true (generic|avx2|avx512|neon)$/);
    const doc = spawnSync(path.join(bin, 'node'), [path.join(proj, 'node_modules', 'lowbit', 'bin', 'lowbit.js'), 'doctor', '--json'], { cwd: proj, env, encoding: 'utf8' });
    assert.equal(doc.status, 0, doc.stderr);
    const d = JSON.parse(doc.stdout) as DoctorJson;
    assert.ok(d.addonLoaded);
    const loaded = d.attempts.find((a) => a.result === 'loaded');
    assert.equal(loaded?.variant, 'prebuilt', JSON.stringify(d.attempts));
    const text = spawnSync(path.join(bin, 'node'), [path.join(proj, 'node_modules', 'lowbit', 'bin', 'lowbit.js'), 'doctor'], { cwd: proj, env, encoding: 'utf8' });
    assert.match(text.stdout, /load prebuilt +loaded/);
  });
});
