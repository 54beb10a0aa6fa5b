/**
 * Redis connections of the job queue: the URL and queue-name checks, a connect whose wait is
 * bounded (an unreachable Redis is LOWBIT_QUEUE within `timeoutMs`, never an endless reconnect
 * loop), and the names of lowbit's own keys beside BullMQ's (the cancel flags and channel).
 */
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { LowbitError, invalidOption } from '../errors';
import { checkInt } from '../config/validate';

/** The queue a job goes to when none is named. */
export const DEFAULT_QUEUE = 'lowbit';

/** How long a client call waits for Redis to accept the connection. @default 5000 ms */
export const CONNECT_TIMEOUT_MS = 5000;

/** BullMQ's key prefix (its default, so dashboards and other BullMQ tools see lowbit's queues). */
export const KEY_PREFIX = 'bull';

/** Options every queue call takes. */
export interface QueueCallOptions {
  /** Queue name: letters, digits, `.`, `_`, `-` (at most 100). @default 'lowbit' */
  queue?: string;
  /** How long to wait for Redis to accept the connection, in ms (100–600000). @default 5000 */
  timeoutMs?: number;
}

/** A `redis://` or `rediss://` URL (`redis://[user:password@]host[:port][/db]`). */
export function checkRedisUrl(v: unknown): string {
  let url: URL | null = null;
  if (typeof v === 'string') {
    try {
      url = new URL(v);
    } catch {
      url = null;
    }
  }
  if (!url || (url.protocol !== 'redis:' && url.protocol !== 'rediss:') || !url.hostname) {
    throw invalidOption('redis', 'a redis:// or rediss:// URL such as redis://127.0.0.1:6379', v);
  }
  return v as string;
}

/** A BullMQ queue name lowbit accepts (no `:`, which BullMQ uses in its keys). */
export function checkQueueName(v: unknown): string {
  if (v === undefined) return DEFAULT_QUEUE;
  if (typeof v !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(v)) {
    throw invalidOption('queue', 'a queue name of letters, digits, ".", "_" and "-" (at most 100, starting with a letter or digit)', v);
  }
  return v;
}

/** The checked common options. @internal */
export function checkCallOptions(redis: unknown, opts: QueueCallOptions | undefined): { url: string; queue: string; timeoutMs: number } {
  const url = checkRedisUrl(redis);
  const o: QueueCallOptions = opts ?? {};
  if (typeof o !== 'object') throw invalidOption('options', 'an object {queue?, timeoutMs?}', o);
  return { url, queue: checkQueueName(o.queue), timeoutMs: o.timeoutMs === undefined ? CONNECT_TIMEOUT_MS : checkInt('timeoutMs', o.timeoutMs, 100, 600000) };
}

/** The URL as it may be printed: any password replaced by `***`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

function messageOf(e: unknown): string {
  if (e instanceof AggregateError && e.errors.length) return e.errors.map(messageOf).join('; ');
  return e instanceof Error ? e.message || e.name : String(e);
}

/** LOWBIT_QUEUE for a failure talking to Redis (a LowbitError passes through unchanged). @internal */
export function queueError(url: string, what: string, e: unknown): LowbitError {
  if (e instanceof LowbitError) return e;
  return new LowbitError('LOWBIT_QUEUE', `${redactUrl(url)}: ${what}: ${messageOf(e)}`, { redis: redactUrl(url) }, { cause: e });
}

/**
 * Connection options: a client that gives up (`persistent: false`: a few quick retries, then every
 * command fails) or one that reconnects for ever (`persistent: true`: workers, which must survive a
 * Redis restart; BullMQ requires `maxRetriesPerRequest: null` there). @internal
 */
export function redisOptions(persistent: boolean, timeoutMs: number): { maxRetriesPerRequest: number | null; connectTimeout: number; retryStrategy: (n: number) => number | null } {
  return persistent
    ? { maxRetriesPerRequest: null, connectTimeout: timeoutMs, retryStrategy: (n: number) => Math.min(100 * n, 1000) }
    : { maxRetriesPerRequest: 1, connectTimeout: timeoutMs, retryStrategy: (n: number) => (n > 2 ? null : 100 * n) };
}

/**
 * A ready ioredis client, or LOWBIT_QUEUE naming the URL and the last connection error once
 * `timeoutMs` has passed (the client is closed then). @internal
 */
export async function connectRedis(url: string, opts: { timeoutMs: number; persistent: boolean }): Promise<Redis> {
  // loaded on first use: `require('lowbit')` and every other CLI command do without BullMQ and ioredis
  const { Redis: RedisClient } = await import('ioredis');
  const client = new RedisClient(url, { ...redisOptions(opts.persistent, opts.timeoutMs), lazyConnect: true });
  let lastError: unknown = null;
  const onError = (e: unknown) => { lastError = e; };
  client.on('error', onError);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => { reject(new Error(`no connection within ${opts.timeoutMs} ms`)); }, opts.timeoutMs);
      }),
    ]);
  } catch (e) {
    client.disconnect();
    const why = lastError !== null ? messageOf(lastError) : messageOf(e);
    throw new LowbitError('LOWBIT_QUEUE', `${redactUrl(url)}: cannot connect to Redis: ${why}; is redis-server running there?`, { redis: redactUrl(url) }, { cause: e });
  } finally {
    clearTimeout(timer);
  }
  // later errors surface through the commands that fail; keep the listener so ioredis does not print them
  return client;
}

/**
 * Run `fn` with a BullMQ queue on a bounded connection, then close both; any failure that is not a
 * LowbitError becomes LOWBIT_QUEUE naming the URL and `what`. @internal
 */
export async function withQueue<T>(url: string, name: string, timeoutMs: number, what: string, fn: (queue: Queue, client: Redis) => Promise<T>): Promise<T> {
  const client = await connectRedis(url, { timeoutMs, persistent: false });
  let queue: Queue | null = null;
  try {
    const { Queue: BullQueue } = await import('bullmq');
    queue = new BullQueue(name, { connection: client, prefix: KEY_PREFIX });
    queue.on('error', () => undefined); // reported by the call that fails
    return await fn(queue, client);
  } catch (e) {
    throw queueError(url, what, e);
  } finally {
    await queue?.close().catch(() => undefined);
    client.disconnect();
  }
}

/** The Redis key that marks a job as cancelled (set by `cancel`, read by the worker before it starts the job). @internal */
export function cancelKey(queue: string, id: string): string {
  return `${KEY_PREFIX}:${queue}:lowbit:cancel:${id}`;
}

/** The channel on which `cancel` tells every worker of a queue to abort a running job. @internal */
export function cancelChannel(queue: string): string {
  return `${KEY_PREFIX}:${queue}:lowbit:cancel`;
}

/** How long a cancel flag is kept, in seconds (a job that is cancelled but never started leaves it behind). */
export const CANCEL_TTL_S = 7 * 24 * 3600;
