/**
 * `lowbit submit --redis URL [--queue NAME] -- quantize <model> --bits 4 --out q`: queue a quantize,
 * eval or export command line as a job. The inner command line is parsed by that command's own
 * definition (lib/cli/quantize.ts, eval.ts, export.ts) with an action that runs nothing, so a job
 * takes exactly the flags, choices and checks the command takes.
 */
import { Command, CommanderError } from 'commander';
import { optionError } from '../errors';
import { enqueue } from '../queue/client';
import { JOB_KINDS, type JobData, type JobKind } from '../queue/job';
import { quantizeCall, quantizeCommand, quantizeFlagError } from './quantize';
import { evalCommand } from './eval';
import { exportCall, exportCommand } from './export';
import { EXIT, type RunFn } from './util';
import { addQueueOptions, queueCallOptions } from './jobs';

const COMMANDS: Record<JobKind, (run: RunFn) => Command> = { quantize: quantizeCommand, eval: evalCommand, export: exportCommand };

/** The eval flags a job carries (`--text` is the text file, read by the worker). */
interface EvalFlags {
  text: string;
  tokenizer?: string;
  ctx?: number;
  maxChunks?: number;
  reference?: string;
  maxContext?: number;
  activations: 'int8' | 'f32';
  packed: boolean;
  download?: boolean;
}

/**
 * Parse `argv` (`quantize <model> --bits 4 …`) with the command's own definition and turn it into
 * job data; the command's `--json`/`--quiet` are ignored, and `--download` is refused (a worker does
 * not download: fetch the model into the cache first). Also returns how to name a flag in an error.
 */
export async function jobFromCommandLine(argv: string[]): Promise<{ data: JobData; flagError: (e: unknown) => unknown }> {
  const [name, ...rest] = argv;
  const kind = JOB_KINDS.find((k) => k === name);
  if (kind === undefined) throw optionError('command', `submit: expected a quantize, eval or export command line after --, received ${JSON.stringify(argv.join(' '))}`);
  const cmd = COMMANDS[kind](async () => { /* parse only: the command's action runs nothing */ })
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s), writeOut: (s) => process.stderr.write(s) });
  try {
    await cmd.parseAsync(rest, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) throw optionError('command', `submit: the ${kind} command line: ${e.message.replace(/^error: /, '')}`);
    throw e;
  }
  const model = cmd.args[0];
  const given = (k: string) => cmd.getOptionValueSource(k) === 'cli';
  const noDownload = () => optionError('download', `--download: a job does not download; fetch the model into the cache first (\`lowbit quantize ${model} --download …\` or downloadModel), then submit its id`);
  if (kind === 'quantize') {
    const flagError = (e: unknown) => quantizeFlagError(cmd, e);
    let call;
    try {
      call = quantizeCall(cmd, model);
    } catch (e) {
      throw flagError(e);
    }
    if (call.download) throw noDownload();
    return { data: { kind, model: call.model, config: call.config, ...call.run }, flagError };
  }
  const flagError = (e: unknown) => e;
  if (kind === 'eval') {
    const o = cmd.opts<EvalFlags>();
    if (o.download) throw noDownload();
    // the run-time quantization flags are not carried by eval jobs yet: refused, never dropped
    const rq = ['kvBits', 'kvGroup', 'kvSym', 'kvAxis', 'kvBlock', 'kvWindow', 'kvRotate', 'kv', 'actBits', 'actScheme', 'actInputs', 'calib', 'calibSamples', 'calibSeqlen'].find(given);
    if (rq !== undefined) {
      const flag = rq === 'kv' ? '--no-kv' : `--${rq.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      throw optionError(rq, `${flag}: a queued eval does not carry KV-cache or activation settings yet; run \`lowbit eval\` directly (a checkpoint's stored settings do apply in the job)`);
    }
    return {
      data: {
        kind, model, textFile: o.text,
        ...(o.tokenizer !== undefined ? { tokenizer: o.tokenizer } : {}), ...(o.ctx !== undefined ? { ctx: o.ctx } : {}),
        ...(o.maxChunks !== undefined ? { maxChunks: o.maxChunks } : {}), ...(o.reference !== undefined ? { reference: o.reference } : {}),
        ...(o.maxContext !== undefined ? { maxContext: o.maxContext } : {}),
        ...(given('activations') ? { activations: o.activations } : {}), ...(given('packed') ? { packed: o.packed } : {}),
      },
      flagError,
    };
  }
  const call = exportCall(cmd, model);
  return { data: { kind, model: call.model, out: call.out, ...call.options }, flagError };
}

interface SubmitFlags {
  redis: string;
  queue?: string;
  connectTimeout?: number;
  json?: boolean;
}

export function submitCommand(run: RunFn): Command {
  return addQueueOptions(new Command('submit')
    .description('queue a quantize, eval or export command line as a job (run by `lowbit worker`); prints {"id": …} — the same command over the same files gives the same id, and is queued once')
    .argument('<command...>', 'after --: a quantize, eval or export command line as `lowbit` takes it (paths relative to here)'))
    .option('--json', 'print {"ok": true, "id", "queue", "created", "retried", "state"}')
    .usage('--redis URL [--queue NAME] [--json] -- <quantize|eval|export> <model> [flags…]')
    .action(async function (this: Command, inner: string[]) {
      const o = this.opts<SubmitFlags>();
      await run(async (json) => {
        const { data, flagError } = await jobFromCommandLine(inner);
        let r;
        try {
          r = await enqueue(o.redis, data, queueCallOptions(o));
        } catch (e) {
          throw flagError(e);
        }
        if (json) process.stdout.write(JSON.stringify({ ok: true, ...r }, null, 2) + '\n');
        else {
          process.stdout.write(JSON.stringify({ id: r.id }) + '\n');
          process.stderr.write(`lowbit: ${r.created ? 'queued' : r.retried ? 'queued again (it had failed)' : `already queued (${r.state})`} on ${JSON.stringify(r.queue)}\n`);
        }
        return EXIT.ok;
      }, !!o.json);
    });
}
