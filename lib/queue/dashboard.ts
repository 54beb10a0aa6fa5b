/**
 * A web dashboard of a queue: bull-board (@bull-board/api with its Express adapter), the BullMQ
 * dashboard people already run, served by `lowbit worker --dashboard PORT` beside the worker. It
 * shows the queue's jobs by state with their data, progress, results and failure reasons, and lets
 * whoever can reach it retry, promote or remove jobs — so it listens on loopback unless told
 * otherwise (`host`), and has no authentication of its own: put it behind one to expose it.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Queue } from 'bullmq';
import { LowbitError } from '../errors';
import { checkInt, checkString } from '../config/validate';
import { checkCallOptions, KEY_PREFIX, queueError, redactUrl, redisOptions, type QueueCallOptions } from './connection';

/** Options of {@link startDashboard}. */
export interface DashboardOptions extends QueueCallOptions {
  /** The Redis URL. */
  redis: string;
  /** TCP port (0: any free port). */
  port: number;
  /** Address to listen on. @default '127.0.0.1' */
  host?: string;
}

/** A running dashboard. */
export interface Dashboard {
  /** Where it serves (http://host:port/). */
  readonly url: string;
  close(): Promise<void>;
}

/** Serve bull-board for one queue. LOWBIT_QUEUE when Redis cannot be reached; LOWBIT_IO when the port cannot be bound. */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const o = checkCallOptions(options.redis, options);
  const port = checkInt('dashboard', options.port, 0, 65535);
  const host = options.host === undefined ? '127.0.0.1' : checkString('host', options.host);
  const [{ Queue: BullQueue }, { createBullBoard }, { BullMQAdapter }, { ExpressAdapter }, express] = await Promise.all([
    import('bullmq'), import('@bull-board/api'), import('@bull-board/api/bullMQAdapter'), import('@bull-board/express'), import('express'),
  ]);
  const queue: Queue = new BullQueue(o.queue, { connection: { url: o.url, ...redisOptions(true, o.timeoutMs) }, prefix: KEY_PREFIX });
  queue.on('error', () => undefined); // reconnects on its own; the worker reports outages
  try {
    await Promise.race([
      queue.waitUntilReady(),
      new Promise<never>((_, reject) => setTimeout(() => { reject(new LowbitError('LOWBIT_QUEUE', `${redactUrl(o.url)}: no connection within ${o.timeoutMs} ms`)); }, o.timeoutMs).unref()),
    ]);
  } catch (e) {
    await queue.close().catch(() => undefined);
    throw queueError(o.url, 'start the dashboard', e);
  }
  const adapter = new ExpressAdapter();
  adapter.setBasePath('/');
  createBullBoard({ queues: [new BullMQAdapter(queue)], serverAdapter: adapter, options: { uiConfig: { boardTitle: `lowbit: ${o.queue}` } } });
  const app = express.default();
  app.use('/', adapter.getRouter() as Parameters<typeof app.use>[1]);
  let server: Server;
  try {
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(s)));
      s.once('error', reject);
    });
  } catch (e) {
    await queue.close().catch(() => undefined);
    throw new LowbitError('LOWBIT_IO', `dashboard: cannot listen on ${host}:${port}: ${e instanceof Error ? e.message : String(e)}`, { option: 'dashboard' });
  }
  const addr = server.address() as AddressInfo;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}/`,
    close() {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => { resolve(); });
          server.closeAllConnections();
        });
        await queue.close().catch(() => undefined);
      })();
      return closing;
    },
  };
}
