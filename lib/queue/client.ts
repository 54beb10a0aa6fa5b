/**
 * The submitting side of the job queue: {@link enqueue}, {@link getJob}, {@link listJobs},
 * {@link waitForJob} and {@link cancel}. Each call opens its own bounded Redis connection and closes
 * it, so an unreachable Redis is LOWBIT_QUEUE within `timeoutMs`.
 */
import type { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { ERROR_CODES, LowbitError, type ErrorCode } from '../errors';
import { checkInt, checkSignal, checkString } from '../config/validate';
import type { Progress } from '../config/run';
import { checkJobData, jobIdOf, parseFailedReason, resolveJobPaths, type JobData, type JobKind } from './job';
import type { JobResult } from './run';
import { CANCEL_TTL_S, cancelChannel, cancelKey, checkCallOptions, withQueue, type QueueCallOptions } from './connection';

/** Where a job is: BullMQ's states (`waiting`, `active`, `completed`, `failed`, `delayed`, `prioritized`, `waiting-children`, `unknown`). */
export type JobState = 'waiting' | 'active' | 'completed' | 'failed' | 'delayed' | 'prioritized' | 'waiting-children' | 'unknown';

/** A job as {@link getJob} and {@link listJobs} report it. */
export interface JobStatus {
  id: string;
  queue: string;
  kind: JobKind;
  state: JobState;
  /** The latest progress report of the running (or last) attempt; null before the first. */
  progress: Progress | null;
  /** What the library call returned (completed jobs). */
  result: JobResult | null;
  /** The typed error a failed job ended with (`LOWBIT_ABORTED` when it was cancelled). */
  error: { code: ErrorCode; message: string } | null;
  /** The job's data, as enqueued (paths absolute). */
  data: JobData;
  /** When it was enqueued, ms since the epoch. */
  enqueuedAt: number;
  /** When its latest attempt started. */
  startedAt: number | null;
  finishedAt: number | null;
  /** Attempts started: more than 1 when a worker died during an attempt and the job was run again. */
  attempts: number;
  /** `cancel` was called for it (it fails with LOWBIT_ABORTED once a worker sees that). */
  cancelRequested: boolean;
}

/** Options of {@link enqueue}. */
export interface EnqueueOptions extends QueueCallOptions {
  /**
   * When a job with the same id exists and has failed (a cancelled job included), queue it again.
   * A job that is waiting, running or completed is never queued twice. @default true
   */
  retryFailed?: boolean;
}

/** What {@link enqueue} returns. */
export interface EnqueueResult {
  /** The job id: `<kind>-<SHA-256>` of the data and the input files' sizes and mtimes (see guide-queue.md). */
  id: string;
  queue: string;
  /** false: a job with this id was already there (it is returned, not added again). */
  created: boolean;
  /** true: the existing job had failed and was queued again. */
  retried: boolean;
  /** Its state after the call. */
  state: JobState;
}

function errorOf(reason: string | undefined): JobStatus['error'] {
  const p = parseFailedReason(reason);
  if (!p) return null;
  if ((ERROR_CODES as readonly string[]).includes(p.code)) return { code: p.code as ErrorCode, message: p.message };
  // BullMQ's own reasons: the child process died (native crash), or a stall limit was passed
  if (/^Unexpected exit code/.test(p.message)) return { code: 'LOWBIT_INTERNAL', message: `the job's process died: ${p.message}` };
  return { code: 'LOWBIT_QUEUE', message: p.message };
}

function progressOf(v: unknown): Progress | null {
  return v !== null && typeof v === 'object' && typeof (v as Progress).phase === 'string' ? (v as Progress) : null;
}

/**
 * A job's status, read as its state first and its fields second: a job moves forward only (waiting →
 * active → completed / failed), and BullMQ writes the result or the failure reason in the same step
 * that moves it, so fields read after the state always hold what that state has. (Read the other way
 * round, a job that failed between the two reads showed `failed` with no error.) Null: no such job.
 */
async function readStatus(queue: Queue, client: Redis, id: string, queueName: string): Promise<JobStatus | null> {
  const state = await queue.getJobState(id);
  if (state === 'unknown') return null;
  const job = await queue.getJob(id);
  if (!job) return null;
  return statusOf(job, state, queueName, (await client.exists(cancelKey(queueName, id))) === 1);
}

function statusOf(job: Job, state: JobState, queue: string, cancelled: boolean): JobStatus {
  const result: unknown = job.returnvalue;
  return {
    id: job.id ?? '',
    queue,
    kind: job.name as JobKind,
    state,
    progress: progressOf(job.progress),
    result: state === 'completed' && result !== undefined ? (result as JobResult | null) : null,
    error: state === 'failed' ? errorOf(job.failedReason) : null,
    data: job.data as JobData,
    enqueuedAt: job.timestamp,
    startedAt: job.processedOn ?? null,
    finishedAt: job.finishedOn ?? null,
    attempts: job.attemptsStarted,
    cancelRequested: cancelled,
  };
}

function notFound(id: string, queue: string): LowbitError {
  return new LowbitError('LOWBIT_NOT_FOUND', `job ${id}: no such job in queue ${JSON.stringify(queue)}`, { id, queue });
}

/**
 * Put a job on the queue. The data is checked (LOWBIT_INVALID_OPTION, as the library call would
 * say it), its paths made absolute against this process's working directory, and its id computed
 * from it and the input files: the same job submitted twice is one job (see {@link EnqueueOptions.retryFailed}).
 *
 * @example
 * const { id } = await enqueue('redis://127.0.0.1:6379', { kind: 'quantize', model: 'models/tiny', config: { method: 'rtn', bits: 4 }, out: 'out/tiny-w4' });
 */
export async function enqueue(redis: string, data: JobData, options: EnqueueOptions = {}): Promise<EnqueueResult> {
  const o = checkCallOptions(redis, options);
  const retryFailed = options.retryFailed ?? true;
  const job = resolveJobPaths(checkJobData(data), process.cwd());
  const id = jobIdOf(job);
  return withQueue(o.url, o.queue, o.timeoutMs, `enqueue ${id}`, async (queue, client) => {
    const existing = await queue.getJob(id);
    if (existing) {
      const state = await existing.getState();
      if (state === 'failed' && retryFailed) {
        await client.del(cancelKey(o.queue, id));
        await existing.retry('failed');
        return { id, queue: o.queue, created: false, retried: true, state: await existing.getState() };
      }
      return { id, queue: o.queue, created: false, retried: false, state };
    }
    // one attempt: a failure is a typed error about the job, not a transient fault to retry; a
    // worker that dies mid-job is handled by stall detection, which runs the job again
    const added = await queue.add(job.kind, job, { jobId: id, attempts: 1 });
    return { id, queue: o.queue, created: true, retried: false, state: await added.getState() };
  });
}

/** A job's state, progress, result or error. LOWBIT_NOT_FOUND when the queue has no such job. */
export async function getJob(redis: string, id: string, options: QueueCallOptions = {}): Promise<JobStatus> {
  const o = checkCallOptions(redis, options);
  checkString('id', id);
  return withQueue(o.url, o.queue, o.timeoutMs, `job ${id}`, async (queue, client) => {
    const s = await readStatus(queue, client, id, o.queue);
    if (!s) throw notFound(id, o.queue);
    return s;
  });
}

/** Options of {@link listJobs}. */
export interface ListJobsOptions extends QueueCallOptions {
  /** Only jobs in these states. @default every state */
  states?: JobState[];
  /** At most this many jobs (newest first), 1–10000. @default 100 */
  limit?: number;
}

/** The queue's jobs, newest first. */
export async function listJobs(redis: string, options: ListJobsOptions = {}): Promise<JobStatus[]> {
  const o = checkCallOptions(redis, options);
  const limit = checkInt('limit', options.limit ?? 100, 1, 10000);
  const states = options.states ?? ['active', 'waiting', 'prioritized', 'delayed', 'waiting-children', 'completed', 'failed'];
  return withQueue(o.url, o.queue, o.timeoutMs, 'list jobs', async (queue, client) => {
    // (a job removed between the listing and the read comes back undefined)
    const listed = (await queue.getJobs(states.filter((s): s is Exclude<JobState, 'unknown'> => s !== 'unknown'), 0, limit - 1, false)) as (Job | undefined)[];
    const jobs = listed.filter((j): j is Job => j !== undefined);
    jobs.sort((a, b) => b.timestamp - a.timestamp);
    const out: JobStatus[] = [];
    for (const j of jobs.slice(0, limit)) {
      const st = await readStatus(queue, client, j.id ?? '', o.queue);
      if (st) out.push(st); // (removed since the listing: left out)
    }
    return out;
  });
}

/** Options of {@link waitForJob}. */
export interface WaitForJobOptions extends QueueCallOptions {
  /** Stop waiting (LOWBIT_ABORTED); the job itself goes on. */
  signal?: AbortSignal;
  /** Each new progress report of the job. */
  onProgress?: (p: Progress) => void;
  /** How often to look, in ms (10–60000). @default 250 */
  pollMs?: number;
}

/**
 * Wait until a job has completed or failed, and return its final status (a failed job resolves
 * too: look at `state` and `error`).
 */
export async function waitForJob(redis: string, id: string, options: WaitForJobOptions = {}): Promise<JobStatus> {
  const o = checkCallOptions(redis, options);
  checkString('id', id);
  const signal = checkSignal(options.signal);
  const pollMs = checkInt('pollMs', options.pollMs ?? 250, 10, 60000);
  return withQueue(o.url, o.queue, o.timeoutMs, `wait for job ${id}`, async (queue, client) => {
    let seen = '';
    for (;;) {
      if (signal?.aborted) throw new LowbitError('LOWBIT_ABORTED', `wait for job ${id}: aborted by signal (the job goes on)`);
      const s = await readStatus(queue, client, id, o.queue);
      if (!s) throw notFound(id, o.queue);
      const p = s.progress ? JSON.stringify(s.progress) : '';
      if (s.progress && p !== seen) {
        seen = p;
        try {
          options.onProgress?.(s.progress);
        } catch {
          /* a throwing callback must not end the wait */
        }
      }
      if (s.state === 'completed' || s.state === 'failed') return s;
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  });
}

/** What {@link cancel} did. */
export interface CancelResult {
  id: string;
  /** The job's state when it was cancelled. */
  state: JobState;
  /** false: it had already completed or failed, nothing to cancel. */
  cancelled: boolean;
}

/**
 * Cancel a job. A running job is aborted through the AbortSignal of the call it runs (quantize,
 * evaluate, exportGguf), which leaves no output; a job not started yet fails with LOWBIT_ABORTED
 * when a worker takes it. Either way it ends `failed` with LOWBIT_ABORTED. Enqueueing it again
 * queues it again.
 */
export async function cancel(redis: string, id: string, options: QueueCallOptions = {}): Promise<CancelResult> {
  const o = checkCallOptions(redis, options);
  checkString('id', id);
  return withQueue(o.url, o.queue, o.timeoutMs, `cancel job ${id}`, async (queue, client) => {
    const job = await queue.getJob(id);
    if (!job) throw notFound(id, o.queue);
    const state = await job.getState();
    if (state === 'completed' || state === 'failed') return { id, state, cancelled: false };
    // the flag first, then the message: a worker that takes the job after this sees the flag, one
    // that runs it already gets the message
    await client.set(cancelKey(o.queue, id), String(Date.now()), 'EX', CANCEL_TTL_S);
    await client.publish(cancelChannel(o.queue), id);
    return { id, state, cancelled: true };
  });
}
