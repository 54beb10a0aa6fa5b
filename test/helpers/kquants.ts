/**
 * Test helper: simple (not llama.cpp's optimised) but valid encoders for GGUF's Q4_K and Q6_K, so
 * tests can write k-quant files (lowbit reads and runs them; it does not write them itself).
 * Layouts as docs/formats.md §7.4–7.5: Q4_K {f16 d, f16 dmin, 12 B 6-bit scales/mins, 128 B qs}
 * with value = d·sc·q − dmin·m; Q6_K {128 B ql, 64 B qh, 16 × i8 scales, f16 d} with
 * value = d·scale·(q − 32).
 */
import { f32ToF16Bits, f16BitsToF32 } from '../../lib/formats/dtype';
import { packQ4kScales } from '../../lib/formats/ggml-blocks';

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

export function encodeQ4K(x: Float32Array): Uint8Array {
  const nb = x.length / 256, out = new Uint8Array(nb * 144), dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const o = b * 144, xs = x.subarray(b * 256, b * 256 + 256);
    const scf: number[] = [], mnf: number[] = [];
    for (let j = 0; j < 8; j++) {
      let lo = 0, hi = 0;
      for (let l = 0; l < 32; l++) { lo = Math.min(lo, xs[32 * j + l]); hi = Math.max(hi, xs[32 * j + l]); }
      mnf.push(-lo);
      scf.push((hi - lo) / 15);
    }
    const dh = f32ToF16Bits(Math.max(...scf) / 63 || 1e-8), mh = f32ToF16Bits(Math.max(...mnf) / 63 || 1e-8);
    const d = f16BitsToF32(dh), dmin = f16BitsToF32(mh);
    const sc = scf.map((s) => clamp(Math.round(s / d), 1, 63)), mn = mnf.map((m) => clamp(Math.round(m / dmin), 0, 63));
    dv.setUint16(o, dh, true);
    dv.setUint16(o + 2, mh, true);
    out.set(packQ4kScales(sc, mn), o + 4);
    for (let j = 0; j < 8; j++) {
      const s = d * sc[j], m = dmin * mn[j];
      for (let l = 0; l < 32; l++) {
        const q = clamp(Math.round((xs[32 * j + l] + m) / s), 0, 15);
        const byte = o + 16 + 32 * (j >> 1) + l;
        out[byte] |= j % 2 ? q << 4 : q;
      }
    }
  }
  return out;
}

export function encodeQ6K(x: Float32Array): Uint8Array {
  const nb = x.length / 256, out = new Uint8Array(nb * 210), dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const o = b * 210, xs = x.subarray(b * 256, b * 256 + 256);
    const amax: number[] = [];
    for (let s = 0; s < 16; s++) { let a = 0; for (let l = 0; l < 16; l++) a = Math.max(a, Math.abs(xs[16 * s + l])); amax.push(a / 31); }
    const dh = f32ToF16Bits(Math.max(...amax) / 127 || 1e-8), d = f16BitsToF32(dh);
    const sc = amax.map((a) => clamp(Math.round(a / d), 1, 127));
    for (let s = 0; s < 16; s++) out[o + 192 + s] = sc[s] & 0xff;
    dv.setUint16(o + 208, dh, true);
    const q = (v: number) => clamp(Math.round(xs[v] / (d * sc[v >> 4])) + 32, 0, 63);
    for (let h = 0; h < 2; h++) {
      const ql = o + 64 * h, qh = o + 128 + 32 * h, y = 128 * h;
      for (let l = 0; l < 32; l++) {
        const q1 = q(y + l), q2 = q(y + l + 32), q3 = q(y + l + 64), q4 = q(y + l + 96);
        out[ql + l] = (q1 & 15) | ((q3 & 15) << 4);
        out[ql + l + 32] = (q2 & 15) | ((q4 & 15) << 4);
        out[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
  }
  return out;
}
