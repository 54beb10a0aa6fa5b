/** `lowbit jobs --redis URL [--queue NAME] [ID | --wait ID | --cancel ID] [--json]`: the queue's jobs, one job, waiting for one, cancelling one. */
import { Command, Option } from 'commander';
import { cancel, getJob, listJobs, waitForJob, type JobState, type JobStatus } from '../queue/client';
import { CONNECT_TIMEOUT_MS, DEFAULT_QUEUE } from '../queue/connection';
import type { Progress } from '../config/run';
import { EXIT, abortOnSignals, intFlag, progressBar, table, type RunFn } from './util';

/** The options every queue command takes: where Redis is, which queue, how long to wait for a connection. */
export function addQueueOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--redis <url>', 'the Redis server, e.g. redis://127.0.0.1:6379 (redis://user:password@host:port/db)')
    .option('--queue <name>', `queue name (default: ${DEFAULT_QUEUE})`)
    .option('--connect-timeout <ms>', `give up when Redis does not answer within this long (default: ${CONNECT_TIMEOUT_MS})`, intFlag('connectTimeout'));
}

/** The options of the queue calls, from the parsed flags. */
export function queueCallOptions(o: { queue?: string; connectTimeout?: number }): { queue?: string; timeoutMs?: number } {
  return { ...(o.queue !== undefined ? { queue: o.queue } : {}), ...(o.connectTimeout !== undefined ? { timeoutMs: o.connectTimeout } : {}) };
}

function progressText(p: Progress | null): string {
  if (!p) return '';
  return `${p.phase} ${p.done}/${p.total}${p.module ? ` ${p.module}` : ''}`;
}

function printJob(s: JobStatus): void {
  const time = (t: number | null) => (t === null ? '-' : new Date(t).toISOString());
  const lines = [
    `id        ${s.id}`,
    `queue     ${s.queue}`,
    `kind      ${s.kind}`,
    `state     ${s.state}${s.cancelRequested && s.state !== 'failed' ? ' (cancel requested)' : ''}`,
    `progress  ${progressText(s.progress) || '-'}`,
    `attempts  ${s.attempts}`,
    `enqueued  ${time(s.enqueuedAt)}`,
    `started   ${time(s.startedAt)}`,
    `finished  ${time(s.finishedAt)}`,
  ];
  if (s.error) lines.push(`error     ${s.error.code}: ${s.error.message}`);
  const out = (s.data as { out?: string }).out;
  if (out !== undefined) lines.push(`out       ${out}`);
  process.stdout.write(lines.join('\n') + '\n');
}

interface JobsFlags {
  redis: string;
  queue?: string;
  connectTimeout?: number;
  wait?: string;
  cancel?: string;
  state?: JobState[];
  limit?: number;
  json?: boolean;
  quiet?: boolean;
}

export function jobsCommand(run: RunFn): Command {
  return addQueueOptions(new Command('jobs')
    .description('show the jobs of a queue (newest first), one job, wait for one to finish, or cancel one')
    .argument('[id]', 'show this job only'))
    .option('--wait <id>', 'wait until the job has completed or failed (exit 1 when it failed, with its error code on stderr)')
    .option('--cancel <id>', 'cancel the job: a running one is aborted (no output left), a waiting one fails when a worker takes it')
    .addOption(new Option('--state <state...>', 'list only jobs in these states').choices(['waiting', 'active', 'completed', 'failed', 'delayed', 'prioritized', 'waiting-children']))
    .option('--limit <n>', 'list at most this many jobs (default 100)', intFlag('limit'))
    .option('--json', 'print JSON')
    .option('--quiet', 'no progress bar while waiting')
    .action(async function (this: Command, id: string | undefined) {
      const o = this.opts<JobsFlags>();
      const call = queueCallOptions(o);
      await run(async (json) => {
        if (o.cancel !== undefined) {
          const r = await cancel(o.redis, o.cancel, call);
          if (json) process.stdout.write(JSON.stringify({ ok: true, ...r }, null, 2) + '\n');
          else process.stdout.write(r.cancelled ? `cancelled ${r.id} (it was ${r.state})\n` : `${r.id} had already ${r.state === 'completed' ? 'completed' : 'failed'}: nothing to cancel\n`);
          return EXIT.ok;
        }
        if (o.wait !== undefined) {
          const bar = progressBar(!json && !o.quiet);
          const sig = abortOnSignals();
          let s: JobStatus;
          try {
            s = await waitForJob(o.redis, o.wait, { ...call, signal: sig.signal, onProgress: (p) => { bar.update(p); } });
          } finally {
            bar.stop();
            sig.dispose();
          }
          if (json) process.stdout.write(JSON.stringify({ ok: s.state === 'completed', job: s }, null, 2) + '\n');
          else printJob(s);
          if (s.error) process.stderr.write(`lowbit: job ${s.id} failed: ${s.error.code}: ${s.error.message}\n`);
          return s.state === 'completed' ? EXIT.ok : EXIT.error;
        }
        if (id !== undefined) {
          const s = await getJob(o.redis, id, call);
          if (json) process.stdout.write(JSON.stringify({ ok: true, job: s }, null, 2) + '\n');
          else printJob(s);
          return EXIT.ok;
        }
        const list = await listJobs(o.redis, { ...call, ...(o.state ? { states: o.state } : {}), ...(o.limit !== undefined ? { limit: o.limit } : {}) });
        if (json) {
          process.stdout.write(JSON.stringify({ ok: true, jobs: list.map((s) => ({ id: s.id, kind: s.kind, state: s.state, progress: s.progress, attempts: s.attempts, error: s.error, enqueuedAt: s.enqueuedAt, finishedAt: s.finishedAt })) }, null, 2) + '\n');
        } else if (list.length === 0) {
          process.stdout.write('no jobs\n');
        } else {
          process.stdout.write(table(['id', 'state', 'progress', 'attempts', 'enqueued', 'error'], list.map((s) => [
            s.id, s.state + (s.cancelRequested && s.state !== 'failed' ? ' (cancel requested)' : ''), progressText(s.progress) || '-', s.attempts,
            new Date(s.enqueuedAt).toISOString(), s.error ? `${s.error.code}: ${s.error.message.slice(0, 80)}` : '',
          ])) + '\n');
        }
        return EXIT.ok;
      }, !!o.json);
    });
}
