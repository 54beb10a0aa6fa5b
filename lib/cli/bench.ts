/**
 * `lowbit bench`: the kernel and runtime benchmarks from Node, as one JSON document (the same
 * document `npm run bench` writes; docs/PERFORMANCE.md explains every field). Progress goes to
 * stderr; the JSON goes to stdout, or atomically to --out.
 *
 * The benchmarks run in a child process (dist/scripts/bench/run.js, shipped with the package):
 * the library never loads them, and a benchmark's threads and memory end with it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { Command } from 'commander';
import { LowbitError, optionError } from '../errors';
import { requireThreads } from '../config/run';
import { intFlag, type RunFn } from './util';

/** The bench runner shipped beside the library (dist/lib/cli → dist/scripts/bench/run.js). */
const RUNNER = path.join(__dirname, '..', '..', 'scripts', 'bench', 'run.js');

function benchNames(): string[] {
  if (!fs.existsSync(RUNNER)) throw new LowbitError('LOWBIT_NOT_FOUND', `${RUNNER}: the bench runner is missing (npm run build:ts builds it)`, { file: RUNNER });
  const r = spawnSync(process.execPath, [RUNNER, '--list'], { encoding: 'utf8' });
  if (r.status !== 0) throw new LowbitError('LOWBIT_INTERNAL', `bench --list failed (${String(r.status ?? r.signal)}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return r.stdout.trim().split('\n');
}

export function benchCommand(run: RunFn): Command {
  return new Command('bench')
    .description('benchmark the kernels and the runtime on this machine beside its measured limits (and OpenBLAS / node-llama-cpp when installed); JSON out')
    .option('--quick', 'smaller sizes and fewer repeats (a smoke run)')
    .option('--only <names>', 'comma-separated benchmark names (a trailing * matches a prefix; see --list)')
    .option('--threads <n>', 'compute threads (default: one per physical core)', intFlag('--threads'))
    .option('--out <file>', 'write the JSON document to this file (atomically) instead of stdout')
    .option('--list', 'print the benchmark names and exit')
    .action(async function (this: Command) {
      const o = this.opts<{ quick?: boolean; only?: string; threads?: number; out?: string; list?: boolean }>();
      await run(async () => {
        const names = benchNames();
        if (o.list) {
          process.stdout.write(names.join('\n') + '\n');
          return 0;
        }
        const only = o.only === undefined ? null : o.only.split(',').map((s) => s.trim()).filter(Boolean);
        if (only && only.length === 0) throw optionError('--only', '--only: no benchmark names given');
        const bad = only?.find((p) => !(p.endsWith('*') ? names.some((n) => n.startsWith(p.slice(0, -1))) : names.includes(p)));
        if (bad !== undefined) throw optionError('--only', `--only: no benchmark named ${JSON.stringify(bad)} (lowbit bench --list names them)`);
        if (o.threads !== undefined) requireThreads(o.threads, '--threads');
        if (o.out !== undefined) {
          const dir = path.dirname(path.resolve(o.out));
          if (!fs.existsSync(dir)) throw optionError('--out', `--out: directory ${dir} does not exist`, { file: o.out });
        }
        const args = [RUNNER, ...(o.quick ? ['--quick'] : []), ...(only ? ['--only', only.join(',')] : []),
          ...(o.threads !== undefined ? ['--threads', String(o.threads)] : []), ...(o.out !== undefined ? ['--out', path.resolve(o.out)] : ['--stdout'])];
        const child = spawn(process.execPath, args, { stdio: 'inherit' });
        const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
        const onInt = forward('SIGINT'), onTerm = forward('SIGTERM');
        process.on('SIGINT', onInt).on('SIGTERM', onTerm);
        try {
          const code = await new Promise<number>((resolve) => {
            child.on('close', (c, s) => {
              resolve(c ?? (s ? 130 : 1));
            });
          });
          if (code !== 0) throw new LowbitError('LOWBIT_INTERNAL', `bench: the runner exited with ${code} (its error is above)`);
          return 0;
        } finally {
          process.off('SIGINT', onInt).off('SIGTERM', onTerm);
        }
      }, false);
    });
}
