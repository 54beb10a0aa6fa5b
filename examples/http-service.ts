/**
 * A small quantization service over HTTP, with node:http only: a client uploads a model file, the
 * server quantizes it and streams the progress back as newline-delimited JSON; a client that goes
 * away cancels its job.
 *
 *   POST /quantize?method=rtn&format=gguf:q4_0   body: the model file (a GGUF file or a llama2.c .bin)
 *     optional: bits, groupSize, sym=true|false, name (the output's base name), calibSamples,
 *     calibSeqLen (GPTQ)
 *     → 200 application/x-ndjson, one JSON object a line: {"type":"job","id":…} first, then
 *       {"type":"progress","phase":…,"done":…,"total":…} lines (the upload, then quantize()'s
 *       onProgress), and last {"type":"result",…} (the output and its figures) or
 *       {"type":"error","code":…,"message":…}
 *     → 400 for an unknown method or format or a bad name, before anything is read
 *   GET /jobs
 *     → 200 {"jobs":[{"id","name","method","format","state","received","phase","done","total","seconds"}]}:
 *       the jobs running now (uploading or quantizing)
 *
 * Shows: quantize()'s onProgress and signal. Each request has its own AbortController, aborted when
 * the connection closes before the answer is complete; the upload stops (its file is deleted), or
 * quantize() rejects with LOWBIT_ABORTED and leaves no output. quantize() runs its heavy work off
 * the event loop, so the server keeps answering (GET /jobs) while jobs run; a few steps are
 * synchronous (converting the uploaded file, GGUF block encoding: docs/guide-server.md).
 *
 * It listens on 127.0.0.1 only: there is no authentication and no upload size limit, so it is a
 * starting point, not a public service.
 *
 * Run it from a checkout (the examples import 'lowbit' by its package name, as your code would;
 * inside the repository Node resolves that name to the package itself):
 *
 *   npx tsc -p examples      # the examples, and the library they import, into dist/
 *   node dist/examples/http-service.js [--port 8080] [--out-dir ./quantized] [--tokenizer FILE] [--calib FILE]
 *
 *   --port N          the port (default: $PORT, else 8080; 0 = any free port); the address is printed
 *   --out-dir DIR     where outputs are written (default ./quantized)
 *   --tokenizer FILE  the llama2.c tokenizer.bin of llama2.c uploads (a GGUF output needs a
 *                     vocabulary, and so does GPTQ's calibration; a GGUF upload carries its own)
 *   --calib FILE      calibration text for method=gptq (GPTQ is refused without it)
 *   --work-dir DIR    where uploads stay while their job runs (default: a temporary directory)
 *
 * Then, from another terminal (curl -T streams the file instead of reading it into memory):
 *
 *   curl -sN -X POST -T ../shared/fixtures/stories260K/stories260K.gguf \
 *     'http://127.0.0.1:8080/quantize?method=rtn&format=gguf:q4_0&name=stories260K'
 *   curl -s http://127.0.0.1:8080/jobs
 *
 * In your own project: npm install lowbit, copy this file and compile it with your TypeScript setup.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import {
  quantize, detectModelSource, isLowbitError, QUANT_METHODS, OUTPUT_FORMATS,
  type QuantizeConfig, type QuantizeResult, type OutputFormat, type Progress,
} from 'lowbit';

/** A job, from its first byte uploaded to its last line sent. */
interface Job {
  id: number;
  name: string;
  method: string;
  format: string;
  state: 'upload' | 'quantize';
  /** Bytes of the model received so far. */
  received: number;
  /** The latest progress of quantize(). */
  progress: Progress | null;
  started: number;
  controller: AbortController;
}

/** The server's settings, from the command line. */
interface Settings {
  port: number;
  outDir: string;
  workDir: string;
  tokenizer: string | undefined;
  calib: string | undefined;
}

const jobs = new Map<number, Job>();
let nextId = 1;
/** Set on SIGINT / SIGTERM: the jobs being cancelled are the server's doing, not their clients'. */
let stopping = false;

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body)}\n`);
}

/** An optional numeric query parameter (the library checks the value and names it when it refuses it). */
function numberParam(q: URLSearchParams, key: string): number | undefined {
  const v = q.get(key);
  return v === null ? undefined : Number(v);
}

/** What the last line of a successful job says. */
function summary(id: number, r: QuantizeResult): Record<string, unknown> {
  return {
    type: 'result', id, out: r.out, method: r.method, format: r.format, bits: r.bits, groupSize: r.groupSize, sym: r.sym,
    quantizedModules: r.quantizedModules, skippedModules: r.skippedModules, meanRelError: r.meanRelError,
    sourceBytes: r.sourceBytes, outputBytes: r.outputBytes, seconds: r.seconds,
    ...(r.gguf ? { tensorsByType: r.gguf.tensorsByType } : {}),
  };
}

/** POST /quantize: receive the upload, quantize it, stream the progress and the result as NDJSON. */
async function postQuantize(req: http.IncomingMessage, res: http.ServerResponse, q: URLSearchParams, s: Settings): Promise<void> {
  const method = q.get('method') ?? 'rtn';
  const format = q.get('format') ?? 'gptq';
  const name = q.get('name') ?? 'model';
  if (!(QUANT_METHODS as readonly string[]).includes(method)) {
    sendJson(res, 400, { error: `method: expected one of ${QUANT_METHODS.join(', ')}, received ${JSON.stringify(method)}` });
    return;
  }
  if (!(OUTPUT_FORMATS as readonly string[]).includes(format)) {
    sendJson(res, 400, { error: `format: expected one of ${OUTPUT_FORMATS.join(', ')}, received ${JSON.stringify(format)}` });
    return;
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    sendJson(res, 400, { error: 'name: letters, digits, ".", "_" and "-", at most 64, starting with a letter or digit' });
    return;
  }
  if (method === 'gptq' && s.calib === undefined) {
    sendJson(res, 400, { error: 'method=gptq needs calibration text: start the server with --calib FILE' });
    return;
  }
  const quantizer = { format: format as OutputFormat, bits: numberParam(q, 'bits'), groupSize: numberParam(q, 'groupSize'),
    ...(q.has('sym') ? { sym: q.get('sym') === 'true' } : {}) };
  const config: QuantizeConfig = method === 'gptq' ? { method: 'gptq', ...quantizer } : { method: 'rtn', ...quantizer };

  const job: Job = { id: nextId++, name, method, format, state: 'upload', received: 0, progress: null, started: Date.now(), controller: new AbortController() };
  const { signal } = job.controller;
  jobs.set(job.id, job);
  // the client going away before the last line cancels the job, whatever it is doing
  res.on('close', () => {
    if (!res.writableFinished) job.controller.abort();
  });
  const send = (line: Record<string, unknown>) => {
    if (!res.writableEnded && !res.destroyed) res.write(`${JSON.stringify(line)}\n`);
  };
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  send({ type: 'job', id: job.id, method, format });
  log(`job ${job.id}: ${method} → ${format}, receiving ${name}`);

  let dir: string | null = null;
  let outcome = 'failed';
  try {
    // 1. the upload, to a file in a directory of its own (quantize() reads models from disk, memory-mapped)
    dir = fs.mkdtempSync(path.join(s.workDir, `job-${job.id}-`));
    const upload = path.join(dir, name);
    await pipeline(req, async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        job.received += chunk.length;
        yield chunk;
      }
    }, fs.createWriteStream(upload), { signal });
    send({ type: 'progress', phase: 'upload', done: job.received, total: job.received });

    // 2. quantize it; a llama2.c file has no vocabulary of its own: give it the server's tokenizer.bin
    job.state = 'quantize';
    const kind = detectModelSource(upload).kind;
    const base = name.replace(/\.(gguf|bin)$/, '');
    const gguf = format.startsWith('gguf:');
    const out = path.join(s.outDir, `${base}-${method}-${format.replace(':', '-')}-${job.id}${gguf ? '.gguf' : ''}`);
    const result = await quantize(upload, config, {
      out,
      tokenizer: kind === 'llama2c' ? s.tokenizer : undefined,
      calibration: method === 'gptq' ? { file: s.calib, samples: numberParam(q, 'calibSamples'), seqLen: numberParam(q, 'calibSeqLen') } : undefined,
      signal,
      onProgress: (p) => {
        job.progress = p;
        send({ type: 'progress', ...p });
      },
    });
    send(summary(job.id, result));
    res.end();
    outcome = `done: ${result.out} (${result.outputBytes} bytes)`;
  } catch (e) {
    if (signal.aborted || res.destroyed) {
      // LOWBIT_ABORTED from quantize(), or the upload stream cut: nobody is left to tell
      outcome = stopping ? 'cancelled (server stopping)' : 'cancelled (client disconnected)';
    } else {
      const code = isLowbitError(e) ? e.code : 'ERROR';
      const message = e instanceof Error ? e.message : String(e);
      send({ type: 'error', code, message });
      res.end();
      outcome = `failed: ${code}: ${message}`;
    }
  } finally {
    jobs.delete(job.id);
    if (dir !== null) fs.rmSync(dir, { recursive: true, force: true });
    log(`job ${job.id}: ${outcome}`);
  }
}

/** GET /jobs: the running jobs. */
function getJobs(res: http.ServerResponse): void {
  const now = Date.now();
  sendJson(res, 200, {
    jobs: [...jobs.values()].map((j) => ({
      id: j.id, name: j.name, method: j.method, format: j.format, state: j.state, received: j.received,
      phase: j.progress?.phase ?? j.state, done: j.progress?.done ?? 0, total: j.progress?.total ?? 0, seconds: (now - j.started) / 1000,
    })),
  });
}

async function route(req: http.IncomingMessage, res: http.ServerResponse, s: Settings): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const routes: Record<string, string> = { '/quantize': 'POST', '/jobs': 'GET' };
  const allowed = routes[url.pathname] as string | undefined;
  if (allowed === undefined) {
    sendJson(res, 404, { error: `no route ${url.pathname} (POST /quantize, GET /jobs)` });
  } else if (req.method !== allowed) {
    res.setHeader('allow', allowed);
    sendJson(res, 405, { error: `${url.pathname} takes ${allowed}` });
  } else if (url.pathname === '/jobs') {
    getJobs(res);
  } else {
    await postQuantize(req, res, url.searchParams, s);
  }
}

/** The command line; a mistake in it exits with code 2. */
function settings(): Settings {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string' },
        'out-dir': { type: 'string' },
        'work-dir': { type: 'string' },
        tokenizer: { type: 'string' },
        calib: { type: 'string' },
      },
    }));
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\nusage: node dist/examples/http-service.js [--port 8080] [--out-dir DIR] [--work-dir DIR] [--tokenizer FILE] [--calib FILE]\n`);
    process.exit(2);
  }
  const portText = values.port ?? process.env.PORT ?? '8080';
  const port = Number(portText);
  if (portText.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`--port: expected 0–65535, received ${JSON.stringify(portText)}\n`);
    process.exit(2);
  }
  for (const [flag, file] of [['--tokenizer', values.tokenizer], ['--calib', values.calib]] as const) {
    if (file !== undefined && !fs.existsSync(file)) {
      process.stderr.write(`${flag}: no such file ${JSON.stringify(file)}\n`);
      process.exit(2);
    }
  }
  const outDir = path.resolve(values['out-dir'] ?? 'quantized');
  fs.mkdirSync(outDir, { recursive: true });
  let workDir: string;
  if (values['work-dir'] === undefined) {
    // a private directory for the uploads, removed when the server exits
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-service-'));
    process.on('exit', () => {
      fs.rmSync(tmp, { recursive: true, force: true });
    });
    workDir = tmp;
  } else {
    workDir = path.resolve(values['work-dir']);
    fs.mkdirSync(workDir, { recursive: true });
  }
  return { port, outDir, workDir, tokenizer: values.tokenizer, calib: values.calib };
}

function main(): void {
  const s = settings();
  const server = http.createServer((req, res) => {
    route(req, res, s).catch((e: unknown) => {
      // postQuantize answers its own errors; this is for anything unforeseen
      if (!res.headersSent) sendJson(res, 500, { error: e instanceof Error ? e.message : String(e) });
      else res.destroy();
    });
  });
  server.listen(s.port, '127.0.0.1', () => {
    const a = server.address() as AddressInfo;
    log(`listening on http://127.0.0.1:${a.port} (outputs in ${s.outDir})`);
  });
  // Ctrl-C / kill: stop accepting, cancel every job (each cleans up after itself), then exit
  const stop = (sig: string) => {
    log(`${sig}: cancelling ${jobs.size} job(s)`);
    stopping = true;
    server.close();
    for (const j of jobs.values()) j.controller.abort();
    server.closeAllConnections();
  };
  process.once('SIGINT', () => {
    stop('SIGINT');
  });
  process.once('SIGTERM', () => {
    stop('SIGTERM');
  });
}

main();
