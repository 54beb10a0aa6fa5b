/**
 * The job queue against a real Redis (a redis-server of the test's own, on loopback, with an
 * append-only file): 40 RTN jobs over two `lowbit worker` processes, one of them SIGKILLed in the
 * middle of a job — every job completes exactly once and every output is byte-identical to a serial
 * `quantize()` of the same job; cancellation of a running and of a waiting job leaves no output; a
 * Redis killed and restarted mid-run loses no job; bad input (unreachable Redis, a malformed job, a
 * missing model) gives typed errors and leaves the worker running; the same job submitted twice is
 * one job with one id.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Queue } from 'bullmq';
import { quantize, writeSyntheticModel, enqueue, getJob, waitForJob, cancel, startWorker, ERROR_CODES, type QuantizeJobData, type WorkerEvent, type JobStatus } from '../../lib/index';
import { readLlama2cModel } from '../../lib/formats/llama2c';
import { jobIdOf, resolveJobPaths } from '../../lib/queue/job';
import { writeHfFromLlama2c } from '../../lib/formats/convert';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { hasRedisServer, freePort, RedisServer, NO_REDIS } from '../helpers/redis';
import { LOWBIT_BIN, lowbit } from '../helpers/cli';
import { rejectsCode } from '../helpers/errors';

/** What is compared between a queued run and the serial one (the model card and log hold times). */
const COMPARED = /\.safetensors$|^config\.json$|^quantize_config\.json$/;

function outputFiles(dir: string): Map<string, Buffer> {
  const m = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir).filter((n) => COMPARED.test(n)).sort()) m.set(f, fs.readFileSync(path.join(dir, f)));
  assert.ok([...m.keys()].some((f) => f.endsWith('.safetensors')), `${dir} has no safetensors file`);
  return m;
}

function assertSameOutput(serial: string, queued: string): void {
  const a = outputFiles(serial), b = outputFiles(queued);
  assert.deepEqual([...b.keys()], [...a.keys()], `${queued}: file names`);
  for (const [f, bytes] of a) assert.ok(bytes.equals(b.get(f) ?? Buffer.alloc(0)), `${queued}/${f} differs from the serial run ${serial}/${f}`);
}

/** Staging left beside outputs (`.<name>.tmp-…`, `.<name>.source-…`). */
function leftovers(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => /^\..*\.([a-z]+-[0-9a-f]{12}|tmp-r[0-9a-f]{24})$/.test(n));
}

/** Layers a GPTQ run writing `dir/name` has recorded in its staging directory (0: none yet). */
function recordedLayers(dir: string, name: string): number {
  for (const n of fs.readdirSync(dir)) {
    if (!n.startsWith(`.${name}.tmp-r`)) continue;
    try {
      return (JSON.parse(fs.readFileSync(path.join(dir, n, '.resume', 'state.json'), 'utf8')) as { steps: number }).steps;
    } catch {
      // not written yet
    }
  }
  return 0;
}

/** A `lowbit worker --json` process and the events it printed. */
class WorkerProcess {
  readonly events: (WorkerEvent | { type: 'ready' })[] = [];
  readonly proc: ChildProcess;
  private stderr = '';
  private waiters: (() => void)[] = [];

  constructor(url: string, queue: string, extra: string[] = []) {
    this.proc = spawn(process.execPath, [LOWBIT_BIN, 'worker', '--redis', url, '--queue', queue, '--json', '--lock-duration', '1500', '--threads', '1', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.proc.stdout?.setEncoding('utf8').on('data', (s: string) => {
      buf += s;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.events.push(JSON.parse(line) as WorkerEvent);
        } catch {
          /* a line from a job's child process */
        }
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.stderr?.setEncoding('utf8').on('data', (s: string) => { this.stderr += s; });
  }

  /** Resolves with the first event matching `pred` (already seen or to come). */
  async waitFor(pred: (e: WorkerProcess['events'][number]) => boolean, what: string, ms = 60000): Promise<WorkerProcess['events'][number]> {
    const deadline = Date.now() + ms;
    for (;;) {
      const e = this.events.find(pred);
      if (e) return e;
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new Error(`worker exited (${this.proc.exitCode ?? this.proc.signalCode ?? '?'}) before ${what}; stderr: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms; stderr: ${this.stderr}`);
      await new Promise<void>((r) => { this.waiters.push(r); setTimeout(r, 200); });
    }
  }

  count(type: string, id: string): number {
    return this.events.filter((e) => e.type === type && 'id' in e && e.id === id).length;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      this.proc.once('exit', () => { resolve(); });
      this.proc.kill('SIGTERM');
    });
  }
}

describe('job queue on BullMQ and a real Redis (lowbit worker / submit / jobs)', function () {
  this.timeout(240000);
  let root: string;
  let redis: RedisServer;
  let hf: string;
  let big: string;
  let calibIds: string;
  const workers: WorkerProcess[] = [];
  const serial = new Map<string, string>();

  /** A fast RTN job on stories260K (threads 1), one of 32 configs by `i`. */
  function fastJob(dir: string, i: number): QuantizeJobData {
    const bits = [2, 3, 4, 8][i % 4], groupSize = [16, 32, 64, -1][Math.floor(i / 4) % 4], sym = Math.floor(i / 16) % 2 === 0;
    return { kind: 'quantize', model: hf, config: { method: 'rtn', bits, groupSize, sym }, out: path.join(dir, `job-${i}`), threads: 1 };
  }
  /** A slow job (seconds: MSE clipping over a 512-wide synthetic model, one thread). */
  function slowJob(dir: string, name: string, bits: number): QuantizeJobData {
    return { kind: 'quantize', model: big, config: { method: 'rtn', bits, groupSize: 64, clip: 'mse' }, out: path.join(dir, name), threads: 1 };
  }
  /** A slow GPTQ job (seconds per layer of the 512-wide synthetic model, one thread): resumable. */
  function gptqJob(dir: string, name: string): QuantizeJobData {
    return { kind: 'quantize', model: big, config: { method: 'gptq', bits: 4, groupSize: 64 }, calibration: { file: calibIds, samples: 16, seqLen: 256 }, out: path.join(dir, name), threads: 1 };
  }
  /** The serial quantize() of the same config, run once per config. */
  async function serialRun(job: QuantizeJobData): Promise<string> {
    const key = JSON.stringify([job.model, job.config, job.calibration]);
    let dir = serial.get(key);
    if (dir === undefined) {
      dir = path.join(root, 'serial', String(serial.size));
      await quantize(job.model, job.config, { out: dir, threads: 1, calibration: job.calibration });
      serial.set(key, dir);
    }
    return dir;
  }
  async function waitAll(ids: string[], queue: string): Promise<JobStatus[]> {
    const out: JobStatus[] = [];
    for (const id of ids) out.push(await waitForJob(redis.url, id, { queue, pollMs: 100 }));
    return out;
  }

  before(async function () {
    const f = fixturesDir();
    if (!hasRedisServer() || !f) {
      console.log(`      (skipped: ${f ? NO_REDIS : NO_FIXTURES})`);
      this.skip();
      return;
    }
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-queue-'));
    fs.mkdirSync(path.join(root, 'redis'));
    redis = new RedisServer(await freePort(), path.join(root, 'redis'));
    await redis.start();
    hf = path.join(root, 'hf');
    await writeHfFromLlama2c(readLlama2cModel(path.join(f, 'stories260K', 'stories260K.bin')), hf, 'F32');
    big = path.join(root, 'big');
    calibIds = path.join(root, 'ids.jsonl');
    fs.writeFileSync(calibIds, Array.from({ length: 16 }, (_, r) => JSON.stringify({ input_ids: Array.from({ length: 300 }, (_, i) => (r * 7919 + i * 104729) % 2048) })).join('\n') + '\n');
    await writeSyntheticModel(big, { shape: { hiddenSize: 512, intermediateSize: 1536, layers: 4, heads: 8, kvHeads: 4, vocabSize: 2048, maxPositions: 512 }, dtype: 'F32' });
  });
  after(async function () {
    for (const w of workers) w.proc.kill('SIGKILL');
    await (redis as RedisServer | undefined)?.kill(); // undefined when skipped
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('40 jobs over 2 worker processes, one SIGKILLed mid-job: each completes exactly once, byte-identical to serial quantize(); the killed GPTQ job resumes from its staging directory', async function () {
    const queue = 'kill';
    const dir = path.join(root, 'a');
    fs.mkdirSync(dir);
    const a = new WorkerProcess(redis.url, queue), b = new WorkerProcess(redis.url, queue);
    workers.push(a, b);
    await a.waitFor((e) => e.type === 'ready', 'ready');
    await b.waitFor((e) => e.type === 'ready', 'ready');
    const jobs = [gptqJob(dir, 'slow-0'), slowJob(dir, 'slow-1', 3)];
    for (let i = 0; jobs.length < 40; i++) jobs.push(fastJob(dir, i));
    const ids: string[] = [];
    for (const j of jobs) ids.push((await enqueue(redis.url, j, { queue })).id);
    assert.equal(new Set(ids).size, 40, 'every job has its own id');
    // kill whichever worker runs the GPTQ job, once it is under way
    // (the GPTQ job is killed once it has recorded a layer, so that the rerun has something to resume)
    const first = await Promise.race([a, b].map(async (w) => ({ w, e: await w.waitFor((e) => e.type === 'active' && e.id === ids[0], 'the GPTQ job') })));
    const t0 = Date.now();
    while (recordedLayers(dir, 'slow-0') < 1 && Date.now() - t0 < 120000) await new Promise((r) => setTimeout(r, 5));
    const killedId = (first.e as { id: string }).id;
    assert.equal(first.w.count('completed', killedId), 0, 'the job is still running when its worker is killed');
    first.w.proc.kill('SIGKILL');
    const survivor = first.w === a ? b : a;
    const done = await waitAll(ids, queue);
    for (const s of done) assert.equal(s.state, 'completed', `${s.id}: ${s.state} ${s.error?.code ?? ''} ${s.error?.message ?? ''}`);
    const killed = done[ids.indexOf(killedId)];
    assert.ok(killed.attempts >= 2, `the killed job ran again (attempts ${killed.attempts})`);
    const resumed = (killed.result as { calibration?: { resumedLayers?: number } } | null)?.calibration?.resumedLayers ?? 0;
    assert.ok(resumed >= 1, `the rerun went on from the killed attempt's layers (resumed ${resumed})`);
    assert.equal(survivor.count('completed', killedId), 1, 'the surviving worker completed the killed job');
    for (const id of ids) assert.equal(a.count('completed', id) + b.count('completed', id), 1, `${id} completed exactly once`);
    for (const j of jobs) assertSameOutput(await serialRun(j), j.out);
    assert.deepEqual(leftovers(dir), [], 'no staging left beside the outputs');
  });

  it('cancel: a running job stops through its AbortSignal and a waiting one fails before it starts; neither leaves output', async function () {
    const queue = 'cancel';
    const dir = path.join(root, 'b');
    fs.mkdirSync(dir);
    const w = new WorkerProcess(redis.url, queue);
    workers.push(w);
    await w.waitFor((e) => e.type === 'ready', 'ready');
    const running = slowJob(dir, 'running', 4), waiting = slowJob(dir, 'waiting', 3);
    const r1 = await enqueue(redis.url, running, { queue });
    const r2 = await enqueue(redis.url, waiting, { queue });
    await w.waitFor((e) => e.type === 'progress' && e.id === r1.id, 'progress of the running job');
    const viaCli = lowbit('jobs', '--redis', redis.url, '--queue', queue, '--cancel', r2.id, '--json');
    assert.equal(viaCli.code, 0, viaCli.stderr);
    assert.deepEqual(JSON.parse(viaCli.stdout), { ok: true, id: r2.id, state: 'waiting', cancelled: true });
    assert.equal((await getJob(redis.url, r2.id, { queue })).cancelRequested, true);
    assert.deepEqual(await cancel(redis.url, r1.id, { queue }), { id: r1.id, state: 'active', cancelled: true });
    const [s1, s2] = await waitAll([r1.id, r2.id], queue);
    assert.equal(s1.state, 'failed');
    assert.equal(s1.error?.code, 'LOWBIT_ABORTED', s1.error?.message);
    assert.match(s1.error.message, /cancelled.*no output written/);
    assert.equal(s2.error?.code, 'LOWBIT_ABORTED', s2.error?.message);
    assert.match(s2.error.message, /cancelled before it started/);
    assert.deepEqual(fs.readdirSync(dir), [], 'no output and no staging');
    assert.deepEqual(await cancel(redis.url, r1.id, { queue }), { id: r1.id, state: 'failed', cancelled: false }, 'a finished job is not cancelled again');
    // enqueueing a cancelled (failed) job queues it again, under the same id
    const again = await enqueue(redis.url, waiting, { queue });
    assert.deepEqual([again.id, again.created, again.retried], [r2.id, false, true]);
    const [s3] = await waitAll([r2.id], queue);
    assert.equal(s3.state, 'completed', s3.error?.message);
    assertSameOutput(await serialRun(waiting), waiting.out);
    await w.stop();
  });

  it('Redis killed and restarted mid-run (same port, same append-only file): no job is lost', async function () {
    const queue = 'restart';
    const dir = path.join(root, 'c');
    fs.mkdirSync(dir);
    const w = new WorkerProcess(redis.url, queue);
    workers.push(w);
    await w.waitFor((e) => e.type === 'ready', 'ready');
    const jobs = [slowJob(dir, 'slow', 4)];
    for (let i = 0; i < 8; i++) jobs.push(fastJob(dir, i + 3));
    const ids: string[] = [];
    for (const j of jobs) ids.push((await enqueue(redis.url, j, { queue })).id);
    await w.waitFor((e) => e.type === 'active' && e.id === ids[0], 'the slow job');
    await redis.kill();
    await new Promise((r) => setTimeout(r, 1000));
    await redis.restart();
    const done = await waitAll(ids, queue);
    for (const s of done) assert.equal(s.state, 'completed', `${s.id}: ${s.state} ${s.error?.message ?? ''}`);
    for (const j of jobs) assertSameOutput(await serialRun(j), j.out);
    assert.equal(w.proc.exitCode, null, 'the worker outlived the outage');
    await w.stop();
  });

  it('lowbit worker --dashboard: bull-board on loopback lists the queue and its jobs; headless Chromium renders it (where installed)', async function () {
    const queue = 'board';
    const dir = path.join(root, 'board');
    fs.mkdirSync(dir);
    const w = new WorkerProcess(redis.url, queue, ['--dashboard', '0']);
    workers.push(w);
    const ready = (await w.waitFor((e) => e.type === 'ready', 'ready')) as { dashboard?: string };
    assert.ok(ready.dashboard && /^http:\/\/127\.0\.0\.1:\d+\/$/.test(ready.dashboard), `dashboard URL ${String(ready.dashboard)}`);
    const url = ready.dashboard;
    const job = fastJob(dir, 3);
    const { id } = await enqueue(redis.url, job, { queue });
    assert.equal((await waitForJob(redis.url, id, { queue, pollMs: 100 })).state, 'completed');
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i);
    const api = await fetch(`${url}api/queues?activeQueue=${queue}&status=completed&page=1&jobsPerPage=10`);
    assert.equal(api.status, 200);
    const body = (await api.json()) as { queues: { name: string; counts: Record<string, number>; jobs: { id: string }[] }[] };
    const q = body.queues.find((x) => x.name === queue);
    assert.ok(q, `the queue is listed: ${body.queues.map((x) => x.name).join(', ')}`);
    assert.ok(q.counts.completed >= 1, JSON.stringify(q.counts));
    assert.ok(q.jobs.some((j) => j.id === id), 'the completed job is listed');
    // a browser's view (Debian's chromium, when installed): the page renders to a PNG
    const chromium = ['chromium', 'chromium-browser'].find((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
    if (chromium) {
      const png = path.join(dir, 'dashboard.png');
      const r = spawnSync(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--window-size=1280,720', '--virtual-time-budget=5000', `--screenshot=${png}`, `${url}queue/${queue}?status=completed`], { encoding: 'utf8', timeout: 120000 });
      assert.equal(r.status, 0, r.stderr);
      const b = fs.readFileSync(png);
      assert.ok(b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) && b.length > 10000, `a rendered PNG (${b.length} bytes)`);
      if (process.env.LOWBIT_DASHBOARD_PNG) fs.copyFileSync(png, process.env.LOWBIT_DASHBOARD_PNG);
    } else {
      console.log('      (chromium not installed: the dashboard was checked over HTTP only)');
    }
    // a port already in use is LOWBIT_IO, and the worker does not start
    const port = Number(new URL(url).port);
    const r = lowbit('worker', '--redis', redis.url, '--queue', queue, '--dashboard', String(port), '--json');
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /LOWBIT_IO.*dashboard: cannot listen/);
    w.proc.kill('SIGTERM');
  });

  it('eval and export jobs from the command line: submit, jobs --wait; the export is byte-identical to `lowbit export`', async function () {
    const queue = 'cli';
    const dir = path.join(root, 'f');
    fs.mkdirSync(dir);
    const f = fixturesDir() ?? '';
    const bin = path.join(f, 'stories260K', 'stories260K.bin'), tok = path.join(f, 'stories260K', 'tok512.bin');
    const text = path.join(f, 'text', 'tinystories-calib.txt');
    const direct = lowbitIn(dir, 'export', bin, '--type', 'Q8_0', '--tokenizer', tok, '--out', 'direct.gguf', '--json');
    assert.equal(direct.code, 0, direct.stderr);
    const w = new WorkerProcess(redis.url, queue);
    workers.push(w);
    await w.waitFor((e) => e.type === 'ready', 'ready');
    const submit = (...inner: string[]) => {
      const r = lowbitIn(dir, 'submit', '--redis', redis.url, '--queue', queue, '--', ...inner);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { id: string }).id;
    };
    const exportId = submit('export', bin, '--type', 'Q8_0', '--tokenizer', tok, '--out', 'queued.gguf');
    const evalId = submit('eval', bin, '--tokenizer', tok, '--text', text, '--ctx', '64', '--max-chunks', '2');
    for (const id of [exportId, evalId]) {
      const r = lowbitIn(dir, 'jobs', '--redis', redis.url, '--queue', queue, '--wait', id, '--json');
      assert.equal(r.code, 0, r.stderr);
      const job = (JSON.parse(r.stdout) as { ok: boolean; job: JobStatus }).job;
      assert.equal(job.state, 'completed');
      if (id === evalId) assert.ok((job.result as { ppl: number; chunks: number }).ppl > 1 && (job.result as { chunks: number }).chunks === 2);
    }
    assert.ok(fs.readFileSync(path.join(dir, 'queued.gguf')).equals(fs.readFileSync(path.join(dir, 'direct.gguf'))), 'the queued export is byte-identical to lowbit export');
    const failed = lowbitIn(dir, 'jobs', '--redis', redis.url, '--queue', queue, '--wait', submit('quantize', path.join(dir, 'none.bin'), '--out', 'q'));
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /failed: LOWBIT_NOT_FOUND/);
    await w.stop();
  });

  describe('bad input', function () {
    it('an unreachable Redis is LOWBIT_QUEUE within the connect timeout (API, worker and CLI)', async function () {
      const port = await freePort();
      const url = `redis://127.0.0.1:${port}`;
      await rejectsCode(enqueue(url, fastJob(root, 0), { timeoutMs: 1000 }), 'LOWBIT_QUEUE', `127.0.0.1:${port}`, 'cannot connect to Redis');
      await rejectsCode(getJob(url, 'x', { timeoutMs: 1000 }), 'LOWBIT_QUEUE');
      await rejectsCode(startWorker({ redis: url, timeoutMs: 1000 }), 'LOWBIT_QUEUE', 'cannot connect to Redis');
      const r = lowbit('jobs', '--redis', url, '--connect-timeout', '1000', '--json');
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /LOWBIT_QUEUE: .*cannot connect to Redis/);
      assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, 'LOWBIT_QUEUE');
      assert.ok((ERROR_CODES as readonly string[]).includes('LOWBIT_QUEUE'));
    });

    it('malformed data is refused on enqueue; a malformed job written around enqueue fails typed and the worker goes on; a missing model fails LOWBIT_NOT_FOUND', async function () {
      const queue = 'bad';
      await rejectsCode(enqueue(redis.url, { kind: 'quantize', model: hf, config: { method: 'rtn', bits: 9 }, out: path.join(root, 'x') }), 'LOWBIT_INVALID_OPTION', 'bits');
      await rejectsCode(enqueue(redis.url, { kind: 'shrink' } as unknown as QuantizeJobData), 'LOWBIT_INVALID_OPTION', 'job.kind');
      await rejectsCode(enqueue('http://127.0.0.1:1', fastJob(root, 0)), 'LOWBIT_INVALID_OPTION', 'redis');
      const w = new WorkerProcess(redis.url, queue);
      workers.push(w);
      await w.waitFor((e) => e.type === 'ready', 'ready');
      const raw = new Queue(queue, { connection: { url: redis.url } });
      try {
        await raw.add('quantize', { kind: 'quantize', model: 5, config: {}, out: 'x' }, { jobId: 'malformed-1' });
      } finally {
        await raw.close();
      }
      const missing = { ...fastJob(path.join(root, 'd'), 0), model: path.join(root, 'no-such-model') };
      const m = await enqueue(redis.url, missing, { queue });
      const good = fastJob(path.join(root, 'd'), 1);
      const g = await enqueue(redis.url, good, { queue });
      const [bad, miss, ok] = await waitAll(['malformed-1', m.id, g.id], queue);
      assert.equal(bad.state, 'failed');
      assert.equal(bad.error?.code, 'LOWBIT_INVALID_OPTION', bad.error?.message);
      assert.match(bad.error.message, /^model: expected a non-empty string, received 5/);
      assert.equal(miss.error?.code, 'LOWBIT_NOT_FOUND', miss.error?.message);
      assert.match(miss.error.message, /no-such-model/);
      assert.equal(ok.state, 'completed', 'the worker kept running');
      assert.equal(w.proc.exitCode, null);
      assert.ok(!fs.existsSync(missing.out));
      await w.stop();
    });
  });

  it('idempotent ids: the same job twice (API and CLI, relative or absolute paths) is one job and one run; touching the model gives a new id', async function () {
    const queue = 'idem';
    const dir = path.join(root, 'e');
    fs.mkdirSync(dir);
    // what `lowbit quantize <hf> --bits 4 --group-size 32 --threads 1 --out <out>` asks for
    const job: QuantizeJobData = { kind: 'quantize', model: hf, config: { method: 'rtn', bits: 4, groupSize: 32 }, out: path.join(dir, 'same'), overwrite: false, threads: 1 };
    const first = await enqueue(redis.url, job, { queue });
    const second = await enqueue(redis.url, job, { queue });
    assert.equal(second.id, first.id);
    assert.deepEqual([first.created, second.created], [true, false]);
    // the CLI, run from another directory with relative paths, parses the same command into the same job
    const rel = (p: string) => path.relative(dir, p);
    const cliArgs = ['submit', '--redis', redis.url, '--queue', queue, '--', 'quantize', rel(hf), '--bits', '4', '--group-size', '32', '--threads', '1', '--out', rel(job.out)];
    const viaCli = lowbitIn(dir, ...cliArgs);
    assert.equal(viaCli.code, 0, viaCli.stderr);
    assert.deepEqual(JSON.parse(viaCli.stdout), { id: first.id });
    assert.match(viaCli.stderr, /already queued/);
    const w = new WorkerProcess(redis.url, queue);
    workers.push(w);
    await w.waitFor((e) => e.type === 'ready', 'ready');
    const [s] = await waitAll([first.id], queue);
    assert.equal(s.state, 'completed', s.error?.message);
    const after = await enqueue(redis.url, job, { queue });
    assert.deepEqual([after.id, after.created, after.state], [first.id, false, 'completed'], 'a completed job is not run again');
    const cliAfter = lowbitIn(dir, ...cliArgs);
    assert.deepEqual(JSON.parse(cliAfter.stdout), { id: first.id });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(w.count('active', first.id), 1, 'one run');
    assert.equal(s.attempts, 1);
    assertSameOutput(await serialRun(job), job.out);
    const t = new Date(Date.now() + 5000);
    fs.utimesSync(path.join(hf, 'model.safetensors'), t, t);
    const touched = await enqueue(redis.url, { ...job, out: path.join(dir, 'touched') }, { queue });
    const again = await enqueue(redis.url, { ...job, out: path.join(dir, 'touched') }, { queue });
    assert.equal(again.id, touched.id);
    assert.notEqual(jobIdOf(resolveJobPaths(job, process.cwd())), first.id, 'a changed mtime changes the id');
    await waitAll([touched.id], queue);
    await w.stop();
  });
});

/** `lowbit …args` run in `cwd`. */
function lowbitIn(cwd: string, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [LOWBIT_BIN, ...args], { cwd, encoding: 'utf8', timeout: 120000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
