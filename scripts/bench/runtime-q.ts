/**
 * Decode and prefill of the synthetic TinyLlama-1.1B-shaped model, quantized, in one run:
 *   runtime-1b-gptq4-*       GPTQ 4-bit g128 checkpoint (RTN by lowbit), int8 activations (W4A8, default)
 *   runtime-1b-gptq4-f32act-* the same checkpoint, f32 activations (packed-word kernel)
 *   runtime-1b-q4_0-*        the GGUF Q4_0 file lowbit writes of the same model, W4A8
 *   runtime-1b-q4_0-llamacpp-* node-llama-cpp running that same file (1 or 2 threads, whichever decodes
 *                            faster), when node-llama-cpp is installed (`npm run test:peer` installs it);
 *                            it and runtime-1b-q4_0-* run in alternating rounds, both loaded at once
 *   runtime-1b-q4_k-*, runtime-1b-q4_k-llamacpp-*  the same for the GGUF Q4_K file lowbit writes
 * Effective bandwidth: bytes of the quantized file read per decoded token (the f32 embedding row
 * read is negligible).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { quantize } from '../../lib/pipeline/quantize';
import { exportGguf } from '../../lib/pipeline/gguf-export';
import { loadModel } from '../../lib/runtime/model';
import { ensureCheckpoint, llama2Tokenizer } from './checkpoint';
import { log, median, round } from './timing';
import type { Limits } from './limits';

const PROMPT = 512;

function rss(): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no VmRSS line in /proc/self/status');
  return Number(m[1]) * 1024;
}

function dirBytes(p: string): number {
  if (fs.statSync(p).isFile()) return fs.statSync(p).size;
  let b = 0;
  for (const f of fs.readdirSync(p)) if (f.endsWith('.safetensors')) b += fs.statSync(path.join(p, f)).size;
  return b;
}

type Measured = { prefillTps: number; perTok: number };

/** A lowbit model loaded once; measure() runs one prompt and `steps` decode steps after it. */
async function openLowbit(file: string, opts: { activations?: 'int8' | 'f32'; tokenizer?: string }) {
  const m = await loadModel(file, { maxContext: 1024, ...opts });
  const V = m.config.vocabSize;
  const toks = Int32Array.from({ length: PROMPT }, (_, i) => (i * 7919) % V);
  await m.forward(toks.subarray(0, 16), 0, 1);
  return {
    rss: rss(),
    async measure(steps: number): Promise<Measured> {
      let t = performance.now();
      await m.forward(toks, 0, 1);
      const prefillTps = PROMPT / ((performance.now() - t) / 1000);
      t = performance.now();
      for (let i = 0; i < steps; i++) await m.forward(Int32Array.of(toks[i]), PROMPT + i, 1);
      return { prefillTps, perTok: (performance.now() - t) / 1000 / steps };
    },
    dispose: () => { m.dispose(); },
  };
}

async function runLowbit(file: string, opts: { activations?: 'int8' | 'f32'; tokenizer?: string }, steps: number, repeats: number) {
  const m = await openLowbit(file, opts);
  try {
    const r: Measured[] = [];
    for (let i = 0; i < repeats; i++) r.push(await m.measure(steps));
    return { prefillTps: median(r.map((x) => x.prefillTps)), perTok: Math.min(...r.map((x) => x.perTok)), perTokMedian: median(r.map((x) => x.perTok)), rss: m.rss };
  } finally {
    m.dispose();
  }
}

/** node-llama-cpp with the file loaded once (mmap); measure() makes a fresh context per call. */
async function openLlamaCpp(file: string) {
  let nlc: Record<string, unknown>;
  try {
    // eslint-disable-next-line @typescript-eslint/no-implied-eval -- with "module": "commonjs" tsc turns import() into require(), which cannot load the ESM-only node-llama-cpp
    nlc = await (new Function('m', 'return import(m)') as (m: string) => Promise<Record<string, unknown>>)('node-llama-cpp');
  } catch {
    return { reason: 'node-llama-cpp is not installed (not a dependency; `npm run test:peer` installs it without saving)' };
  }
  type Seq = { evaluate(t: number[], o: object): AsyncIterable<number> };
  type Ctx = { getSequence(): Seq; dispose(): Promise<void> };
  type LModel = { createContext(o: object): Promise<Ctx>; dispose(): Promise<void> };
  type Llama = { loadModel(o: object): Promise<LModel>; dispose(): Promise<void> };
  const llama = await (nlc.getLlama as (o: object) => Promise<Llama>)({ gpu: false, build: 'never', skipDownload: true });
  const model = await llama.loadModel({ modelPath: file });
  const toks = Array.from({ length: PROMPT }, (_, i) => 1 + ((i * 7919) % 31999));
  return {
    async measure(steps: number, threads: number): Promise<Measured> {
      const ctx = await model.createContext({ contextSize: 1024, threads, batchSize: PROMPT });
      try {
        const t0 = performance.now();
        let t1 = 0, n = 0;
        // eslint-disable-next-line @typescript-eslint/no-unused-vars -- for await needs a binding; the generated tokens are only counted
        for await (const _ of ctx.getSequence().evaluate(toks, { temperature: 0 })) {
          if (n === 0) t1 = performance.now();
          if (++n > steps) break;
        }
        const t2 = performance.now();
        return { prefillTps: PROMPT / ((t1 - t0) / 1000), perTok: (t2 - t1) / 1000 / steps };
      } finally {
        await ctx.dispose();
      }
    },
    async dispose() {
      await model.dispose();
      await llama.dispose();
    },
  };
}

/** Pause between the two runtimes' turns, so that neither one's idle threads (spinning, or being
 *  torn down) run into the other's measurement. */
const TURN_PAUSE_MS = 500;

/**
 * lowbit and node-llama-cpp on the same GGUF file, both loaded at once, in alternating rounds
 * (lowbit, node-llama-cpp, lowbit, …): this VM's DRAM bandwidth flips between two levels from one
 * minute to the next, so one side measured after the other compares phases, not runtimes. Round 0
 * runs node-llama-cpp with 1 and 2 threads, and the count that decoded faster is used from then on
 * (best against best). Each side reports the median over rounds.
 */
async function runInterleaved(file: string, tokenizer: string, steps: number, rounds: number) {
  const lb = await openLowbit(file, { tokenizer });
  let opened: Awaited<ReturnType<typeof openLlamaCpp>> | undefined;
  const pause = () => new Promise((r) => setTimeout(r, TURN_PAUSE_MS));
  try {
    opened = await openLlamaCpp(file);
    const peer = 'reason' in opened ? null : opened;
    const lr: Measured[] = [];
    const pr: Measured[] = [];
    const first: { threads: number; r: Measured }[] = [];
    let threads = 2;
    for (let i = 0; i < rounds; i++) {
      await pause();
      lr.push(await lb.measure(steps));
      if (!peer) continue;
      await pause();
      if (i === 0) {
        for (const t of [1, 2]) {
          first.push({ threads: t, r: await peer.measure(steps, t) });
          await pause();
        }
        const best = first.reduce((a, b) => (b.r.perTok < a.r.perTok ? b : a));
        threads = best.threads;
        pr.push(best.r);
      } else {
        pr.push(await peer.measure(steps, threads));
      }
    }
    return { lowbit: lr, peer: peer ? pr : null, peerReason: 'reason' in opened ? opened.reason : undefined, threads, firstRoundPeerThreads: first, rss: lb.rss };
  } finally {
    lb.dispose();
    if (opened && !('reason' in opened)) await opened.dispose();
  }
}

/** `want` selects by entry name: runtime-1b-gptq4-* (both GPTQ entries), runtime-1b-q4_0-* / runtime-1b-q4_k-* (beside node-llama-cpp). */
export async function benchRuntimeQ(o: { quick: boolean; limits: Limits; want?: (name: string) => boolean }): Promise<Record<string, unknown>[]> {
  const want = o.want ?? (() => true);
  const wantGptq = want('runtime-1b-gptq4-prefill') || want('runtime-1b-gptq4-decode');
  const preset = o.quick ? 'demo' : 'tinyllama-1.1b';
  const { dir } = await ensureCheckpoint(preset);
  const gptq = path.join(os.tmpdir(), `lowbit-bench-${preset}-gptq4`);
  if (wantGptq && !fs.existsSync(path.join(gptq, 'config.json'))) {
    log(`runtime-1b-gptq4: RTN → GPTQ 4-bit g128 checkpoint of ${preset}`);
    await quantize(dir, { method: 'rtn', bits: 4, groupSize: 128, sym: true }, { out: gptq, overwrite: true });
  }
  const steps = o.quick ? 8 : 32, repeats = o.quick ? 1 : 2;
  const res: Record<string, unknown>[] = [];
  const copy = o.limits.copy.gbps / 2;  // STREAM copy counts read + write; decoding reads
  // One prefill and one decode entry; `decodeOnly` fields go on the decode entry alone.
  const push = (name: string, desc: string, file: string, r: { prefillTps: number; perTok: number; perTokMedian?: number; rounds?: object[] },
    shared: Record<string, unknown>, decodeOnly: Record<string, unknown>, decodeNote: string) => {
    const bytes = dirBytes(file);
    res.push({ name: `${name}-prefill`, description: `${desc}, ${PROMPT}-token prompt`, tokensPerSecond: round(r.prefillTps), ...shared });
    res.push({ name: `${name}-decode`, description: `${desc}, ${steps} single-token steps after the prompt${decodeNote}`,
      tokensPerSecond: round(1 / r.perTok), secondsPerToken: round(r.perTok, 4),
      ...(r.perTokMedian !== undefined ? { medianSecondsPerToken: round(r.perTokMedian, 4) } : {}), ...(r.rounds ? { rounds: r.rounds } : {}),
      fileBytes: bytes, weightBandwidthGBps: round(bytes / r.perTok / 1e9), fractionOfReadBandwidth: round(bytes / r.perTok / 1e9 / copy),
      ...decodeOnly, ...shared });
    log(`${name}: prefill ${round(r.prefillTps)} tok/s, decode ${round(1 / r.perTok)} tok/s${r.rounds ? ' (medians over rounds)' : ''} (${round(bytes / r.perTok / 1e9)} GB/s)`);
  };
  const peerNote = { peer: 'runtime-1b-q4_0-llamacpp-* (same run)' };
  if (wantGptq) {
    for (const [name, desc, opts] of [
      ['runtime-1b-gptq4', `${preset} GPTQ 4-bit g128, W4A8 (int8 activations, integer dot products)`, {}],
      ['runtime-1b-gptq4-f32act', `${preset} GPTQ 4-bit g128, f32 activations (packed-word kernel)`, { activations: 'f32' as const }],
    ] as const) {
      const r = await runLowbit(gptq, opts, steps, repeats);
      push(name, desc, gptq, r, peerNote, { rssBytesWhileLoaded: r.rss }, ` (best of ${repeats})`);
    }
  }
  const ggufTypes = (['Q4_0', 'Q4_K'] as const).filter((t) => want(`runtime-1b-${t.toLowerCase()}-prefill`) || want(`runtime-1b-${t.toLowerCase()}-decode`));
  if (ggufTypes.length === 0) return res;
  const tok = llama2Tokenizer();
  if (o.quick || !fs.existsSync(tok)) {
    const reason = o.quick ? 'skipped in --quick' : `the Llama 2 tokenizer.bin (GGUF vocabulary) not found at ${tok}`;
    for (const t of ggufTypes) res.push({ name: `runtime-1b-${t.toLowerCase()}-decode`, skipped: true, reason });
    return res;
  }
  for (const type of ggufTypes) {
    const tag = `runtime-1b-${type.toLowerCase()}`;
    // v2: written since the U+FEFF piece fix (an older cached file is ignored)
    const gguf = path.join(os.tmpdir(), `lowbit-bench-${preset}-${type.toLowerCase()}-v2.gguf`);
    if (!fs.existsSync(gguf)) {
      log(`${tag}: writing ${gguf}`);
      await exportGguf(dir, gguf, { type, tokenizer: tok, overwrite: true });
    }
    const rounds = 4; // --quick returned above
    const iv = await runInterleaved(gguf, tok, steps, rounds);
    const summary = (r: Measured[]) => ({
      prefillTps: median(r.map((x) => x.prefillTps)), perTok: median(r.map((x) => x.perTok)),
      rounds: r.map((x) => ({ prefillTokensPerSecond: round(x.prefillTps), decodeTokensPerSecond: round(1 / x.perTok) })),
    });
    const ls = summary(iv.lowbit);
    const ps = iv.peer ? summary(iv.peer) : null;
    const peer = iv.peer;
    const ahead = peer ? iv.lowbit.filter((x, i) => x.perTok < peer[i].perTok).length : null;
    const aheadPrefill = peer ? iv.lowbit.filter((x, i) => x.prefillTps > peer[i].prefillTps).length : null;
    const comparison = {
      interleavedRounds: rounds,
      medianOf: 'rounds',
      ...(ps ? {
        decodeRatioVsPeer: round(ps.perTok / ls.perTok, 3), prefillRatioVsPeer: round(ls.prefillTps / ps.prefillTps, 3),
        roundsLowbitDecodedFaster: ahead, roundsLowbitPrefilledFaster: aheadPrefill,
      } : {}),
    };
    const rounded = `median of ${rounds} ${ps ? 'interleaved round(s) with node-llama-cpp' : 'round(s) (node-llama-cpp not installed)'}`;
    push(tag, `${preset} GGUF ${type} written by lowbit, W4A8, ${rounded}`, gguf, ls, { ...comparison, peer: `${tag}-llamacpp-* (same rounds)` },
      { rssBytesWhileLoaded: iv.rss }, '');
    if (!ps) res.push({ name: `${tag}-llamacpp-decode`, skipped: true, reason: iv.peerReason });
    else push(`${tag}-llamacpp`, `node-llama-cpp (llama.cpp CPU) on the same GGUF ${type} file, ${iv.threads} thread(s) (faster decode in round 0), ${rounded}`, gguf, ps,
      { threads: iv.threads, firstRound: iv.firstRoundPeerThreads.map((f) => ({ threads: f.threads, prefillTokensPerSecond: round(f.r.prefillTps), decodeTokensPerSecond: round(1 / f.r.perTok) })), peer: null },
      {}, '');
  }
  return res;
}
