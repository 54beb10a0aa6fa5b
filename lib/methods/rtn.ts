/**
 * RTN (round to nearest): each module is quantized on its own, when the writer asks for its
 * tensors — read from the source, quantized (packed natively as the codes are produced for the
 * GPTQ layout), its source pages released. Memory: one module.
 */
import { quantizerFor } from '../config/quantize';
import { LowbitError } from '../errors';
import { quantizeNormalized } from '../ops/quantize';
import { moduleTensors, storesPacked } from './store';
import type { MethodContext, MethodRun, QuantMethod, QuantizedModule } from './method';
import type { LinearModule } from '../formats/hf-model';

export const rtnMethod: QuantMethod = {
  name: 'rtn',
  needsCalibration: false,
  resumable: false,
  start(ctx: MethodContext): Promise<MethodRun> {
    const { model, config, signal, threads } = ctx;
    const reader = model.tensors;
    const packed = storesPacked(config);
    let done = 0;
    const total = ctx.plan.size;
    // one module at a time: its source converted to f32, its codes and its output tensors
    let largest = 0;
    for (const mod of ctx.plan.values()) largest = Math.max(largest, mod.rows * mod.cols);
    const peak = largest * (4 + 4 + 1 + 2) + (64 << 20);
    if (peak > ctx.maxMemory) {
      return Promise.reject(new LowbitError('LOWBIT_RESOURCE',
        `quantize: RTN needs about ${gib(peak)} GiB for its largest module (${largest} weights: f32 copy, codes, outputs) but maxMemory is ${gib(ctx.maxMemory)} GiB`,
        { expectedPeakBytes: peak, maxMemory: ctx.maxMemory }));
    }
    return Promise.resolve({
      async quantizeModule(mod: LinearModule): Promise<QuantizedModule> {
        if (signal?.aborted) throw new LowbitError('LOWBIT_ABORTED', `quantize: aborted by signal at module ${done}/${total} (no output written)`);
        ctx.report({ phase: 'quantize', layer: done, layers: total, done, total, module: mod.name });
        const t0 = performance.now();
        const info = reader.info(mod.weight);
        if (!['F32', 'F16', 'BF16'].includes(info.dtype)) throw new LowbitError('LOWBIT_UNSUPPORTED', `${mod.weight}: dtype ${info.dtype} cannot be quantized (F32, F16 or BF16 expected)`, { tensor: mod.weight });
        const quantizer = quantizerFor(config, mod.name);
        const qt = await quantizeNormalized({ dtype: info.dtype as 'F32' | 'F16' | 'BF16', bytes: reader.bytes(mod.weight) }, mod.rows, mod.cols, quantizer,
          { name: mod.weight, dequantize: !packed, signal, packGptq: packed, threads });
        reader.release(mod.weight);
        const tensors = await moduleTensors(config, mod, { ...qt, dequantized: qt.dequantized }, threads);
        done++;
        ctx.report({ phase: 'quantize', layer: done, layers: total, done, total, module: mod.name });
        return {
          tensors,
          log: { module: mod.name, rows: mod.rows, cols: mod.cols, storage: packed ? 'packed' : 'dequant', bits: quantizer.bits, groupSize: qt.groupSize, stats: qt.stats, seconds: (performance.now() - t0) / 1000 },
        };
      },
    });
  },
};

function gib(b: number): string {
  return (b / 2 ** 30).toFixed(2);
}
