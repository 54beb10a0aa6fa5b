/**
 * Quantization-aware training as LLM-QAT does it, on lowbit's training engine:
 *
 *   1. data: sequences the full-precision model generates itself (lib/train/synthetic.ts: a random
 *      first token, a greedy prefix, then sampled), or a file (JSONL token ids / text);
 *   2. teacher = the full-precision model; student = a copy whose forward fake-quantizes what the
 *      recipe says — every block linear's weights with the run's quantizer (lowbit's RTN: the same
 *      values the exported checkpoint holds), each linear input per token, K and V per token —
 *      with straight-through gradients (native/train/model.h);
 *   3. loss = KL(teacher ‖ student) over every position's full next-token distribution (the
 *      teacher's logits are recomputed each step by the engine's forward, not cached), AdamW with a
 *      cosine schedule after a linear warmup, gradient clipping;
 *   4. the trained weights are written as an F32 checkpoint and quantized with RTN at the recipe's
 *      settings into any checkpoint format (the recipe's activation and KV settings are stored for
 *      the runtime, as for every recipe), so the result runs in lowbit's runtime as it was trained.
 *
 * A run keeps its state in `.<out>.qat-work/` beside the output (the generated data, a checkpoint
 * every `checkpointEvery` steps); the same command after a kill or an abort resumes from the last
 * checkpoint and ends with the same bytes as a run that was not stopped (same thread count). The
 * work directory is removed when the output is committed; the data is kept in the output
 * (qat_data.jsonl, reusable as calibration data).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LowbitError, optionError } from '../errors';
import { invalidOption, checkSignal } from '../config/validate';
import { checkThreads, type Progress } from '../config/run';
import { normalizeQuantizeConfig, type QuantizeConfig } from '../config/quantize';
import { normalizeKv, normalizeActQuant, ACT_INPUTS } from '../config/runtime-quant';
import { normalizeQatOptions, type NormalizedQatOptions, type QatOptions } from '../config/qat';
import { readCalibrationFile } from '../formats/calib';
import { openSafetensors, writeSafetensors } from '../formats/safetensors';
import { readHfConfig, hfConfigToJson } from '../formats/hf-config';
import { openModel } from '../formats/hf-dir';
import { writeJsonAtomic } from '../formats/output';
import { createTrainerHandle } from '../ops/train';
import { hfRuntimeConfig, loadModel } from '../runtime/model';
import { Mulberry32 } from '../runtime/rng';
import { ParamSet, linearMask, trainShape, type TrainArch } from '../train/params';
import { Trainer } from '../train/trainer';
import { generateSyntheticData, readSyntheticMeta, writeSyntheticData, type SyntheticDataMeta } from '../train/synthetic';
import { planModules } from './plan';
import { quantize, type QuantizeResult } from './quantize';
import { stageQuantizeSource } from './source';

/** Run options of {@link qat}. */
export interface QatRunOptions {
  /** The output checkpoint directory. */
  out: string;
  overwrite?: boolean;
  /** A llama2.c tokenizer.bin for a source without its own tokenizer. */
  tokenizer?: string;
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** The command line, for the quant log. */
  command?: string;
}

/** What {@link qat} did. */
export interface QatResult {
  out: string;
  steps: number;
  /** Mean KL per token of each step (nats). */
  losses: number[];
  /** Where the data came from and how much. */
  data: { kind: 'synthetic' | 'file'; sequences: number; tokens: number; meta?: SyntheticDataMeta; file?: string };
  /** The step training resumed from (0: a fresh run). */
  resumedFrom: number;
  /** Training tokens per second (student forward + backward and the teacher's forward). */
  tokensPerSecond: number;
  trainSeconds: number;
  quantize: QuantizeResult;
  seconds: number;
}

const GPTQ_ONLY = ['actOrder', 'staticGroups', 'dampPercent', 'blockSize', 'trueSequential'] as const;

/**
 * Train `model` (any source lowbit reads) quantization-aware for the quantization `config` says
 * (a recipe, or RTN options: bits, groupSize, sym, format), then write the quantized checkpoint.
 */
export async function qat(model: string, config: QuantizeConfig, training: QatOptions, run: QatRunOptions): Promise<QatResult> {
  const t0 = performance.now();
  if (typeof model !== 'string' || !model) throw invalidOption('model', 'a path', model);
  if (typeof run.out !== 'string' || !run.out) throw invalidOption('out', 'an output directory path', run.out);
  const threads = checkThreads(run.threads);
  const signal = checkSignal(run.signal);
  if ('method' in config && config.method === 'gptq' && !('recipe' in config)) {
    throw optionError('method', 'method: QAT exports with RTN at the trained weights (the quantizer it trained with); leave method out or use rtn');
  }
  const gptqOnly = GPTQ_ONLY.find((k) => k in config);
  if (gptqOnly) throw optionError(gptqOnly, `${gptqOnly}: a GPTQ option; QAT exports with RTN at the trained weights`);
  const exportConfig = { ...config, method: 'rtn' } as QuantizeConfig;
  const cfg = normalizeQuantizeConfig(exportConfig);
  const t = normalizeQatOptions(training);
  if (cfg.ggufType) throw optionError('format', `format: ${cfg.format} is a GGUF file whose quantizer is llama.cpp's, not the one QAT trains with; use a checkpoint format (dequant, gptq, ct-*)`);
  if (cfg.transforms.length) throw optionError('transforms', 'transforms: QAT does not combine with rotate / smoothquant yet; train without them');
  if (cfg.overrides.length) throw optionError('recipe.modules', 'recipe.modules: QAT trains with one weight quantizer for every module; per-module settings are not supported yet');
  if (cfg.quantizer.perTensor) throw optionError('perTensor', 'perTensor: QAT trains per channel or per group');
  const recipe = cfg.recipe;
  const staged = await stageQuantizeSource(model, run.out, { allowRequantize: false, tokenizer: run.tokenizer ?? null, signal });
  try {
    const dir = staged.dir;
    const hc = readHfConfig(dir);
    const rc = hfRuntimeConfig(hc, dir);
    // the activation and KV settings the student trains with: what the runtime will apply
    let actBits = 0;
    if (recipe?.activations) {
      const a = normalizeActQuant(recipe.activations, rc.nLayers, 'recipe.activations');
      if (a.scheme !== 'dynamic' || a.inputs.length !== ACT_INPUTS.length) throw optionError('recipe.activations', 'recipe.activations: QAT trains dynamic per-token activations on every linear input (scheme "dynamic", all inputs)');
      actBits = a.bits;
    }
    let kv: { bits: 2 | 4 | 8; group: number; sym: boolean } | undefined;
    if (recipe?.kv) {
      const k = normalizeKv(recipe.kv, rc.headDim, rc.seqLen, 'recipe.kv');
      if (k.axis !== 'token' || k.rotate || k.window > 0) {
        throw optionError('recipe.kv', `recipe.kv: QAT trains the KV cache per token (axis "token", no rotate, no window); this recipe has ${k.axis !== 'token' ? 'K per channel' : k.rotate ? 'the Q/K rotation' : `a window of ${k.window}`}`);
      }
      kv = { bits: k.bits, group: k.group === 0 ? rc.headDim : k.group, sym: k.sym };
    }
    const seqLen = Math.min(t.seqLen, rc.seqLen);
    const st = openSafetensors(dir);
    let params: ParamSet;
    let arch: TrainArch;
    try {
      arch = {
        dim: rc.dim, hiddenDim: rc.hiddenDim, nLayers: rc.nLayers, nHeads: rc.nHeads, nKvHeads: rc.nKvHeads, headDim: rc.headDim, vocabSize: rc.vocabSize,
        rmsEps: rc.rmsEps, ropeTheta: rc.ropeTheta, rope: rc.rope, ...(rc.invFreq ? { invFreq: rc.invFreq } : {}),
        tied: !st.has('lm_head.weight'), biases: st.has('model.layers.0.self_attn.q_proj.bias'),
      };
      params = ParamSet.from(arch, (n) => (st.has(n) ? st.toFloat32(n).slice() : null), dir);
      for (const n of st.names()) if (!params.has(n)) throw new LowbitError('LOWBIT_UNSUPPORTED', `${dir}: ${n} is not part of a Llama model lowbit can train`, { tensor: n });
    } finally {
      st.close();
    }
    // the modules the export quantizes (a packed format keeps some in float): the student fake-quantizes exactly those
    const m = openModel(dir, { lmHead: cfg.lmHead });
    let mask: Uint8Array;
    try {
      const plan = planModules(m, cfg).modules;
      mask = linearMask(arch, (w) => plan.has(w));
    } finally {
      m.close();
    }
    // the work directory: resumable state of this exact run
    const outAbs = path.resolve(run.out);
    const work = path.join(path.dirname(outAbs), `.${path.basename(outAbs)}.qat-work`);
    const identity = createHash('sha256').update(JSON.stringify({ model: path.resolve(model), cfg: { ...cfg, recipe: cfg.recipe }, t, seqLen })).digest('hex');
    const idFile = path.join(work, 'run.json');
    if (fs.existsSync(work) && (!fs.existsSync(idFile) || (JSON.parse(fs.readFileSync(idFile, 'utf8')) as { identity?: string }).identity !== identity)) fs.rmSync(work, { recursive: true, force: true });
    fs.mkdirSync(work, { recursive: true });
    await writeJsonAtomic(idFile, { identity, model, created: new Date().toISOString() });
    // the data
    const teacherModel = await loadModel(dir, { threads, kv: null, actQuant: null, ...(!staged.tokenizer && run.tokenizer ? { tokenizer: run.tokenizer } : {}) });
    let sequences: Int32Array[];
    let dataInfo: QatResult['data'];
    try {
      ({ sequences, dataInfo } = await trainingData(t, teacherModel, work, seqLen, signal, run.onProgress));
    } finally {
      teacherModel.dispose();
    }
    // teacher and student
    const teacherGrads = params.zerosLike();
    const teacher = createTrainerHandle(trainShape(arch), params.nativeTensors(), teacherGrads.nativeTensors());
    const ckpt = path.join(work, 'checkpoint');
    let student: Trainer;
    let rng: Mulberry32;
    let losses: number[] = [];
    if (fs.existsSync(path.join(ckpt, 'train_state.safetensors'))) {
      const r = Trainer.loadCheckpoint(ckpt, threads);
      student = r.trainer;
      rng = Mulberry32.fromState(r.extra.rng as number);
      losses = r.extra.losses as number[];
    } else {
      student = new Trainer(new ParamSet(arch, params.data.slice()), { lr: t.lr, warmupSteps: t.warmupSteps, steps: t.steps, weightDecay: t.weightDecay, gradClip: t.gradClip }, threads,
        { weights: cfg.quantizer, weightsMask: mask, ...(actBits ? { actBits } : {}), ...(kv ? { kv } : {}) });
      rng = new Mulberry32(t.seed ^ 0x5eed);
    }
    const resumedFrom = student.step;
    const tTrain = performance.now();
    let trainedTokens = 0;
    try {
      const V = arch.vocabSize, B = t.batch, N = B * seqLen;
      const tokens = new Int32Array(N), logits = new Float32Array(N * V), none = new Int32Array(N).fill(-1);
      while (student.step < t.steps) {
        for (let b = 0; b < B; b++) {
          const s = sequences[Math.floor(rng.next() * sequences.length)];
          const o = Math.floor(rng.next() * (s.length - seqLen + 1));
          tokens.set(s.subarray(o, o + seqLen), b * seqLen);
        }
        await teacher.run({ tokens, batch: B, seqLen, targets: none, scale: 1, backward: false, logits }, { threads, signal });  // (no targets: logits only)
        const r = await student.trainStep([{ tokens, batch: B, seqLen, teacher: logits }], signal);
        losses.push(r.loss);
        trainedTokens += N;
        run.onProgress?.({ phase: 'qat', done: r.step, total: t.steps, loss: r.loss });
        if (t.checkpointEvery > 0 && r.step % t.checkpointEvery === 0 && r.step < t.steps) await student.saveCheckpoint(ckpt, { rng: rng.state, losses });
      }
    } finally {
      teacher.dispose();
    }
    const trainSeconds = (performance.now() - tTrain) / 1000;
    // the trained weights as an F32 checkpoint, then RTN at the run's settings into the output
    const trained = path.join(work, 'trained');
    fs.rmSync(trained, { recursive: true, force: true });
    fs.mkdirSync(trained, { recursive: true });
    const sp = student.params;
    await writeSafetensors(trained, sp.entries.map((e) => ({ name: e.name, dtype: 'F32' as const, shape: e.shape, data: () => { const v = sp.view(e.name); return new Uint8Array(v.buffer, v.byteOffset, v.byteLength); } })), { signal });
    student.dispose();
    const cj = hfConfigToJson(hc);
    cj.torch_dtype = 'float32';
    await writeJsonAtomic(path.join(trained, 'config.json'), cj);
    for (const f of fs.readdirSync(dir)) if (/^(tokenizer.*|special_tokens_map\.json|generation_config\.json)$/.test(f)) fs.copyFileSync(path.join(dir, f), path.join(trained, f));
    const q = await quantize(trained, exportConfig, {
      out: run.out, ...(run.overwrite ? { overwrite: true } : {}), ...(threads !== undefined ? { threads } : {}), signal,
      ...(!staged.tokenizer && run.tokenizer ? { tokenizer: run.tokenizer } : {}), ...(run.command ? { command: run.command } : {}),
    });
    // the data beside the checkpoint, and the training in its quant log
    if (dataInfo.kind === 'synthetic') {
      fs.copyFileSync(path.join(work, 'synthetic.jsonl'), path.join(q.out, 'qat_data.jsonl'));
      fs.copyFileSync(path.join(work, 'synthetic.jsonl.meta.json'), path.join(q.out, 'qat_data.jsonl.meta.json'));
    }
    const logFile = path.join(q.out, 'quant_log.json');
    const log = JSON.parse(fs.readFileSync(logFile, 'utf8')) as Record<string, unknown>;
    const tokensPerSecond = trainedTokens / Math.max(1e-9, trainSeconds);
    log.qat = {
      method: 'LLM-QAT (KL to the full-precision teacher, straight-through fake quantization)', source: model, training: t, seqLen, data: dataInfo, resumedFrom,
      quantized: { weights: cfg.quantizer, weightModules: mask.reduce((a, b) => a + b, 0), activationBits: actBits || null, kv: kv ?? null },
      losses, trainSeconds, tokensPerSecond,
    };
    await writeJsonAtomic(logFile, log);
    fs.rmSync(work, { recursive: true, force: true });
    return { out: q.out, steps: t.steps, losses, data: dataInfo, resumedFrom, tokensPerSecond, trainSeconds, quantize: q, seconds: (performance.now() - t0) / 1000 };
  } finally {
    staged.cleanup();
  }
}

/** The run's sequences: generated (or read back from the work directory), or read from the file. */
async function trainingData(t: NormalizedQatOptions, teacher: Awaited<ReturnType<typeof loadModel>>, work: string, seqLen: number, signal: AbortSignal | undefined,
  onProgress: QatRunOptions['onProgress']): Promise<{ sequences: Int32Array[]; dataInfo: QatResult['data'] }> {
  if (t.data.kind === 'synthetic') {
    const file = path.join(work, 'synthetic.jsonl');
    let sequences: Int32Array[];
    let meta = readSyntheticMeta(file);
    if (meta && fs.existsSync(file)) {
      const d = readCalibrationFile(file);
      sequences = (d.ids ?? []).map((r) => Int32Array.from(r));
    } else {
      const g = await generateSyntheticData(teacher, { count: t.data.count, seqLen, seed: t.seed, temperature: t.data.temperature, topK: t.data.topK, signal, onProgress });
      await writeSyntheticData(file, g.sequences, g.meta);
      sequences = g.sequences;
      meta = g.meta;
    }
    return { sequences, dataInfo: { kind: 'synthetic', sequences: sequences.length, tokens: sequences.reduce((s, x) => s + x.length, 0), meta } };
  }
  const d = readCalibrationFile(t.data.file);
  let sequences: Int32Array[];
  if (d.ids) {
    for (const r of d.ids) for (const id of r) if (id < 0 || id >= teacher.config.vocabSize) throw optionError('data', `data: token id ${id} in ${t.data.file} is outside the model's vocabulary (${teacher.config.vocabSize})`);
    sequences = d.ids.filter((r) => r.length >= seqLen).map((r) => Int32Array.from(r));
  } else {
    const tok = teacher.tokenizer;
    if (!tok) throw optionError('tokenizer', `${teacher.source}: text data needs a tokenizer (pass tokenizer, --tokenizer FILE)`);
    sequences = [Int32Array.from(tok.encode((d.texts ?? []).join('\n\n'), { bos: false }))].filter((s) => s.length >= seqLen);
  }
  if (sequences.length === 0) throw optionError('data', `data: ${t.data.file} holds no sequence of ${seqLen} tokens (lower seqLen or give more data)`);
  return { sequences, dataInfo: { kind: 'file', file: path.resolve(t.data.file), sequences: sequences.length, tokens: sequences.reduce((s, x) => s + x.length, 0) } };
}
