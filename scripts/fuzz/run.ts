/**
 * `npm run fuzz -- --target safetensors|gguf|llama2c|tokenizer|config|calib|all --n N --seed S [--json]`
 *
 * Options: `--save DIR` (violating inputs, default fuzz-findings/), `--from I` (first case index;
 * with `--n 1` it reruns one case), `--full-every K` (every K-th case also quantizes, loads and runs
 * the model; default 200, 0 = never), `--timeout-ms MS` (per parser case, default 5000),
 * `--full-timeout-ms MS` (per full case, default 120000),
 * `--mem-cap-mb MB` (default 1024), `--no-supervise`.
 *
 * The command runs the harness in a child process it supervises: a native crash that kills the
 * child is still reported (target, seed, case, mutation, from a journal the worker writes before
 * each case) and its input saved. Exit code 0: no violation; 1: violations (or a crash); 2: bad
 * arguments.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { runFuzz, splitCases, TARGETS, type FuzzReport, type TargetName, type TargetReport, type ViolationRecord } from './harness';
import { findingDir } from './protocol';

interface Args {
  targets: TargetName[];
  n: number;
  seed: number;
  from: number;
  json: boolean;
  save: string;
  fullEvery: number;
  timeoutMs: number;
  fullTimeoutMs: number;
  memCapMb: number;
  supervise: boolean;
}

function usage(msg: string): never {
  process.stderr.write(`fuzz: ${msg}\nusage: npm run fuzz -- --target ${TARGETS.join('|')}|all --n N --seed S [--json] [--save DIR] [--from I] [--full-every K] [--timeout-ms MS] [--full-timeout-ms MS] [--mem-cap-mb MB]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const a: Args = { targets: [...TARGETS], n: 1000, seed: 1, from: 0, json: false, save: 'fuzz-findings', fullEvery: 200, timeoutMs: 5000, fullTimeoutMs: 120_000, memCapMb: 1024, supervise: true };
  const int = (flag: string, v: string | undefined, min: number): number => {
    const x = Number(v);
    if (v === undefined || !Number.isSafeInteger(x) || x < min) usage(`${flag}: expected an integer ≥ ${min}, received ${JSON.stringify(v)}`);
    return x;
  };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i];
    const next = () => argv[++i] as string | undefined;
    if (f === '--target') {
      const t = next();
      if (t === 'all') a.targets = [...TARGETS];
      else if (t !== undefined && (TARGETS as readonly string[]).includes(t)) a.targets = [t as TargetName];
      else usage(`--target: expected one of ${TARGETS.join(', ')}, all; received ${JSON.stringify(t)}`);
    } else if (f === '--n') a.n = int(f, next(), 1);
    else if (f === '--seed') a.seed = int(f, next(), 0);
    else if (f === '--from') a.from = int(f, next(), 0);
    else if (f === '--json') a.json = true;
    else if (f === '--save') a.save = next() ?? usage('--save: expected a directory');
    else if (f === '--full-every') a.fullEvery = int(f, next(), 0);
    else if (f === '--timeout-ms') a.timeoutMs = int(f, next(), 1);
    else if (f === '--full-timeout-ms') a.fullTimeoutMs = int(f, next(), 1);
    else if (f === '--mem-cap-mb') a.memCapMb = int(f, next(), 1);
    else if (f === '--no-supervise') a.supervise = false;
    else usage(`unknown argument ${JSON.stringify(f)}`);
  }
  return a;
}

function pad(s: string | number, n: number, right = false): string {
  const t = String(s);
  return right ? t.padEnd(n) : t.padStart(n);
}

function targetLine(r: TargetReport): string {
  const errs = Object.entries(r.errors).sort((x, y) => y[1] - x[1]).map(([c, k]) => `${c.replace(/^LOWBIT_/, '')} ${k}`).join(', ') || '-';
  return `${pad(r.target, 12, true)} ${pad(r.cases, 7)} ${pad(r.accepted, 8)} ${pad(r.violations, 10)} ${pad(r.fullCases, 5)} ${pad(r.casesPerSecond.toFixed(0), 8)}  ${errs}`;
}

function violationLine(v: ViolationRecord): string {
  return `VIOLATION ${v.kind} target=${v.target} seed=${v.seed} case=${v.index} step=${v.step}\n  mutation: ${v.mutation}\n  ${v.message.split('\n')[0].slice(0, 400)}${v.saved ? `\n  saved: ${v.saved}` : ''}\n  rerun: npm run fuzz -- --target ${v.target} --seed ${v.seed} --from ${v.index} --n 1\n`;
}

async function child(a: Args): Promise<number> {
  const header = `${pad('target', 12, true)} ${pad('cases', 7)} ${pad('accepted', 8)} ${pad('violations', 10)} ${pad('full', 5)} ${pad('cases/s', 8)}  typed errors by code`;
  if (!a.json) {
    const per = splitCases(a.n, a.targets.length);
    process.stdout.write(`fuzz: seed ${a.seed}, ${a.n} cases (${a.targets.map((t, i) => `${t} ${per[i]}`).join(', ')}), cases ${a.from}…, full steps every ${a.fullEvery || 'never'}\n${header}\n`);
  }
  const report: FuzzReport = await runFuzz({
    targets: a.targets, n: a.n, seed: a.seed, from: a.from, fullEvery: a.fullEvery, caseTimeoutMs: a.timeoutMs, fullTimeoutMs: a.fullTimeoutMs, memCapBytes: a.memCapMb * 2 ** 20,
    saveDir: a.save, journal: process.env.LOWBIT_FUZZ_JOURNAL ?? null,
    onViolation: (v) => { if (!a.json) process.stderr.write(violationLine(v)); },
    onTarget: (r) => { if (!a.json) process.stdout.write(`${targetLine(r)}\n`); },
  });
  if (a.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    const total = report.violations.length;
    process.stdout.write(`total: ${report.cases} cases, ${total} violations, ${report.seconds.toFixed(1)} s (${(report.cases / report.seconds).toFixed(0)} cases/s) on ${report.machine.cpu} (${report.machine.cores} CPUs), node ${report.machine.node}\n`);
  }
  return report.violations.length > 0 ? 1 : 0;
}

/** Run the harness in a child process; report a crash that killed it from the journal. */
function supervise(argv: string[], a: Args): number {
  const journal = path.join(os.tmpdir(), `lowbit-fuzz-journal-${process.pid}-${Date.now()}`);
  fs.writeFileSync(journal, '');
  try {
    const r = spawnSync(process.execPath, [__filename, ...argv], { stdio: 'inherit', env: { ...process.env, LOWBIT_FUZZ_CHILD: '1', LOWBIT_FUZZ_JOURNAL: journal } });
    if (r.status !== null && r.status >= 0 && r.status <= 3) return r.status; // 3: the harness itself failed (its own message)
    const why = r.signal ? `signal ${r.signal}` : `exit code ${String(r.status)}`;
    const text = fs.readFileSync(journal, 'utf8').trim();
    if (!text) {
      process.stderr.write(`fuzz: the harness died (${why}) before any case ran\n`);
      return 1;
    }
    let last: { target: TargetName; seed: number; index: number; caseDir: string; mutation: string };
    try {
      last = JSON.parse(text) as typeof last;
    } catch {
      process.stderr.write(`fuzz: the harness died (${why}); its last case: ${text.slice(0, 500)}\n`);
      return 1;
    }
    let saved: string | null = null;
    if (fs.existsSync(last.caseDir)) {
      saved = findingDir(path.resolve(a.save), last.target, last.seed, last.index);
      fs.rmSync(saved, { recursive: true, force: true });
      fs.cpSync(last.caseDir, saved, { recursive: true });
      fs.writeFileSync(path.join(saved, 'finding.json'), JSON.stringify({ ...last, kind: 'crash', message: why }, null, 2));
    }
    // the child's per-run temp directory: <tmp>/lowbit-fuzz-XXXX/<target>-N/case
    const runDir = path.dirname(path.dirname(last.caseDir));
    if (path.basename(runDir).startsWith('lowbit-fuzz-')) fs.rmSync(runDir, { recursive: true, force: true });
    process.stderr.write(violationLine({ target: last.target, seed: last.seed, index: last.index, kind: 'crash', step: 'case', mutation: last.mutation, message: `the fuzz process died: ${why}`, saved }));
    return 1;
  } finally {
    fs.rmSync(journal, { force: true });
  }
}

function main(): void {
  const argv = process.argv.slice(2);
  const a = parseArgs(argv);
  if (a.supervise && process.env.LOWBIT_FUZZ_CHILD !== '1') {
    process.exitCode = supervise(argv, a);
    return;
  }
  child(a).then((code) => { process.exitCode = code; }, (e: unknown) => {
    process.stderr.write(`fuzz: the harness failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exitCode = 3;
  });
}

main();
