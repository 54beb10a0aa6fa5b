/**
 * Shared pieces of the CUDA tests: the skip-with-reason guard, GPTQ word packing for 4/8 bits,
 * random packed layers, f16 rounding through the CPU converter. Not a test file itself.
 */
import { strict as assert } from 'node:assert';
import { cudaStatus } from '../../lib/ops/cuda';
import { addon, cudaAddonPath, type NativeAddon } from '../../lib/native';
import type { GptqPackedLinear } from '../../lib/ops/cuda';
import type { Rng } from '../helpers/rng';

/** The CUDA variant's own entries, which NativeAddon types optional (the CPU build has none of them). */
const CUDA_ENTRIES = ['cudaInfo', 'cudaDequantInt4', 'cudaQgemm', 'cudaGemmF16', 'cudaHessian', 'cudaInverseFactor', 'cudaGptqLayer', 'cudaBenchCopy'] as const;

/** The CUDA variant of the addon: every CUDA entry present. */
export type CudaAddon = NativeAddon & Required<Pick<NativeAddon, (typeof CUDA_ENTRIES)[number]>>;

/** `a` as the CUDA variant, after asserting that it has every CUDA entry. */
export function asCudaAddon(a: NativeAddon): CudaAddon {
  for (const k of CUDA_ENTRIES) assert.equal(typeof a[k], 'function', `the CUDA variant has no ${k}()`);
  return a as CudaAddon;
}

let announced = false;

/** In a mocha `before` (a `function`, not an arrow): skip the suite with "no CUDA device: <reason>" when none is usable. */
export function requireCuda(ctx: Mocha.Context): void {
  const s = cudaStatus();
  if (!s.available) {
    console.log(`      no CUDA device: ${s.reason}`);
    ctx.skip();
  }
  if (!announced) {
    announced = true;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const info = asCudaAddon(require(cudaAddonPath()) as NativeAddon).cudaInfo();
    console.log(`      CUDA device: ${info.devices.map((d) => `${d.name} sm_${d.major}${d.minor}`).join(', ')}, driver ${info.driverVersion}, runtime ${info.runtimeVersion}`);
  }
}

/**
 * The CUDA variant loaded WITHOUT a device, for the checks its host entries make before touching
 * one: returned only when the variant is built and its child-process probe loaded it fine (so
 * loading it here cannot crash the test process). Null otherwise, with the reason.
 */
export function cudaVariantForHostChecks(): { addon: NativeAddon | null; reason: string } {
  const s = cudaStatus();
  if (s.available) return { addon: null, reason: 'a device is visible: the device tests cover these paths' };
  if (!s.reason.startsWith('built, but not used')) return { addon: null, reason: s.reason };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return { addon: require(cudaAddonPath()) as NativeAddon, reason: 'loaded without a device' };
}

/** GPTQ qweight: codes (out × in) → (in·bits/32, out) int32, channel k of word row w at bits·(k mod 32/bits). */
export function packGptqWords(codes: Uint8Array, out: number, inF: number, bits: 4 | 8): Int32Array {
  const per = 32 / bits;
  const q = new Int32Array((inF / per) * out);
  for (let n = 0; n < out; n++) for (let k = 0; k < inF; k++) q[Math.floor(k / per) * out + n] |= codes[n * inF + k] << (bits * (k % per));
  return q;
}

/** A random packed layer: fp16-exact scales (as a checkpoint stores them), codes and zeros in [0, 2^bits). */
export function randomPackedLinear(rng: Rng, out: number, inF: number, groupSize: number, actOrder: boolean, bits: 4 | 8): GptqPackedLinear & { codes: Uint8Array } {
  const gs = groupSize === -1 ? inF : groupSize;
  const groups = Math.ceil(inF / gs), maxq = (1 << bits) - 1;
  const codes = Uint8Array.from({ length: out * inF }, () => rng.int(0, maxq));
  const gIdx = Int32Array.from({ length: inF }, (_, k) => Math.floor(k / gs));
  if (actOrder) for (let k = inF - 1; k > 0; k--) { const j = rng.int(0, k); [gIdx[k], gIdx[j]] = [gIdx[j], gIdx[k]]; }
  const scales = roundF16(Float32Array.from({ length: groups * out }, () => 0.001 + 0.02 * rng.next()));
  const zeros = Uint8Array.from({ length: groups * out }, () => rng.int(0, maxq));
  return { bits, inFeatures: inF, outFeatures: out, groups, qweight: packGptqWords(codes, out, inF, bits), scales, zeros, gIdx, codes };
}

/** f32 → f16 bit patterns (round to nearest even, saturating), by the CPU converter. */
export function f16Bits(x: Float32Array): Uint16Array {
  const h = new Uint16Array(x.length);
  addon().convertSync({ src: x, srcDtype: 0, dst: h, dstDtype: 1, saturate: true, mode: 0 });
  return h;
}

/** f16 bit patterns → f32 (exact). */
export function fromF16(h: Uint16Array): Float32Array {
  const f = new Float32Array(h.length);
  addon().convertSync({ src: h, srcDtype: 1, dst: f, dstDtype: 0, saturate: false, mode: 0 });
  return f;
}

/** x rounded to the nearest f16 value. */
export function roundF16(x: Float32Array): Float32Array {
  return fromF16(f16Bits(x));
}
