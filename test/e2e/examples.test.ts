/**
 * The programs in examples/ as a user runs them, on the stories260K fixtures (skipped without them):
 * compiled with `tsc -p examples` (here, when dist/examples/ is missing or older than a source),
 * each run as `node dist/examples/<name>.js …` in a child process, importing the package by its
 * name 'lowbit'. quantize-and-evaluate prints a table where GPTQ's KL is at most RTN's;
 * gptq-to-gguf writes a GGUF file and prints the greedy text that loading the file gives;
 * http-service streams NDJSON progress and a result, and a client that disconnects (during the
 * quantization, or during the upload) cancels its job: no output, no upload and no job left.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from '../../lib/native';
import { loadModel } from '../../lib/runtime/model';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';

const EXAMPLES = ['quantize-and-evaluate', 'gptq-to-gguf', 'http-service'] as const;

/** One line of the service's NDJSON answer (the fields read here). */
interface ServiceLine {
  type: 'job' | 'progress' | 'result' | 'error';
  id?: number;
  phase?: string;
  done?: number;
  total?: number;
  out?: string;
  format?: string;
  outputBytes?: number;
  quantizedModules?: number;
  tensorsByType?: Record<string, number>;
  code?: string;
  message?: string;
}

/** GET /jobs (the fields read here). */
interface JobsJson {
  jobs: { id: number; state: string; received: number }[];
}

/** Compile the examples unless dist/examples/ already holds each one, newer than its source. */
function compileExamples(root: string): void {
  const stale = EXAMPLES.some((n) => {
    const js = path.join(root, 'dist', 'examples', `${n}.js`);
    return !fs.existsSync(js) || fs.statSync(js).mtimeMs < fs.statSync(path.join(root, 'examples', `${n}.ts`)).mtimeMs;
  });
  if (!stale) return;
  const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'examples')], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, `tsc -p examples:\n${r.stdout}${r.stderr}`);
}

/** Rows of a table printed with columns two or more spaces apart, by their first cell. */
function tableRows(text: string, header: string): { columns: string[]; rows: Map<string, string[]> } {
  const lines = text.split('\n');
  const at = lines.findIndex((l) => l.startsWith(header));
  assert.ok(at >= 0, `no table in:\n${text}`);
  const columns = lines[at].split(/ {2,}/);
  const rows = new Map<string, string[]>();
  for (const l of lines.slice(at + 1)) {
    if (l.trim() === '') break;
    const cells = l.split(/ {2,}/);
    rows.set(cells[0], cells);
  }
  return { columns, rows };
}

/** An HTTP request to the service: the body (a file or a part of one), the NDJSON lines as they arrive. */
function post(url: string, body: Buffer, onLine: (line: ServiceLine, req: http.ClientRequest) => void, end = true): Promise<ServiceLine[]> {
  return new Promise((resolve, reject) => {
    const lines: ServiceLine[] = [];
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } }, (res) => {
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-type'], 'application/x-ndjson');
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = JSON.parse(buf.slice(0, nl)) as ServiceLine;
          buf = buf.slice(nl + 1);
          lines.push(line);
          onLine(line, req);
        }
      });
      res.on('end', () => {
        resolve(lines);
      });
      // a request the test destroys ends here
      res.on('error', () => {
        resolve(lines);
      });
      res.on('close', () => {
        resolve(lines);
      });
    });
    req.on('error', (e) => {
      if (req.destroyed) resolve(lines);
      else reject(e);
    });
    req.write(body);
    if (end) req.end();
  });
}

async function getJobs(base: string): Promise<JobsJson> {
  const res = await fetch(`${base}/jobs`);
  assert.equal(res.status, 200);
  return (await res.json()) as JobsJson;
}

describe('examples/ (e2e, stories260K)', function () {
  this.timeout(120000);
  const F = fixturesDir();
  const root = packageRoot();
  let work: string, bin: string, tok: string, gguf: string, calib: string, dev: string;
  before(function () {
    if (!F) {
      console.log(`      skipped: ${NO_FIXTURES}`);
      this.skip();
    }
    compileExamples(root);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-examples-'));
    bin = path.join(F, 'stories260K', 'stories260K.bin');
    tok = path.join(F, 'stories260K', 'tok512.bin');
    gguf = path.join(F, 'stories260K', 'stories260K.gguf');
    calib = path.join(F, 'text', 'tinystories-calib.txt');
    dev = path.join(F, 'text', 'tinystories-dev.txt');
  });
  after(function () {
    if (typeof work === 'string') fs.rmSync(work, { recursive: true, force: true });
  });

  /** `node dist/examples/<name>.js …args` in the test's directory. */
  const run = (name: (typeof EXAMPLES)[number], args: string[], env: NodeJS.ProcessEnv = process.env) =>
    spawnSync(process.execPath, [path.join(root, 'dist', 'examples', `${name}.js`), ...args], { cwd: work, env, encoding: 'utf8', timeout: 120000 });

  it('quantize-and-evaluate: a table of RTN and GPTQ at 4 bits g32, GPTQ KL <= RTN KL, temporary outputs removed', function () {
    const tmp = fs.mkdtempSync(path.join(work, 'tmp-'));
    const r = run('quantize-and-evaluate', [bin, calib, dev, '--tokenizer', tok, '--group-size', '32',
      '--calib-samples', '32', '--calib-seqlen', '256', '--max-chunks', '8'], { ...process.env, TMPDIR: tmp });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /stories260K\.bin on tinystories-dev\.txt: 8 windows of 512 tokens, 4088 predicted tokens/);
    const { columns, rows } = tableRows(r.stdout, 'method');
    assert.deepEqual(columns, ['method', 'bits', 'group', 'format', 'quantized', 'size', 'ppl', 'KL (nats/token)', 'top-1', 'quantize time']);
    const cell = (row: string, col: string): string => {
      const cells = rows.get(row);
      assert.ok(cells, `no ${row} row in:\n${r.stdout}`);
      return cells[columns.indexOf(col)];
    };
    // the unquantized model on the first 8 windows: the fixture's perplexity (docs/QUALITY.md)
    assert.equal(cell('original', 'ppl'), '6.1426');
    for (const m of ['RTN', 'GPTQ']) {
      assert.equal(cell(m, 'bits'), '4');
      assert.equal(cell(m, 'group'), '32');
      assert.equal(cell(m, 'format'), 'gptq');
      assert.equal(cell(m, 'quantized'), '20/35'); // the attention layers; the 172-wide MLP stays fp16 in the packed layout
      const ppl = Number(cell(m, 'ppl'));
      assert.ok(Number.isFinite(ppl) && ppl > 6.1426, `${m} ppl ${cell(m, 'ppl')}`);
      const top1 = Number(cell(m, 'top-1').replace('%', ''));
      assert.ok(top1 > 50 && top1 < 100, `${m} top-1 ${cell(m, 'top-1')}`);
    }
    const kl = (m: string) => Number(cell(m, 'KL (nats/token)'));
    assert.ok(kl('RTN') > 0 && kl('GPTQ') > 0, `KL ${kl('RTN')} ${kl('GPTQ')}`);
    assert.ok(kl('GPTQ') <= kl('RTN'), `GPTQ KL ${kl('GPTQ')} above RTN's ${kl('RTN')}`);
    assert.deepEqual(fs.readdirSync(tmp), [], 'the quantized models are removed without --keep');
  });

  it('gptq-to-gguf: writes a Q4_0 GGUF and prints the greedy text that loading the file gives', async function () {
    const out = path.join(work, 'stories260K-gptq-q4_0.gguf');
    const prompt = 'Once upon a time';
    const r = run('gptq-to-gguf', [bin, calib, '--tokenizer', tok, '--out', out, '--calib-samples', '32', '--calib-seqlen', '256',
      '--prompt', prompt, '--max-tokens', '40']);
    assert.equal(r.status, 0, r.stderr);
    const head = Buffer.alloc(4);
    const fd = fs.openSync(out, 'r');
    fs.readSync(fd, head, 0, 4, 0);
    fs.closeSync(fd);
    assert.equal(head.toString('latin1'), 'GGUF');
    assert.match(r.stdout, new RegExp(`wrote ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ${fs.statSync(out).size} bytes`));
    assert.match(r.stdout, /20 Q4_0/);
    assert.match(r.stdout, /GPTQ: 20 layers, calibrated on 8192 tokens/);
    const marker = r.stdout.indexOf('--- greedy sample');
    assert.ok(marker >= 0, r.stdout);
    const sample = r.stdout.slice(r.stdout.indexOf('\n', marker) + 1).replace(/\n$/, '');
    assert.ok(sample.startsWith(prompt), `sample: ${sample}`);
    assert.ok(sample.length > prompt.length + 40, `sample: ${sample}`);
    // exactly what the file generates when loaded here
    const lm = await loadModel(out);
    try {
      const g = await lm.generate({ prompt, maxTokens: 40, temperature: 0 });
      assert.equal(sample, g.text);
    } finally {
      lm.dispose();
    }
  });

  describe('http-service', function () {
    let server: ChildProcessWithoutNullStreams | null = null;
    let log = '';
    let base = '';
    let outDir: string, workDir: string;
    const waitForLog = (re: RegExp): Promise<RegExpMatchArray> => new Promise((resolve, reject) => {
      const check = () => {
        const m = re.exec(log);
        if (m) {
          server?.stdout.off('data', check);
          server?.off('exit', exited);
          resolve(m);
        }
      };
      const exited = () => {
        reject(new Error(`the service exited; its output:\n${log}`));
      };
      server?.stdout.on('data', check);
      server?.once('exit', exited);
      check();
    });

    before(async function () {
      outDir = path.join(work, 'service-out');
      workDir = path.join(work, 'service-uploads');
      server = spawn(process.execPath, [path.join(root, 'dist', 'examples', 'http-service.js'), '--port', '0', '--out-dir', outDir,
        '--work-dir', workDir, '--tokenizer', tok, '--calib', calib], { cwd: work });
      server.stdout.setEncoding('utf8');
      server.stderr.setEncoding('utf8');
      server.stdout.on('data', (s: string) => {
        log += s;
      });
      server.stderr.on('data', (s: string) => {
        log += s;
      });
      const m = await waitForLog(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      base = m[1];
    });
    after(async function () {
      const s = server;
      if (!s || s.exitCode !== null || s.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => s.kill('SIGKILL'), 20000);
        s.once('exit', () => {
          clearTimeout(force);
          resolve();
        });
        s.kill('SIGTERM');
      });
    });

    it('POST /quantize (a GGUF, RTN → gguf:q4_0): NDJSON job, progress lines, the result last; no job left', async function () {
      const body = fs.readFileSync(gguf);
      const lines = await post(`${base}/quantize?method=rtn&format=gguf:q4_0&name=stories260K`, body, () => undefined);
      assert.equal(lines[0].type, 'job');
      const upload = lines.find((l) => l.type === 'progress' && l.phase === 'upload');
      assert.ok(upload, JSON.stringify(lines));
      assert.equal(upload.done, body.length);
      const writes = lines.filter((l) => l.type === 'progress' && l.phase === 'write');
      assert.ok(writes.length > 1, `${writes.length} write progress lines`);
      assert.ok(writes.every((l) => typeof l.done === 'number' && typeof l.total === 'number' && l.done <= l.total));
      const last = lines[lines.length - 1];
      assert.equal(last.type, 'result', JSON.stringify(last));
      assert.equal(last.format, 'gguf:q4_0');
      assert.ok(last.out !== undefined && path.dirname(last.out) === outDir && last.out.endsWith('.gguf'), last.out);
      assert.equal(fs.statSync(last.out).size, last.outputBytes);
      assert.ok((last.tensorsByType?.Q4_0 ?? 0) > 0, JSON.stringify(last.tensorsByType));
      assert.equal(lines.filter((l) => l.type === 'result' || l.type === 'error').length, 1);
      assert.deepEqual((await getJobs(base)).jobs, []);
      assert.deepEqual(fs.readdirSync(workDir), []);
    });

    it('a client that disconnects during GPTQ cancels the job: no output, no upload, no job left', async function () {
      const outputs = fs.readdirSync(outDir).sort();
      let id = 0;
      let phase = '';
      const lines = await post(`${base}/quantize?method=gptq&format=gptq&groupSize=32`, fs.readFileSync(bin), (line, req) => {
        if (line.type === 'job') id = line.id ?? 0;
        // the first progress line of quantize() itself: GPTQ's calibration has begun
        if (line.type === 'progress' && line.phase !== 'upload' && !req.destroyed) {
          phase = line.phase ?? '';
          req.destroy();
        }
      });
      assert.ok(id > 0 && phase !== '', JSON.stringify(lines));
      assert.ok(!lines.some((l) => l.type === 'result' || l.type === 'error'), JSON.stringify(lines));
      await waitForLog(new RegExp(`job ${id}: cancelled`));
      assert.deepEqual((await getJobs(base)).jobs, []);
      assert.deepEqual(fs.readdirSync(outDir).sort(), outputs, 'no output, no staging directory');
      assert.deepEqual(fs.readdirSync(workDir), [], 'the upload is deleted');
    });

    it('a client that disconnects during the upload cancels the job: GET /jobs shows it uploading, then nothing', async function () {
      const outputs = fs.readdirSync(outDir).sort();
      const part = fs.readFileSync(bin).subarray(0, 65536);
      let id = 0;
      let seen: JobsJson['jobs'][number] | undefined;
      await post(`${base}/quantize?method=rtn&format=gguf:q8_0`, part, (line, req) => {
        if (line.type !== 'job') return;
        id = line.id ?? 0;
        // the body is not finished: wait until the service has received the part sent, then hang up
        const poll = async (): Promise<void> => {
          for (;;) {
            seen = (await getJobs(base)).jobs.find((j) => j.id === id);
            if (seen && seen.received >= part.length) break;
            await new Promise((r) => setTimeout(r, 20));
          }
          req.destroy();
        };
        poll().catch(() => req.destroy());
      }, false);
      assert.ok(seen, 'the job was listed');
      assert.equal(seen.state, 'upload');
      assert.equal(seen.received, part.length);
      await waitForLog(new RegExp(`job ${id}: cancelled`));
      assert.deepEqual((await getJobs(base)).jobs, []);
      assert.deepEqual(fs.readdirSync(outDir).sort(), outputs);
      assert.deepEqual(fs.readdirSync(workDir), []);
    });
  });
});
