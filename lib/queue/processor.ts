/**
 * The sandboxed processor: BullMQ forks a child process per concurrent job slot, loads this file in
 * it and calls its default export for each job, so a crash in native code ends the child (the job
 * fails) and never the worker. It checks the job's data again (whatever wrote it into Redis), runs
 * it with BullMQ's AbortSignal (`cancel` reaches it through the worker), sends progress at most
 * {@link PROGRESS_INTERVAL_MS} apart, and fails the job with `CODE: message` so the failedReason
 * holds the LowbitError.
 *
 * When the worker process dies (SIGKILL), the IPC channel closes and the child exits at once, as if
 * it had been killed with its worker, so no orphan finishes the job beside the worker that picks it
 * up after it stalls — and a resumable run's staging directory (GPTQ: the layers done) stays for
 * that worker to go on from; whatever else it staged is removed by the next run of the same output.
 */
import type { SandboxedJob } from 'bullmq';
import { LowbitError, toLowbitError } from '../errors';
import type { Progress } from '../config/run';
import { checkJobData, failedReasonOf } from './job';
import { runJob, type JobResult } from './run';

/** Least time between two progress updates sent to Redis (latest wins). */
export const PROGRESS_INTERVAL_MS = 250;

if (typeof process.send === 'function') {
  // the worker went away: exit now, leaving the run's staging to whoever runs the job next
  process.once('disconnect', () => process.exit(1));
}

/** A progress sender that forwards at most one report per interval and always the last one. */
function throttled(send: (p: Progress) => Promise<void>): { report(p: Progress): void; flush(): Promise<void> } {
  let last = 0;
  let pending: Progress | null = null;
  let timer: NodeJS.Timeout | null = null;
  const emit = () => {
    timer = null;
    if (!pending) return;
    const p = pending;
    pending = null;
    last = Date.now();
    send(p).catch(() => undefined);
  };
  return {
    report(p) {
      pending = { ...p };
      if (timer) return;
      const wait = PROGRESS_INTERVAL_MS - (Date.now() - last);
      if (wait <= 0) emit();
      else timer = setTimeout(emit, wait);
    },
    async flush() {
      if (timer) clearTimeout(timer);
      timer = null;
      if (pending) {
        const p = pending;
        pending = null;
        await send(p).catch(() => undefined);
      }
    },
  };
}

/** BullMQ's entry point in the child process. */
export default async function processJob(job: SandboxedJob, _token?: string, signal?: AbortSignal): Promise<JobResult> {
  const progress = throttled((p) => job.updateProgress(p));
  const run = (async () => {
    const data = checkJobData(job.data);
    const rerun = job.attemptsStarted > 1 ? { attemptStartedAt: job.processedOn ?? Date.now(), enqueuedAt: job.timestamp } : undefined;
    return runJob(data, { signal, onProgress: (p) => { progress.report(p); }, rerun });
  })();
  try {
    const result = await run;
    await progress.flush();
    return result;
  } catch (e) {
    await progress.flush();
    let le = toLowbitError(e);
    if (signal?.aborted && le.code !== 'LOWBIT_ABORTED') le = new LowbitError('LOWBIT_ABORTED', `job ${job.id}: cancelled (${le.code}: ${le.message})`);
    else if (le.code === 'LOWBIT_ABORTED' && signal?.aborted) le = new LowbitError('LOWBIT_ABORTED', `job ${job.id} cancelled: ${le.message}`);
    throw new Error(failedReasonOf(le), { cause: e });
  }
}
