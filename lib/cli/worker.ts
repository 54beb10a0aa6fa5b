/** `lowbit worker --redis URL [--queue NAME] [--concurrency N]`: run queued jobs until SIGINT/SIGTERM. */
import { Command } from 'commander';
import { startWorker, type WorkerEvent } from '../queue/worker';
import { startDashboard, type Dashboard } from '../queue/dashboard';
import { optionError } from '../errors';
import { EXIT, intFlag, type RunFn } from './util';
import { addQueueOptions, queueCallOptions } from './jobs';

interface WorkerFlags {
  redis: string;
  queue?: string;
  connectTimeout?: number;
  concurrency?: number;
  lockDuration?: number;
  threads?: number;
  json?: boolean;
  dashboard?: number;
  dashboardHost?: string;
}

/** One line per event: JSON lines with --json, else text (errors on stderr, at most one per message per 10 s). */
function printer(json: boolean): (e: WorkerEvent) => void {
  const lastError = new Map<string, number>();
  return (e) => {
    if (json) {
      process.stdout.write(JSON.stringify({ time: new Date().toISOString(), ...e }) + '\n');
      return;
    }
    switch (e.type) {
      case 'active':
        process.stdout.write(`active    ${e.id} (${e.kind}${e.attempt > 1 ? `, attempt ${e.attempt}` : ''})\n`);
        break;
      case 'completed':
        process.stdout.write(`completed ${e.id} in ${e.seconds.toFixed(2)} s\n`);
        break;
      case 'failed':
        process.stdout.write(`failed    ${e.id}: ${e.error.code}: ${e.error.message}\n`);
        break;
      case 'stalled':
        process.stdout.write(`stalled   ${e.id}: its worker stopped renewing the lock; queued to run again\n`);
        break;
      case 'error': {
        const now = Date.now();
        if (now - (lastError.get(e.message) ?? 0) < 10000) break;
        lastError.set(e.message, now);
        process.stderr.write(`lowbit: worker: ${e.message}\n`);
        break;
      }
      case 'progress':
        break;
    }
  };
}

export function workerCommand(run: RunFn): Command {
  return addQueueOptions(new Command('worker')
    .description('run queued quantize/eval/export jobs (each in a child process) until SIGINT or SIGTERM; the first signal lets running jobs finish, a second cancels them'))
    .option('--concurrency <n>', 'jobs at once, each in its own child process (default 1)', intFlag('concurrency'))
    .option('--lock-duration <ms>', 'a job whose worker has not renewed its lock for this long is run again by another worker (default 30000)', intFlag('lockDuration'))
    .option('--threads <n>', 'compute threads of each job that sets none (default: physical cores; with --concurrency N, about cores/N)', intFlag('threads'))
    .option('--json', 'one JSON object per event on stdout')
    .option('--dashboard <port>', 'also serve the queue\'s bull-board dashboard on this port (0: any free port); no authentication: loopback only unless --dashboard-host', intFlag('dashboard'))
    .option('--dashboard-host <addr>', 'address the dashboard listens on (default 127.0.0.1)')
    .action(async function (this: Command) {
      const o = this.opts<WorkerFlags>();
      await run(async (json) => {
        if (o.dashboardHost !== undefined && o.dashboard === undefined) throw optionError('dashboardHost', '--dashboard-host: applies to the dashboard; pass --dashboard PORT');
        const worker = await startWorker({
          redis: o.redis, ...queueCallOptions(o), ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
          ...(o.lockDuration !== undefined ? { lockDurationMs: o.lockDuration } : {}), ...(o.threads !== undefined ? { threads: o.threads } : {}), onEvent: printer(json),
        });
        let dashboard: Dashboard | null = null;
        if (o.dashboard !== undefined) {
          try {
            dashboard = await startDashboard({ redis: o.redis, ...queueCallOptions(o), port: o.dashboard, ...(o.dashboardHost !== undefined ? { host: o.dashboardHost } : {}) });
          } catch (e) {
            await worker.close();
            throw e;
          }
        }
        if (json) process.stdout.write(JSON.stringify({ time: new Date().toISOString(), type: 'ready', queue: worker.queue, pid: process.pid, ...(dashboard ? { dashboard: dashboard.url } : {}) }) + '\n');
        else process.stderr.write(`lowbit: worker ready on queue ${JSON.stringify(worker.queue)} (pid ${process.pid})${dashboard ? `, dashboard at ${dashboard.url}` : ''}; Ctrl-C lets running jobs finish, twice cancels them\n`);
        await new Promise<void>((resolve) => {
          let signals = 0;
          const stop = () => {
            signals++;
            if (signals === 1) process.stderr.write(`lowbit: worker stopping: no new jobs; waiting for ${worker.activeJobs().length} running\n`);
            else process.stderr.write('lowbit: worker stopping: cancelling the running jobs\n');
            void dashboard?.close();
            worker.close({ cancelRunning: signals > 1 }).then(resolve, (e: unknown) => {
              process.stderr.write(`lowbit: worker: ${e instanceof Error ? e.message : String(e)}\n`);
              resolve();
            });
          };
          process.on('SIGINT', stop);
          process.on('SIGTERM', stop);
        });
        return EXIT.ok;
      }, !!o.json);
    });
}
