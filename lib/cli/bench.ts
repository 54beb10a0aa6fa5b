/**
 * `lowbit bench`: the kernel and runtime benchmarks from Node, as one JSON document (the same
 * document `npm run bench` writes; docs/PERFORMANCE.md explains every field). Progress goes to
 * stderr; the JSON goes to stdout, or atomically to --out.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { LowbitError } from '../errors';
import { writeJsonAtomic } from '../pipeline/output';
import { intFlag, type RunFn } from './util';

// The bench modules live in dist/scripts/bench (shipped with the package); loaded on demand so the
// library itself never pays for them.
type BenchModule = typeof import('../../scripts/bench/run');
function benchModule(): BenchModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('../../scripts/bench/run') as BenchModule;
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
        const b = benchModule();
        if (o.list) {
          process.stdout.write(b.NAMES.join('\n') + '\n');
          return 0;
        }
        const only = o.only === undefined ? null : o.only.split(',').map((s) => s.trim()).filter(Boolean);
        if (only && only.length === 0) throw new LowbitError('LOWBIT_INVALID_OPTION', '--only: no benchmark names given', { option: '--only' });
        const bad = b.unknownBenchNames(only);
        if (bad !== null) throw new LowbitError('LOWBIT_INVALID_OPTION', `--only: no benchmark named ${JSON.stringify(bad)} (lowbit bench --list names them)`, { option: '--only' });
        if (o.threads !== undefined && o.threads < 1) throw new LowbitError('LOWBIT_INVALID_OPTION', `--threads: expected a positive integer, received ${o.threads}`, { option: '--threads' });
        if (o.out !== undefined) {
          const dir = path.dirname(path.resolve(o.out));
          if (!fs.existsSync(dir)) throw new LowbitError('LOWBIT_INVALID_OPTION', `--out: directory ${dir} does not exist`, { option: '--out', file: o.out });
        }
        const doc = await b.runBench({ quick: !!o.quick, only, threads: o.threads ?? null });
        if (o.out !== undefined) await writeJsonAtomic(o.out, doc);
        else process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
        b.logSummary(doc);
        return 0;
      }, false);
    });
}
