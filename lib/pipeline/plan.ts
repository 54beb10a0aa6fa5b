/**
 * The plan of a quantize run: which linear modules are quantized, and why each other one is kept
 * in its float type (named in quant_log.json and, for GPTQ checkpoints, in `dynamic`).
 */
import { effectiveGroupSize } from '../config/quant';
import { gptqLayoutProblem } from '../formats/gptq';
import { quantizerFor, type NormalizedQuantizeConfig } from '../config/quantize';
import type { Model } from '../formats/hf-dir';
import type { LinearModule } from '../formats/hf-model';
import type { ModuleLog } from '../methods/method';

/** What a run quantizes. */
export interface QuantizePlan {
  /** Modules to quantize, by weight tensor name. */
  modules: Map<string, LinearModule>;
  /** Modules kept unquantized, with the reason, by module name. */
  kept: Map<string, ModuleLog>;
}

function matches(name: string, patterns?: (string | RegExp)[]): boolean {
  return !!patterns && patterns.some((p) => (typeof p === 'string' ? name.includes(p) : p.test(name)));
}

/** Plan a run; throws LOWBIT_SHAPE_MISMATCH naming the tensor when a group size does not divide its columns. */
export function planModules(m: Model, cfg: NormalizedQuantizeConfig): QuantizePlan {
  const q = cfg.quantizer;
  const packed = cfg.checkpointFormat !== 'dequant';
  const modules = new Map<string, LinearModule>();
  const kept = new Map<string, ModuleLog>();
  const keep = (mod: LinearModule, reason: string) => kept.set(mod.name, { module: mod.name, rows: mod.rows, cols: mod.cols, storage: 'fp16', reason, seconds: 0 });
  for (const mod of m.linears) {
    if ((cfg.include && !matches(mod.name, cfg.include)) || matches(mod.name, cfg.exclude) || (mod.kind === 'lm_head' && !cfg.lmHead)) {
      keep(mod, 'excluded by include/exclude');
      continue;
    }
    if (packed) {
      // Shapes the packed layout cannot hold (in or out not a multiple of 32) stay in fp16 and are
      // named in quant_log.json and in the config's `dynamic` exclusions: never silently wrong.
      const why = gptqLayoutProblem(mod.rows, mod.cols, q.bits, -1);
      if (why) {
        keep(mod, why);
        continue;
      }
    }
    effectiveGroupSize(quantizerFor(cfg, mod.name), mod.cols, mod.weight, mod.rows); // the one divisibility check (LOWBIT_SHAPE_MISMATCH)
    modules.set(mod.weight, mod);
  }
  return { modules, kept };
}
