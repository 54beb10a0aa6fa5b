/**
 * GPTQ over a whole model: the runtime runs calibration windows block by block
 * (lib/runtime/calibrate.ts); at each block, the linear layers are quantized with the GPTQ layer
 * op in GPTQ's true-sequential order — q/k/v (one shared Hessian), then o, then gate/up (shared),
 * then down — each stage's Hessian collected with the earlier stages already quantized. Quantized
 * weights are written back into the running block, so every later block sees the quantized
 * outputs of the blocks before it (GPTQ's error propagation).
 *
 * Memory is bounded by one block (issue 18): the model is read block by block from its mapped
 * source (runtime/stream-model.ts), and layers run lazily, as the writer asks for their modules,
 * so each finished layer's tensors are written before the next runs. Resident: one block's f32
 * weights, the activations (samples × seqLen × dim), one layer's Hessians, GPTQ's working set for
 * one linear layer and one layer's outputs — stated before the run (`expectedRunPeakBytes`).
 */
import { LowbitError } from '../errors';
import { LayerCalibrator, calibrationPeakBytes, type CalibrationModel, type InputStats, type LayerStats } from '../runtime/calibrate';
import { blockWeightBytes, openStreamingModel } from '../runtime/stream-model';
import { placeActivations } from '../runtime/activations';
import { gptqLayerNormalized } from '../ops/gptq';
import { moduleTensors, storesPacked } from './store';
import type { CalibrationSummary, MethodContext, MethodRun, ModuleLog, QuantMethod, QuantizedModule } from './method';
import type { LinearModule } from '../formats/hf-model';
import type { NormalizedCalibration } from '../config/calibration';
import { quantizerFor } from '../config/quantize';
import { calibrationTexts, readCalibrationFile, type CalibrationData } from '../formats/calib';
import type { ResumePart, ResumeState } from '../formats/resume';

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

/** How GPTQ opens the model it calibrates (the streaming model; a test swaps in the in-memory one). */
export type CalibrationModelOpener = (dir: string, opts: { tokenizer?: string; threads?: number; compute?: 'f32' | 'bf16' }) => Promise<CalibrationModel & { dispose(): void }>;

let openModel: CalibrationModelOpener = (dir, opts) => Promise.resolve(openStreamingModel(dir, opts));

/**
 * Calibrate through `open` instead of the block-by-block streaming model (the in-memory
 * `loadModel` path, for the test that requires both to give the same bytes); returns the previous
 * opener. @internal
 */
export function _setGptqModelOpener(open: CalibrationModelOpener): CalibrationModelOpener {
  const prev = openModel;
  openModel = open;
  return prev;
}

/**
 * GPTQ's working set for one (out × in) layer (native/quant/gptq.cpp, linalg.cpp): the weight's
 * working copy beside either the factorization (the factor, the reversed matrix being factored and
 * the triangular inverse's temporaries, about one more in × in) or the column sweep (the factor,
 * codes and dequantized values), plus the reused output buffers (dequantized f32 and codes).
 */
function gptqLayerBytes(out: number, inF: number): number {
  const oi = out * inF, ii = inF * inF;
  return Math.max(4 * oi + 12 * ii, 9 * oi + 4 * ii) + 5 * oi;
}

export const gptqMethod: QuantMethod = {
  name: 'gptq',
  needsCalibration: true,
  resumable: true,
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
    // one decoder block resident at a time (runtime/stream-model.ts); the run's threads for every pass
    const lm = await openModel(m.dir, { tokenizer: calib.tokenizer ?? undefined, threads, compute: calib.compute });
    const produced = new Map<string, QuantizedModule>();
    const byName = new Map<string, LinearModule>();
    for (const mod of ctx.plan.values()) byName.set(mod.name, mod);
    const c = lm.config;
    const seqLen = Math.min(calib.seqLen, c.seqLen);
    // the expected peak, every part, stated before any work (and recorded in quant_log.json)
    const qd = c.nHeads * c.headDim, kvd = c.nKvHeads * c.headDim;
    const blockBytes = blockWeightBytes(c);
    const gptqBytes = Math.max(...[[qd, c.dim], [kvd, c.dim], [c.dim, qd], [c.hiddenDim, c.dim], [c.dim, c.hiddenDim]].map(([o, i]) => gptqLayerBytes(o, i)));
    const outBytes = (blockBytes / 4) * (q.bits / 8) * 1.1; // one block's packed output waiting for the writer
    const rowFloats = seqLen * c.dim;
    const inMemory = placeActivations(calib.samples, rowFloats, Infinity);
    // everything but the activations, which may go to a spill file: with none of them resident
    const fixed = calibrationPeakBytes(lm, calib.samples, seqLen, { ...inMemory, memoryBytes: 0 }) + blockBytes + gptqBytes + outBytes;
    let placement = inMemory;
    if (fixed + inMemory.memoryBytes > ctx.maxMemory) {
      const budget = ctx.maxMemory - fixed;
      if (budget < rowFloats * 4) {
        lm.dispose();
        const g2 = (b: number) => (b / 2 ** 30).toFixed(2);
        throw new LowbitError('LOWBIT_RESOURCE',
          `quantize: GPTQ needs at least ${g2(fixed + rowFloats * 4)} GiB (one block ${g2(blockBytes)} GiB, Hessians and one window's temporaries ${g2(fixed - blockBytes - gptqBytes - outBytes)} GiB, ` +
          `GPTQ working set ${g2(gptqBytes)} GiB, outputs ${g2(outBytes)} GiB, one calibration window ${g2(rowFloats * 4)} GiB) but maxMemory is ${g2(ctx.maxMemory)} GiB`,
          { expectedPeakBytes: Math.round(fixed + rowFloats * 4), maxMemory: ctx.maxMemory });
      }
      placement = placeActivations(calib.samples, rowFloats, budget);
    }
    const expectedPeakBytes = calibrationPeakBytes(lm, calib.samples, seqLen, placement);
    const expectedRunPeakBytes = Math.round(fixed + placement.memoryBytes);
    ctx.report({
      phase: 'calibrate', done: 0, total: c.nLayers,
      module: `expected peak ${(expectedRunPeakBytes / 2 ** 30).toFixed(2)} GiB (one block resident${placement.spilled ? `; activations spilled to a file, ${placement.chunkSamples} windows in memory` : ''})`,
    });
    const total = ctx.plan.size;
    let done = 0;
    // one pair of output buffers for every layer's codes and dequantized weight (the largest module's size)
    let largest = 0;
    for (const mod of byName.values()) largest = Math.max(largest, mod.rows * mod.cols);
    const scratch = { dequant: new Float32Array(largest), codes: new Uint8Array(largest) };
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
            rows: mod.rows, cols: mod.cols, quantizer: quantizerFor(cfg, name), actOrder: g.actOrder, staticGroups: g.staticGroups, dampPercent: g.dampPercent,
            dampMax: 1.0, blockSize: g.blockSize, signal, threads, onProgress: undefined, scratch,
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
        const tensors = await moduleTensors(cfg, mod, { ...r, groupSize: quantizerFor(cfg, name).groupSize, gIdx: r.gIdx }, threads);
        const log: ModuleLog = {
          module: name, rows: mod.rows, cols: mod.cols, storage: packed ? 'packed' : 'dequant', bits: quantizerFor(cfg, name).bits, groupSize: quantizerFor(cfg, name).groupSize,
          stats: { mse: se / W.length, relError: sr > 0 ? Math.sqrt(se / sr) : 0, maxAbsError: me, sqnrDb: se > 0 ? 10 * Math.log10(sr / se) : Infinity },
          gptqLoss: r.loss, dampUsed: r.dampUsed, samples: stats.tokens, seconds: (performance.now() - t0) / 1000,
        };
        produced.set(name, { tensors, log });
        done++;
        ctx.report({ phase: 'gptq', layer, layers: c.nLayers, done, total, module: `${name} loss ${r.loss.toExponential(3)}` });
      }
    };
    const resume = ctx.resume;
    let resumed = 0;
    let cal: LayerCalibrator;
    try {
      cal = await LayerCalibrator.start(lm, {
        text, tokens, dataSha256: data.sha256, samples: calib.samples, seqLen, seed: calib.seed, keepHessians: false, signal,
        activationBudgetBytes: placement.spilled ? placement.memoryBytes : Infinity,
        // true-sequential GPTQ recollects o, gate/up and down after the stages before them: the
        // first pass needs only q/k/v's input (the others would be collected and thrown away)
        firstPassInputs: g.trueSequential ? ['attn'] : ['attn', 'o', 'mlp', 'down'],
        onProgress: (p) => ctx.report({ ...p, phase: 'calibrate' }),
        onLayer: async (stats, tools) => {
          for (const [si, stage] of STAGES.entries()) {
            const s = si === 0 || !g.trueSequential ? stats[stage.input] : await tools.recollect(stage.input);
            await quantizeStage(stats.layer, s, stage.kinds);
            s.hessian = null;
          }
        },
      });
    } catch (e) {
      lm.dispose();
      throw e;
    }
    try {
      // a killed run of the same inputs and options recorded its first layers: go on after them
      if (resume && resume.steps > 0) {
        resumed = resume.steps;
        const file = resume.attachment;
        if (file === null && resumed < c.nLayers) throw new LowbitError('LOWBIT_INTERNAL', 'gptq: resume state without its activations');
        await cal.resumeAt(resumed, file);
        ctx.report({ phase: 'resume', done: resumed, total: c.nLayers, module: `resumed after layer ${resumed - 1} from the staging directory of a killed run` });
      }
    } catch (e) {
      await cal.close().catch(() => undefined);
      lm.dispose();
      throw e;
    }
    const layers: LayerStats[] = [];
    const prefixOf = (layer: number) => `model.layers.${layer}.`;
    // Record a finished layer: its modules' tensors and logs, and the hidden states after it (the
    // next layer's input; none after the last), so that a killed run goes on from here.
    const record = async (layer: number) => {
      if (!resume) return;
      const parts: ResumePart[] = [];
      for (const [name, r] of produced) if (name.startsWith(prefixOf(layer))) parts.push({ name, meta: r.log, tensors: r.tensors });
      const last = layer === c.nLayers - 1;
      await resume.saveStep(layer, parts, last ? null : `activations-${layer}.f32`, last ? undefined : (f) => cal.saveActivations(f));
    };
    // Read a recorded layer's modules back.
    const restore = async (state: ResumeState, layer: number) => {
      for (const p of await state.loadStep(layer)) {
        const log = p.meta as ModuleLog;
        // (JSON has no Infinity: an exact layer's SQNR comes back as null)
        if (log.stats && (log.stats.sqnrDb as number | null) === null) log.stats.sqnrDb = Infinity;
        produced.set(p.name, { tensors: p.tensors, log });
        done++;
      }
    };
    const restored = new Set<number>();
    // Layers run in order, each once, when the writer first asks for one of their modules (it asks
    // layer by layer), so a finished layer's tensors are written while the next is still to run.
    let running: Promise<void> = Promise.resolve();
    const through = (layer: number): Promise<void> => {
      running = running.then(async () => {
        if (resume && layer < resumed) {
          if (!restored.has(layer)) {
            restored.add(layer);
            await restore(resume, layer);
          }
          return;
        }
        while (cal.layersDone <= layer) {
          const l = cal.layersDone;
          layers.push(await cal.step());
          await record(l);
        }
      });
      return running;
    };
    let closed = false;
    return {
      get calibration(): CalibrationSummary {
        const res = cal.summary(layers);
        return {
          samples: res.samples, seqLen: res.seqLen, tokens: res.tokens, seed: res.seed, textSha256: res.textSha256, expectedPeakBytes, expectedRunPeakBytes,
          activations: { totalBytes: placement.totalBytes, memoryBytes: placement.memoryBytes, spilled: placement.spilled, chunkSamples: placement.chunkSamples },
          layers: cal.layersDone, resumedLayers: resumed, seconds: res.seconds,
          data: { kind: data.kind, records: data.records, bytes: data.bytes, sha256: data.sha256 },
        };
      },
      async quantizeModule(mod: LinearModule): Promise<QuantizedModule> {
        const m = /^model\.layers\.(\d+)\./.exec(mod.name);
        if (!m) throw new LowbitError('LOWBIT_INTERNAL', `${mod.name}: GPTQ quantizes decoder-layer modules only`);
        await through(Number(m[1]));
        const r = produced.get(mod.name);
        if (!r) throw new LowbitError('LOWBIT_INTERNAL', `${mod.name}: GPTQ produced no data`);
        produced.delete(mod.name);
        return r;
      },
      async close(): Promise<void> {
        if (closed) return;
        closed = true;
        await running.catch(() => undefined);
        try {
          await cal.close();
        } finally {
          lm.dispose();
        }
      },
    };
  },
};
