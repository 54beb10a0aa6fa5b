/**
 * Concurrency as a test: N ≥ 4 concurrent quantize() runs (RTN and GPTQ) and concurrent forward
 * passes on separate models in one process give byte-identical results to serial runs. The jobs
 * share the native thread pool (its regions are serialized) and alternate per-call thread counts
 * (1 and 2), so a result that depended on the thread count, on the interleaving, or on state
 * shared between jobs would differ. The native side of the same question runs under
 * ThreadSanitizer in `npm run test:tsan`.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize, loadModel, type LanguageModel } from '../../lib/index';
import { readLlama2cModel } from '../../lib/formats/llama2c';
import { writeHfFromLlama2c } from '../../lib/formats/convert';
import { fixturesDir } from '../helpers/fixtures';

const N = 4;

/** Every .safetensors file of an output directory, by name. */
function tensorsOf(dir: string): Map<string, Buffer> {
  const m = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort()) m.set(f, fs.readFileSync(path.join(dir, f)));
  assert.ok(m.size > 0, `${dir} has no safetensors file`);
  return m;
}

function assertSameFiles(a: Map<string, Buffer>, b: Map<string, Buffer>, what: string): void {
  assert.deepEqual([...b.keys()], [...a.keys()], `${what}: file names`);
  for (const [f, bytes] of a) assert.ok(bytes.equals(b.get(f) ?? Buffer.alloc(0)), `${what}: ${f} differs from the serial run`);
}

describe('concurrent jobs in one process give byte-identical results to serial runs', function () {
  this.timeout(600000);
  let root: string;
  let hf: string;
  let bin: string;
  let text: string;
  before(async function () {
    const f = fixturesDir();
    if (!f) {
      this.skip();
      return;
    }
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-concurrency-'));
    bin = path.join(f, 'stories260K', 'stories260K.bin');
    hf = path.join(root, 'hf');
    await writeHfFromLlama2c(readLlama2cModel(bin), hf, 'F32');
    fs.copyFileSync(path.join(f, 'stories260K', 'tok512.bin'), path.join(hf, 'tokenizer.bin'));
    text = fs.readFileSync(path.join(f, 'text', 'tinystories-calib.txt'), 'utf8').slice(0, 20000);
  });
  after(function () {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it(`${N} RTN and ${N} GPTQ quantize() runs at once == the serial runs (threads 1 and 2 alternating)`, async function () {
    const rtn = { method: 'rtn' as const, bits: 4, groupSize: 32, sym: false };
    const gptq = { method: 'gptq' as const, bits: 4, groupSize: 32, sym: false, actOrder: true };
    const calibration = { text, samples: 4, seqLen: 64 };
    const serialRtn = path.join(root, 'serial-rtn'), serialGptq = path.join(root, 'serial-gptq');
    await quantize(hf, rtn, { out: serialRtn, threads: 1 });
    await quantize(hf, gptq, { out: serialGptq, calibration, threads: 1 });
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < N; i++) {
      jobs.push(quantize(hf, rtn, { out: path.join(root, `rtn-${i}`), threads: 1 + (i % 2) }));
      jobs.push(quantize(hf, gptq, { out: path.join(root, `gptq-${i}`), calibration, threads: 1 + ((i + 1) % 2) }));
    }
    await Promise.all(jobs);
    const a = tensorsOf(serialRtn), b = tensorsOf(serialGptq);
    assert.ok(!a.values().next().value?.equals(b.values().next().value ?? Buffer.alloc(0)), 'RTN and GPTQ outputs differ from each other');
    for (let i = 0; i < N; i++) {
      assertSameFiles(a, tensorsOf(path.join(root, `rtn-${i}`)), `concurrent RTN run ${i}`);
      assertSameFiles(b, tensorsOf(path.join(root, `gptq-${i}`)), `concurrent GPTQ run ${i}`);
    }
  });

  it(`forward passes on ${N} separate models at once == the serial passes (prefill and decode)`, async function () {
    const prompt = Int32Array.from([1, 403, 407, 261, 378, 429, 270, 505, 283, 400, 261]);
    // prefill logits of every prompt position, then 6 decode steps fed with the argmax
    const run = async (m: LanguageModel): Promise<Buffer> => {
      const parts: Buffer[] = [];
      let logits = await m.forward(prompt, 0, prompt.length);
      parts.push(Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength));
      const vocab = logits.length / prompt.length;
      let pos = prompt.length;
      for (let s = 0; s < 6; s++) {
        const last = logits.subarray(logits.length - vocab);
        let best = 0;
        for (let i = 1; i < vocab; i++) if (last[i] > last[best]) best = i;
        logits = await m.forward(Int32Array.of(best), pos++, 1);
        parts.push(Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength));
      }
      return Buffer.concat(parts);
    };
    const models: LanguageModel[] = [];
    try {
      // the f32 model and the GPTQ checkpoint written above (packed int4 path), alternating
      const gptqDir = path.join(root, 'serial-gptq');
      for (let i = 0; i < N; i++) models.push(await loadModel(i % 2 === 0 ? bin : gptqDir, { threads: 1 + (i % 2) }));
      const serial: Buffer[] = [];
      for (const m of models) serial.push(await run(m));
      for (const m of models) m.dispose();
      models.length = 0;
      for (let i = 0; i < N; i++) models.push(await loadModel(i % 2 === 0 ? bin : gptqDir, { threads: 2 - (i % 2) }));
      const concurrent = await Promise.all(models.map(run));
      for (let i = 0; i < N; i++) assert.ok(concurrent[i].equals(serial[i]), `model ${i}: concurrent logits differ from the serial run`);
      assert.ok(!serial[0].equals(serial[1]), 'the f32 and GPTQ models give different logits');
    } finally {
      for (const m of models) m.dispose();
    }
  });
});
