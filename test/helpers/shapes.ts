/**
 * One shape table per op, shared by the CPU tests, the CUDA tests and the benchmarks
 * (STYLE.md §6): 1 row; odd sizes; one less / one more than the vector widths (8, 16) and the
 * group size; a group boundary inside a tile; one realistic LLM shape.
 */
export interface QuantShape {
  rows: number;
  cols: number;
  groupSize: number; // -1 = per channel
}

export const QUANT_SHAPES: QuantShape[] = [
  { rows: 1, cols: 32, groupSize: 32 },
  { rows: 1, cols: 4096, groupSize: 128 },
  { rows: 3, cols: 7, groupSize: -1 },
  { rows: 5, cols: 15, groupSize: -1 },
  { rows: 7, cols: 17, groupSize: -1 },
  { rows: 2, cols: 33, groupSize: -1 },
  { rows: 9, cols: 96, groupSize: 32 },
  { rows: 4, cols: 192, groupSize: 64 },
  { rows: 13, cols: 384, groupSize: 128 },
  { rows: 33, cols: 256, groupSize: 256 },
  { rows: 64, cols: 1000, groupSize: -1 },
  { rows: 128, cols: 4096, groupSize: 128 },
];

/** Shapes for the packed layouts (cols, rows multiples of 32 where the GPTQ layout needs it). */
export const PACK_SHAPES: { rows: number; cols: number }[] = [
  { rows: 32, cols: 32 },
  { rows: 64, cols: 96 },
  { rows: 96, cols: 4096 },
  { rows: 1024, cols: 128 },
];

/** The benchmark's realistic shape: Llama-2-7B MLP up/gate projection transposed (11008 × 4096). */
export const LLM_SHAPE = { rows: 4096, cols: 11008 };
