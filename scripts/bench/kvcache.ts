/**
 * The quantized KV cache (issue 19):
 *   kv-decode-p1024 — decoding one token at positions 1024 … with the f32 cache and with the cache at
 *     8, 4 and 2 bits (per token, whole-head groups) and 4 bits per channel (KIVI), interleaved
 *     (f32, kv8, kv4, kv4-channel, kv2, then again …), on an attention-heavy model built in memory:
 *     Llama-2-7B's attention geometry (32 heads × 128, MHA) over a small residual (dim 256, FFN 512),
 *     8 layers, so the cache (32 MiB per layer at 1024 positions in f32) is most of what a token reads
 *     — the case the cache's format matters for. Reports tokens/s, the cache's bytes per position,
 *     and the cache bytes a token reads per second against the read bandwidth measured in the run.
 */
import { createModelHandle, type NativeModelWeights } from '../../lib/ops/model';
import type { NativeModelConfig } from '../../lib/native';
import { log, round, settle, median } from './timing';
import type { Limits } from './limits';

export const KV_NAMES = ['kv-decode-p1024'];

function rand(n: number, scale: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; out[i] = (s / 4294967296 - 0.5) * scale; }
  return out;
}

export async function benchKv(o: { quick: boolean; limits: Limits; want: (n: string) => boolean; threads: number | undefined }): Promise<Record<string, unknown>[]> {
  if (!o.want('kv-decode-p1024')) return [];
  const dim = 256, H = 32, hd = 128, hid = 512, L = o.quick ? 4 : 8, V = 512, P = 1024, seqLen = 2048;
  const qd = H * hd;
  const layers: NativeModelWeights['layers'] = [];
  for (let l = 0; l < L; l++) {
    layers.push({
      attnNorm: new Float32Array(dim).fill(1), ffnNorm: new Float32Array(dim).fill(1),
      q: rand(qd * dim, 2 / Math.sqrt(dim), 11 + l), k: rand(qd * dim, 2 / Math.sqrt(dim), 23 + l), v: rand(qd * dim, 2 / Math.sqrt(dim), 37 + l),
      o: rand(dim * qd, 2 / Math.sqrt(qd), 41 + l), gate: rand(hid * dim, 2 / Math.sqrt(dim), 53 + l), up: rand(hid * dim, 2 / Math.sqrt(dim), 67 + l), down: rand(dim * hid, 2 / Math.sqrt(hid), 71 + l),
    });
  }
  const embed = rand(V * dim, 1, 5);
  const weights: NativeModelWeights = { embed, finalNorm: new Float32Array(dim).fill(1), classifier: embed, layers };
  const base: NativeModelConfig = { dim, hiddenDim: hid, nLayers: L, nHeads: H, nKvHeads: H, vocabSize: V, seqLen, headDim: hd, rmsEps: 1e-5, ropeTheta: 10000, ropeStyle: 1 };
  const variants: { name: string; kv?: NativeModelConfig['kv'] }[] = [
    { name: 'f32' },
    { name: 'kv8', kv: { bits: 8, group: 0, sym: false, kChannel: false, window: 0, rotate: false } },
    { name: 'kv4', kv: { bits: 4, group: 0, sym: false, kChannel: false, window: 0, rotate: false } },
    { name: 'kv4-channel', kv: { bits: 4, group: 0, sym: false, kChannel: true, block: 32, window: 0, rotate: false } },
    { name: 'kv2', kv: { bits: 2, group: 0, sym: false, kChannel: false, window: 0, rotate: false } },
  ];
  const models = variants.map((v) => ({ ...v, h: createModelHandle({ ...base, ...(v.kv ? { kv: v.kv } : {}) }, weights), times: [] as number[] }));
  try {
    const ids = Int32Array.from({ length: P }, (_, i) => (i * 7919) % V);
    const logits = new Float32Array(V);
    for (const m of models) {
      log(`kv-decode-p1024: ${m.name}: prefill ${P} positions`);
      await m.h.forward(ids, 0, logits, 1, { threads: o.threads });
    }
    const steps = o.quick ? 4 : 12, perRound = 4;
    let pos = P;
    for (let r = 0; r < steps; r++) {
      for (const m of models) {
        await settle();
        const t0 = performance.now();
        for (let i = 0; i < perRound; i++) await m.h.forward(Int32Array.of((pos + i) % V), pos + i, logits, 1, { threads: o.threads });
        m.times.push((performance.now() - t0) / 1000 / perRound);
      }
      pos += perRound;
    }
    const read = o.limits.copy.gbps / 2;
    const f32 = median(models[0].times);
    const kvPos = P + (steps * perRound) / 2;
    return [{
      name: 'kv-decode-p1024',
      description: `decode at positions ${P}…${pos - 1} (A B A B over the cache formats, ${perRound} tokens per sample, ${steps} rounds); model in memory: ${L} layers, 32 heads × 128 (MHA), dim ${dim}, FFN ${hid}, f32 weights (${round((L * (4 * qd * dim + 3 * hid * dim) * 4) / 2 ** 20)} MiB)`,
      variants: models.map((m) => {
        const s = median(m.times);
        const cacheBytes = m.h.kvBytesPerToken * kvPos;
        return {
          cache: m.name, tokensPerSecond: round(1 / s), secondsPerToken: round(s), bytesPerPosition: m.h.kvBytesPerToken,
          cacheBytesPerToken: Math.round(cacheBytes), cacheGBps: round(cacheBytes / s / 1e9), ofReadBandwidth: round(cacheBytes / s / 1e9 / read),
          speedVsF32: round(f32 / s),
        };
      }),
      readBandwidthGBps: round(read),
    }];
  } finally {
    for (const m of models) m.h.dispose();
  }
}
