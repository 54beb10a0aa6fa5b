/**
 * The GPTQ pass over a whole model: the runtime runs calibration windows block by block
 * (lib/runtime/calibrate.ts); at each block, the linear layers are quantized with gptqLayer in
 * GPTQ's true-sequential order — q/k/v (one shared Hessian), then o, then gate/up (shared), then
 * down — each stage's Hessian collected with the earlier stages already quantized. Quantized
 * weights are written back into the running model, so every later block sees the quantized
 * outputs of the blocks before it (GPTQ's error propagation). Memory: the model in f32, one
 * block's activations (samples × seqLen × dim) and one block's Hessians.
 */
import * as fs from 'node:fs';
import { LowbitError } from '../errors';
import { loadModel, type LanguageModel } from '../runtime/model';
import { calibrate, calibrationPeakBytes, type InputStats } from '../runtime/calibrate';
import { gptqLayer } from '../gptq';
import { packGptq, gptqTensorBytes } from '../pack';
import { fromFloat32 } from '../formats/dtype';
import { checkInt } from '../validate';
import type { NormalizedRtnConfig } from '../config/rtn';
import type { Model } from '../model';
import type { LinearModule } from '../formats/hf-model';
import type { Progress } from '../quantize-tensor';
import type { ModuleLog } from './quantize';

/** Calibration data of a GPTQ run. */
export interface CalibrationOptions {
  /** Calibration text (UTF-8), or `file` to read it from. */
  text?: string;
  file?: string;
  /** Windows. @default 128 */
  samples?: number;
  /** Tokens per window (capped at the model's context). @default 2048 */
  seqLen?: number;
  /** Seed of the window sampler. @default 0 */
  seed?: number;
  /** llama2.c tokenizer.bin used to tokenize the text (HF tokenizer.json is not read yet). */
  tokenizer?: string;
}

/** @internal */
export interface GptqPassResult {
  parts: Map<string, Map<string, Uint8Array>>;
  calibration: { samples: number; seqLen: number; tokens: number; seed: number; textSha256: string; expectedPeakBytes: number; seconds: number };
}

const STAGES: { input: 'attn' | 'o' | 'mlp' | 'down'; kinds: ('q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down')[] }[] = [
  { input: 'attn', kinds: ['q', 'k', 'v'] },
  { input: 'o', kinds: ['o'] },
  { input: 'mlp', kinds: ['gate', 'up'] },
  { input: 'down', kinds: ['down'] },
];
const HF_KIND = { q: 'q_proj', k: 'k_proj', v: 'v_proj', o: 'o_proj', gate: 'gate_proj', up: 'up_proj', down: 'down_proj' } as const;

/** @internal */
export async function gptqPass(m: Model, cfg: NormalizedRtnConfig, calib: CalibrationOptions, plan: Map<string, LinearModule>,
  logs: Map<string, ModuleLog>, signal: AbortSignal | undefined, report: (p: Progress) => void): Promise<GptqPassResult> {
  const g = cfg.gptq!;
  const q = cfg.quantizer;
  const packed = cfg.format !== 'dequant';
  let text = calib.text;
  if (text === undefined && calib.file) {
    try {
      text = fs.readFileSync(calib.file, 'utf8');
    } catch {
      throw new LowbitError('LOWBIT_NOT_FOUND', `calibration: cannot read ${calib.file}`, { option: 'calib' });
    }
  }
  if (typeof text !== 'string') throw new LowbitError('LOWBIT_INVALID_OPTION', 'calibration: GPTQ needs calibration text (calibration.text or calibration.file, --calib FILE)', { option: 'calib' });
  const samples = checkInt('calibration.samples', calib.samples ?? 128, 1, 1e6);
  const lm: LanguageModel = await loadModel(m.dir, { tokenizer: calib.tokenizer });
  try {
    const seqLen = Math.min(checkInt('calibration.seqLen', calib.seqLen ?? 2048, 2, 1 << 24), lm.config.seqLen);
    const expectedPeakBytes = calibrationPeakBytes(lm, samples, seqLen);
    report({ phase: 'calibrate', done: 0, total: lm.config.nLayers, module: `expected peak ${(expectedPeakBytes / 2 ** 20).toFixed(0)} MiB + weights` });
    const byName = new Map<string, LinearModule>();
    for (const mod of plan.values()) byName.set(mod.name, mod);
    const parts = new Map<string, Map<string, Uint8Array>>();
    const total = plan.size;
    let done = 0;
    const quantizeStage = async (layer: number, stats: InputStats, kinds: (typeof STAGES)[number]['kinds']) => {
      for (const kind of kinds) {
        const name = `model.layers.${layer}.${kind === 'q' || kind === 'k' || kind === 'v' || kind === 'o' ? 'self_attn' : 'mlp'}.${HF_KIND[kind]}`;
        const mod = byName.get(name);
        if (!mod) continue; // excluded, or kept in fp16 for its shape
        const t0 = performance.now();
        const W = lm._linearWeight(layer, kind);
        let r;
        try {
          r = await gptqLayer(W, stats.hessian!, {
            rows: mod.rows, cols: mod.cols, bits: q.bits, groupSize: q.groupSize, sym: q.sym, clip: q.clip, zeroMin: q.zeroMin, signedMax: q.signedMax,
            actOrder: g.actOrder, staticGroups: g.staticGroups, dampPercent: g.dampPercent, blockSize: g.blockSize, signal,
          });
        } catch (e) {
          // name the module (and say where a non-finite Hessian comes from: the layer's input activations)
          if (e instanceof LowbitError && e.code !== 'LOWBIT_ABORTED') {
            const hint = /Hessian entry/.test(e.message) ? ' (non-finite input activations of this module on the calibration text)' : '';
            throw new LowbitError(e.code, `${name}: ${e.message}${hint}`, { module: name }, { cause: e });
          }
          throw e;
        }
        // weight error against the source (W still holds it; GPTQ minimises the output error instead)
        let se = 0, sr = 0, me = 0;
        for (let i = 0; i < W.length; i++) {
          const d = r.dequantized[i] - W[i];
          se += d * d;
          sr += W[i] * W[i];
          me = Math.max(me, Math.abs(d));
        }
        W.set(r.dequantized); // later stages and blocks see the quantized layer
        parts.set(name, packed
          ? gptqTensorBytes(name, await packGptq({ ...r, rows: mod.rows, cols: mod.cols, bits: q.bits, groupSize: q.groupSize },
            cfg.format === 'gptq' ? 'gptq' : 'gptq_v2', r.gIdx, name))
          : new Map([[mod.weight, fromFloat32(r.dequantized, mod.dtype as 'F32' | 'F16' | 'BF16', mod.weight, { saturate: true })]]));
        logs.set(name, {
          module: name, rows: mod.rows, cols: mod.cols, storage: packed ? 'packed' : 'dequant', bits: q.bits, groupSize: q.groupSize,
          stats: { mse: se / W.length, relError: sr > 0 ? Math.sqrt(se / sr) : 0, maxAbsError: me, sqnrDb: se > 0 ? 10 * Math.log10(sr / se) : Infinity },
          gptqLoss: r.loss, dampUsed: r.dampUsed, samples: stats.tokens, seconds: (performance.now() - t0) / 1000,
        } as ModuleLog);
        done++;
        report({ phase: 'gptq', layer, layers: lm.config.nLayers, done, total, module: `${name} loss ${r.loss.toExponential(3)}` });
      }
    };
    const res = await calibrate(lm, {
      text, samples, seqLen, seed: calib.seed ?? 0, keepHessians: false, signal,
      onProgress: (p) => report({ ...p, phase: 'calibrate' }),
      onLayer: async (stats, tools) => {
        for (const [si, stage] of STAGES.entries()) {
          const s = si === 0 || !g.trueSequential ? stats[stage.input] : await tools.recollect(stage.input);
          await quantizeStage(stats.layer, s, stage.kinds);
          s.hessian = null;
        }
      },
    });
    return { parts, calibration: { samples: res.samples, seqLen: res.seqLen, tokens: res.tokens, seed: res.seed, textSha256: res.textSha256, expectedPeakBytes, seconds: res.seconds } };
  } finally {
    lm.dispose();
  }
}
