/**
 * The case loop, run in a worker thread so the main thread can watch it: builds the corpus, then
 * for each case index makes the case, writes its files, runs it through the API, classifies what
 * came out, and reports one 'start' and one 'end' message per case. The main thread kills the
 * worker when a case runs past its time limit or memory grows past the cap.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { isLowbitError } from '../../lib/index';
import { buildCorpus } from './seeds';
import { caseRng } from './rng';
import { resetDir, syncCaseDir, writeCaseFiles } from './case-files';
import { TARGET_BY_NAME } from './targets';
import { Violation, type CaseContext, type FuzzCase, type ViolationRecord } from './types';
import { findingDir, isFullCase, type WorkerData, type WorkerMessage } from './protocol';

function describeThrown(e: unknown): { message: string; stack: string | undefined } {
  if (e instanceof Error) return { message: `${e.name}: ${e.message}`, stack: e.stack };
  return { message: `a thrown ${typeof e}: ${String(e)}`, stack: undefined };
}

async function main(): Promise<void> {
  const data = workerData as WorkerData;
  // The tokenizer library logs what it cannot parse; the cases' outcomes are what count here, so
  // its console output would only bury the report.
  for (const k of ['log', 'info', 'warn', 'error', 'debug'] as const) console[k] = () => undefined;
  const port = parentPort;
  if (!port) throw new Error('fuzz worker: no parent port');
  const post = (m: WorkerMessage) => port.postMessage(m);
  const scratch = path.join(data.dir, 'scratch');
  const caseDir = path.join(data.dir, 'case');
  resetDir(scratch);
  const corpus = await buildCorpus(scratch);
  const target = TARGET_BY_NAME[data.target];
  const journalFd = data.journal ? fs.openSync(data.journal, 'r+') : null;
  post({ type: 'ready' });

  for (let index = data.start; index < data.end; index++) {
    const full = isFullCase(index, data.fullEvery);
    let c: FuzzCase;
    try {
      c = target.make(caseRng(data.seed, data.target, index), corpus);
    } catch (e) {
      throw new Error(`fuzz harness: making case ${index} of ${data.target} failed: ${describeThrown(e).message}`, { cause: e });
    }
    post({ type: 'start', index, full, mutation: c.mutation });
    if (journalFd !== null) {
      const line = Buffer.alloc(2048, 0x20); // fixed size, written in place: the last case is always whole
      line.write(JSON.stringify({ target: data.target, seed: data.seed, index, caseDir, mutation: c.mutation.slice(0, 300) }));
      fs.writeSync(journalFd, line, 0, line.length, 0);
    }
    syncCaseDir(caseDir, c.files, c.dirs, c.links);

    let outcome = 'accepted';
    const ctx: CaseContext = {
      dir: caseDir,
      entry: path.join(caseDir, c.entry),
      full,
      async probe<T>(step: string, fn: () => T | Promise<T>): Promise<T | undefined> {
        try {
          return await fn();
        } catch (e) {
          if (e instanceof Violation) throw e;
          if (!isLowbitError(e)) {
            const d = describeThrown(e);
            throw new Violation('untyped-error', step, d.message, d.stack);
          }
          if (e.code === 'LOWBIT_INTERNAL') throw new Violation('internal-error', step, e.message, e.stack);
          if (e.code === 'LOWBIT_BAD_FORMAT' && !e.message.includes(caseDir)) throw new Violation('unnamed-error', step, e.message, e.stack);
          if (outcome === 'accepted') outcome = e.code;
          return undefined;
        }
      },
      wrong(step: string, message: string): never {
        throw new Violation('wrong-result', step, message);
      },
    };

    const mem0 = process.memoryUsage();
    let violation: Violation | null = null;
    try {
      await target.run(c, ctx, corpus);
    } catch (e) {
      const d = describeThrown(e);
      violation = e instanceof Violation ? e : new Violation('untyped-error', 'run', d.message, d.stack);
    }
    const mem1 = process.memoryUsage();
    const grew = Math.max(mem1.rss - mem0.rss, mem1.arrayBuffers - mem0.arrayBuffers);
    if (!violation && grew > data.memCapBytes) {
      violation = new Violation('memory', 'case', `memory grew by ${(grew / 2 ** 20).toFixed(0)} MiB during the case (cap ${(data.memCapBytes / 2 ** 20).toFixed(0)} MiB)`);
    }

    let record: ViolationRecord | null = null;
    if (violation) {
      let saved: string | null = null;
      if (data.saveDir) {
        saved = findingDir(data.saveDir, data.target, data.seed, index);
        resetDir(saved);
        writeCaseFiles(saved, c.files, c.dirs, c.links);
      }
      record = { target: data.target, seed: data.seed, index, kind: violation.kind, step: violation.step, mutation: c.mutation, message: violation.message, saved };
      if (saved) fs.writeFileSync(path.join(saved, 'finding.json'), JSON.stringify({ ...record, entry: c.entry, vocabSize: c.vocabSize, stack: violation.detail }, null, 2));
    }
    post({ type: 'end', index, outcome: violation ? 'violation' : outcome, full, violation: record });
  }
  if (journalFd !== null) fs.closeSync(journalFd);
  fs.rmSync(caseDir, { recursive: true, force: true });
  post({ type: 'done' });
}

if (parentPort) {
  main().catch((e: unknown) => {
    // a failure of the harness itself (not of a case): let the main thread see it as an error
    setImmediate(() => {
      throw e;
    });
  });
}
