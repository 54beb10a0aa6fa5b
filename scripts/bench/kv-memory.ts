/**
 * Real memory of the KV cache formats: RSS growth when a model with Llama-2-7B's attention geometry
 * (32 heads × 128, MHA), 8 layers and a context of 8192 is created (the cache is allocated and zeroed
 * there), against the format's arithmetic. One format per process, so allocations do not reuse each
 * other's pages:
 *
 *   for k in f32 kv8 kv4 kv4-channel kv2; do node --expose-gc dist/scripts/bench/kv-memory.js $k; done
 */
import { createModelHandle, type NativeModelWeights } from '../../lib/ops/model';
import type { NativeModelConfig } from '../../lib/native';

const KINDS: Record<string, NativeModelConfig['kv'] | null> = {
  f32: null,
  kv8: { bits: 8, group: 0, sym: false, kChannel: false, window: 0, rotate: false },
  kv4: { bits: 4, group: 0, sym: false, kChannel: false, window: 0, rotate: false },
  'kv4-channel': { bits: 4, group: 0, sym: false, kChannel: true, block: 32, window: 0, rotate: false },
  kv2: { bits: 2, group: 0, sym: false, kChannel: false, window: 0, rotate: false },
};

const kind = process.argv[2] ?? '';
if (!(kind in KINDS)) {
  process.stderr.write(`usage: node --expose-gc dist/scripts/bench/kv-memory.js ${Object.keys(KINDS).join('|')}\n`);
  process.exit(2);
}
const kv = KINDS[kind];
const dim = 256, H = 32, hd = 128, hid = 512, L = 8, V = 512, seqLen = 8192, qd = H * hd;
const z = (n: number) => new Float32Array(n);
const layers: NativeModelWeights['layers'] = Array.from({ length: L }, () => ({
  attnNorm: z(dim).fill(1), ffnNorm: z(dim).fill(1), q: z(qd * dim), k: z(qd * dim), v: z(qd * dim), o: z(dim * qd), gate: z(hid * dim), up: z(hid * dim), down: z(dim * hid),
}));
const embed = z(V * dim);
(globalThis as { gc?: () => void }).gc?.();
const before = process.memoryUsage().rss;
const h = createModelHandle({ dim, hiddenDim: hid, nLayers: L, nHeads: H, nKvHeads: H, vocabSize: V, seqLen, headDim: hd, rmsEps: 1e-5, ropeTheta: 10000, ropeStyle: 1, ...(kv ? { kv } : {}) },
  { embed, finalNorm: z(dim).fill(1), classifier: embed, layers });
const after = process.memoryUsage().rss;
process.stdout.write(JSON.stringify({ kind, seqLen, layers: L, rssDeltaMiB: +((after - before) / 2 ** 20).toFixed(1), formulaMiB: +((h.kvBytesPerToken * seqLen + h.kvFixedBytes) / 2 ** 20).toFixed(1), bytesPerPosition: h.kvBytesPerToken }) + '\n');
h.dispose();
