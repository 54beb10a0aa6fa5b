/**
 * int4 GPTQ matmul from packed words (issue #6, first kernel): GEMV (1 token) on 4096×4096 and
 * 11008×4096, "hot" (one matrix, L3-resident) and "cold" (rotating over ≥ 128 MiB of weights, so
 * each call reads DRAM), as effective GB/s of packed weights + scales + zeros beside the copy
 * bandwidth measured in the same run; and W4 GEMM GFLOP/s at 32 and 512 tokens. Peer: node-llama-cpp
 * is not a dependency (see docs/PERFORMANCE.md); its llama.cpp kernels' figures on a Zen 4 are in
 * ../shared/docs/machine.md (q4_0 4096²: 351 µs hot / 554 µs cold) for orientation only.
 */
import { qmatmulGptq4, type GptqInt4Weights } from '../../lib/qmatmul';
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
      gflops: round(gflops, 1), fractionOfFmaPeak: round(gflops / o.limits.fmaPeakAll.gflops, 3), peer: null, peerReason: 'see qgemv entries' });
    log(`${name}: ${round(gflops, 1)} GFLOP/s`);
  }
  return out;
}
