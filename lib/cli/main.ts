/** The `lowbit` command line: one file per command, each a thin wrapper over the library. */
import { Command, CommanderError } from 'commander';
import { LOWBIT_VERSION } from '../version';
import { EXIT, reportError, type RunFn } from './util';
import { inspectCommand } from './inspect';
import { quantizeCommand } from './quantize';
import { qatCommand } from './qat';
import { doctorCommand } from './doctor';
import { demoCommand } from './demo';
import { generateCommand } from './generate';
import { evalCommand } from './eval';
import { benchCommand } from './bench';
import { exportCommand } from './export';
import { workerCommand } from './worker';
import { submitCommand } from './submit';
import { jobsCommand } from './jobs';

/** Run the CLI with `argv` (process.argv form); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  let code: number = EXIT.ok;
  const run: RunFn = async (fn, json) => {
    try {
      code = await fn(json);
    } catch (e) {
      code = reportError(e, json);
    }
  };
  const program = new Command('lowbit')
    .description('quantize large language models: RTN/GPTQ at 2-8 bits, HF GPTQ checkpoints, a native C++/CUDA core')
    .version(LOWBIT_VERSION)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showHelpAfterError('(run `lowbit --help` for usage)');
  for (const c of [inspectCommand(run), quantizeCommand(run), qatCommand(run), generateCommand(run), evalCommand(run), doctorCommand(run), demoCommand(run), benchCommand(run), exportCommand(run), workerCommand(run), submitCommand(run), jobsCommand(run)]) program.addCommand(c.exitOverride());
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.ok;
      return EXIT.usage;
    }
    return reportError(e, argv.includes('--json'));
  }
  return code;
}
