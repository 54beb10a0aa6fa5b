/**
 * The fuzz harness: for each target, runs its cases in a worker thread and watches it from the
 * main thread. A case that runs past its time limit is a hang, process memory past the cap is a
 * memory violation, a worker that dies mid-case is a crash; in each of these the worker is
 * terminated, the case's input saved, and a fresh worker carries on from the next case. Everything
 * a case reports itself (untyped or internal errors, wrong results, partial output) arrives as a
 * message. Temporary files live in one per-run directory under os.tmpdir(), removed at the end.
 *
 * Use {@link runFuzz} in-process (the e2e test does) or through `npm run fuzz` (scripts/fuzz/run.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { TargetName, TargetReport, ViolationKind, ViolationRecord } from './types';
import { findingDir, type WorkerData, type WorkerMessage } from './protocol';

export { TARGETS, type TargetName, type TargetReport, type ViolationRecord } from './types';

/** Options of {@link runFuzz}. */
export interface FuzzOptions {
  /** Targets to run, in order. */
  targets: readonly TargetName[];
  /** Cases in total, split evenly over the targets (the first ones get the remainder). */
  n: number;
  /** Run seed: the same seed, the same cases. */
  seed: number;
  /** Index of the first case of every target (rerun one case with `from: I, n: 1`). @default 0 */
  from?: number;
  /** Every fullEvery-th case also quantizes, loads and runs the model (0: never). @default 200 */
  fullEvery?: number;
  /** Time limit of a parser-only case, ms. @default 5000 */
  caseTimeoutMs?: number;
  /** Time limit of a full case (quantize, load, forward), ms. @default 120000 */
  fullTimeoutMs?: number;
  /** Memory a case may add (RSS or ArrayBuffers), bytes. @default 1 GiB */
  memCapBytes?: number;
  /** Where violating inputs are saved; null: not saved. @default null */
  saveDir?: string | null;
  /** Crash journal (the CLI supervisor's): the current case is written there before it runs. */
  journal?: string | null;
  /** Called as each violation is found. */
  onViolation?: (v: ViolationRecord) => void;
  /** Called as each target finishes. */
  onTarget?: (r: TargetReport) => void;
}

/** What a run found. */
export interface FuzzReport {
  seed: number;
  cases: number;
  violations: ViolationRecord[];
  targets: TargetReport[];
  seconds: number;
  machine: { cpu: string; cores: number; node: string };
}

/** The case a worker was stopped at, and why. */
interface StopInfo {
  index: number;
  full: boolean;
  kind: ViolationKind;
  message: string;
  mutation: string;
}

/** How a worker run ended: all cases done, or stopped by the watchdog at a case. */
type WorkerEnd = { stop: null } | { stop: StopInfo };

const WORKER_FILE = path.join(__dirname, 'worker.js');

/** Cases per target: `n` split evenly, the remainder to the first targets. */
export function splitCases(n: number, targets: number): number[] {
  return Array.from({ length: targets }, (_, i) => Math.floor(n / targets) + (i < n % targets ? 1 : 0));
}

/** Run the fuzzer. Resolves with the report (violations included); rejects only when the harness itself fails. */
export async function runFuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const t0 = performance.now();
  const fullEvery = opts.fullEvery ?? 200;
  const caseTimeoutMs = opts.caseTimeoutMs ?? 5000;
  const fullTimeoutMs = opts.fullTimeoutMs ?? 120_000;
  const memCapBytes = opts.memCapBytes ?? 2 ** 30;
  const saveDir = opts.saveDir ? path.resolve(opts.saveDir) : null;
  const from = opts.from ?? 0;
  const counts = splitCases(opts.n, opts.targets.length);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-fuzz-'));
  const violations: ViolationRecord[] = [];
  const reports: TargetReport[] = [];
  try {
    for (let ti = 0; ti < opts.targets.length; ti++) {
      const target = opts.targets[ti];
      const tStart = performance.now();
      const report: TargetReport = { target, cases: 0, accepted: 0, errors: {}, fullCases: 0, violations: 0, seconds: 0, casesPerSecond: 0 };
      const found = (v: ViolationRecord) => {
        violations.push(v);
        report.violations++;
        opts.onViolation?.(v);
      };
      let next = from;
      const end = from + counts[ti];
      let attempt = 0;
      while (next < end) {
        const dir = path.join(root, `${target}-${attempt++}`);
        fs.mkdirSync(dir);
        const data: WorkerData = { target, seed: opts.seed, start: next, end, fullEvery, dir, saveDir, memCapBytes, journal: opts.journal ?? null };
        // The watchdog stopped the worker at a case: that case is the violation. It is saved and
        // reported before the worker is terminated, because terminating a worker in the middle of
        // native work can abort the whole process (see docs/FUZZING.md); the CLI's supervisor then
        // reports the crash too.
        const onStop = (stop: StopInfo) => {
          let saved: string | null = null;
          if (saveDir) {
            saved = findingDir(saveDir, target, opts.seed, stop.index);
            fs.rmSync(saved, { recursive: true, force: true });
            try {
              fs.cpSync(path.join(dir, 'case'), saved, { recursive: true, verbatimSymlinks: true });
            } catch {
              fs.mkdirSync(saved, { recursive: true }); // nothing (or not everything) to copy: the finding still records the case
            }
          }
          const v: ViolationRecord = { target, seed: opts.seed, index: stop.index, kind: stop.kind, step: 'case', mutation: stop.mutation, message: stop.message, saved };
          if (saved) fs.writeFileSync(path.join(saved, 'finding.json'), JSON.stringify(v, null, 2));
          report.cases++;
          if (stop.full) report.fullCases++;
          found(v);
        };
        const r = await runWorker(data, { caseTimeoutMs, fullTimeoutMs, memCapBytes }, (m) => {
          if (m.type !== 'end') return;
          report.cases++;
          if (m.full) report.fullCases++;
          if (m.violation) found(m.violation);
          else if (m.outcome === 'accepted') report.accepted++;
          else report.errors[m.outcome] = (report.errors[m.outcome] ?? 0) + 1;
        }, onStop);
        fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
        if (r.stop === null) break;
        next = r.stop.index + 1; // go on after the case that stopped the worker
      }
      report.seconds = (performance.now() - tStart) / 1000;
      report.casesPerSecond = report.cases / Math.max(report.seconds, 1e-9);
      reports.push(report);
      opts.onTarget?.(report);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  }
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  return {
    seed: opts.seed, cases: reports.reduce((s, r) => s + r.cases, 0), violations, targets: reports,
    seconds: (performance.now() - t0) / 1000, machine: { cpu, cores: os.cpus().length, node: process.version },
  };
}

/** Run one worker over [data.start, data.end) under the watchdog. */
function runWorker(data: WorkerData, limits: { caseTimeoutMs: number; fullTimeoutMs: number; memCapBytes: number }, onMessage: (m: WorkerMessage) => void,
  onStop: (stop: StopInfo) => void): Promise<WorkerEnd> {
  return new Promise<WorkerEnd>((resolve, reject) => {
    const capMb = Math.ceil(limits.memCapBytes / 2 ** 20);
    const worker = new Worker(WORKER_FILE, { workerData: data, resourceLimits: { maxOldGenerationSizeMb: capMb + 256 } });
    // the case running now, and the process RSS when it started (growth is measured per case: the
    // heap between cases holds garbage of earlier ones, which is not the current case's doing)
    let current: { index: number; full: boolean; mutation: string; since: number; rss: number } | null = null;
    let settled = false;
    const finish = (end: WorkerEnd | Error) => {
      if (settled) return;
      settled = true;
      clearInterval(timer);
      const done = () => (end instanceof Error ? reject(end) : resolve(end));
      // a worker stuck in native code may never finish terminating: do not wait for it forever
      Promise.race([worker.terminate(), new Promise((r) => setTimeout(r, 5000))]).then(done, done);
    };
    const stopAt = (kind: ViolationKind, message: string) => {
      if (!current) {
        finish(new Error(`fuzz worker (${data.target}) failed outside any case: ${message}`));
        return;
      }
      const stop = { index: current.index, full: current.full, kind, message, mutation: current.mutation };
      try {
        onStop(stop);
      } catch (e) {
        finish(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      finish({ stop });
    };
    const timer = setInterval(() => {
      if (!current) return;
      const limit = current.full ? limits.fullTimeoutMs : limits.caseTimeoutMs;
      const ms = performance.now() - current.since;
      if (ms > limit) {
        stopAt('hang', `no result after ${(ms / 1000).toFixed(1)} s (limit ${limit / 1000} s); the worker was terminated`);
        return;
      }
      const grew = process.memoryUsage.rss() - current.rss;
      if (grew > limits.memCapBytes) stopAt('memory', `process RSS grew by ${(grew / 2 ** 20).toFixed(0)} MiB during the case (cap ${capMb} MiB); the worker was terminated`);
    }, 50);
    worker.on('message', (m: WorkerMessage) => {
      if (settled) return;
      if (m.type === 'start') current = { index: m.index, full: m.full, mutation: m.mutation, since: performance.now(), rss: process.memoryUsage.rss() };
      else if (m.type === 'end') current = null;
      else if (m.type === 'done') finish({ stop: null });
      onMessage(m);
    });
    worker.on('error', (e: Error & { code?: string }) => {
      if (e.code === 'ERR_WORKER_OUT_OF_MEMORY') stopAt('memory', `the worker ran out of its ${capMb + 256} MiB heap: ${e.message}`);
      else stopAt(current ? 'untyped-error' : 'crash', `uncaught in the worker: ${e.name}: ${e.message}`);
    });
    worker.on('exit', (code) => {
      if (!settled) stopAt('crash', `the worker exited with code ${code} mid-case`);
    });
  });
}
