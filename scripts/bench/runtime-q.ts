/**
 * Decode and prefill of the synthetic TinyLlama-1.1B-shaped model, quantized, in one run:
 *   runtime-1b-gptq4-*       GPTQ 4-bit g128 checkpoint (RTN by lowbit), int8 activations (W4A8, default)
 *   runtime-1b-gptq4-f32act-* the same checkpoint, f32 activations (packed-word kernel)
 *   runtime-1b-q4_0-*        the GGUF Q4_0 file lowbit writes of the same model, W4A8
 *   runtime-1b-q4_0-llamacpp-* node-llama-cpp running that same file (best of 1 and 2 threads),
 *                            when node-llama-cpp is installed (`npm run test:peer` installs it)
 * Effective bandwidth: bytes of the quantized file read per decoded token (the f32 embedding row
 * read is negligible).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize } from '../../lib/pipeline/quantize';
import { exportGguf } from '../../lib/pipeline/gguf-export';
import { loadModel } from '../../lib/runtime/model';
import { packageRoot } from '../../lib/native';
import { ensureCheckpoint } from './checkpoint';
import { log, median, round } from './timing';
import type { Limits } from './limits';

const PROMPT = 512;

function rss(): number {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
}

function dirBytes(p: string): number {
  if (fs.statSync(p).isFile()) return fs.statSync(p).size;
  let b = 0;
  for (const f of fs.readdirSync(p)) if (f.endsWith('.safetensors')) b += fs.statSync(path.join(p, f)).size;
  return b;
}

async function runLowbit(file: string, opts: { activations?: 'int8' | 'f32'; tokenizer?: string }, steps: number, repeats: number) {
  const m = await loadModel(file, { maxContext: 1024, ...opts });
  try {
    const V = m.config.vocabSize;
    const toks = Int32Array.from({ length: PROMPT }, (_, i) => (i * 7919) % V);
    await m.forward(toks.subarray(0, 16), 0, 1);
    const pre: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t = performance.now();
      await m.forward(toks, 0, 1);
      pre.push((performance.now() - t) / 1000);
    }
    const dec: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) await m.forward(Int32Array.of(toks[i]), PROMPT + i, 1);
      dec.push((performance.now() - t0) / 1000 / steps);
    }
    return { prefillTps: PROMPT / median(pre), perTok: Math.min(...dec), perTokMedian: median(dec), rss: rss() };
  } finally {
    m.dispose();
  }
}

async function runLlamaCpp(file: string, steps: number, repeats: number): Promise<{ prefillTps: number; perTok: number; threads: number } | { reason: string }> {
  let nlc: Record<string, unknown>;
  try {
    nlc = await (new Function('m', 'return import(m)') as (m: string) => Promise<Record<string, unknown>>)('node-llama-cpp');
  } catch {
    return { reason: 'node-llama-cpp is not installed (not a dependency; `npm run test:peer` installs it without saving)' };
  }
  type Seq = { evaluate(t: number[], o: object): AsyncIterable<number> };
  type Ctx = { getSequence(): Seq; dispose(): Promise<void> };
  type LModel = { createContext(o: object): Promise<Ctx>; dispose(): Promise<void> };
  type Llama = { loadModel(o: object): Promise<LModel>; dispose(): Promise<void> };
  const llama = await (nlc.getLlama as (o: object) => Promise<Llama>)({ gpu: false, build: 'never', skipDownload: true });
  const model = await llama.loadModel({ modelPath: file });
  type R = { prefillTps: number; perTok: number; threads: number };
  const all: R[] = [];
  try {
    for (const threads of [1, 2]) {
      for (let r = 0; r < repeats; r++) {
        const ctx = await model.createContext({ contextSize: 1024, threads, batchSize: PROMPT });
        try {
          const toks = Array.from({ length: PROMPT }, (_, i) => 1 + ((i * 7919) % 31999));
          const t0 = performance.now();
          let t1 = 0, n = 0;
          for await (const _ of ctx.getSequence().evaluate(toks, { temperature: 0 })) {
            void _;
            if (n === 0) t1 = performance.now();
            if (++n > steps) break;
          }
          const t2 = performance.now();
          all.push({ prefillTps: PROMPT / ((t1 - t0) / 1000), perTok: (t2 - t1) / 1000 / steps, threads });
        } finally {
          await ctx.dispose();
        }
      }
    }
  } finally {
    await model.dispose();
    await llama.dispose();
  }
  // best against best: the fastest decode and the fastest prompt processing over threads and repeats
  const dec = all.reduce((a, b) => (b.perTok < a.perTok ? b : a));
  return { ...dec, prefillTps: Math.max(...all.map((r) => r.prefillTps)) };
}

export async function benchRuntimeQ(o: { quick: boolean; limits: Limits }): Promise<Record<string, unknown>[]> {
  const preset = o.quick ? 'demo' : 'tinyllama-1.1b';
  const { dir } = await ensureCheckpoint(preset);
  const gptq = path.join(os.tmpdir(), `lowbit-bench-${preset}-gptq4`);
  if (!fs.existsSync(path.join(gptq, 'config.json'))) {
    log(`runtime-1b-gptq4: RTN → GPTQ 4-bit g128 checkpoint of ${preset}`);
    await quantize(dir, { method: 'rtn', bits: 4, groupSize: 128, sym: true }, { out: gptq, overwrite: true });
  }
  const steps = o.quick ? 8 : 32, repeats = o.quick ? 1 : 2;
  const res: Record<string, unknown>[] = [];
  const copy = o.limits.copy.gbps / 2;  // STREAM copy counts read + write; decoding reads
  const push = (name: string, desc: string, file: string, r: { prefillTps: number; perTok: number; perTokMedian?: number; rss?: number; threads?: number }, peer: Record<string, unknown>) => {
    const bytes = dirBytes(file);
    res.push({ name: `${name}-prefill`, description: `${desc}, ${PROMPT}-token prompt`, tokensPerSecond: round(r.prefillTps), ...peer });
    res.push({ name: `${name}-decode`, description: `${desc}, ${steps} single-token steps after the prompt (best of ${repeats})`,
      tokensPerSecond: round(1 / r.perTok), secondsPerToken: round(r.perTok, 4), medianSecondsPerToken: r.perTokMedian !== undefined ? round(r.perTokMedian, 4) : undefined,
      fileBytes: bytes, weightBandwidthGBps: round(bytes / r.perTok / 1e9), fractionOfReadBandwidth: round(bytes / r.perTok / 1e9 / copy),
      rssBytesWhileLoaded: r.rss, threads: r.threads, ...peer });
    log(`${name}: prefill ${round(r.prefillTps)} tok/s, decode ${round(1 / r.perTok)} tok/s (${round(bytes / r.perTok / 1e9)} GB/s)`);
  };
  const peerNote = { peer: 'runtime-1b-q4_0-llamacpp-* (same run)' };
  push('runtime-1b-gptq4', `${preset} GPTQ 4-bit g128, W4A8 (int8 activations, integer dot products)`, gptq, await runLowbit(gptq, {}, steps, repeats), peerNote);
  push('runtime-1b-gptq4-f32act', `${preset} GPTQ 4-bit g128, f32 activations (packed-word kernel)`, gptq, await runLowbit(gptq, { activations: 'f32' }, steps, repeats), peerNote);
  const tok = process.env.LOWBIT_FIXTURES ? path.join(process.env.LOWBIT_FIXTURES, 'llama2-tokenizer', 'tokenizer.bin')
    : path.resolve(packageRoot(), '..', 'shared', 'fixtures', 'llama2-tokenizer', 'tokenizer.bin');
  if (o.quick || !fs.existsSync(tok)) {
    const reason = o.quick ? 'skipped in --quick' : `the Llama 2 tokenizer.bin (GGUF vocabulary) not found at ${tok}`;
    res.push({ name: 'runtime-1b-q4_0-decode', skipped: true, reason });
    return res;
  }
  // v2: written since the U+FEFF piece fix (an older cached file is ignored)
  const gguf = path.join(os.tmpdir(), `lowbit-bench-${preset}-q4_0-v2.gguf`);
  if (!fs.existsSync(gguf)) {
    log(`runtime-1b-q4_0: writing ${gguf}`);
    await exportGguf(dir, gguf, { type: 'Q4_0', tokenizer: tok, overwrite: true });
  }
  push('runtime-1b-q4_0', `${preset} GGUF Q4_0 written by lowbit, W4A8`, gguf, await runLowbit(gguf, { tokenizer: tok }, steps, repeats), peerNote);
  const p = await runLlamaCpp(gguf, steps, repeats);
  if ('reason' in p) res.push({ name: 'runtime-1b-q4_0-llamacpp-decode', skipped: true, reason: p.reason });
  else push('runtime-1b-q4_0-llamacpp', `node-llama-cpp (llama.cpp CPU) on the same GGUF Q4_0 file, best of 1 and 2 threads`, gguf, p, { peer: null });
  return res;
}
