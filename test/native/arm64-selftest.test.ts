/**
 * The NEON kernels (GEMM, integer-dot W4A8/W8A8 with and without SDOT, activation quantizer,
 * conversions) against their references on AArch64, without an arm64 machine: the standalone
 * self-test (native/tests/selftest.cpp) cross-compiled with aarch64-linux-gnu-g++ and run under
 * qemu-aarch64 on a CPU model with the dot-product extension and one without
 * (scripts/check-arm64.sh). Skips, naming the missing tool, where they are not installed
 * (apt-get install g++-aarch64-linux-gnu qemu-user). Correctness only.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { packageRoot } from '../../lib/native';

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).status === 0;
}

describe('NEON kernels under qemu-aarch64 (native self-test)', function () {
  this.timeout(900000);
  before(function () {
    const missing = ['aarch64-linux-gnu-g++', 'qemu-aarch64'].filter((t) => !has(t));
    if (missing.length) {
      console.log(`      ${missing.join(', ')} not installed (apt-get install g++-aarch64-linux-gnu qemu-user): NEON kernels not checked`);
      this.skip();
    }
  });

  it('every NEON variant (with and without SDOT) matches the references on fresh random inputs', function () {
    const seed = String(Date.now());
    const r = spawnSync('bash', [path.join(packageRoot(), 'scripts', 'check-arm64.sh'), seed], { cwd: packageRoot(), encoding: 'utf8' });
    assert.equal(r.status, 0, `seed ${seed}\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /neon\+dotprod +\d+ checks, 0 failed/);
    assert.match(r.stdout, /\nneon +\d+ checks, 0 failed/);
  });
});
