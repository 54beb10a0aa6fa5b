/**
 * Streaming evaluation (no logit files): perplexity by the protocol of
 * ../shared/fixtures/text/README.md — encode the whole text once (no BOS), cut it into
 * non-overlapping chunks of ctx − 1 tokens (a shorter last one is dropped), score each as
 * BOS + chunk from a fresh cache, predicting every chunk token; ppl = exp(mean NLL).
 * With a reference model, on the same windows and side by side: mean KL(reference ‖ model) of
 * the next-token distributions and the top-1 agreement rate.
 */
import { LowbitError, optionError } from '../errors';
import { checkInt, checkSignal, invalidOption } from '../config/validate';
import type { LanguageModel } from './model';
import type { Progress } from '../config/run';

/**
 * Options of {@link evaluate}. There is no `threads` here: evaluation runs the model's (and the
 * reference's) forward passes, which use the `threads` each was loaded with (`loadModel(file, {threads})`;
 * default: the process default).
 */
export interface EvaluateOptions {
  /** The text to score (UTF-8). */
  text: string;
  /** Window length in tokens, BOS included. @default min(512, the model's context) */
  ctx?: number;
  /** Score only the first N chunks. @default all */
  maxChunks?: number;
  /** The unquantized model to compare against (KL divergence, top-1 agreement). */
  reference?: LanguageModel;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

/** What {@link evaluate} returns. */
export interface EvaluateResult {
  ppl: number;
  /** Mean negative log-likelihood, nats per token. */
  nll: number;
  /** Predicted tokens. */
  tokens: number;
  chunks: number;
  ctx: number;
  /** Mean KL(reference ‖ model), nats per token (with a reference). */
  kl: number | null;
  /** Fraction of positions where both models' argmax agree (with a reference). */
  top1: number | null;
  /** Reference perplexity on the same windows (with a reference). */
  referencePpl: number | null;
  seconds: number;
  tokensPerSecond: number;
}

function logSoftmaxInto(row: Float32Array, off: number, n: number, out: Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (row[off + i] > max) max = row[off + i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(row[off + i] - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < n; i++) out[i] = row[off + i] - lse;
}

/** Perplexity (and KL / top-1 against a reference) of `model` on a text, on the threads `model` was loaded with. */
export async function evaluate(model: LanguageModel, opts: EvaluateOptions): Promise<EvaluateResult> {
  const t0 = performance.now();
  const tok = model.tokenizer;
  if (!tok) throw optionError('tokenizer', `${model.source}: evaluation needs a tokenizer`);
  if (typeof opts.text !== 'string') throw invalidOption('text', 'a string', opts.text);
  const signal = checkSignal(opts.signal);
  const ctx = opts.ctx ?? Math.min(512, model.config.seqLen);
  checkInt('ctx', ctx, 2, 1 << 24);
  if (ctx > model.config.seqLen) throw optionError('ctx', `ctx: ${ctx} exceeds the model's context of ${model.config.seqLen} tokens`);
  const ref = opts.reference;
  if (ref) {
    if (ref.config.vocabSize !== model.config.vocabSize) throw new LowbitError('LOWBIT_SHAPE_MISMATCH', `reference: vocabulary ${ref.config.vocabSize} differs from the model's ${model.config.vocabSize}`);
    if (ctx > ref.config.seqLen) throw optionError('ctx', `ctx: ${ctx} exceeds the reference model's context of ${ref.config.seqLen}`);
  }
  if (opts.text.length === 0) throw optionError('text', 'text: the text is empty');
  const ids = tok.encode(opts.text, { bos: false });
  const span = ctx - 1;
  let chunks = Math.floor(ids.length / span);
  if (chunks === 0) throw optionError('text', `text: ${ids.length} tokens is shorter than one window of ${span} tokens (ctx ${ctx})`);
  if (opts.maxChunks !== undefined) chunks = Math.min(chunks, checkInt('maxChunks', opts.maxChunks, 1, 1e9));
  const V = model.config.vocabSize;
  const bos = tok.bosId;
  const lp = new Float64Array(V), lq = new Float64Array(V);
  let nll = 0, refNll = 0, kl = 0, agree = 0, count = 0;
  for (let c = 0; c < chunks; c++) {
    const window = new Int32Array(ctx);
    window[0] = bos;
    for (let j = 0; j < span; j++) window[j + 1] = ids[c * span + j];
    const [logits, refLogits] = await Promise.all([model.forward(window, 0, ctx, signal), ref ? ref.forward(window, 0, ctx, signal) : null]);
    for (let j = 0; j < span; j++) {
      const target = window[j + 1];
      logSoftmaxInto(logits, j * V, V, lq);
      nll -= lq[target];
      if (refLogits) {
        logSoftmaxInto(refLogits, j * V, V, lp);
        refNll -= lp[target];
        let k = 0, am = 0, ar = 0;
        for (let i = 0; i < V; i++) {
          const p = Math.exp(lp[i]);
          if (p > 0) k += p * (lp[i] - lq[i]);
          if (lq[i] > lq[am]) am = i;
          if (lp[i] > lp[ar]) ar = i;
        }
        kl += k;
        if (am === ar) agree++;
      }
      count++;
    }
    try { opts.onProgress?.({ phase: 'evaluate', done: c + 1, total: chunks }); } catch { /* ignore */ }
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    ppl: Math.exp(nll / count), nll: nll / count, tokens: count, chunks, ctx,
    kl: ref ? kl / count : null, top1: ref ? agree / count : null, referencePpl: ref ? Math.exp(refNll / count) : null,
    seconds, tokensPerSecond: (chunks * ctx * (ref ? 2 : 1)) / seconds,
  };
}
