/**
 * int4 GPTQ matmul from packed words (issue #6, first kernel): GEMV (1 token) on 4096×4096 and
 * 11008×4096, "hot" (one matrix, L3-resident) and "cold" (rotating over ≥ 128 MiB of weights, so
 * each call reads DRAM), as effective GB/s of packed weights + scales + zeros beside the copy
 * bandwidth measured in the same run; and W4 GEMM GFLOP/s at 32 and 512 tokens. Peer: node-llama-cpp
 * is not a dependency (see docs/PERFORMANCE.md); its llama.cpp kernels' figures on a Zen 4 are in
 * ../shared/docs/machine.md (q4_0 4096²: 351 µs hot / 554 µs cold) for orientation only.
 */
import { qmatmulGptq4, type GptqInt4Weights } from '../../lib/ops/qmatmul';
import { qdotLinear, qblockBytes, qblockCodeBytes, type QBlock } from '../../lib/ops/qdot';
import { measure, log, round } from './timing';
import type { Limits } from './limits';

function weights(out: number, inF: number, seed: number): GptqInt4Weights {
  const gs = 128, G = inF / gs;
  let s = seed >>> 0 || 1;
  const qweight = new Int32Array((inF / 8) * out);
  for (let i = 0; i < qweight.length; i++) { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; qweight[i] = s | 0; }
  return { inFeatures: inF, outFeatures: out, groups: G, qweight, scales: new Float32Array(G * out).fill(0.01),
    zeros: new Uint8Array(G * out).fill(8), gIdx: Int32Array.from({ length: inF }, (_, k) => Math.floor(k / gs)) };
}

/**
 * A random matrix in the kernel layout. `kquant`: the layout GGUF's k-quants repack into — Q4_K:
 * 4-bit codes, two-level scale and offset (fp16 per 256 channels × int8 per 32); Q6_K: 8-bit codes,
 * two-level scale (fp16 per 256 × int8 per 16).
 */
function qblock(out: number, inF: number, bits: 2 | 3 | 4 | 8, kb: 16 | 32 | 128, seed: number, kquant = false): QBlock {
  let s = seed >>> 0 || 1;
  const out8 = Math.ceil(out / 8) * 8, B = inF / kb;
  const q = new Uint8Array(qblockCodeBytes(bits, out, inF));
  for (let i = 0; i < q.length; i++) { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; q[i] = s & 255; }
  if (kquant) {
    const sbk = 256 / kb, supers = out8 * (B / sbk);
    return { bits, kb, inFeatures: inF, outFeatures: out, q, d: new Uint16Array(supers).fill(0x1400), m: null, ds: new Int8Array(out8 * B).fill(20),
      mh: bits === 4 ? new Uint16Array(supers).fill(0x1400) : null, ms: bits === 4 ? new Int8Array(out8 * B).fill(10) : null, sbk, zeroFixed: 0, perm: null };
  }
  return { bits, kb, inFeatures: inF, outFeatures: out, q, d: new Uint16Array(out8 * B).fill(0x2000), m: null, zeroFixed: bits === 4 ? 8 : bits === 3 ? 4 : bits === 2 ? 2 : 0, perm: null };
}

/** Bytes per weight of the GGUF block types as stored in the file (what llama.cpp reads per token). */
const GGUF_FILE_BYTES_PER_WEIGHT: Record<string, number> = { q4_0: 18 / 32, q8_0: 34 / 32, q4_k: 144 / 256, q6_k: 210 / 256 };

/** The integer-dot kinds: code bits, channels per scale, tag, GGUF k-quant layout (two-level scales), and whether a GEMM entry runs too. */
const QDOT_KINDS = [
  { bits: 4, kb: 128, tag: 'w4a8', kq: false, gemm: true }, { bits: 8, kb: 128, tag: 'w8a8', kq: false, gemm: true },
  { bits: 3, kb: 128, tag: 'w3a8', kq: false, gemm: true }, { bits: 2, kb: 128, tag: 'w2a8', kq: false, gemm: true },
  { bits: 4, kb: 32, tag: 'q4_0', kq: false, gemm: true }, { bits: 8, kb: 32, tag: 'q8_0', kq: false, gemm: false },
  { bits: 4, kb: 32, tag: 'q4_k', kq: true, gemm: true }, { bits: 8, kb: 16, tag: 'q6_k', kq: true, gemm: true },
] as const;
const QDOT_GEMV_SHAPES = (quick: boolean): [number, number][] => (quick ? [[4096, 4096]] : [[4096, 4096], [11008, 4096]]);
const QDOT_GEMM_TOKENS = (quick: boolean): number[] => (quick ? [32] : [32, 512]);

/** Every benchmark name of benchQdot (full run). */
export const QDOT_NAMES = [
  ...QDOT_KINDS.flatMap((q) => QDOT_GEMV_SHAPES(false).map(([r, c]) => `qgemv-${q.tag}-${r}x${c}`)),
  ...QDOT_KINDS.filter((q) => q.gemm).flatMap((q) => QDOT_GEMM_TOKENS(false).map((m) => `qgemm-${q.tag}-${m}x4096x4096`)),
];

/** The integer-dot path (W4A8 / W8A8): GEMV hot and cold beside the read bandwidth, GEMM GFLOP/s. */
export async function benchQdot(o: { quick: boolean; limits: Limits; want: (n: string) => boolean }): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  const copy = o.limits.copy.gbps / 2;
  for (const { bits, kb, tag, kq } of QDOT_KINDS) {
    for (const [rows, cols] of QDOT_GEMV_SHAPES(o.quick)) {
      const name = `qgemv-${tag}-${rows}x${cols}`;
      if (!o.want(name) && !o.want('qgemv-*') && !o.want('qgemm-*')) continue;
      const w0 = qblock(rows, cols, bits, kb, rows + bits, kq);
      const bytes = qblockBytes(w0);
      const x = Float32Array.from({ length: cols }, (_, i) => Math.sin(i)), y = new Float32Array(rows);
      const hot = await measure(() => qdotLinear(w0, x, 1, y), { warmup: 3, repeats: o.quick ? 10 : 50 });
      const copies = Math.max(2, Math.ceil((128 * 2 ** 20) / bytes));
      const ws = Array.from({ length: copies }, (_, i) => (i === 0 ? w0 : qblock(rows, cols, bits, kb, rows + bits + i, kq)));
      let i = 0;
      const cold = await measure(() => qdotLinear(ws[i++ % copies], x, 1, y), { warmup: copies, repeats: o.quick ? 10 : 3 * copies });
      const fileBytes = GGUF_FILE_BYTES_PER_WEIGHT[tag] ? Math.round(GGUF_FILE_BYTES_PER_WEIGHT[tag] * rows * cols) : undefined;
      const e = {
        name, description: kq
          ? `y = x·Wᵀ, 1 token, W ${rows}×${cols} as GGUF ${tag.toUpperCase()} repacks: ${bits}-bit codes, scale${bits === 4 ? ' and offset' : ''} per ${kb} channels as fp16 per 256 × int8, x quantized to int8 per ${kb}`
          : `y = x·Wᵀ, 1 token, W ${rows}×${cols} ${bits}-bit, fp16 scale per ${kb} channels, x quantized to int8 per ${kb} (integer dot products)`,
        shape: [rows, cols], bytes,
        // the layout read per call (bytes) vs the GGUF file's bytes of the same matrix (Q6_K's layout is larger: 6-bit codes held in 8)
        ...(fileBytes ? { ggufFileBytes: fileBytes, coldGgufFileGBps: round(fileBytes / cold.medianSeconds / 1e9, 2) } : {}),
        hot: { medianSeconds: hot.medianSeconds, gbps: round(bytes / hot.medianSeconds / 1e9, 2) },
        cold: { medianSeconds: cold.medianSeconds, gbps: round(bytes / cold.medianSeconds / 1e9, 2), matrices: copies, fractionOfReadBandwidth: round(bytes / cold.medianSeconds / 1e9 / copy, 3) },
        readBandwidthGBps: round(copy, 2), peer: 'runtime-1b-q4_0-llamacpp-decode (whole-model decode beside node-llama-cpp, same run)',
      };
      log(`${name}: hot ${(hot.medianSeconds * 1e6).toFixed(0)} µs (${e.hot.gbps} GB/s), cold ${(cold.medianSeconds * 1e6).toFixed(0)} µs (${e.cold.gbps} GB/s = ${e.cold.fractionOfReadBandwidth} of read bandwidth)`);
      out.push(e);
    }
  }
  for (const { bits, kb, tag, kq } of QDOT_KINDS.filter((q) => q.gemm)) {
    for (const m of QDOT_GEMM_TOKENS(o.quick)) {
      const name = `qgemm-${tag}-${m}x4096x4096`;
      if (!o.want(name) && !o.want('qgemm-*')) continue;
      const w = qblock(4096, 4096, bits, kb, 7, kq);
      const x = Float32Array.from({ length: m * 4096 }, (_, i) => Math.sin(i)), y = new Float32Array(m * 4096);
      const t = await measure(() => qdotLinear(w, x, m, y), { warmup: 1, repeats: o.quick ? 3 : 8 });
      const gflops = (2 * m * 4096 * 4096) / t.medianSeconds / 1e9;
      out.push({ name, description: `${tag.toUpperCase()} GEMM, ${m} tokens × 4096 → 4096 (int8 activations, int32 accumulation)`, shape: [m, 4096, 4096], timing: t,
        gflops: round(gflops), fractionOfFmaPeak: round(gflops / o.limits.fmaPeakAll.gflops, 3), fmaPeakNote: 'f32 FMA peak: integer ops have their own (vpmaddubsw: 2×32 MACs/cycle/core), so > 1 is possible', peer: null, peerReason: 'see gemm-* (f32, OpenBLAS beside) and the runtime prefill entries' });
      log(`${name}: ${round(gflops)} GFLOP/s`);
    }
  }
  return out;
}

export async function benchQgemm(o: { quick: boolean; limits: Limits; want: (n: string) => boolean }): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  const copy = o.limits.copy.gbps / 2; // STREAM copy counts read + write; a GEMV only reads
  for (const [rows, cols] of o.quick ? [[4096, 4096]] : [[4096, 4096], [11008, 4096]]) {
    const name = `qgemv-int4-${rows}x${cols}`;
    if (!o.want(name) && !o.want('qgemv-*') && !o.want('qgemm-*')) continue;
    const w0 = weights(rows, cols, rows);
    const bytes = w0.qweight.byteLength + w0.scales.byteLength + w0.zeros.byteLength;
    const x = new Float32Array(cols).fill(0.5), y = new Float32Array(rows);
    const hot = await measure(() => qmatmulGptq4(x, 1, w0, y), { warmup: 3, repeats: o.quick ? 10 : 50 });
    const copies = Math.max(2, Math.ceil((128 * 2 ** 20) / bytes));
    const ws = Array.from({ length: copies }, (_, i) => (i === 0 ? w0 : weights(rows, cols, rows + i)));
    let i = 0;
    const cold = await measure(() => qmatmulGptq4(x, 1, ws[i++ % copies], y), { warmup: copies, repeats: o.quick ? 10 : 3 * copies });
    const e = {
      name, description: `y = x·Wᵀ, 1 token, W ${rows}×${cols} GPTQ int4 g128 decoded in registers`, shape: [rows, cols], bytes,
      hot: { medianSeconds: hot.medianSeconds, gbps: round(bytes / hot.medianSeconds / 1e9, 2) },
      cold: { medianSeconds: cold.medianSeconds, gbps: round(bytes / cold.medianSeconds / 1e9, 2), matrices: copies,
        fractionOfReadBandwidth: round(bytes / cold.medianSeconds / 1e9 / copy, 3) },
      readBandwidthGBps: round(copy, 2),
      peer: null, peerReason: 'node-llama-cpp is not a dependency (optional CUDA/Vulkan binaries); llama.cpp q4_0 on a Zen 4: 351 µs hot / 554 µs cold per 4096² (machine.md), not measured here',
    };
    log(`${name}: hot ${(hot.medianSeconds * 1e6).toFixed(0)} µs (${e.hot.gbps} GB/s), cold ${(cold.medianSeconds * 1e6).toFixed(0)} µs (${e.cold.gbps} GB/s)`);
    out.push(e);
  }
  for (const m of o.quick ? [32] : [32, 512]) {
    const name = `qgemm-int4-${m}x4096x4096`;
    if (!o.want(name) && !o.want('qgemm-*')) continue;
    const w = weights(4096, 4096, 7);
    const x = new Float32Array(m * 4096).fill(0.5), y = new Float32Array(m * 4096);
    const t = await measure(() => qmatmulGptq4(x, m, w, y), { warmup: 1, repeats: o.quick ? 3 : 8 });
    const gflops = (2 * m * 4096 * 4096) / t.medianSeconds / 1e9;
    out.push({ name, description: `W4 GEMM, ${m} tokens × 4096 → 4096, weights decoded in registers`, shape: [m, 4096, 4096], timing: t,
      gflops: round(gflops), fractionOfFmaPeak: round(gflops / o.limits.fmaPeakAll.gflops, 3), peer: null, peerReason: 'see qgemv entries' });
    log(`${name}: ${round(gflops)} GFLOP/s`);
  }
  return out;
}
