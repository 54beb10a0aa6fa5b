/**
 * The AVX-512 kernels (GEMM 12×32 tile, VNNI integer-dot W4A8/W8A8/W3A8/W2A8, conversions,
 * quantization) against their references on a CPU without AVX-512: the standalone self-test
 * (native/tests/selftest.cpp) built with the AVX-512 sources compiled against portable emulations
 * of their intrinsics (SIMDe + native/tests/avx512_emu.h), and the feature check told to report
 * AVX-512 + VNNI (scripts/check-avx512.sh). Where the CPU has AVX-512, the script also runs a
 * native build (and the addon's own tests cover the variant through setIsa). Skips, saying why,
 * off x86-64 or without the SIMDe headers (apt-get install libsimde-dev). Logic only, not speed.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { packageRoot } from '../../lib/native';

function hasSimde(): boolean {
  const r = spawnSync('sh', ['-c', "echo '#include <simde/x86/avx512.h>' | ${CXX:-g++} -x c++ -std=c++17 -fsyntax-only -"], { encoding: 'utf8' });
  return r.status === 0;
}

describe('AVX-512 kernels with emulated intrinsics (native self-test)', function () {
  this.timeout(900000);
  before(function () {
    const why = process.arch !== 'x64' ? `not x86-64 (${process.arch})` : !hasSimde() ? 'SIMDe headers not installed (apt-get install libsimde-dev)' : '';
    if (why) {
      console.log(`      ${why}: AVX-512 kernels not checked`);
      this.skip();
    }
  });

  it('every AVX-512 kernel (with VNNI) matches the references on fresh random inputs', function () {
    const seed = String(Date.now());
    const r = spawnSync('bash', [path.join(packageRoot(), 'scripts', 'check-avx512.sh'), seed], { cwd: packageRoot(), encoding: 'utf8' });
    assert.equal(r.status, 0, `seed ${seed}\n${r.stdout}\n${r.stderr.slice(-4000)}`);
    assert.match(r.stdout, /AVX-512 emulated/);
    assert.match(r.stdout, /avx512\+vnni(\+bf16)? +\d+ checks, 0 failed/);
    assert.match(r.stdout, /\navx2 +\d+ checks, 0 failed/);
  });
});
