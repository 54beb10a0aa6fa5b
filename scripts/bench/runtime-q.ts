/**
 * Decode and prefill of the synthetic TinyLlama-1.1B-shaped model as a GPTQ 4-bit g128 checkpoint
 * (RTN-quantized by lowbit), run from the packed words (loadModel default) — beside its f32 run
 * (runtime-1b-*). Effective bandwidth: packed weights + scales + zeros + f32 embeddings/classifier
 * read per token.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize } from '../../lib/pipeline/quantize';
import { loadModel } from '../../lib/runtime/model';
import { ensureCheckpoint } from './checkpoint';
import { log, median, round } from './timing';
import type { Limits } from './limits';

export async function benchRuntimeQ(o: { quick: boolean; limits: Limits }): Promise<Record<string, unknown>[]> {
  const preset = o.quick ? 'demo' : 'tinyllama-1.1b';
  const { dir } = await ensureCheckpoint(preset);
  const out = path.join(os.tmpdir(), `lowbit-bench-${preset}-gptq4`);
  if (!fs.existsSync(path.join(out, 'config.json'))) {
    log(`runtime-1b-gptq4: RTN → GPTQ 4-bit g128 checkpoint of ${preset}`);
    await quantize(dir, { method: 'rtn', bits: 4, groupSize: 128, sym: true }, { out, overwrite: true });
  }
  let bytes = 0;
  for (const f of fs.readdirSync(out)) if (f.endsWith('.safetensors')) bytes += fs.statSync(path.join(out, f)).size;
  const m = await loadModel(out, { maxContext: 1024 });
  const res: Record<string, unknown>[] = [];
  try {
    const V = m.config.vocabSize;
    const toks = Int32Array.from({ length: 512 }, (_, i) => (i * 7919) % V);
    await m.forward(toks.subarray(0, 16), 0, 1);
    const pre: number[] = [];
    for (let r = 0; r < (o.quick ? 1 : 2); r++) {
      const t = performance.now();
      await m.forward(toks, 0, 1);
      pre.push((performance.now() - t) / 1000);
    }
    const steps = o.quick ? 8 : 32;
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) await m.forward(Int32Array.of(toks[i]), 512 + i, 1);
    const perTok = (performance.now() - t0) / 1000 / steps;
    const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
    res.push({ name: 'runtime-1b-gptq4-prefill', description: `${preset} GPTQ 4-bit g128 (packed words), 512-token prompt`, tokensPerSecond: round(512 / median(pre), 1), seconds: pre, peer: null, peerReason: 'see runtime-1b-*' });
    res.push({ name: 'runtime-1b-gptq4-decode', description: `${preset} GPTQ 4-bit g128 (packed words), ${steps} single-token steps after the prompt`,
      tokensPerSecond: round(1 / perTok, 2), secondsPerToken: round(perTok, 4), checkpointBytes: bytes,
      weightBandwidthGBps: round(bytes / perTok / 1e9, 2), copyStreamGBps: o.limits.copy.gbps, rssBytesWhileLoaded: rss, peer: null,
      peerReason: 'node-llama-cpp is not a dependency; its q4_0 decode on a TinyLlama-shaped model here: ~28 tok/s (issue #6 text)' });
    log(`runtime-1b-gptq4: prefill ${round(512 / median(pre), 1)} tok/s, decode ${round(1 / perTok, 2)} tok/s, RSS ${(rss / 2 ** 30).toFixed(2)} GiB`);
  } finally {
    m.dispose();
  }
  return res;
}
