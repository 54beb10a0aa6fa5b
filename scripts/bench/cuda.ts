/**
 * CUDA benchmarks (issue #7), one JSON document on stdout (progress on stderr), also written to
 * `--out <file>`:
 *
 *   node dist/scripts/bench/cuda.js [--quick] [--out results.json]
 *
 *   - device copy bandwidth (device-to-device memcpy of 1 GiB, 2 bytes moved per byte): the limit
 *     every matmul figure is set against;
 *   - packed int4 GPTQ matmul (group size 128) at batch 1, 2, 4, 8, 16 on 4096×4096 and
 *     11008×4096 (out × in), f16 activations, beside lowbit's own fp16 tensor-core GEMM of the same
 *     shape (the addon links no cuBLAS) — hot (weights may stay in L2) and cold (L2 evicted before
 *     each timed launch), median kernel time, effective GB/s of the bytes each kernel must read,
 *     and the speed-up fp16 / int4 (issue #7 asks ≥ 3.5× on H100 at batch 1–16);
 *   - batch 1 through the tensor-core kernel as well (GEMV vs MMA);
 *   - GPTQ of one 4096×4096 layer (4-bit, group 128, with and without act-order) from a Hessian
 *     of 4096 random correlated tokens: device seconds by phase, copies apart, peak device memory.
 *
 * Without a usable device it prints {"skipped": true, "reason": …} and exits 0.
 */
import * as fs from 'node:fs';
import { cudaBenchCopy, cudaGemmF16, cudaGptqLayer, cudaHessian, cudaQmatmul, cudaStatus, type GptqPackedLinear } from '../../lib/ops/cuda';
import { cudaAddonPath, type NativeAddon } from '../../lib/native';
import { commandLine, gitInfo, nvccVersion } from './env';
import { log, median, round } from './timing';

interface Args { quick: boolean; out: string | null }

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, out: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--quick') a.quick = true;
    else if (argv[i] === '--out') a.out = argv[++i] ?? null;
    else if (argv[i].startsWith('--out=')) a.out = argv[i].slice(6);
    else throw new Error(`unknown argument ${JSON.stringify(argv[i])}\nusage: node dist/scripts/bench/cuda.js [--quick] [--out file.json]`);
  }
  return a;
}

/** xorshift32 stream, so every run benchmarks the same bits. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
}

function int4Layer(out: number, inF: number, seed: number): GptqPackedLinear {
  const gs = 128, G = inF / gs, next = xorshift(seed);
  const qweight = new Int32Array((inF / 8) * out);
  for (let i = 0; i < qweight.length; i++) qweight[i] = next() | 0;
  return { bits: 4, inFeatures: inF, outFeatures: out, groups: G, qweight, scales: new Float32Array(G * out).fill(0.0099945068359375),
    zeros: new Uint8Array(G * out).fill(8), gIdx: Int32Array.from({ length: inF }, (_, k) => Math.floor(k / gs)) };
}

/** f16 bit patterns of small values (exponent 13: ±[0.25, 0.5)), without the CPU converter. */
function f16Activations(n: number, seed: number): Uint16Array {
  const next = xorshift(seed);
  return Uint16Array.from({ length: n }, () => (next() & 0x83ff) | 0x3400);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const st = cudaStatus();
  const head = { benchmark: 'lowbit-cuda', date: new Date().toISOString(), git: gitInfo(), command: commandLine(), nvcc: nvccVersion(), node: process.version };
  const emit = (doc: Record<string, unknown>) => {
    const text = JSON.stringify(doc, null, 2);
    process.stdout.write(text + '\n');
    if (args.out) fs.writeFileSync(args.out, text + '\n');
  };
  if (!st.available) {
    log(`cuda bench: skipped: no CUDA device: ${st.reason}`);
    emit({ ...head, skipped: true, reason: `no CUDA device: ${st.reason}` });
    return;
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cuda = require(cudaAddonPath()) as NativeAddon;
  if (!cuda.cudaInfo) throw new Error(`${cudaAddonPath()} has no cudaInfo()`);
  const info = cuda.cudaInfo();
  const device = { ...info.devices[0], driverVersion: info.driverVersion, runtimeVersion: info.runtimeVersion, deviceCount: info.deviceCount };
  log(`cuda bench on ${device.name} (sm_${device.major}${device.minor}, driver ${info.driverVersion})`);

  const warmup = 5, repeats = args.quick ? 10 : 50;
  const copyBytes = 2 ** 30;
  const copyMs = await cudaBenchCopy(copyBytes, args.quick ? 5 : 20);
  const copyGBps = (2 * copyBytes) / (Math.min(...copyMs) * 1e6);
  log(`  copy: ${copyGBps.toFixed(0)} GB/s (read + write)`);

  const matmul: Record<string, unknown>[] = [];
  const shapes: [number, number][] = args.quick ? [[4096, 4096]] : [[4096, 4096], [11008, 4096]];
  const batches = args.quick ? [1, 16] : [1, 2, 4, 8, 16];
  for (const [out, inF] of shapes) {
    const w = int4Layer(out, inF, out + inF);
    const wf = new Float32Array(out * inF);
    { const next = xorshift(7); for (let i = 0; i < wf.length; i++) wf[i] = ((next() & 0xffff) / 65536 - 0.5) * 0.05; }
    const int4Bytes = w.qweight.byteLength + w.scales.byteLength + w.zeros.byteLength;
    const f16Bytes = out * inF * 2;
    for (const m of batches) {
      const xh = f16Activations(m * inF, m);
      const xf = Float32Array.from({ length: m * inF }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
      for (const cold of [false, true]) {
        const kernels: ('auto' | 'mma')[] = m === 1 ? ['auto', 'mma'] : ['auto'];
        const f16 = await cudaGemmF16(xf, m, wf, out, { warmup, repeats, cold });
        const f16Med = median(f16.ms);
        for (const kernel of kernels) {
          const q = await cudaQmatmul(xh, m, w, { kernel, warmup, repeats, cold });
          const qMed = median(q.ms);
          const e = {
            name: `qgemm-int4-${m}x${out}x${inF}${cold ? '-cold' : ''}${kernel === 'mma' && m === 1 ? '-mma' : ''}`,
            description: `y (${m}×${out}) = x·Wᵀ, W ${out}×${inF} GPTQ int4 g128 (qweight + f32 scales + u8 zeros), x f16; ${cold ? 'L2 evicted before each launch' : 'hot'}`,
            m, out, inF, cold, kernel: q.kernel, splits: q.splits,
            int4: { minMs: round(Math.min(...q.ms)), medianMs: round(qMed), gbps: round((int4Bytes + m * inF * 2) / (qMed * 1e6)), bytes: int4Bytes, deviceBytes: q.deviceBytes },
            fp16: { minMs: round(Math.min(...f16.ms)), medianMs: round(f16Med), gbps: round((f16Bytes + m * inF * 2) / (f16Med * 1e6)), bytes: f16Bytes, deviceBytes: f16.deviceBytes, splits: f16.splits },
            speedup: round(f16Med / qMed, 3),
            copyGBps: round(copyGBps),
            warmup, repeats,
          };
          matmul.push(e);
          log(`  ${e.name}: int4 ${e.int4.medianMs} ms (${e.int4.gbps} GB/s, ${q.kernel}), fp16 ${e.fp16.medianMs} ms (${e.fp16.gbps} GB/s): ${e.speedup}×`);
        }
      }
    }
  }

  const gptq: Record<string, unknown>[] = [];
  {
    const rows = 4096, cols = 4096, tokens = args.quick ? 1024 : 4096;
    const next = xorshift(11);
    const rnd = () => (next() / 4294967296 - 0.5) * 3.4641; // uniform, unit variance
    // correlated inputs: a few shared factors plus per-channel noise and scale
    const x = new Float32Array(tokens * cols), f = new Float32Array(8), sc = Float32Array.from({ length: cols }, () => 0.5 + Math.abs(rnd()));
    for (let t = 0; t < tokens; t++) {
      for (let k = 0; k < 8; k++) f[k] = rnd();
      for (let c = 0; c < cols; c++) x[t * cols + c] = sc[c] * (rnd() + 0.5 * f[c & 7]);
    }
    const H = new Float32Array(cols * cols);
    const hs = await cudaHessian(x, tokens, cols, H, { alpha: 2 / tokens, beta: 0 });
    const W = Float32Array.from({ length: rows * cols }, () => 0.02 * rnd());
    for (const actOrder of [false, true]) {
      const runs = [];
      for (let i = 0; i < (args.quick ? 2 : 4); i++) runs.push(await cudaGptqLayer(W, H, { rows, cols, bits: 4, groupSize: 128, actOrder }));
      const timed = runs.slice(1); // the first run pays the module's first-use costs
      const e = {
        name: `gptq-layer-${rows}x${cols}${actOrder ? '-act-order' : ''}`,
        description: `GPTQ 4-bit g128${actOrder ? ' act-order' : ''} of one ${rows}×${cols} layer, H from ${tokens} tokens (device work: prepare + factor + sweep; copies apart)`,
        rows, cols, tokens, actOrder,
        seconds: timed.map((r) => round(r.timings.msTotal / 1000)),
        medianSeconds: round(median(timed.map((r) => r.timings.msTotal)) / 1000),
        phasesMs: { prepare: round(timed[0].timings.msPrepare), factor: round(timed[0].timings.msFactor), sweep: round(timed[0].timings.msSweep), copy: round(timed[0].timings.msCopy) },
        peakDeviceBytes: timed[0].timings.deviceBytes,
        hessianMs: round(hs.ms[0]), hessianDeviceBytes: hs.deviceBytes,
        loss: timed[0].loss, dampUsed: timed[0].dampUsed,
      };
      gptq.push(e);
      log(`  ${e.name}: ${e.medianSeconds} s (factor ${e.phasesMs.factor} ms, sweep ${e.phasesMs.sweep} ms), peak ${(e.peakDeviceBytes / 2 ** 20).toFixed(0)} MiB`);
    }
  }
  emit({ ...head, skipped: false, device, copy: { bytes: copyBytes, gbps: round(copyGBps), ms: copyMs.map((v) => round(v)) }, matmul, gptq,
    notes: [
      'fp16 baseline: lowbit\'s own mma.sync kernel (no cuBLAS in the addon); judge it by its GB/s against copy.gbps',
      'times: CUDA events around the kernel launches only (matmul); host wall time with a device sync per phase (GPTQ)',
    ] });
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e instanceof Error ? e.stack : undefined) ?? String(e)}\n`);
  process.exit(1);
});
