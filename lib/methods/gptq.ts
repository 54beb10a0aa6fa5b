/**
 * GPTQ over a whole model: the runtime runs calibration windows block by block
 * (lib/runtime/calibrate.ts); at each block, the linear layers are quantized with the GPTQ layer
 * op in GPTQ's true-sequential order — q/k/v (one shared Hessian), then o, then gate/up (shared),
 * then down — each stage's Hessian collected with the earlier stages already quantized. Quantized
 * weights are written back into the running model, so every later block sees the quantized
 * outputs of the blocks before it (GPTQ's error propagation). Memory: the model in f32, one
 * block's activations (samples × seqLen × dim) and one block's Hessians.
 *
 * All of it happens in `start` (the calibration pass); `quantizeModule` then hands each module's
 * tensors to the writer once.
 */
import { LowbitError } from '../errors';
import { loadModel, type LanguageModel } from '../runtime/model';
import { calibrateNormalized, calibrationPeakBytes, type InputStats } from '../runtime/calibrate';
import { gptqLayerNormalized } from '../ops/gptq';
import { moduleTensors, storesPacked } from './store';
import type { CalibrationSummary, MethodContext, MethodRun, ModuleLog, QuantMethod, QuantizedModule } from './method';
import type { LinearModule } from '../formats/hf-model';
import type { NormalizedCalibration } from '../config/calibration';
import { calibrationTexts, readCalibrationFile, type CalibrationData } from '../formats/calib';

const STAGES: { input: 'attn' | 'o' | 'mlp' | 'down'; kinds: ('q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down')[] }[] = [
  { input: 'attn', kinds: ['q', 'k', 'v'] },
  { input: 'o', kinds: ['o'] },
  { input: 'mlp', kinds: ['gate', 'up'] },
  { input: 'down', kinds: ['down'] },
];
const HF_KIND = { q: 'q_proj', k: 'k_proj', v: 'v_proj', o: 'o_proj', gate: 'gate_proj', up: 'up_proj', down: 'down_proj' } as const;

/** The calibration data, read once: text (a file, records, strings) or token ids (JSONL input_ids). */
function readCalibration(calib: NormalizedCalibration): CalibrationData {
  if (calib.text !== null) return calibrationTexts([calib.text], 'text');
  if (calib.texts !== null) return calibrationTexts(calib.texts, 'texts');
  return readCalibrationFile(calib.file ?? '');
}

export const gptqMethod: QuantMethod = {
  name: 'gptq',
  needsCalibration: true,
  async start(ctx: MethodContext): Promise<MethodRun> {
    const { model: m, config: cfg, signal, threads } = ctx;
    const g = cfg.gptq;
    const calib = ctx.calibration;
    // the pipeline starts a calibrated method only with both (normalizeQuantizeConfig, normalizeRunOptions)
    if (!g || !calib) throw new LowbitError('LOWBIT_INTERNAL', 'gptq: started without GPTQ options or calibration data');
    const q = cfg.quantizer;
    const packed = storesPacked(cfg);
    const data = readCalibration(calib);
    // records are joined with a blank line (as one text), token-id records end to end
    const text = data.texts ? data.texts.join('\n\n') : '';
    const tokens = data.ids ? Int32Array.from(data.ids.flat()) : undefined;
    // the run's threads for every forward and calibration pass of this model (checked once, by normalizeRunOptions)
    const lm: LanguageModel = await loadModel(m.dir, { tokenizer: calib.tokenizer ?? undefined, threads });
    const produced = new Map<string, QuantizedModule>();
    let calibration: CalibrationSummary;
    try {
      const seqLen = Math.min(calib.seqLen, lm.config.seqLen);
      const expectedPeakBytes = calibrationPeakBytes(lm, calib.samples, seqLen);
      ctx.report({ phase: 'calibrate', done: 0, total: lm.config.nLayers, module: `expected peak ${(expectedPeakBytes / 2 ** 20).toFixed(0)} MiB + weights` });
      const byName = new Map<string, LinearModule>();
      for (const mod of ctx.plan.values()) byName.set(mod.name, mod);
      const total = ctx.plan.size;
      let done = 0;
      const quantizeStage = async (layer: number, stats: InputStats, kinds: (typeof STAGES)[number]['kinds']) => {
        for (const kind of kinds) {
          const name = `model.layers.${layer}.${kind === 'q' || kind === 'k' || kind === 'v' || kind === 'o' ? 'self_attn' : 'mlp'}.${HF_KIND[kind]}`;
          const mod = byName.get(name);
          if (!mod) continue; // excluded, or kept in fp16 for its shape
          const t0 = performance.now();
          const W = lm._linearWeight(layer, kind);
          const hessian = stats.hessian;
          if (!hessian) throw new LowbitError('LOWBIT_INTERNAL', `${name}: no Hessian collected for ${stats.modules.join('/')}`);
          let r;
          try {
            r = await gptqLayerNormalized(W, hessian, {
              rows: mod.rows, cols: mod.cols, quantizer: q, actOrder: g.actOrder, staticGroups: g.staticGroups, dampPercent: g.dampPercent,
              dampMax: 1.0, blockSize: g.blockSize, signal, threads, onProgress: undefined,
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
          const tensors = await moduleTensors(cfg, mod, { ...r, groupSize: q.groupSize, gIdx: r.gIdx }, threads);
          const log: ModuleLog = {
            module: name, rows: mod.rows, cols: mod.cols, storage: packed ? 'packed' : 'dequant', bits: q.bits, groupSize: q.groupSize,
            stats: { mse: se / W.length, relError: sr > 0 ? Math.sqrt(se / sr) : 0, maxAbsError: me, sqnrDb: se > 0 ? 10 * Math.log10(sr / se) : Infinity },
            gptqLoss: r.loss, dampUsed: r.dampUsed, samples: stats.tokens, seconds: (performance.now() - t0) / 1000,
          };
          produced.set(name, { tensors, log });
          done++;
          ctx.report({ phase: 'gptq', layer, layers: lm.config.nLayers, done, total, module: `${name} loss ${r.loss.toExponential(3)}` });
        }
      };
      const res = await calibrateNormalized(lm, {
        text, tokens, dataSha256: data.sha256, samples: calib.samples, seqLen, seed: calib.seed, keepHessians: false, signal,
        onProgress: (p) => ctx.report({ ...p, phase: 'calibrate' }),
        onLayer: async (stats, tools) => {
          for (const [si, stage] of STAGES.entries()) {
            const s = si === 0 || !g.trueSequential ? stats[stage.input] : await tools.recollect(stage.input);
            await quantizeStage(stats.layer, s, stage.kinds);
            s.hessian = null;
          }
        },
      });
      calibration = { samples: res.samples, seqLen: res.seqLen, tokens: res.tokens, seed: res.seed, textSha256: res.textSha256, expectedPeakBytes, seconds: res.seconds,
        data: { kind: data.kind, records: data.records, bytes: data.bytes, sha256: data.sha256 } };
    } finally {
      lm.dispose();
    }
    return {
      calibration,
      quantizeModule(mod: LinearModule): Promise<QuantizedModule> {
        const r = produced.get(mod.name);
        if (!r) return Promise.reject(new LowbitError('LOWBIT_INTERNAL', `${mod.name}: GPTQ produced no data`));
        produced.delete(mod.name);
        return Promise.resolve(r);
      },
    };
  },
};
