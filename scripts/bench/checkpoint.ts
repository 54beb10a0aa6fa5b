/**
 * Whole-checkpoint benchmarks: time and peak RSS to inspect and to RTN-quantize a synthetic
 * TinyLlama-1.1B-shaped F16 checkpoint. Each operation runs in its own child process, so its peak
 * RSS is its own (the parent holds other benchmarks' buffers).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { writeSyntheticModel, inspectModel, SYNTHETIC_PRESETS } from '../../lib';
import { log, median, round } from './timing';
import type { Limits } from './limits';
import { packageRoot } from '../../lib/native';

export const CHECKPOINT_PEER_REASON =
  'no installable in-process peer: the reference tools (AutoGPTQ/GPTQModel, optimum, llama.cpp convert/quantize) ' +
  'are Python or C++ programs that need PyTorch or their own file formats, not Node packages; the machine limit ' +
  'given is the streaming copy of this run (limits.copy)';

export interface CheckpointEntry {
  name: string;
  description: string;
  preset: string;
  shape: Record<string, unknown>;
  parameters: number;
  /** Bytes of every file of the checkpoint directory. */
  checkpointBytes: number;
  warmup: number;
  repeats: number;
  minSeconds: number;
  medianSeconds: number;
  seconds: number[];
  /** Wall time of each child including Node start-up and module loading. */
  wallSeconds: number[];
  /** Largest child peak RSS over the repeats: VmHWM of the child's own address space (Linux). */
  peakRssBytes: number;
  peakRssSource: 'VmHWM' | 'maxRSS';
  peakRssFractionOfCheckpoint: number;
  /**
   * process.resourceUsage().maxRSS of the child, largest over the repeats. On Linux ru_maxrss
   * survives execve, so this includes the benchmark parent's RSS at fork time (parentRssAtSpawnBytes).
   */
  maxRssBytes: number;
  parentRssAtSpawnBytes: number;
  /** Peak RSS of a child that only loads lowbit and its addon (the floor of any run). */
  baselineRssBytes: number;
  /** For the RTN run: GB/s of source tensor bytes, and that over the copy limit (input convention). */
  gbps?: number;
  fractionOfCopy?: number;
  result: Record<string, unknown>;
  notes: string;
  peer: null;
  peerReason: string;
}

interface ChildResult {
  op: string;
  seconds?: number;
  maxRssKiB: number;
  vmHwmKiB: number | null;
  [k: string]: unknown;
}

/** Peak RSS in bytes: VmHWM when the child could read it, else getrusage maxRSS. */
function peakBytes(r: ChildResult): number {
  return (r.vmHwmKiB ?? r.maxRssKiB) * 1024;
}

function runChild(args: string[]): { r: ChildResult; wall: number } {
  const script = path.join(__dirname, 'checkpoint-child.js');
  const t0 = performance.now();
  const p = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
  const wall = (performance.now() - t0) / 1000;
  if (p.error) throw p.error;
  if (p.status !== 0) throw new Error(`checkpoint child ${args[0]} exited ${String(p.status ?? p.signal)}`);
  const line = p.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) throw new Error(`checkpoint child ${args[0]} printed no JSON line`);
  return { r: JSON.parse(line) as ChildResult, wall };
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const f of fs.readdirSync(dir)) {
    const st = fs.statSync(path.join(dir, f));
    if (st.isFile()) n += st.size;
  }
  return n;
}

function looksComplete(dir: string): boolean {
  try {
    const files = fs.readdirSync(dir);
    return files.includes('config.json') && files.some((f) => f.endsWith('.safetensors'));
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** ../shared/fixtures beside the checkout (or LOWBIT_FIXTURES): where the benchmarks find real data. */
export function benchFixtures(): string {
  return process.env.LOWBIT_FIXTURES ?? path.resolve(packageRoot(), '..', 'shared', 'fixtures');
}

/** The Llama 2 vocabulary (llama2.c tokenizer.bin), which GGUF files of the 32000-token presets need. */
export function llama2Tokenizer(): string {
  return path.join(benchFixtures(), 'llama2-tokenizer', 'tokenizer.bin');
}

/** The cached synthetic checkpoint, generated (into a temp dir, then renamed) when missing. */
export async function ensureCheckpoint(preset: string): Promise<{ dir: string; generatedSeconds: number | null }> {
  const dir = path.join(os.tmpdir(), `lowbit-bench-${preset}`);
  // Leftovers of an interrupted generation (only those whose process is gone).
  const prefix = `lowbit-bench-${preset}.partial-`;
  for (const f of fs.readdirSync(os.tmpdir())) {
    if (f.startsWith(prefix) && !alive(Number(f.slice(prefix.length)))) fs.rmSync(path.join(os.tmpdir(), f), { recursive: true, force: true });
  }
  if (looksComplete(dir)) return { dir, generatedSeconds: null };
  fs.rmSync(dir, { recursive: true, force: true });
  const partial = `${dir}.partial-${process.pid}`;
  log(`generating synthetic ${preset} checkpoint in ${dir} (cached for later runs)`);
  const t0 = performance.now();
  try {
    await writeSyntheticModel(partial, { shape: preset });
    fs.renameSync(partial, dir);
  } catch (e) {
    fs.rmSync(partial, { recursive: true, force: true });
    throw e;
  }
  return { dir, generatedSeconds: (performance.now() - t0) / 1000 };
}

export interface CheckpointOpts {
  quick: boolean;
  threads: number;
  limits: Limits;
  want: (name: string) => boolean;
}

export async function benchCheckpoint(o: CheckpointOpts): Promise<{ entries: CheckpointEntry[]; checkpoint: Record<string, unknown> }> {
  const preset = o.quick ? 'demo' : 'tinyllama-1.1b';
  const { dir, generatedSeconds } = await ensureCheckpoint(preset);
  const checkpointBytes = dirBytes(dir);
  const shape = SYNTHETIC_PRESETS[preset] as unknown as Record<string, unknown>;
  log('checkpoint: baseline child (load lowbit + addon only)');
  const base = runChild(['baseline']);
  const baselineRssBytes = peakBytes(base.r);
  const rssSource: 'VmHWM' | 'maxRSS' = base.r.vmHwmKiB === null ? 'maxRSS' : 'VmHWM';
  let parentRss = 0;
  let maxRss = 0;
  const entries: CheckpointEntry[] = [];
  const notes = 'the checkpoint was generated by this benchmark (or an earlier run) and is likely in the OS page cache: ' +
    'times are warm-cache, not cold disk reads; peak RSS counts resident pages of the memory-mapped source';
  const child = (args: string[]) => {
    parentRss = Math.max(parentRss, process.memoryUsage().rss);
    const c = runChild(args);
    maxRss = Math.max(maxRss, c.r.maxRssKiB * 1024);
    return c;
  };
  const common = (name: string, description: string, secs: number[], walls: number[], rss: number[], warmup: number) => ({
    name, description, preset, shape, checkpointBytes, warmup, repeats: secs.length,
    minSeconds: round(Math.min(...secs)), medianSeconds: round(median(secs)), seconds: secs.map((s) => round(s)),
    wallSeconds: walls.map((s) => round(s)), peakRssBytes: Math.max(...rss), peakRssSource: rssSource,
    peakRssFractionOfCheckpoint: round(Math.max(...rss) / checkpointBytes, 3),
    maxRssBytes: maxRss, parentRssAtSpawnBytes: parentRss, baselineRssBytes, notes,
    peer: null, peerReason: CHECKPOINT_PEER_REASON,
  });
  const parameters = inspectModel(dir).parameters; // headers only; cheap
  // `reps` child processes running one operation each: their times, wall times and peak RSS.
  const repeat = (reps: number, what: (i: number) => string, args: string[]) => {
    const secs: number[] = [];
    const walls: number[] = [];
    const rss: number[] = [];
    let last: ChildResult | null = null;
    parentRss = 0; maxRss = 0;
    for (let i = 0; i < reps; i++) {
      log(what(i));
      const { r, wall } = child(args);
      secs.push(r.seconds ?? NaN); walls.push(wall); rss.push(peakBytes(r)); last = r;
    }
    return { secs, walls, rss, last };
  };
  if (o.want('checkpoint-1b-inspect')) {
    const reps = o.quick ? 2 : 3;
    const { secs, walls, rss, last } = repeat(reps, (i) => `checkpoint-1b-inspect (${preset}): child ${i + 1}/${reps}`, ['inspect', dir]);
    entries.push({
      ...common('checkpoint-1b-inspect', `inspectModel of a synthetic ${preset}-shaped F16 checkpoint (headers only), one child process per repeat`,
        secs, walls, rss, 0),
      parameters, result: { ...last, seconds: undefined },
    });
  }
  if (o.want('checkpoint-1b-rtn')) {
    const out = path.join(os.tmpdir(), `lowbit-bench-out-${preset}-${process.pid}`);
    const reps = o.quick ? 3 : 2;
    let run: ReturnType<typeof repeat>;
    try {
      run = repeat(reps, (i) => `checkpoint-1b-rtn (${preset}): quantize in a child process, ${o.threads} thread(s), ${i + 1}/${reps}`, ['rtn', dir, out, String(o.threads)]);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
    const { secs, walls, rss, last } = run;
    const sourceBytes = Number(last?.sourceBytes ?? 0);
    const g = sourceBytes / median(secs) / 1e9;
    entries.push({
      ...common('checkpoint-1b-rtn',
        `quantize(dir, {method:'rtn', bits:4, groupSize:128}, {out, overwrite:true}) of a synthetic ${preset}-shaped F16 checkpoint ` +
        '(GPTQ v1 output written to os.tmpdir(), then removed), one child process', secs, walls, rss, 0),
      parameters,
      gbps: round(g), fractionOfCopy: round(g / (o.limits.copy.gbps / 2), 3),
      result: { ...last, seconds: undefined },
    });
  }
  if (o.want('checkpoint-1b-gguf')) {
    const tok = llama2Tokenizer();
    if (o.quick || !fs.existsSync(tok)) {
      const reason = o.quick ? "skipped in --quick (the quick preset's vocabulary is not the Llama 2 tokenizer's)" : `the Llama 2 tokenizer.bin (GGUF vocabulary) not found at ${tok}`;
      entries.push({ name: 'checkpoint-1b-gguf', skipped: true, reason } as unknown as CheckpointEntry);
    } else {
      const out = path.join(os.tmpdir(), `lowbit-bench-out-${preset}-${process.pid}.gguf`);
      const reps = 2; // --quick skipped this task above
      let run: ReturnType<typeof repeat>;
      try {
        run = repeat(reps, (i) => `checkpoint-1b-gguf (${preset}): exportGguf Q4_0 in a child process, ${o.threads} thread(s), ${i + 1}/${reps}`,
          ['gguf', dir, out, String(o.threads), tok]);
      } finally {
        fs.rmSync(out, { force: true });
      }
      const { secs, walls, rss, last } = run;
      const g = Number(last?.sourceBytes ?? 0) / median(secs) / 1e9;
      entries.push({
        ...common('checkpoint-1b-gguf',
          `exportGguf(dir, out, {type:'Q4_0', tokenizer}) of a synthetic ${preset}-shaped F16 checkpoint (ggml's Q4_0 encoder, tensors streamed one at a time; ` +
          'written to os.tmpdir(), then removed), one child process', secs, walls, rss, 0),
        parameters, gbps: round(g), fractionOfCopy: round(g / (o.limits.copy.gbps / 2), 3),
        result: { ...last, seconds: undefined },
      });
    }
  }
  return { entries, checkpoint: { preset, dir, checkpointBytes, generatedSeconds: generatedSeconds === null ? null : round(generatedSeconds), cached: generatedSeconds === null } };
}
