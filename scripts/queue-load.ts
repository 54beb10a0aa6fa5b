/**
 * `npm run bench:queue`: a load test of the job queue on loopback. Starts its own redis-server
 * (temp dir, append-only file with the default fsync every second) and W `lowbit worker` processes,
 * then runs N tiny jobs (RTN of the 'tiny' synthetic model, one thread: tens of ms of work, so the
 * figures are the queue's own costs) and prints one JSON document on stdout:
 *
 * - burst: N jobs enqueued back to back — enqueue calls/s, jobs/s from the first enqueue to the last
 *   completion, and the queue latency (enqueue → active) percentiles, backlog included;
 * - paced: M jobs, one every `--gap` ms (below capacity) — the pickup latency of an idle worker.
 *
 *   node dist/scripts/queue-load.js [--jobs 200] [--paced 40] [--gap 100] [--workers 2] [--concurrency 1]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { enqueue, getJob, writeSyntheticModel, version, type JobStatus, type QuantizeJobData } from '../lib/index';
import { packageRoot } from '../lib/native';

interface Args { jobs: number; paced: number; gap: number; workers: number; concurrency: number }

function parseArgs(argv: string[]): Args {
  const a: Args = { jobs: 200, paced: 40, gap: 100, workers: 2, concurrency: 1 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '') as keyof Args;
    const v = Number(argv[i + 1]);
    if (!(k in a) || !Number.isInteger(v) || v < 0) throw new Error(`usage: node dist/scripts/queue-load.js [--jobs N] [--paced M] [--gap MS] [--workers W] [--concurrency C] (bad ${argv[i]} ${argv[i + 1]})`);
    a[k] = v;
  }
  return a;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => { resolve(typeof addr === 'object' && addr ? addr.port : 0); });
    });
  });
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => { resolve(false); });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server on port ${port} did not start`);
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function stats(values: number[]): { p50: number; p95: number; max: number } {
  const s = [...values].sort((x, y) => x - y);
  return { p50: percentile(s, 50), p95: percentile(s, 95), max: s[s.length - 1] };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-queue-load-'));
  const children: ChildProcess[] = [];
  try {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    fs.mkdirSync(path.join(root, 'redis'));
    children.push(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', path.join(root, 'redis')], { stdio: 'ignore' }));
    await waitPort(port);
    const model = path.join(root, 'tiny');
    await writeSyntheticModel(model, { shape: 'tiny' });
    const bin = path.join(packageRoot(), 'bin', 'lowbit.js');
    const ready: Promise<void>[] = [];
    for (let w = 0; w < args.workers; w++) {
      const p = spawn(process.execPath, [bin, 'worker', '--redis', url, '--queue', 'load', '--concurrency', String(args.concurrency), '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(p);
      ready.push(new Promise((resolve, reject) => {
        p.stdout.setEncoding('utf8').on('data', (s: string) => { if (s.includes('"ready"')) resolve(); });
        p.once('exit', (code) => { reject(new Error(`worker exited with ${String(code)}`)); });
      }));
    }
    await Promise.all(ready);
    const job = (name: string): QuantizeJobData => ({ kind: 'quantize', model, config: { method: 'rtn', bits: 4, groupSize: 32 }, out: path.join(root, 'out', name), threads: 1 });
    const finish = async (ids: string[]): Promise<JobStatus[]> => {
      const out: JobStatus[] = [];
      for (const id of ids) {
        for (;;) {
          const s = await getJob(url, id, { queue: 'load' });
          if (s.state === 'completed' || s.state === 'failed') {
            if (s.state === 'failed') throw new Error(`${id} failed: ${s.error?.code ?? ''} ${s.error?.message ?? ''}`);
            out.push(s);
            break;
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      return out;
    };
    const ms = (s: JobStatus, from: 'enqueuedAt' | 'startedAt', to: 'startedAt' | 'finishedAt') => (s[to] ?? NaN) - (s[from] ?? NaN);

    // burst: every job at once
    process.stderr.write(`queue-load: ${args.jobs} jobs in a burst over ${args.workers} worker(s) × ${args.concurrency}\n`);
    const t0 = performance.now();
    const burstIds: string[] = [];
    for (let i = 0; i < args.jobs; i++) burstIds.push((await enqueue(url, job(`burst-${i}`), { queue: 'load' })).id);
    const enqueueSeconds = (performance.now() - t0) / 1000;
    const burst = await finish(burstIds);
    const span = (Math.max(...burst.map((s) => s.finishedAt ?? 0)) - Math.min(...burst.map((s) => s.enqueuedAt))) / 1000;

    // paced: one job every `gap` ms, below capacity
    process.stderr.write(`queue-load: ${args.paced} jobs, one every ${args.gap} ms\n`);
    const pacedIds: string[] = [];
    for (let i = 0; i < args.paced; i++) {
      pacedIds.push((await enqueue(url, job(`paced-${i}`), { queue: 'load' })).id);
      await new Promise((r) => setTimeout(r, args.gap));
    }
    const paced = await finish(pacedIds);

    const redisVersion = /v=([\d.]+)/.exec(spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout)?.[1] ?? null;
    const pkg = (name: string) => (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
    const round = (x: number) => Math.round(x * 10) / 10;
    const lat = (list: JobStatus[], from: 'enqueuedAt' | 'startedAt', to: 'startedAt' | 'finishedAt') => {
      const s = stats(list.map((j) => ms(j, from, to)));
      return { p50: round(s.p50), p95: round(s.p95), max: round(s.max) };
    };
    const doc = {
      bench: 'queue-load',
      command: ['node', path.relative(packageRoot(), process.argv[1]), ...process.argv.slice(2)].join(' '),
      machine: { cpuModel: os.cpus()[0]?.model ?? 'unknown', logicalCores: os.cpus().length, memoryBytes: os.totalmem(), loadAverage: os.loadavg().map(round) },
      versions: { lowbit: version, node: process.versions.node, bullmq: pkg('bullmq'), ioredis: pkg('ioredis'), redisServer: redisVersion },
      setup: { workers: args.workers, concurrency: args.concurrency, job: 'quantize: RTN 4-bit g32 of the tiny synthetic model (1 thread)', redis: 'loopback, appendonly yes, appendfsync everysec' },
      burst: {
        jobs: args.jobs,
        enqueuePerSecond: round(args.jobs / enqueueSeconds),
        jobsPerSecond: round(args.jobs / span),
        queueLatencyMs: lat(burst, 'enqueuedAt', 'startedAt'),
        runMs: lat(burst, 'startedAt', 'finishedAt'),
      },
      paced: {
        jobs: args.paced,
        gapMs: args.gap,
        queueLatencyMs: lat(paced, 'enqueuedAt', 'startedAt'),
        runMs: lat(paced, 'startedAt', 'finishedAt'),
      },
    };
    process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
  } finally {
    for (const c of children.reverse()) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`queue-load: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
