/**
 * The ISA-specific objects of the node-gyp build (static libraries lowbit_avx2, lowbit_avx512,
 * lowbit_avx512vnni, compiled with -mavx2 / -mavx512*) must not define weak symbols. An inline
 * function or template instantiated there (a std::vector member, a header helper the compiler chose
 * not to inline) is a weak definition compiled with that group's flags; the linker keeps one copy
 * of each for the whole addon, and if it kept this one, a CPU without the extension would fault in
 * code that never asked for it. Today the generic objects come first on the link line and win,
 * but that is an accident of order. Skips where the node-gyp objects or `nm` are absent.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../../lib/native';

function objects(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? objects(p) : e.name.endsWith('.o') ? [p] : [];
  });
}

describe('ISA objects define no weak symbols (node-gyp build)', function () {
  const root = path.join(packageRoot(), 'build', 'Release', 'obj.target');
  const groups = ['lowbit_avx2', 'lowbit_avx512', 'lowbit_avx512vnni'];
  const objs = groups.flatMap((g) => objects(path.join(root, g)));
  before(function () {
    const why = objs.length === 0 ? `no ISA objects under ${root} (not an x86-64 node-gyp build)` : spawnSync('nm', ['--version']).status !== 0 ? 'nm not installed' : '';
    if (why) {
      console.log(`      ${why}: not checked`);
      this.skip();
    }
  });

  it('no W/V/u symbols in any AVX2 / AVX-512 object', function () {
    const bad: string[] = [];
    for (const o of objs) {
      const r = spawnSync('nm', ['-C', '--defined-only', o], { encoding: 'utf8' });
      assert.equal(r.status, 0, `nm ${o}: ${r.stderr}`);
      for (const line of r.stdout.split('\n')) {
        const m = /^[0-9a-f]+ ([WVu]) (.*)$/.exec(line);
        // the personality-routine reference is data shared by every object with exceptions, not code
        if (m && m[2] !== 'DW.ref.__gxx_personality_v0') bad.push(`${path.relative(root, o)}: ${m[2]}`);
      }
    }
    assert.deepEqual(bad, [], `weak definitions compiled with ISA flags:\n${bad.join('\n')}`);
  });
});
