/**
 * The working side of the job queue: {@link startWorker} runs a BullMQ worker whose processor is a
 * file (`processor.js`) that BullMQ runs in forked child processes (`useWorkerThreads: false`), one
 * per concurrent job slot, reused between jobs. The worker process itself only talks to Redis: it
 * renews the locks of running jobs, so a long native call in a child never makes a job look stalled,
 * and a crash in a child fails that one job.
 *
 * Cancellation: `cancel()` sets a flag key and publishes the id on the queue's cancel channel. Every
 * worker subscribes to the channel and aborts the job if it runs it (BullMQ passes the abort to the
 * child, where it is the AbortSignal of the library call); a job not started yet is failed by the
 * worker that takes it, which reads the flag before it starts the job.
 *
 * Stalls: a worker that dies (SIGKILL, power loss) stops renewing its locks; after `lockDurationMs`
 * another worker's stall check puts its jobs back in the queue and they run again from the start.
 */
import * as path from 'node:path';
import type { Job, Worker, WorkerOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { LowbitError } from '../errors';
import { checkInt } from '../config/validate';
import { checkThreads, type Progress } from '../config/run';
import { parseFailedReason } from './job';
import { cancelChannel, cancelKey, checkCallOptions, connectRedis, KEY_PREFIX, queueError, redactUrl, redisOptions, type QueueCallOptions } from './connection';

/** Something that happened in a worker (for logs: the CLI prints these). */
export type WorkerEvent =
  | { type: 'active'; id: string; kind: string; attempt: number }
  | { type: 'progress'; id: string; progress: Progress }
  | { type: 'completed'; id: string; kind: string; seconds: number }
  | { type: 'failed'; id: string; kind: string; error: { code: string; message: string } }
  | { type: 'stalled'; id: string }
  | { type: 'error'; message: string };

/** Options of {@link startWorker}. */
export interface StartWorkerOptions extends QueueCallOptions {
  /** The Redis URL (`redis://host:port[/db]`). */
  redis: string;
  /** Jobs run at once, each in its own child process (1–64). @default 1 */
  concurrency?: number;
  /**
   * How long a job's lock lasts without renewal, in ms (1000–86400000). The worker renews it every
   * half of this; a worker that died is noticed (its jobs run again elsewhere) after about this long,
   * and another worker checks for such jobs at the same interval. @default 30000
   */
  lockDurationMs?: number;
  /** How many times a job may be found stalled (its worker died) and run again before it fails (0–100). @default 2 */
  maxStalls?: number;
  /**
   * Compute threads of each job that does not set its own `threads` (1–1024): the child processes'
   * `LOWBIT_THREADS`. With `concurrency` N, about cores/N keeps the jobs off each other's cores.
   * @default the children's default (`LOWBIT_THREADS` of this process, else one per physical core)
   */
  threads?: number;
  /** Each event of the worker. Exceptions thrown here are ignored. */
  onEvent?: (e: WorkerEvent) => void;
}

type JobArg = Job | undefined;

/**
 * BullMQ's worker, with one check before each job: a job cancelled before it started fails at once.
 * (A class made on first use: BullMQ is loaded only by the queue calls.)
 */
async function cancellableWorker(name: string, processor: string, opts: WorkerOptions, isCancelled: (id: string) => Promise<boolean>): Promise<Worker> {
  const { Worker: BullWorker } = await import('bullmq');
  class CancellableWorker extends BullWorker {
    protected override async callProcessJob(job: Job, token: string, signal?: AbortSignal): Promise<unknown> {
      // the job is tracked for cancellation by now, so a cancel published after this check reaches it
      if (job.id !== undefined && (await isCancelled(job.id))) {
        throw new Error(`LOWBIT_ABORTED: job ${job.id}: cancelled before it started (no output written)`);
      }
      return super.callProcessJob(job, token, signal) as Promise<unknown>;
    }
  }
  return new CancellableWorker(name, processor, opts);
}

/** A running worker; {@link QueueWorker.close} stops it. */
export class QueueWorker {
  /** The queue it takes jobs from. */
  readonly queue: string;
  private closing: Promise<void> | null = null;

  /** @internal */
  constructor(
    queue: string,
    private readonly worker: Worker,
    private readonly clients: Redis[],
  ) {
    this.queue = queue;
  }

  /** Ids of the jobs this worker runs now. */
  activeJobs(): string[] {
    return [...this.running];
  }

  /** @internal */
  readonly running = new Set<string>();

  /**
   * Stop taking jobs and close. By default the jobs it runs finish first; `cancelRunning` aborts them
   * (they fail with LOWBIT_ABORTED and leave no output; enqueue them again to rerun them).
   */
  close(options: { cancelRunning?: boolean } = {}): Promise<void> {
    if (options.cancelRunning) this.worker.cancelAllJobs('the worker is shutting down');
    this.closing ??= (async () => {
      try {
        await this.worker.close();
      } finally {
        for (const c of this.clients) c.disconnect();
      }
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Start a worker on a queue. Resolves once it is connected and taking jobs; LOWBIT_QUEUE when Redis
 * cannot be reached within `timeoutMs`. After that it reconnects on its own when Redis goes away and
 * comes back (jobs it ran meanwhile are finished or, if their locks ran out, run again).
 *
 * @example
 * const worker = await startWorker({ redis: 'redis://127.0.0.1:6379', concurrency: 2 });
 * process.once('SIGTERM', () => void worker.close());
 */
export async function startWorker(options: StartWorkerOptions): Promise<QueueWorker> {
  const o = checkCallOptions(options.redis, options);
  const concurrency = checkInt('concurrency', options.concurrency ?? 1, 1, 64);
  const lockDuration = checkInt('lockDurationMs', options.lockDurationMs ?? 30000, 1000, 86400000);
  const maxStalledCount = checkInt('maxStalls', options.maxStalls ?? 2, 0, 100);
  const threads = checkThreads(options.threads);
  const emit = (e: WorkerEvent) => {
    try {
      options.onEvent?.(e);
    } catch {
      /* a throwing listener must not break the worker */
    }
  };
  // bounded first contact: an unreachable Redis is an error now, not an endless reconnect loop
  const commands = await connectRedis(o.url, { timeoutMs: o.timeoutMs, persistent: true });
  const subscriber = commands.duplicate();
  subscriber.on('error', () => undefined); // reconnects on its own; the worker reports the outage
  try {
    await subscriber.subscribe(cancelChannel(o.queue));
  } catch (e) {
    commands.disconnect();
    subscriber.disconnect();
    throw queueError(o.url, 'subscribe to the cancel channel', e);
  }
  const opts: WorkerOptions = {
    connection: { url: o.url, ...redisOptions(true, o.timeoutMs) },
    prefix: KEY_PREFIX,
    concurrency,
    lockDuration,
    stalledInterval: lockDuration,
    maxStalledCount,
    useWorkerThreads: false,
    ...(threads !== undefined ? { workerForkOptions: { env: { ...process.env, LOWBIT_THREADS: String(threads) } } } : {}),
    autorun: false,
    // how soon a finished job's result is written again after Redis went away
    runRetryDelay: 1000,
  };
  const worker = await cancellableWorker(o.queue, path.join(__dirname, 'processor.js'), opts, async (id) => (await commands.exists(cancelKey(o.queue, id))) === 1);
  const handle = new QueueWorker(o.queue, worker, [commands, subscriber]);
  const started = new Map<string, number>();
  subscriber.on('message', (channel: string, id: string) => {
    if (channel === cancelChannel(o.queue)) worker.cancelJob(id, `job ${id}: cancelled`);
  });
  worker.on('active', (job: Job) => {
    const id = job.id ?? '';
    handle.running.add(id);
    started.set(id, performance.now());
    emit({ type: 'active', id, kind: job.name, attempt: job.attemptsStarted });
  });
  worker.on('progress', (job: Job, progress: unknown) => {
    if (progress !== null && typeof progress === 'object') emit({ type: 'progress', id: job.id ?? '', progress: progress as Progress });
  });
  worker.on('completed', (job: Job) => {
    const id = job.id ?? '';
    handle.running.delete(id);
    emit({ type: 'completed', id, kind: job.name, seconds: (performance.now() - (started.get(id) ?? performance.now())) / 1000 });
    started.delete(id);
  });
  worker.on('failed', (job: JobArg, err: Error) => {
    const id = job?.id ?? '';
    handle.running.delete(id);
    started.delete(id);
    emit({ type: 'failed', id, kind: job?.name ?? '', error: parseFailedReason(err.message) ?? { code: 'LOWBIT_INTERNAL', message: String(err) } });
  });
  worker.on('stalled', (id: string) => { emit({ type: 'stalled', id }); });
  // Redis says another token holds the lock (it expired while Redis was away, and the job went back
  // to the queue): stop this copy, which leaves no output; the job runs again from the queue
  worker.on('lockRenewalFailed', (ids: string[]) => {
    for (const id of ids) {
      if (worker.cancelJob(id, `job ${id}: its lock was lost; it runs again from the queue`)) emit({ type: 'error', message: `job ${id}: lost its lock (it runs again from the queue); stopped here` });
    }
  });
  worker.on('error', (err: Error) => { emit({ type: 'error', message: `${redactUrl(o.url)}: ${err.message}` }); });
  worker.run().catch((e: unknown) => { emit({ type: 'error', message: e instanceof Error ? e.message : String(e) }); });
  try {
    await Promise.race([
      worker.waitUntilReady(),
      new Promise<never>((_, reject) => setTimeout(() => { reject(new LowbitError('LOWBIT_QUEUE', `${redactUrl(o.url)}: the worker did not connect within ${o.timeoutMs} ms`)); }, o.timeoutMs).unref()),
    ]);
  } catch (e) {
    await handle.close().catch(() => undefined);
    throw queueError(o.url, 'start the worker', e);
  }
  return handle;
}
