/**
 * The native runtime: prefill (one batched forward of many tokens) and decode (one token per
 * forward) in tokens/s, on the real stories260K model and on a synthetic TinyLlama-1.1B-shaped
 * checkpoint (random F16 weights, f32 in memory). Decode of the 1.1B model is memory-bound: its
 * effective weight bandwidth is reported beside a DRAM copy measured just before and after.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { packageRoot } from '../../lib/native';
import { loadModel, type LanguageModel, type RuntimeConfig } from '../../lib';
import { ensureCheckpoint } from './checkpoint';
import { copySamples } from './limits';
import type { Limits } from './limits';
import { log, median, round, settle } from './timing';

export const RUNTIME_PEER_REASON =
  'no peer runtime is installed in this project: node-llama-cpp (llama.cpp for Node) is not a dependency yet; issue #6 will add ' +
  'it as the peer for prefill and decode. OpenBLAS (the GEMM peer) is a kernel, not a model runtime';

export interface ThreadRun {
  threads: number;
  runs: number;
  seconds: number[];
  medianSeconds: number;
  minSeconds: number;
  tokensPerSecond: number;
  tokensPerSecondBest: number;
}

export interface RuntimeEntry {
  name: string;
  description: string;
  model: { source: string; preset?: string; parameters: number; linearParameters: number; config: RuntimeConfig };
  phase: 'prefill' | 'decode';
  /** Tokens timed per run. */
  tokens: number;
  /** Positions of the timed tokens (first … last). */
  positions: [number, number];
  threads: number;
  warmup: string;
  runs: number;
  seconds: number[];
  medianSeconds: number;
  minSeconds: number;
  unit: 'tokens/s';
  /** tokens / medianSeconds. */
  tokensPerSecond: number;
  tokensPerSecondBest: number;
  /** The same at other thread counts, runs interleaved with the headline's. */
  byThreads?: ThreadRun[];
  /** Decode only: median seconds of one single-token forward (over every run at the headline thread count). */
  perTokenMedianSeconds?: number;
  /** Decode of the 1.1B model: the fastest single-token forward. */
  perTokenMinSeconds?: number;
  /** Decode of the 1.1B model: f32 weight bytes read per token over the time per token. */
  weightBandwidth?: {
    bytesPerToken: number;
    /** Seconds of the decode loop / tokens (mean time per token). */
    secondsPerToken: number;
    gbps: number;
    /** DRAM copy (256 MiB, STREAM convention 2·bytes/s), just before and just after the decode. */
    copyBeforeGBps: number;
    copyAfterGBps: number;
    /** gbps / mean(copyBefore, copyAfter): read-only weight traffic over the copy's read+write traffic. */
    fractionOfCopy: number;
    /** limits.copy.gbps of this run, for reference. */
    limitsCopyGBps: number;
  };
  load?: { seconds: number; rssBytes: number };
  peer: null;
  peerReason: string;
}

/** Deterministic token ids in [lo, hi). */
function tokenIds(n: number, hi: number, seed: number, lo = 3): Int32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const t = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    t[i] = lo + (s % (hi - lo));
  }
  return t;
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Parameters of the linear layers (q, k, v, o, gate, up, down over all layers) and of the classifier. */
function parameterCounts(c: RuntimeConfig): { linear: number; classifier: number; embed: number } {
  const qd = c.nHeads * c.headDim;
  const kvd = c.nKvHeads * c.headDim;
  const perLayer = qd * c.dim * 2 + kvd * c.dim * 2 + 3 * c.hiddenDim * c.dim;
  return { linear: perLayer * c.nLayers, classifier: c.vocabSize * c.dim, embed: c.vocabSize * c.dim };
}

/** One timed prefill: `tokens` at positions 0 … n−1, logits of the last position only. */
async function prefill(model: LanguageModel, tokens: Int32Array): Promise<{ seconds: number; logits: Float32Array }> {
  await settle();
  const t0 = performance.now();
  const logits = await model.forward(tokens, 0, 1);
  return { seconds: (performance.now() - t0) / 1000, logits };
}

/**
 * One timed decode: `steps` single-token forwards at positions pos0 … pos0+steps−1, each token
 * the greedy argmax of the previous logits (sampling cost: one argmax in JS).
 */
async function decode(model: LanguageModel, first: number, pos0: number, steps: number): Promise<{ seconds: number; perToken: number[] }> {
  await settle();
  const perToken: number[] = [];
  let token = first;
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    const t1 = performance.now();
    const logits = await model.forward(Int32Array.of(token), pos0 + i, 1);
    token = argmax(logits);
    perToken.push((performance.now() - t1) / 1000);
  }
  return { seconds: (performance.now() - t0) / 1000, perToken };
}

/** The samples kept for one thread count (the maps in benchStories hold every count of its threadList). */
function samplesAt<T>(m: Map<number, T[]>, threads: number): T[] {
  const s = m.get(threads);
  if (!s) throw new Error(`no samples kept for ${threads} thread(s)`);
  return s;
}

function threadRun(threads: number, tokens: number, seconds: number[]): ThreadRun {
  const med = median(seconds);
  const min = Math.min(...seconds);
  return {
    threads, runs: seconds.length, seconds: seconds.map((s) => round(s, 5)), medianSeconds: round(med, 5), minSeconds: round(min, 5),
    tokensPerSecond: round(tokens / med), tokensPerSecondBest: round(tokens / min),
  };
}

export interface RuntimeOpts {
  quick: boolean;
  threads: number;
  limits: Limits;
  want: (name: string) => boolean;
}

const STORIES_PREFILL = 512;
const STORIES_DECODE = 128;

/** stories260K (llama2.c), threads 1 and 2 (and the run's count) interleaved, median of 3 runs each. */
async function benchStories(o: RuntimeOpts): Promise<RuntimeEntry[] | { skipped: string }> {
  const dir = path.resolve(packageRoot(), '..', 'shared', 'fixtures', 'stories260K');
  const bin = path.join(dir, 'stories260K.bin');
  const tok = path.join(dir, 'tok512.bin');
  for (const f of [bin, tok]) if (!fs.existsSync(f)) return { skipped: `${f} is absent (the shared stories260K fixture)` };
  // One instance per thread count (loadModel's per-call threads: the process default is never
  // swapped); stories260K is 1 MB, so the extra instances cost nothing worth measuring.
  const threadList = [...new Set([1, 2, o.threads])].sort((a, b) => a - b);
  const models = new Map<number, LanguageModel>();
  const at = (t: number): LanguageModel => {
    const m = models.get(t);
    if (!m) throw new Error(`no model loaded for ${t} thread(s)`);
    return m;
  };
  try {
    for (const t of threadList) models.set(t, await loadModel(bin, { tokenizer: tok, threads: t }));
    const c = at(o.threads).config;
    const counts = parameterCounts(c);
    const prefillTokens = Math.min(STORIES_PREFILL, c.seqLen);
    const decodeSteps = Math.min(STORIES_DECODE, c.seqLen - 1);
    const ids = tokenIds(prefillTokens, c.vocabSize, 11);
    ids[0] = 1; // BOS
    const runs = 3;
    const pre = new Map<number, number[]>(threadList.map((t) => [t, []]));
    const dec = new Map<number, number[]>(threadList.map((t) => [t, []]));
    const perTok = new Map<number, number[][]>(threadList.map((t) => [t, []]));
    // Warmup at each thread count: one prefill, one short decode.
    for (const t of threadList) {
      const model = at(t);
      await model.forward(ids, 0, 1);
      await model.forward(Int32Array.of(1), 0, 1);
      await decode(model, 1, 1, 8);
    }
    for (let r = 0; r < runs; r++) {
      for (const t of threadList) {
        log(`runtime-stories260k: ${t} thread(s), run ${r + 1}/${runs}: prefill ${prefillTokens}, decode ${decodeSteps}`);
        const model = at(t);
        samplesAt(pre, t).push((await prefill(model, ids)).seconds);
        // Decode: a 1-token prompt (untimed), then decodeSteps tokens at positions 1 … decodeSteps.
        const p = await model.forward(Int32Array.of(1), 0, 1);
        const d = await decode(model, argmax(p), 1, decodeSteps);
        samplesAt(dec, t).push(d.seconds);
        samplesAt(perTok, t).push(d.perToken);
      }
    }
    const modelInfo = { source: 'stories260K.bin (llama2.c, shared fixture) with tok512.bin', parameters: counts.linear + counts.embed + (c.nLayers * 2 + 1) * c.dim, linearParameters: counts.linear, config: c };
    const mk = (phase: 'prefill' | 'decode', tokens: number, positions: [number, number], m: Map<number, number[]>, description: string, warmup: string): RuntimeEntry => {
      const head = threadRun(o.threads, tokens, samplesAt(m, o.threads));
      const perTokenMedianSeconds = phase === 'decode' ? round(median(samplesAt(perTok, o.threads).flat()), 4) : undefined;
      return {
        name: `runtime-stories260k-${phase}`, description, model: modelInfo, phase, tokens, positions, threads: o.threads, warmup, runs: head.runs,
        seconds: head.seconds, medianSeconds: head.medianSeconds, minSeconds: head.minSeconds, unit: 'tokens/s',
        tokensPerSecond: head.tokensPerSecond, tokensPerSecondBest: head.tokensPerSecondBest,
        byThreads: threadList.map((t) => threadRun(t, tokens, samplesAt(m, t))),
        ...(perTokenMedianSeconds !== undefined ? { perTokenMedianSeconds } : {}),
        peer: null, peerReason: RUNTIME_PEER_REASON,
      };
    };
    return [
      mk('prefill', prefillTokens, [0, prefillTokens - 1], pre,
        `model.forward(Int32Array of ${prefillTokens} token ids, 0, 1) on stories260K (dim ${c.dim}, ${c.nLayers} layers, vocab ${c.vocabSize}, ` +
        'f32): one batched forward, logits of the last position only; tokens/s = tokens / seconds; median of 3 runs per thread count, ' +
        'thread counts interleaved', 'one prefill and one 8-token decode per thread count'),
      mk('decode', decodeSteps, [1, decodeSteps], dec,
        `after a 1-token prompt (BOS, untimed), ${decodeSteps} single-token model.forward calls at positions 1 … ${decodeSteps}, each token the ` +
        'greedy argmax of the previous logits (JS); tokens/s = tokens / seconds of the loop; median of 3 runs per thread count, interleaved',
        'one prefill and one 8-token decode per thread count'),
    ];
  } finally {
    for (const m of models.values()) m.dispose();
  }
}

/** The synthetic TinyLlama-1.1B checkpoint (or 'demo' with --quick), loaded once, then disposed. */
async function benchLarge(o: RuntimeOpts): Promise<RuntimeEntry[]> {
  const preset = o.quick ? 'demo' : 'tinyllama-1.1b';
  const { dir } = await ensureCheckpoint(preset);
  log(`runtime-1b (${preset}): loadModel(dir, {maxContext: 1024}) (f32 weights in memory)`);
  await settle();
  const tl = performance.now();
  let model: LanguageModel | null = await loadModel(dir, { maxContext: 1024, threads: o.threads });
  const load = { seconds: round((performance.now() - tl) / 1000), rssBytes: process.memoryUsage().rss };
  try {
    const c = model.config;
    const counts = parameterCounts(c);
    const decodeSteps = o.quick ? 16 : 32;
    const prefillTokens = Math.min(o.quick ? 128 : 512, c.seqLen - decodeSteps);
    const ids = tokenIds(prefillTokens, Math.min(32000, c.vocabSize), 23);
    ids[0] = 1;
    const runs = o.quick ? 2 : 3;
    log(`runtime-1b (${preset}): warmup forward of 16 tokens`);
    await model.forward(ids.subarray(0, 16), 0, 1);
    const pre: number[] = [];
    let logits: Float32Array = new Float32Array(0);
    for (let r = 0; r < runs; r++) {
      log(`runtime-1b-prefill (${preset}): ${prefillTokens} tokens, run ${r + 1}/${runs}`);
      const p = await prefill(model, ids);
      pre.push(p.seconds);
      logits = p.logits;
    }
    const MiB = 1024 * 1024;
    const copyNow = async () => (2 * 256 * MiB) / median(await copySamples(256 * MiB, 3, o.threads)) / 1e9;
    await settle();
    const copyBefore = await copyNow();
    log(`runtime-1b-decode (${preset}): ${decodeSteps} tokens at positions ${prefillTokens} … ${prefillTokens + decodeSteps - 1}`);
    const d = await decode(model, argmax(logits), prefillTokens, decodeSteps);
    await settle();
    const copyAfter = await copyNow();
    const bytesPerToken = 4 * (counts.linear + counts.classifier);
    const secPerToken = d.seconds / decodeSteps;
    const wbw = bytesPerToken / secPerToken / 1e9;
    const modelInfo = {
      source: `synthetic HF checkpoint ${dir} (writeSyntheticModel, F16 on disk, f32 in memory)`, preset,
      parameters: counts.linear + counts.classifier + counts.embed + (c.nLayers * 2 + 1) * c.dim, linearParameters: counts.linear, config: c,
    };
    const head = threadRun(o.threads, prefillTokens, pre);
    return [
      {
        name: 'runtime-1b-prefill',
        description: `model.forward(Int32Array of ${prefillTokens} random ids < ${Math.min(32000, c.vocabSize)}, 0, 1) on a synthetic ${preset}-shaped model ` +
          `(dim ${c.dim}, FFN ${c.hiddenDim}, ${c.nLayers} layers, ${c.nHeads}/${c.nKvHeads} heads, vocab ${c.vocabSize}; f32 weights), ` +
          `loaded once with loadModel(dir, {maxContext: 1024}); median of ${runs} runs`,
        model: modelInfo, phase: 'prefill', tokens: prefillTokens, positions: [0, prefillTokens - 1], threads: o.threads,
        warmup: 'one 16-token forward', runs, seconds: head.seconds, medianSeconds: head.medianSeconds, minSeconds: head.minSeconds,
        unit: 'tokens/s', tokensPerSecond: head.tokensPerSecond, tokensPerSecondBest: head.tokensPerSecondBest, load,
        peer: null, peerReason: RUNTIME_PEER_REASON,
      },
      {
        name: 'runtime-1b-decode',
        description: `after the prefill, ${decodeSteps} single-token model.forward calls at positions ${prefillTokens} … ${prefillTokens + decodeSteps - 1} ` +
          '(greedy argmax in JS), one run; tokens/s = tokens / seconds of the loop. Weight bandwidth: 4 bytes × (linear-layer + classifier ' +
          'parameters) per token over the mean seconds per token, beside a 256 MiB copy measured just before and after',
        model: modelInfo, phase: 'decode', tokens: decodeSteps, positions: [prefillTokens, prefillTokens + decodeSteps - 1], threads: o.threads,
        warmup: 'the prefills above', runs: 1, seconds: [round(d.seconds, 5)], medianSeconds: round(d.seconds, 5), minSeconds: round(d.seconds, 5),
        unit: 'tokens/s', tokensPerSecond: round(decodeSteps / d.seconds), tokensPerSecondBest: round(decodeSteps / d.seconds),
        perTokenMedianSeconds: round(median(d.perToken), 4), perTokenMinSeconds: round(Math.min(...d.perToken), 4),
        weightBandwidth: {
          bytesPerToken, secondsPerToken: round(secPerToken, 4), gbps: round(wbw), copyBeforeGBps: round(copyBefore), copyAfterGBps: round(copyAfter),
          fractionOfCopy: round(wbw / ((copyBefore + copyAfter) / 2), 3), limitsCopyGBps: o.limits.copy.gbps,
        },
        peer: null, peerReason: RUNTIME_PEER_REASON,
      },
    ];
  } finally {
    model.dispose();
    // eslint-disable-next-line no-useless-assignment -- drops the last reference before settle(200) forces a GC, so the next benchmark starts without the 1.1B model's wrapper
    model = null;
    await settle(200);
  }
}

/** A runtime benchmark that could not run, kept in the JSON with its reason. */
export interface SkippedEntry {
  name: string;
  skipped: string;
  peer: null;
  peerReason: string;
}

export async function benchRuntime(o: RuntimeOpts): Promise<(RuntimeEntry | SkippedEntry)[]> {
  const entries: (RuntimeEntry | SkippedEntry)[] = [];
  if (o.want('runtime-stories260k-prefill') || o.want('runtime-stories260k-decode')) {
    const r = await benchStories(o);
    if ('skipped' in r) {
      log(`runtime-stories260k: skipped: ${r.skipped}`);
      for (const name of ['runtime-stories260k-prefill', 'runtime-stories260k-decode'].filter(o.want)) {
        entries.push({ name, skipped: r.skipped, peer: null, peerReason: RUNTIME_PEER_REASON });
      }
    } else entries.push(...r.filter((e) => o.want(e.name)));
  }
  if (o.want('runtime-1b-prefill') || o.want('runtime-1b-decode')) {
    entries.push(...(await benchLarge(o)).filter((e) => o.want(e.name)));
  }
  return entries;
}
