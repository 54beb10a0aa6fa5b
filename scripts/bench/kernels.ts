/**
 * Tensor-level benchmarks on one 4096×11008 fp16 matrix (Llama-2-7B's MLP width): fp16→fp32
 * conversion and RTN quantize + GPTQ pack, each interleaved with a plain copy of the same number
 * of input bytes (the reference measured in the same run).
 */
import { addon, DTYPE_ID } from '../../lib/native';
import { quantizeTensor, quantizeGptq, packGptq, setKernelMode } from '../../lib';
import { copySamples } from './limits';
import { gbps, log, median, measurePaired, round, settle, type Timing } from './timing';
import { performance } from 'node:perf_hooks';

export const PEER_REASON =
  'no installable in-process peer performs this standalone op: OpenBLAS has no fp16→fp32 conversion or ' +
  'quantizer, onnxruntime-node exposes no standalone Cast/quantize kernel callable on a buffer (only whole ' +
  'graphs), and llama.cpp/ggml is not a Node package (its quantizers write GGUF blocks, not GPTQ layouts). ' +
  'The reference is a plain multi-threaded memcpy of the same number of input bytes, measured interleaved ' +
  'in the same run (copy-same-bytes).';

/** The copy of the same bytes, as measured beside one kernel. */
export interface PairedCopy {
  bytes: number;
  medianSeconds: number;
  minSeconds: number;
  /** Input-bytes convention (bytes / seconds), the same unit as the kernel's throughput. */
  gbps: number;
  /** STREAM convention (2·bytes / seconds), comparable with limits.copy. */
  streamGBps: number;
}

export interface KernelEntry {
  name: string;
  description: string;
  shape: number[];
  dtype: string;
  options?: Record<string, unknown>;
  /** Bytes of the input tensor: the unit of throughput. */
  inputBytes: number;
  /** Bytes the op writes (the arrays it returns). */
  outputBytes: number;
  warmup: number;
  repeats: number;
  minSeconds: number;
  medianSeconds: number;
  seconds: number[];
  unit: 'GB/s of input bytes';
  /** inputBytes / medianSeconds / 1e9. */
  gbps: number;
  /** inputBytes / minSeconds / 1e9. */
  gbpsBest: number;
  /** Median time of phases inside one run, where the op has several. */
  phases?: Record<string, number>;
  copy: PairedCopy;
  /** gbps / copy.gbps = copy time / kernel time for the same input bytes (goal ≥ 0.5). */
  fractionOfCopy: number;
  /**
   * (inputBytes + outputBytes) / seconds over the copy's STREAM bandwidth: the fraction of the
   * measured memory bandwidth the op's own traffic uses (ignores intermediate arrays).
   */
  fractionOfCopyTraffic: number;
  /** The same op with every kernel in its plain reference ('ref' mode), timed once. */
  reference: { mode: 'ref'; seconds: number; gbps: number; speedup: number } | null;
  /** Unfused entry only: its qweight is byte-identical to quantizeGptq's. */
  identicalToFused?: boolean;
  peer: null;
  peerReason: string;
}

export const ROWS = 4096;
export const COLS = 11008;

/** Deterministic fp16 weights (≈ N(0, 0.02²) with 0.1% outliers ×10–30), converted natively. */
export function makeF16Weights(rows: number, cols: number, seed = 1): Uint8Array {
  const n = rows * cols;
  const f = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  const next = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
  const k = 0.02 * Math.sqrt(3);
  for (let i = 0; i < n; i++) {
    let v = (next() + next() + next() + next() - 2) * k;
    if (next() < 0.001) v *= 10 + 20 * next();
    f[i] = v;
  }
  const bytes = new Uint8Array(n * 2);
  addon().convertSync({ src: f, srcDtype: DTYPE_ID.F32, dst: bytes, dstDtype: DTYPE_ID.F16, saturate: true, mode: 0 });
  return bytes;
}

function pairedCopy(bytes: number, t: Timing): PairedCopy {
  return {
    bytes, medianSeconds: round(t.medianSeconds, 5), minSeconds: round(t.minSeconds, 5),
    gbps: round(gbps(bytes, t.medianSeconds)), streamGBps: round(gbps(2 * bytes, t.medianSeconds)),
  };
}

/** One copy of `bytes` (median of 3 iterations of one benchCopy call, fresh buffers). */
function copyOnce(bytes: number, threads: number): () => Promise<number> {
  return async () => median(await copySamples(bytes, 3, threads));
}

function entry(base: {
  name: string; description: string; options?: Record<string, unknown>; inputBytes: number; outputBytes: number;
  a: Timing; b: Timing; phases?: Record<string, number>; refSeconds: number | null;
}): KernelEntry {
  const { a, b } = base;
  const kg = gbps(base.inputBytes, a.medianSeconds);
  const copy = pairedCopy(base.inputBytes, b);
  return {
    name: base.name, description: base.description, shape: [ROWS, COLS], dtype: 'F16',
    ...(base.options ? { options: base.options } : {}),
    inputBytes: base.inputBytes, outputBytes: base.outputBytes,
    warmup: a.warmup, repeats: a.repeats, minSeconds: round(a.minSeconds, 5), medianSeconds: round(a.medianSeconds, 5),
    seconds: a.seconds.map((x) => round(x, 5)),
    unit: 'GB/s of input bytes', gbps: round(kg), gbpsBest: round(gbps(base.inputBytes, a.minSeconds)),
    ...(base.phases ? { phases: base.phases } : {}),
    copy,
    fractionOfCopy: round(kg / gbps(base.inputBytes, b.medianSeconds), 3),
    fractionOfCopyTraffic: round(gbps(base.inputBytes + base.outputBytes, a.medianSeconds) / gbps(2 * base.inputBytes, b.medianSeconds), 3),
    reference: base.refSeconds === null ? null : {
      mode: 'ref', seconds: round(base.refSeconds, 5), gbps: round(gbps(base.inputBytes, base.refSeconds)),
      speedup: round(base.refSeconds / a.medianSeconds, 3),
    },
    peer: null, peerReason: PEER_REASON,
  };
}

export interface KernelOpts {
  threads: number;
  warmup: number;
  repeats: number;
  /** Also time the reference path once. */
  reference: boolean;
}

/** Time the reference path (`run`, mode 1) once, after the machine settles; null unless asked. */
async function referenceSeconds(name: string, o: KernelOpts, run: () => Promise<unknown>): Promise<number | null> {
  if (!o.reference) return null;
  log(`${name}: reference path (mode 1), once`);
  await settle();
  const t0 = performance.now();
  await run();
  return (performance.now() - t0) / 1000;
}

/** fp16 → fp32 of the whole tensor with the async native convert (mode 0 fast, 1 reference). */
export async function benchConvert(src: Uint8Array, o: KernelOpts): Promise<KernelEntry> {
  const n = src.byteLength / 2;
  const dst = new Float32Array(n);
  const conv = (mode: number) => addon().convert({ src, srcDtype: DTYPE_ID.F16, dst, dstDtype: DTYPE_ID.F32, saturate: false, mode, threads: o.threads }).promise;
  const { a, b } = await measurePaired(() => conv(0), copyOnce(src.byteLength, o.threads), o);
  const refSeconds = await referenceSeconds('convert-f16-f32', o, () => conv(1));
  return entry({
    name: 'convert-f16-f32',
    description: 'fp16 → fp32 of a 4096×11008 tensor with the native fast path (async convert, mode 0, all threads); ' +
      'output buffer preallocated and reused',
    inputBytes: src.byteLength, outputBytes: n * 4, a, b, refSeconds,
  });
}

/**
 * The NaN/Inf scan every reader runs on every tensor it hands out (first_nonfinite over the fp16
 * tensor, all finite, so the whole tensor is read), against a copy of the same bytes.
 */
export async function benchScan(src: Uint8Array, o: KernelOpts): Promise<KernelEntry> {
  const scan = (mode: number) => {
    const r = addon().firstNonFiniteSync({ src, dtype: DTYPE_ID.F16, mode, threads: o.threads });
    if (r !== -1) throw new Error(`scan-nonfinite-f16: found a non-finite value at ${r} in finite data`);
    return Promise.resolve();
  };
  const { a, b } = await measurePaired(() => scan(0), copyOnce(src.byteLength, o.threads), o);
  const refSeconds = await referenceSeconds('scan-nonfinite-f16', o, () => scan(1));
  return entry({
    name: 'scan-nonfinite-f16',
    description: 'NaN/Inf scan of a 4096×11008 fp16 tensor (firstNonFiniteSync, mode 0, all threads; all values finite, so every byte is read): ' +
      'the check every reader runs on every tensor it hands out. It only reads, so its limit is a read stream: fractionOfCopy ' +
      '(input bytes per second over the copy\'s) can exceed 1, fractionOfCopyTraffic compares bytes moved',
    inputBytes: src.byteLength, outputBytes: 0, a, b, refSeconds,
  });
}

export interface RtnVariant {
  name: string;
  bits: number;
  sym: boolean;
  /** false: quantizeTensor then packGptq (the unfused comparison). @default true */
  fused?: boolean;
}

/** The fused path (quantizeGptq) at four settings, and the unfused 4-bit symmetric comparison. */
export const RTN_VARIANTS: RtnVariant[] = [
  { name: 'rtn-quantize-pack', bits: 4, sym: true },
  { name: 'rtn-quantize-pack-w3', bits: 3, sym: true },
  { name: 'rtn-quantize-pack-w8', bits: 8, sym: true },
  { name: 'rtn-quantize-pack-w4-asym', bits: 4, sym: false },
  { name: 'rtn-quantize-then-pack-unfused', bits: 4, sym: true, fused: false },
];

/**
 * RTN quantize + GPTQ pack of the whole tensor. Fused: quantizeGptq({dtype:'F16', bytes}), which
 * packs natively as it quantizes (no code matrix). Unfused: quantizeTensor + packGptq, as the
 * pipeline did before the fused path. Sym packs the GPTQ v1 layout ('gptq'), asym the v2 layout
 * (true zeros may be 0).
 */
export async function benchRtn(src: Uint8Array, v: RtnVariant, o: KernelOpts): Promise<KernelEntry> {
  const fused = v.fused !== false;
  const format = v.sym ? 'gptq' : 'gptq_v2';
  const data = { dtype: 'F16' as const, bytes: src };
  const qs: number[] = [];
  const ps: number[] = [];
  let outputBytes = 0;
  // `as`: assigned inside once() below, where TS does not follow the assignment
  let qweight = null as Int32Array | null;
  const once = fused
    ? async () => {
      const r = await quantizeGptq(data, [ROWS, COLS], { bits: v.bits, groupSize: 128, sym: v.sym, format });
      outputBytes = r.qweight.byteLength + r.qzeros.byteLength + r.scales.byteLength + r.gIdx.byteLength + r.zeros.byteLength;
      qweight = r.qweight;
    }
    : async () => {
      const t0 = performance.now();
      const q = await quantizeTensor(data, [ROWS, COLS], { bits: v.bits, groupSize: 128, sym: v.sym, dequantize: false });
      const t1 = performance.now();
      const p = await packGptq(q, format);
      const t2 = performance.now();
      qs.push((t1 - t0) / 1000);
      ps.push((t2 - t1) / 1000);
      outputBytes = q.codes.byteLength + q.scales.byteLength + q.zeros.byteLength +
        p.qweight.byteLength + p.qzeros.byteLength + p.scales.byteLength + p.gIdx.byteLength;
      qweight = p.qweight;
    };
  const { a, b } = await measurePaired(once, copyOnce(src.byteLength, o.threads), o);
  const timed = (xs: number[]) => round(median(xs.slice(o.warmup)));
  const phases = fused ? undefined : { quantizeMedianSeconds: timed(qs), packMedianSeconds: timed(ps) };
  let refSeconds: number | null = null;
  if (o.reference) {
    log(`${v.name}: reference kernels (setKernelMode('ref')), once`);
    setKernelMode('ref');
    try {
      await settle();
      const t0 = performance.now();
      await once();
      refSeconds = (performance.now() - t0) / 1000;
    } finally {
      setKernelMode('fast');
    }
  }
  // The unfused pair must produce the fused path's qweight (the library promises bit-identity).
  let identicalToFused: boolean | undefined;
  if (!fused && qweight) {
    const f = await quantizeGptq(data, [ROWS, COLS], { bits: v.bits, groupSize: 128, sym: v.sym, format });
    identicalToFused = Buffer.compare(Buffer.from(qweight.buffer, qweight.byteOffset, qweight.byteLength), Buffer.from(f.qweight.buffer, f.qweight.byteOffset, f.qweight.byteLength)) === 0;
  }
  const kind = `RTN, ${v.bits}-bit, group 128, ${v.sym ? 'symmetric' : 'asymmetric'}`;
  const e = entry({
    name: v.name,
    description: fused
      ? `quantizeGptq of a 4096×11008 fp16 tensor given as {dtype:'F16', bytes} (${kind}, format '${format}'): fused native ` +
        'quantize + pack, no code matrix materialised; qweight, qzeros, scales, gIdx and zeros allocated by the API on every call'
      : `quantizeTensor of a 4096×11008 fp16 tensor given as {dtype:'F16', bytes} (${kind}, no dequantized output), then ` +
        `packGptq('${format}'): the unfused path, for comparison with rtn-quantize-pack; the 45 MB uint8 code matrix, scales and ` +
        'zeros are allocated by the API on every call',
    options: { bits: v.bits, groupSize: 128, sym: v.sym, format, api: fused ? 'quantizeGptq' : 'quantizeTensor+packGptq' },
    inputBytes: src.byteLength, outputBytes, a, b, phases, refSeconds,
  });
  return identicalToFused === undefined ? e : { ...e, identicalToFused };
}
