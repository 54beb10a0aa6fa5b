/**
 * 16-bit weights and bf16 compute (issue 18):
 *   gemv-w16-{f16,bf16}-4096x4096 — decoding with 16-bit weights read as stored (gemm_w16), cold
 *     (rotating over ≥ 128 MiB of weights, so each call reads DRAM): GB/s of weight bytes beside the
 *     read bandwidth measured in the same run, and the time of the f32 GEMV on the same shape,
 *     interleaved (A B A B): half the bytes should take about half the time.
 *   gemm-w16-bf16-512x4096x4096 — prefill with 16-bit weights (tiles converted, the f32 kernel)
 *     beside the f32 GEMM, interleaved: the conversion's cost.
 *   gemm-bf16-{512x4096x4096, 2048x4096x11008} — bf16 compute (vdpbf16ps where the CPU has
 *     AVX-512 BF16) beside the f32 GEMM, interleaved; GFLOP/s and the fraction of the f32 FMA peak
 *     (a vdpbf16ps does twice an FMA's multiply-adds, so up to 2 is possible).
 */
import { gemm } from '../../lib/ops/gemm';
import { fromFloat32 } from '../../lib/formats/dtype';
import { addon } from '../../lib/native';
import { log, round, settle, summarize, type Timing } from './timing';
import type { Limits } from './limits';

/** Every benchmark name of this file. */
export const GEMM16_NAMES = ['gemv-w16-f16-4096x4096', 'gemv-w16-bf16-4096x4096', 'gemm-w16-bf16-512x4096x4096', 'gemm-bf16-512x4096x4096', 'gemm-bf16-2048x4096x11008'];

function matrix(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; out[i] = (s / 4294967296 - 0.5) * 0.1; }
  return out;
}

function bits16(v: Float32Array, dt: 'F16' | 'BF16'): Uint16Array {
  const b = fromFloat32(v, dt, 'w');
  return new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
}

/** A and B interleaved (B, A, B, A …), each sample after a settle. */
async function paired(a: () => Promise<void>, b: () => Promise<void>, warmup: number, repeats: number): Promise<{ a: Timing; b: Timing }> {
  for (let i = 0; i < warmup; i++) { await b(); await a(); }
  const sa: number[] = [], sb: number[] = [];
  for (let i = 0; i < repeats; i++) {
    await settle();
    let t0 = performance.now();
    await b();
    sb.push((performance.now() - t0) / 1000);
    await settle();
    t0 = performance.now();
    await a();
    sa.push((performance.now() - t0) / 1000);
  }
  return { a: summarize(sa, warmup), b: summarize(sb, warmup) };
}

export async function benchGemm16(o: { quick: boolean; limits: Limits; want: (n: string) => boolean }): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  const read = o.limits.copy.gbps / 2; // STREAM copy counts read + write; a GEMV only reads
  const bf16Kernel = addon().info().features.avx512_bf16;
  for (const dt of ['F16', 'BF16'] as const) {
    const name = `gemv-w16-${dt.toLowerCase()}-4096x4096`;
    if (!o.want(name)) continue;
    const rows = 4096, cols = 4096;
    const copies = Math.max(2, Math.ceil((128 * 2 ** 20) / (rows * cols * 2)));
    const w32 = Array.from({ length: copies }, (_, i) => matrix(rows * cols, i + 1));
    const w16 = w32.map((w) => bits16(w, dt));
    // the f32 side rotates over as many matrices (twice the bytes: also past the caches)
    const x = matrix(cols, 99), y = new Float32Array(rows);
    let i = 0, j = 0;
    const t = await paired(() => gemm(x, 1, cols, w16[i++ % copies], rows, y, { wDtype: dt }), () => gemm(x, 1, cols, w32[j++ % copies], rows, y), copies, o.quick ? 10 : 3 * copies);
    const bytes = rows * cols * 2;
    const e = {
      name, description: `y = x·Wᵀ, 1 token, W ${rows}×${cols} ${dt} read as stored (cold: ${copies} matrices in rotation), beside the f32 GEMV of the same shape, interleaved`,
      shape: [rows, cols], bytes, timing: t.a, f32Timing: t.b,
      gbps: round(bytes / t.a.medianSeconds / 1e9, 2), fractionOfReadBandwidth: round(bytes / t.a.medianSeconds / 1e9 / read, 3), readBandwidthGBps: round(read, 2),
      ratioToF32: round(t.a.medianSeconds / t.b.medianSeconds, 3),
      peer: null, peerReason: 'the f32 GEMV of the same shape is the comparison (interleaved); the whole-model decode entries compare with node-llama-cpp',
    };
    log(`${name}: ${(t.a.medianSeconds * 1e6).toFixed(0)} µs (${e.gbps} GB/s = ${e.fractionOfReadBandwidth} of read bandwidth), f32 ${(t.b.medianSeconds * 1e6).toFixed(0)} µs: ratio ${e.ratioToF32}`);
    out.push(e);
  }
  const gemmEntry = async (name: string, m: number, k: number, n: number, kind: 'w16' | 'bf16') => {
    if (!o.want(name)) return;
    const x = matrix(m * k, 3), w = matrix(n * k, 4), y = new Float32Array(m * n);
    const w16 = kind === 'w16' ? bits16(w, 'BF16') : null;
    const a = () => (w16 ? gemm(x, m, k, w16, n, y, { wDtype: 'BF16' }) : gemm(x, m, k, w, n, y, { compute: 'bf16' }));
    const t = await paired(a, () => gemm(x, m, k, w, n, y), 1, o.quick ? 3 : 6);
    const flops = 2 * m * k * n;
    const gflops = flops / t.a.medianSeconds / 1e9, f32 = flops / t.b.medianSeconds / 1e9;
    const e = {
      name, description: kind === 'w16'
        ? `y (${m}×${n}) = x · Wᵀ, W ${n}×${k} BF16 read as stored (tiles converted exactly, then the f32 kernel), beside the f32 GEMM on f32 weights, interleaved`
        : `y (${m}×${n}) = x̃ · W̃ᵀ, operands rounded to bf16, f32 sums (${bf16Kernel ? 'AVX-512 BF16 vdpbf16ps' : 'no AVX-512 BF16 here: rounded operands through the f32 kernels'}), beside the f32 GEMM, interleaved`,
      shape: [m, k, n], timing: t.a, f32Timing: t.b, gflops: round(gflops), f32Gflops: round(f32), ratioToF32: round(gflops / f32, 3),
      fractionOfFmaPeak: round(gflops / o.limits.fmaPeakAll.gflops, 3), ...(kind === 'bf16' ? { fmaPeakNote: 'f32 FMA peak; a vdpbf16ps does twice the multiply-adds of an FMA, so up to 2 is possible', bf16Kernel } : {}),
      peer: null, peerReason: 'the f32 GEMM of the same shape (itself beside OpenBLAS in gemm-*) is the comparison',
    };
    log(`${name}: ${round(gflops)} GFLOP/s, f32 ${round(f32)} GFLOP/s: ratio ${e.ratioToF32}`);
    out.push(e);
  };
  await gemmEntry('gemm-w16-bf16-512x4096x4096', 512, 4096, 4096, 'w16');
  await gemmEntry('gemm-bf16-512x4096x4096', 512, 4096, 4096, 'bf16');
  if (!o.quick) await gemmEntry('gemm-bf16-2048x4096x11008', 2048, 4096, 11008, 'bf16');
  return out;
}
