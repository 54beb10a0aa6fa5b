/**
 * The fuzz harness (scripts/fuzz, docs/FUZZING.md) in-process: every target with a fixed seed, a
 * thousand structure-aware mutations each, every 100th case also quantized, loaded and run. Each
 * case must end in a typed LowbitError or a correct result: no untyped or internal error, no
 * hang, no memory blow-up, no partial output. The seed corpus is built in memory, so no fixture
 * is needed. A failure lists every violation with the command that replays it.
 */
import { strict as assert } from 'node:assert';
import { runFuzz, TARGETS, type ViolationRecord } from '../../scripts/fuzz/harness';

/** Cases per target: ~3–6 s each on a 2-core machine (the whole file stays well under a minute). */
const CASES = 1000;
const SEED = 17;

function describeViolation(v: ViolationRecord): string {
  return `${v.kind} at case ${v.index} (${v.step}): ${v.message.split('\n')[0]}\n    mutation: ${v.mutation}\n    replay: npm run fuzz -- --target ${v.target} --seed ${v.seed} --from ${v.index} --n 1`;
}

describe('fuzz harness: nothing bad gets through', function () {
  this.timeout(300_000);

  for (const target of TARGETS) {
    it(`${target}: ${CASES} mutated inputs, each a typed error or a correct result`, async function () {
      const report = await runFuzz({ targets: [target], n: CASES, seed: SEED, fullEvery: 100, saveDir: null });
      assert.deepEqual(report.violations.map(describeViolation), [], `${report.violations.length} violations`);
      const [r] = report.targets;
      assert.equal(r.cases, CASES);
      assert.equal(r.fullCases, CASES / 100);
      // the mutations reach both outcomes: most inputs are refused, some are still valid
      const refused = Object.values(r.errors).reduce((a, b) => a + b, 0);
      assert.equal(r.accepted + refused, CASES);
      assert.ok(refused > CASES / 4 && r.accepted > 0, `accepted ${r.accepted}, refused ${JSON.stringify(r.errors)}`);
      assert.ok(!('LOWBIT_INTERNAL' in r.errors));
    });
  }
});
