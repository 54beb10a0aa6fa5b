/**
 * How a quantized module is stored in the output checkpoint, shared by every method: the four HF
 * GPTQ tensors (packed formats) or the dequantized weight in the source's float type (`dequant`).
 */
import { LowbitError } from '../errors';
import { fromFloat32 } from '../formats/dtype';
import { packGptqNormalized, gptqTensorBytes } from '../ops/pack';
import type { NormalizedQuantizeConfig } from '../config/quantize';
import type { LinearModule } from '../formats/hf-model';

/** A quantized (rows = out, cols = in) layer as a method produced it. */
export interface ModuleCodes {
  /** (rows × cols) codes, original column order; empty when `qweight` is given (fused RTN pack). */
  codes: Uint8Array;
  /** (rows × groups) */
  scales: Float32Array;
  zeros: Uint8Array;
  groupSize: number;
  groups: number;
  /** Already packed GPTQ qweight (RTN's fused path), else undefined. */
  qweight?: Int32Array;
  /** Group of each input channel (act-order), else undefined (consecutive groups). */
  gIdx?: Int32Array;
  /** (rows × cols) f32 = scale · (code − zero); needed for the dequant format. */
  dequantized: Float32Array | null;
}

/** Whether the configured output stores packed codes (GPTQ layout) rather than dequantized weights. */
export function storesPacked(cfg: NormalizedQuantizeConfig): boolean {
  return cfg.checkpointFormat !== 'dequant';
}

/** The output tensors of one module, by tensor name (packed on the run's `threads`; undefined: the process default). */
export async function moduleTensors(cfg: NormalizedQuantizeConfig, mod: LinearModule, q: ModuleCodes, threads: number | undefined): Promise<Map<string, Uint8Array>> {
  if (storesPacked(cfg)) {
    const packed = await packGptqNormalized({ ...q, rows: mod.rows, cols: mod.cols, bits: cfg.quantizer.bits },
      cfg.checkpointFormat === 'gptq' ? 'gptq' : 'gptq_v2', q.gIdx, mod.name, q.qweight, threads);
    return gptqTensorBytes(mod.name, packed);
  }
  if (!q.dequantized) throw new LowbitError('LOWBIT_INTERNAL', `${mod.weight}: the dequant format needs the dequantized weights`, { tensor: mod.weight });
  return new Map([[mod.weight, fromFloat32(q.dequantized, mod.dtype as 'F32' | 'F16' | 'BF16', mod.weight, { saturate: true })]]);
}
