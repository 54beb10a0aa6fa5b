/**
 * Static activation scales measured on calibration text: for every decoder layer and each input of
 * its linear modules (ACT_INPUTS: q/k/v, o, gate/up, down), one per-tensor symmetric scale
 *
 *   scale = m / (2^(bits−1) − 1),   m = max |x| over every calibration token and channel
 *                                       (or, with `percentile` p, the p-th percentile of the
 *                                        per-channel maxima max_t |x[t, c]|)
 *
 * so that x / scale, rounded, fits the signed codes [−qmax, qmax]. What `loadModel(file, {actQuant:
 * {scheme: 'static', scales}})` takes.
 *
 * The |x| come from the calibration driver (runtime/calibrate.ts), which runs the windows block by
 * block and has the native observer record each input's per-channel max |x| (no separate pass).
 * The observer keeps per-channel maxima, not every value, so a percentile is taken over channels:
 * p = 100 is the plain maximum, a lower p clips the few outlier channels LLM activations have.
 */
import { LowbitError, optionError } from '../errors';
import { checkInt, checkKnownKeys, checkNumber, checkObject, checkSignal, invalidOption } from '../config/validate';
import { ACT_INPUTS } from '../config/runtime-quant';
import { calibrateNormalized } from './calibrate';
import type { LanguageModel } from './model';

/** Options of {@link measureActScales}. */
export interface MeasureActScalesOptions {
  /** Bits the scales are for (symmetric codes, qmax = 2^(bits−1) − 1): 2–8, as `actQuant.bits`. */
  bits: number;
  /** Calibration windows, sampled from the text as GPTQ samples them. @default 128 */
  samples?: number;
  /** Tokens per window (capped at the model's context). @default 2048 */
  seqLen?: number;
  /** Seed of the window sampler. @default 0 */
  seed?: number;
  /**
   * Clip at this percentile (0 < p ≤ 100, linear interpolation) of the input's per-channel maxima of
   * |x| instead of the largest. @default 100 (the maximum)
   */
  percentile?: number;
  signal?: AbortSignal;
}

const KEYS = ['bits', 'samples', 'seqLen', 'seed', 'percentile', 'signal'] as const;
/** The calibration driver's name for each input, in ACT_INPUTS order. */
const STATS_KEY = { qkv: 'attn', o: 'o', gate_up: 'mlp', down: 'down' } as const;

/** The p-th percentile (0 < p ≤ 100) of `values`, interpolated linearly between the sorted neighbours. */
function percentileOf(values: Float32Array, p: number): number {
  const sorted = Float64Array.from(values).sort();
  const at = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(at), hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (at - lo) * (sorted[hi] - sorted[lo]);
}

/**
 * Measure the static activation scales of `model` on calibration text: nLayers × 4 values, in
 * ACT_INPUTS order (qkv, o, gate_up, down) per layer, for `loadModel`'s `actQuant.scales`.
 *
 * `text`: the calibration text, or several texts (joined with a blank line, as GPTQ joins records).
 * The model runs as loaded: measure on a model loaded without `actQuant`, so every layer sees the
 * inputs of the full-precision model (a KV cache setting does not matter here: calibration runs
 * each window's attention in full precision).
 */
export async function measureActScales(model: LanguageModel, text: string | string[], opts: MeasureActScalesOptions): Promise<Float32Array> {
  checkObject('options', opts, 'an object {bits, samples, seqLen, seed, percentile, signal}');
  checkKnownKeys('options', opts, KEYS);
  let joined: string;
  if (typeof text === 'string') joined = text;
  else if (Array.isArray(text) && text.length > 0 && text.every((t) => typeof t === 'string')) joined = text.join('\n\n');
  else throw invalidOption('text', 'a string or a non-empty array of strings', text);
  const bits = checkInt('bits', opts.bits, 2, 8);
  const percentile = opts.percentile === undefined ? 100 : checkNumber('percentile', opts.percentile, 0, 100);
  if (percentile === 0) throw optionError('percentile', 'percentile: 0 clips every value (expected 0 < percentile ≤ 100)');
  const signal = checkSignal(opts.signal);
  // checked here as well as in the native tasks: a short task may finish before it sees the flag
  const aborted = () => new LowbitError('LOWBIT_ABORTED', 'measureActScales: aborted by signal', undefined, { cause: signal?.reason });
  if (signal?.aborted) throw aborted();
  const cal = await calibrateNormalized(model, {
    text: joined,
    samples: checkInt('samples', opts.samples ?? 128, 1, 1e6),
    seqLen: Math.min(checkInt('seqLen', opts.seqLen ?? 2048, 2, 1 << 24), model.config.seqLen),
    seed: checkInt('seed', opts.seed ?? 0, 0, 2 ** 32 - 1),
    keepHessians: false,
    activationBudgetBytes: Infinity,
    onLayer: undefined,
    signal,
    onProgress: undefined,
  });
  if (signal?.aborted) throw aborted();
  const qmax = 2 ** (bits - 1) - 1;
  const scales = new Float32Array(model.config.nLayers * ACT_INPUTS.length);
  for (const ls of cal.layers) {
    ACT_INPUTS.forEach((input, j) => {
      const maxAbs = ls[STATS_KEY[input]].maxAbs;
      let m = 0;
      if (percentile === 100) for (const v of maxAbs) m = Math.max(m, v);
      else m = percentileOf(maxAbs, percentile);
      if (!(m > 0) || !Number.isFinite(m)) {
        throw new LowbitError('LOWBIT_NUMERICAL', `${model.source}: layer ${ls.layer} ${input}: max |x| on the calibration text is ${m} (no usable scale)`, { layer: ls.layer, input });
      }
      scales[ls.layer * ACT_INPUTS.length + j] = m / qmax;
    });
  }
  return scales;
}
