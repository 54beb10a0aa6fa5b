/**
 * Shape tables of the CUDA tests and the CUDA benchmark (STYLE.md §6): 1 row; odd sizes; one less
 * and one more than the tiles (GEMV: 128 columns × 8-channel words; MMA: 16 tokens × 128 columns
 * × 32-channel chunks; GEMM/Cholesky: 64); group boundaries inside a chunk; act-order; one
 * realistic LLM shape. The CPU tables live in test/helpers/shapes.ts and test/native/*.
 */

/** Packed matmul: m tokens, out, in, group size (-1 per channel), act-order, bits, activations, kernel. */
export interface QmatmulCase { m: number; out: number; inF: number; gs: number; act: boolean; bits: 4 | 8; x: 'f32' | 'f16'; kernel: 'auto' | 'gemv' | 'mma' }

export const QMATMUL_CASES: QmatmulCase[] = [
  { m: 1, out: 8, inF: 32, gs: 32, act: false, bits: 4, x: 'f32', kernel: 'auto' },
  { m: 1, out: 13, inF: 64, gs: 32, act: false, bits: 4, x: 'f32', kernel: 'auto' },
  { m: 1, out: 127, inF: 256, gs: 128, act: false, bits: 4, x: 'f32', kernel: 'auto' },
  { m: 1, out: 129, inF: 1024, gs: 128, act: false, bits: 4, x: 'f16', kernel: 'auto' },
  { m: 1, out: 100, inF: 512, gs: -1, act: false, bits: 4, x: 'f32', kernel: 'auto' },
  { m: 1, out: 40, inF: 512, gs: 128, act: true, bits: 4, x: 'f32', kernel: 'auto' },
  { m: 1, out: 40, inF: 512, gs: 128, act: false, bits: 4, x: 'f32', kernel: 'mma' },
  { m: 2, out: 24, inF: 64, gs: 32, act: true, bits: 4, x: 'f32', kernel: 'auto' },
  { m: 3, out: 33, inF: 96, gs: 32, act: false, bits: 4, x: 'f32', kernel: 'auto' },
  { m: 3, out: 40, inF: 72, gs: 24, act: false, bits: 4, x: 'f32', kernel: 'auto' },
  { m: 5, out: 17, inF: 256, gs: 256, act: false, bits: 4, x: 'f16', kernel: 'auto' },
  { m: 9, out: 40, inF: 512, gs: 128, act: true, bits: 4, x: 'f32', kernel: 'gemv' },
  { m: 15, out: 129, inF: 1024, gs: 128, act: true, bits: 4, x: 'f16', kernel: 'auto' },
  { m: 16, out: 256, inF: 4096, gs: 128, act: false, bits: 4, x: 'f32', kernel: 'auto' },
  { m: 17, out: 40, inF: 512, gs: 128, act: false, bits: 4, x: 'f32', kernel: 'auto' },
  { m: 33, out: 130, inF: 256, gs: 64, act: false, bits: 4, x: 'f16', kernel: 'auto' },
  { m: 1, out: 8, inF: 32, gs: 32, act: false, bits: 8, x: 'f32', kernel: 'auto' },
  { m: 1, out: 40, inF: 100, gs: 20, act: true, bits: 8, x: 'f32', kernel: 'auto' },
  { m: 2, out: 40, inF: 100, gs: 20, act: true, bits: 8, x: 'f16', kernel: 'auto' },
  { m: 3, out: 33, inF: 36, gs: 12, act: false, bits: 8, x: 'f32', kernel: 'auto' },
  { m: 6, out: 64, inF: 256, gs: 64, act: false, bits: 8, x: 'f32', kernel: 'auto' },
  { m: 1, out: 4096, inF: 4096, gs: 128, act: false, bits: 4, x: 'f16', kernel: 'auto' },
  { m: 8, out: 4096, inF: 4096, gs: 128, act: true, bits: 4, x: 'f16', kernel: 'auto' },
];

/** fp16 GEMM: m, out, in (in % 8 = 0). */
export const GEMM_F16_CASES: [number, number, number][] = [[1, 8, 32], [3, 33, 96], [16, 127, 264], [17, 130, 520], [2, 4096, 4096]];

/** Hessian: tokens, cols. */
export const HESSIAN_CASES: [number, number][] = [[1, 1], [1, 7], [3, 17], [64, 63], [65, 65], [100, 130], [257, 200], [1000, 64]];

/** Inverse factor: n (one less / one more than the 64 block; recursion split points). */
export const INVERSE_CASES: number[] = [1, 7, 63, 64, 65, 97, 128, 130, 200, 300];

/** GPTQ layer: rows, cols, bits, group size (-1 per channel), act-order, static groups, sym, block size. */
export interface GptqCase { rows: number; cols: number; bits: number; gs: number; act: boolean; stat: boolean; sym: boolean; block: number }

export const GPTQ_CASES: GptqCase[] = [
  { rows: 1, cols: 64, bits: 4, gs: 32, act: false, stat: false, sym: true, block: 128 },
  { rows: 48, cols: 256, bits: 4, gs: 128, act: false, stat: false, sym: true, block: 128 },
  { rows: 48, cols: 256, bits: 4, gs: 32, act: true, stat: false, sym: true, block: 128 },
  { rows: 48, cols: 256, bits: 4, gs: -1, act: true, stat: false, sym: false, block: 128 },
  { rows: 33, cols: 200, bits: 3, gs: 64, act: true, stat: true, sym: false, block: 128 },
  { rows: 48, cols: 256, bits: 2, gs: 32, act: true, stat: false, sym: false, block: 32 },
  { rows: 17, cols: 130, bits: 8, gs: 256, act: false, stat: false, sym: true, block: 100 },
  { rows: 7, cols: 129, bits: 4, gs: 32, act: false, stat: false, sym: false, block: 128 },
  { rows: 128, cols: 512, bits: 4, gs: 128, act: true, stat: false, sym: true, block: 128 },
];
