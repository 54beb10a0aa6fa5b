/**
 * npm run quality — quality of lowbit's quantizers on the real stories260K model, measured, not
 * assumed: perplexity on ../shared/fixtures/text/tinystories-dev.txt (ctx 512, all 90 windows),
 * and KL divergence / top-1 agreement against the FP32 model on the same windows.
 * The model is converted to an HF directory (q/k rows permuted to rotate-half), every linear layer
 * is quantized with `quantize(..., {format: 'dequant'})` (its 172-wide MLP does not fit the packed
 * GPTQ layout), loaded back by the runtime and evaluated. Prints Markdown + writes JSON.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readLlama2cModel } from '../lib/formats/llama2c';
import { writeHfFromLlama2c } from '../lib/formats/convert';
import { quantize } from '../lib/pipeline/quantize';
import { exportGguf } from '../lib/pipeline/gguf-export';
import { loadModel } from '../lib/runtime/model';
import { evaluate, type EvaluateResult } from '../lib/runtime/evaluate';
import type { RtnConfig, GptqConfig } from '../lib/config/quantize';
import { measureActScales } from '../lib/runtime/act-scales';
import { qat } from '../lib/pipeline/qat';

/** One row of the table on stdout and of the JSON file. */
interface Row {
  method: string;
  bits: number;
  group: number | string;
  sym: string;
  ppl: number;
  kl: number;
  top1: number;
  tokens: number;
  bytes?: number;
}

/** KL and top-1 agreement of an evaluation against the reference (evaluate fills both when given one). */
function againstReference(r: EvaluateResult): { kl: number; top1: number } {
  if (r.kl === null || r.top1 === null) throw new Error('evaluate with a reference returned no KL / top-1');
  return { kl: r.kl, top1: r.top1 };
}

const fixtures = process.env.LOWBIT_FIXTURES ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'fixtures');

async function main(): Promise<void> {
  const bin = path.join(fixtures, 'stories260K', 'stories260K.bin');
  const tok = path.join(fixtures, 'stories260K', 'tok512.bin');
  const textFile = path.join(fixtures, 'text', 'tinystories-dev.txt');
  if (!fs.existsSync(bin)) throw new Error(`fixtures not found at ${fixtures} (set LOWBIT_FIXTURES)`);
  const text = fs.readFileSync(textFile, 'utf8');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-quality-'));
  const hf = await writeHfFromLlama2c(readLlama2cModel(bin), path.join(work, 'fp32'), 'F32');
  const ref = await loadModel(bin, { tokenizer: tok });
  const rows: Row[] = [];
  const fp = await evaluate(ref, { text, ctx: 512 });
  rows.push({ method: 'FP32', bits: 32, group: '-', sym: '-', ppl: fp.ppl, kl: 0, top1: 1, tokens: fp.tokens });
  process.stderr.write(`FP32 ppl ${fp.ppl.toFixed(6)}\n`);
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;
  const settings: [string, number, number, boolean, 'minmax' | 'mse', boolean][] = [];
  if (!only || only === 'rtn') {
    for (const bits of [8, 4, 3, 2]) for (const g of [32, -1]) for (const sym of [true, false]) settings.push(['rtn', bits, g, sym, 'minmax', false]);
    for (const bits of [4, 3]) for (const g of [32, -1]) settings.push(['rtn', bits, g, false, 'mse', false]);
  }
  if (!only || only === 'gptq') {
    for (const bits of [8, 4, 3, 2]) for (const g of [32, -1]) for (const act of [false, true]) settings.push(['gptq', bits, g, false, 'minmax', act]);
  }
  // GPTQ calibration: 128 windows of 512 tokens (the model's context) from the calibration text.
  const calibration = { file: path.join(fixtures, 'text', 'tinystories-calib.txt'), samples: 128, seqLen: 512, seed: 0, tokenizer: tok };
  for (const [method, bits, g, sym, clip, act] of settings) {
    const out = path.join(work, `${method}-${bits}-${g}-${sym ? 's' : 'a'}-${clip}-${act ? 'act' : 'noact'}`);
    const cfg = method === 'gptq'
      ? { method: 'gptq' as const, bits, groupSize: g, sym, clip, actOrder: act, format: 'dequant' as const }
      : { method: 'rtn' as const, bits, groupSize: g, sym, clip, format: 'dequant' as const } as RtnConfig;
    await quantize(hf, cfg, { out, ...(method === 'gptq' ? { calibration } : {}) });
    const m = await loadModel(out, { tokenizer: tok });
    const r = await evaluate(m, { text, ctx: 512, reference: ref });
    m.dispose();
    fs.rmSync(out, { recursive: true, force: true });
    const { kl, top1 } = againstReference(r);
    const label = method === 'gptq' ? `GPTQ${act ? ' act-order' : ''}` : `RTN${clip === 'mse' ? ' + MSE clip' : ''}`;
    rows.push({ method: label, bits, group: g === -1 ? 'channel' : g, sym: sym ? 'sym' : 'asym', ppl: r.ppl, kl, top1, tokens: r.tokens });
    process.stderr.write(`${label} ${bits}-bit g${g} ${sym ? 'sym' : 'asym'} ${clip}: ppl ${r.ppl.toFixed(4)} KL ${kl.toExponential(3)} top1 ${top1.toFixed(4)}\n`);
  }
  // GPTQ with the calibration forward in bf16 (issue 18) beside the same run in f32
  if (!only || only === 'gptq-bf16') {
    for (const bits of [4, 3]) {
      for (const compute of ['f32', 'bf16'] as const) {
        const out = path.join(work, `gptq-${bits}-${compute}`);
        const t0 = performance.now();
        await quantize(hf, { method: 'gptq', bits, groupSize: 32, sym: false, format: 'dequant' }, { out, calibration: { ...calibration, compute } });
        const seconds = (performance.now() - t0) / 1000;
        const m = await loadModel(out, { tokenizer: tok });
        const r = await evaluate(m, { text, ctx: 512, reference: ref });
        m.dispose();
        fs.rmSync(out, { recursive: true, force: true });
        const { kl, top1 } = againstReference(r);
        const label = `GPTQ (${compute} calibration forward)`;
        rows.push({ method: label, bits, group: 32, sym: 'asym', ppl: r.ppl, kl, top1, tokens: r.tokens });
        process.stderr.write(`${label} ${bits}-bit g32: ppl ${r.ppl.toFixed(4)} KL ${kl.toExponential(3)} top1 ${top1.toFixed(4)} (${seconds.toFixed(1)} s)\n`);
      }
    }
  }
  if (!only || only === 'gguf') {
    // GGUF files: GPTQ and RTN on the grids of Q4_0 (4-bit sym g32) and Q4_1 (4-bit asym g32) through
    // lowbit's GPTQ checkpoint (codes → blocks, no second rounding), beside ggml's own block encoders
    // from the FP32 weights. The embedding and the 172-wide MLP (which the packed GPTQ layout cannot
    // hold) stay F32 in every row (GPTQ checkpoints keep them; ggml rows get embeddingType F32 and
    // exclude 'mlp.'), so exactly the 20 attention linears differ. Weights dequantized at load.
    const cal = { ...calibration, seed: 0 };
    // signed-max: Q4_0's own grid (scale |largest| / 8 with its sign), what `--format gguf:q4_0` uses
    for (const [label, type, method, sym, signedMax] of [['GPTQ (signed-max grid) → Q4_0', 'Q4_0', 'gptq', true, true], ['RTN (signed-max grid) → Q4_0', 'Q4_0', 'rtn', true, true],
      ['GPTQ (symmetric grid) → Q4_0', 'Q4_0', 'gptq', true, false], ['RTN (symmetric grid) → Q4_0', 'Q4_0', 'rtn', true, false], ['ggml Q4_0 encoder', 'Q4_0', 'ggml', true, false],
      ['GPTQ → Q4_1', 'Q4_1', 'gptq', false, false], ['RTN (lowbit grid) → Q4_1', 'Q4_1', 'rtn', false, false], ['ggml Q4_1 encoder', 'Q4_1', 'ggml', false, false]] as const) {
      const file = path.join(work, `${method}-${type}${signedMax ? '-sm' : ''}.gguf`);
      let conv = '';
      if (method === 'ggml') await exportGguf(hf, file, { type, tokenizer: tok, embeddingType: 'F32', exclude: ['mlp.'] });
      else {
        const out = path.join(work, `${method}-${type}`);
        await quantize(hf, { method, bits: 4, groupSize: 32, sym, ...(signedMax ? { signedMax } : {}), format: 'gptq' } as RtnConfig | GptqConfig, { out, ...(method === 'gptq' ? { calibration: cal } : {}) });
        const r = await exportGguf(out, file, { type, tokenizer: tok });
        conv = ` (${r.conversions.filter((c) => c.how === 'exact').length} exact, ${r.conversions.filter((c) => c.how === 'rounded').length} rounded once)`;
        fs.rmSync(out, { recursive: true, force: true });
      }
      const m = await loadModel(file, { tokenizer: tok, activations: 'f32' });
      const r = await evaluate(m, { text, ctx: 512, reference: ref });
      m.dispose();
      const { kl, top1 } = againstReference(r);
      rows.push({ method: label, bits: 4, group: 32, sym: sym ? 'sym' : 'asym', ppl: r.ppl, kl, top1, tokens: r.tokens, bytes: fs.statSync(file).size });
      process.stderr.write(`${label}${conv}: ppl ${r.ppl.toFixed(4)} KL ${kl.toExponential(3)} top1 ${top1.toFixed(4)}, ${fs.statSync(file).size} bytes\n`);
    }
  }
  if (!only || only === 'w4a8kv4') await activationsAndKv(hf, work, text, tok, ref, calibration, rows);
  if (!only || only === 'qat') await qatRows(hf, work, text, tok, ref, calibration, rows);
  ref.dispose();
  fs.rmSync(work, { recursive: true, force: true });
  const md = ['| method | bits | group | mode | ppl | KL (nats/token) | top-1 agree |', '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.method} | ${r.bits} | ${r.group} | ${r.sym} | ${r.ppl.toFixed(4)} | ${r.kl.toExponential(3)} | ${(100 * r.top1).toFixed(2)}% |`)].join('\n');
  process.stdout.write(md + '\n');
  fs.mkdirSync('bench-results', { recursive: true });
  fs.writeFileSync(path.join('bench-results', `quality-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify({ command: 'npm run quality', rows }, null, 2));
}

/**
 * Issue 19: weights, activations and the KV cache together. Weights are written dequantized (the
 * 172-wide MLP does not fit the packed layouts), so activation quantization runs as fake
 * quantization (symmetric, a scale per token, or per tensor for 'static'), on every linear input;
 * the KV cache is stored quantized by the runtime (kernels/rtquant.h). GPTQ: g32 asym, 128 × 512
 * calibration windows; rotation: QuaRot-style R1 + R2 folded, R4 online (`rotate:down`), R3 = the
 * cache's Q/K rotation.
 */
async function activationsAndKv(hf: string, work: string, text: string, tok: string, ref: Awaited<ReturnType<typeof loadModel>>,
  calibration: { file: string; samples: number; seqLen: number; seed: number; tokenizer: string }, rows: Row[]): Promise<void> {
  type Kv = NonNullable<Parameters<typeof loadModel>[1]>['kv'];
  const cases: { label: string; w: RtnConfig | GptqConfig | null; transforms?: string[]; act?: number; scheme?: 'dynamic' | 'static'; kv?: Kv; bits: number; group: number | string }[] = [
    { label: 'W4A16 GPTQ', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, bits: 4, group: 32 },
    { label: 'W8A8 RTN (naive)', w: { method: 'rtn', bits: 8, groupSize: -1, sym: true, format: 'dequant' }, act: 8, bits: 8, group: 'channel' },
    { label: 'W8A8 RTN + SmoothQuant α0.5', w: { method: 'rtn', bits: 8, groupSize: -1, sym: true, format: 'dequant' }, transforms: ['smoothquant:0.5'], act: 8, bits: 8, group: 'channel' },
    { label: 'W8A8 RTN + SmoothQuant α searched per layer', w: { method: 'rtn', bits: 8, groupSize: -1, sym: true, format: 'dequant' }, transforms: ['smoothquant:search'], act: 8, bits: 8, group: 'channel' },
    { label: 'W8A8 RTN, A8 static per tensor', w: { method: 'rtn', bits: 8, groupSize: -1, sym: true, format: 'dequant' }, act: 8, scheme: 'static', bits: 8, group: 'channel' },
    { label: 'W4A8 GPTQ', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, act: 8, bits: 4, group: 32 },
    { label: 'W4A8 GPTQ + SmoothQuant α0.5', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, transforms: ['smoothquant:0.5'], act: 8, bits: 4, group: 32 },
    { label: 'W4A8 GPTQ + SmoothQuant α searched per layer', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, transforms: ['smoothquant:search'], act: 8, bits: 4, group: 32 },
    { label: 'W4A8 GPTQ + rotation', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, transforms: ['rotate:down'], act: 8, bits: 4, group: 32 },
    { label: 'W4A8KV8 GPTQ', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, act: 8, kv: { bits: 8 }, bits: 4, group: 32 },
    { label: 'W4A8KV4 GPTQ, K per token', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, act: 8, kv: { bits: 4 }, bits: 4, group: 32 },
    { label: 'W4A8KV4 GPTQ, K per channel (KIVI, block 32)', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, act: 8, kv: { bits: 4, axis: 'channel' }, bits: 4, group: 32 },
    { label: 'W4A8KV4 GPTQ, K per token + Q/K rotation', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, act: 8, kv: { bits: 4, rotate: true }, bits: 4, group: 32 },
    { label: 'W4A8KV4 GPTQ, K per token, window 32', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, act: 8, kv: { bits: 4, window: 32 }, bits: 4, group: 32 },
    { label: 'W4A8KV4 GPTQ + rotation (R1–R4)', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, transforms: ['rotate:down'], act: 8, kv: { bits: 4, rotate: true }, bits: 4, group: 32 },
    { label: 'W4A8KV4 GPTQ, K per channel + Q/K rotation', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, act: 8, kv: { bits: 4, axis: 'channel', rotate: true }, bits: 4, group: 32 },
    { label: 'W4A8KV4 GPTQ + rotation (R1–R4), K per channel', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, transforms: ['rotate:down'], act: 8, kv: { bits: 4, axis: 'channel' }, bits: 4, group: 32 },
    { label: 'W4A4KV4 RTN', w: { method: 'rtn', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, act: 4, kv: { bits: 4 }, bits: 4, group: 32 },
    { label: 'W4A4KV4 GPTQ', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, act: 4, kv: { bits: 4 }, bits: 4, group: 32 },
    { label: 'W4A4KV4 rotation (R1–R4) + GPTQ', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, transforms: ['rotate:down'], act: 4, kv: { bits: 4, rotate: true }, bits: 4, group: 32 },
    { label: 'W4A4KV4 RTN, K per channel', w: { method: 'rtn', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, act: 4, kv: { bits: 4, axis: 'channel' }, bits: 4, group: 32 },
    { label: 'W4A4KV4 rotation (R1–R4) + GPTQ, K per channel', w: { method: 'gptq', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, transforms: ['rotate:down'], act: 4, kv: { bits: 4, axis: 'channel' }, bits: 4, group: 32 },
    { label: 'W4A4KV4 rotation (R1–R4) + RTN', w: { method: 'rtn', bits: 4, groupSize: 32, sym: false, format: 'dequant' }, transforms: ['rotate:down'], act: 4, kv: { bits: 4, rotate: true }, bits: 4, group: 32 },
  ];
  const only = process.argv.includes('--case') ? process.argv[process.argv.indexOf('--case') + 1].split('|') : null;
  for (const c of cases) {
    if (only && !only.some((o) => c.label === o)) continue;
    const out = path.join(work, `act-${rows.length}`);
    const t0 = performance.now();
    const w = c.w ?? { method: 'rtn' as const, bits: 8, format: 'dequant' as const };
    const needsCal = w.method === 'gptq' || (c.transforms ?? []).some((t) => t.startsWith('smoothquant'));
    await quantize(hf, { ...w, ...(c.transforms ? { transforms: c.transforms } : {}) }, { out, ...(needsCal ? { calibration } : {}) });
    const seconds = (performance.now() - t0) / 1000;
    let scales: Float32Array | undefined;
    if (c.scheme === 'static') {
      const probe = await loadModel(out, { tokenizer: tok });
      scales = await measureActScales(probe, fs.readFileSync(calibration.file, 'utf8'), { bits: c.act ?? 8, samples: 32, seqLen: 512 });
      probe.dispose();
    }
    const m = await loadModel(out, { tokenizer: tok, ...(c.act ? { actQuant: { bits: c.act, scheme: c.scheme ?? 'dynamic', ...(scales ? { scales } : {}) } } : {}), ...(c.kv ? { kv: c.kv } : {}) });
    const q = m.quantization;
    const r = await evaluate(m, { text, ctx: 512, reference: ref });
    m.dispose();
    fs.rmSync(out, { recursive: true, force: true });
    const { kl, top1 } = againstReference(r);
    const mode = `${q.activations ? `A${q.activations.bits} ${q.activations.scheme} (${q.activations.fake} fake-quant inputs)` : 'A16'}${q.kv ? `, KV${q.kv.bits} ${(q.kv.bytesPerToken / q.kv.f32BytesPerToken * 100).toFixed(1)}% of f32` : ''}`;
    rows.push({ method: c.label, bits: c.bits, group: c.group, sym: mode, ppl: r.ppl, kl, top1, tokens: r.tokens });
    process.stderr.write(`${c.label} [${mode}]: ppl ${r.ppl.toFixed(4)} KL ${kl.toExponential(3)} top1 ${top1.toFixed(4)} (${seconds.toFixed(1)} s)\n`);
  }
}

/**
 * Issue 20: quantization-aware training against the post-training methods at W4 g32, W3 g32, W2 g32
 * and W4A8KV4 (K and V per token, groups of a head; A8 per token), all asymmetric groups of 32,
 * written dequant. QAT: LLM-QAT's distillation (KL to the FP32 model on every position), 8 sequences
 * of 256 tokens per step, AdamW lr 1e-3 (warmup 5 %, cosine to 1e-4), no weight decay, clip 1,
 * 300 steps (600 at 2 bits); data: 256 sequences of 256 tokens the model generated itself, or
 * windows of the real calibration text (what data-free costs). GPTQ: 128 × 512 calibration windows.
 */
async function qatRows(hf: string, work: string, text: string, tok: string, ref: Awaited<ReturnType<typeof loadModel>>,
  calibration: { file: string; samples: number; seqLen: number; seed: number; tokenizer: string }, rows: Row[]): Promise<void> {
  const settings = [
    { label: 'W4 g32', bits: 4, act: 0, kv: null, steps: 300 },
    { label: 'W3 g32', bits: 3, act: 0, kv: null, steps: 300 },
    { label: 'W2 g32', bits: 2, act: 0, kv: null, steps: 600 },
    { label: 'W4A8KV4 (KV per token)', bits: 4, act: 8, kv: { bits: 4 as const }, steps: 300 },
  ];
  const only = process.argv.includes('--case') ? process.argv[process.argv.indexOf('--case') + 1].split('|') : null;
  for (const s of settings) {
    const weights = { method: 'rtn' as const, bits: s.bits, groupSize: 32, sym: false };
    const recipe = { name: s.label, weights, ...(s.act ? { activations: { bits: s.act } } : {}), ...(s.kv ? { kv: s.kv } : {}) };
    const load = { tokenizer: tok, ...(s.act ? { actQuant: { bits: s.act } } : {}), ...(s.kv ? { kv: s.kv } : {}) };
    const cases: { name: string; make: (out: string) => Promise<unknown> }[] = [
      { name: 'RTN', make: (out) => quantize(hf, { recipe, format: 'dequant' }, { out }) },
      { name: 'GPTQ', make: (out) => quantize(hf, { recipe: { ...recipe, weights: { ...weights, method: 'gptq' } }, format: 'dequant' }, { out, calibration }) },
      { name: 'QAT, synthetic data', make: (out) => qat(hf, { recipe, format: 'dequant' }, { data: 'synthetic:256', steps: s.steps, batch: 8, seqLen: 256, lr: 1e-3, checkpointEvery: 0 }, { out, tokenizer: tok }) },
      { name: 'QAT, real text', make: (out) => qat(hf, { recipe, format: 'dequant' }, { data: calibration.file, steps: s.steps, batch: 8, seqLen: 256, lr: 1e-3, checkpointEvery: 0 }, { out, tokenizer: tok }) },
    ];
    for (const c of cases) {
      const label = `${s.label} ${c.name}`;
      if (only && !only.includes(label)) continue;
      const out = path.join(work, `qat-${rows.length}`);
      const t0 = performance.now();
      const made = await c.make(out);
      const seconds = (performance.now() - t0) / 1000;
      const m = await loadModel(out, load);
      const r = await evaluate(m, { text, ctx: 512, reference: ref });
      m.dispose();
      fs.rmSync(out, { recursive: true, force: true });
      const { kl, top1 } = againstReference(r);
      const tps = c.name.startsWith('QAT') ? `, ${(made as { tokensPerSecond: number }).tokensPerSecond.toFixed(0)} training tokens/s` : '';
      rows.push({ method: label, bits: s.bits, group: 32, sym: s.act ? `A${s.act} KV4 per token` : 'A16', ppl: r.ppl, kl, top1, tokens: r.tokens });
      process.stderr.write(`${label}: ppl ${r.ppl.toFixed(4)} KL ${kl.toExponential(3)} top1 ${top1.toFixed(4)} (${seconds.toFixed(1)} s${tps})\n`);
    }
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error && e.stack ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
