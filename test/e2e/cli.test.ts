/** The `lowbit` CLI as a user runs it: exit codes, --json output, errors with their codes. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSyntheticModel } from '../../lib/runtime/synthetic';
import { packageRoot } from '../../lib/native';
import { lowbit } from '../helpers/cli';
import { must } from '../helpers/assert';

/** What `lowbit inspect --json` prints (the fields read here). */
interface InspectJson {
  ok: boolean;
  family: string;
  layers: number;
  dtypes: Record<string, number>;
  parameters: number;
  quantization: { bits: number; sym: boolean } | null;
}

/** What `lowbit quantize --json` prints (the fields read here). */
interface QuantizeJson {
  ok: boolean;
  bits: number;
  sym: boolean;
  skippedModules: number;
}

/** What a failing command prints with --json. */
interface ErrorJson {
  ok: false;
  error: { code: string; message: string };
}

/** What `lowbit doctor --json` prints (the fields read here; `cuda.reason`'s type is under test). */
interface DoctorJson {
  addonLoaded: boolean;
  native: { isa: string; threads: number };
  cuda: { reason: unknown };
}

/** The benchmark document `lowbit bench --out FILE` writes (the fields read here). */
interface BenchJson {
  schema: string;
  limits: { copy: { gbps: number }; fmaPeakAll: { gflops: number } };
  benchmarks: { name: string; hot: { gbps: number }; cold: { fractionOfReadBandwidth: number } }[];
}

/** What `lowbit demo --json` prints (the fields read here). */
interface DemoJson {
  results: { bits: number; meanRelError: number; outputBytes: number }[];
}

describe('lowbit CLI', function () {
  let root: string;
  let model: string;
  before(async function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-cli-'));
    model = await writeSyntheticModel(path.join(root, 'm'), { shape: 'tiny', dtype: 'F16' });
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('--help and --version', function () {
    const h = lowbit('--help');
    assert.equal(h.code, 0);
    for (const c of ['inspect', 'quantize', 'doctor', 'demo']) assert.match(h.stdout, new RegExp(c));
    const v = lowbit('--version');
    assert.equal(v.code, 0);
    assert.equal(v.stdout.trim(), (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version);
  });

  it('inspect --json describes the model', function () {
    const r = lowbit('inspect', model, '--json');
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as InspectJson;
    assert.equal(j.ok, true);
    assert.equal(j.family, 'llama');
    assert.equal(j.layers, 2);
    assert.equal(j.dtypes.F16 > 0, true);
    assert.ok(j.parameters > 0);
    const t = lowbit('inspect', model, '--tensors');
    assert.equal(t.code, 0);
    assert.match(t.stdout, /model\.layers\.1\.mlp\.down_proj\.weight\s+F16\s+\[64, 100\]/);
  });

  it('quantize --json writes a checkpoint and prints the summary; inspect reads it back', function () {
    const out = path.join(root, 'q');
    const r = lowbit('quantize', model, '--bits', '4', '--group-size', '32', '--asym', '--out', out, '--json', '--quiet');
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as QuantizeJson;
    assert.equal(j.ok, true);
    assert.equal(j.bits, 4);
    assert.equal(j.sym, false);
    assert.equal(j.skippedModules, 6);
    const i = JSON.parse(lowbit('inspect', out, '--json').stdout) as InspectJson;
    const q = must(i.quantization, 'quantization of the checkpoint');
    assert.equal(q.bits, 4);
    assert.equal(q.sym, false);
    const human = lowbit('quantize', model, '--bits', '8', '--group-size', '-1', '--out', out, '--force');
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /modules quantized/);
  });

  it('errors exit non-zero with the code on stderr (and as JSON with --json); no output left', function () {
    const out = path.join(root, 'bad');
    const a = lowbit('quantize', model, '--bits', '9', '--out', out);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /LOWBIT_INVALID_OPTION: bits: expected an integer in \[2, 8\], received 9/);
    const b = lowbit('quantize', path.join(root, 'missing'), '--out', out, '--json');
    assert.equal(b.code, 1);
    assert.equal((JSON.parse(b.stdout) as ErrorJson).error.code, 'LOWBIT_NOT_FOUND');
    const c = lowbit('quantize', model, '--group-size', '24', '--out', out);
    assert.equal(c.code, 1);
    assert.match(c.stderr, /LOWBIT_SHAPE_MISMATCH: .*q_proj\.weight/);
    const d = lowbit('quantize', model, '--bits', 'four', '--out', out);
    assert.notEqual(d.code, 0);
    assert.match(d.stderr, /bits: expected an integer, received "four"/);
    const e = lowbit('quantize', model, '--method', 'awq', '--out', out);
    assert.equal(e.code, 1);
    assert.match(e.stderr, /LOWBIT_UNSUPPORTED/);
    const f = lowbit('frobnicate');
    assert.equal(f.code, 2);
    assert.ok(!fs.existsSync(out));
  });

  it('doctor --json reports the addon, ISA and CUDA state', function () {
    const r = lowbit('doctor', '--json');
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as DoctorJson;
    assert.equal(j.addonLoaded, true);
    assert.ok(['generic', 'avx2', 'avx512', 'neon'].includes(j.native.isa));
    assert.ok(j.native.threads >= 1);
    assert.ok(typeof j.cuda.reason === 'string' || j.cuda.reason === null);
  });

  it('bench --list, bench --quick --only … --out FILE (the JSON document), and a bad --only', function () {
    const l = lowbit('bench', '--list');
    assert.equal(l.code, 0, l.stderr);
    const names = l.stdout.trim().split('\n');
    assert.ok(names.includes('qgemv-w4a8-4096x4096') && names.includes('gemm-512x512x512'), l.stdout);
    const out = path.join(root, 'bench.json');
    const r = lowbit('bench', '--quick', '--only', 'qgemv-w8a8-4096x4096', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    const doc = JSON.parse(fs.readFileSync(out, 'utf8')) as BenchJson;
    assert.equal(doc.schema, 'lowbit-bench/1');
    assert.ok(doc.limits.copy.gbps > 0 && doc.limits.fmaPeakAll.gflops > 0);
    assert.deepEqual(doc.benchmarks.map((b: { name: string }) => b.name), ['qgemv-w8a8-4096x4096']);
    assert.ok(doc.benchmarks[0].hot.gbps > 0 && doc.benchmarks[0].cold.fractionOfReadBandwidth > 0);
    assert.ok(fs.readdirSync(root).every((f) => !f.includes('.tmp-')));
    const bad = lowbit('bench', '--only', 'gemm-7x7x7');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /LOWBIT_INVALID_OPTION: --only: no benchmark named "gemm-7x7x7"/);
    const t = lowbit('bench', '--threads', '0');
    assert.equal(t.code, 2);
    assert.match(t.stderr, /--threads/);
  });

  it('demo --json quantizes the built-in model with every setting', function () {
    const r = lowbit('demo', '--json');
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as DemoJson;
    assert.ok(j.results.length >= 6);
    const int8 = must(j.results.find((x) => x.bits === 8), 'the 8-bit result');
    const int2 = must(j.results.find((x) => x.bits === 2), 'the 2-bit result');
    assert.ok(int8.meanRelError < int2.meanRelError);
    for (const x of j.results) assert.ok(x.outputBytes > 0 && x.meanRelError > 0);
  });
});
