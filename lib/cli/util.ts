/** Shared CLI helpers: error printing, exit codes, tables, sizes, progress bar, the runtime quantization flags. */
import { SingleBar, Presets } from 'cli-progress';
import type { Command } from 'commander';
import { LowbitError, toLowbitError, optionError, isLowbitError, formatBytes } from '../errors';
import type { KvCacheOptions, ActQuantOptions, ActInput } from '../config/runtime-quant';
import { loadModel, type LoadModelOptions, type RuntimeQuantization } from '../runtime/model';
import { measureActScales } from '../runtime/act-scales';
import { readCalibrationFile } from '../formats/calib';
import type { Progress } from '../config/run';
import { looksLikeRepoId } from '../formats/hf-cache';
import { downloadModel } from '../pipeline/download';

/** Exit codes: 0 ok, 1 failure (LowbitError), 2 usage, 130 aborted (SIGINT). */
export const EXIT = { ok: 0, error: 1, usage: 2, aborted: 130 } as const;

/** Print an error (as JSON on stdout when asked) and return the exit code. */
export function reportError(e: unknown, json: boolean): number {
  const le = e instanceof LowbitError ? e : toLowbitError(e);
  if (json) process.stdout.write(JSON.stringify({ ok: false, error: { code: le.code, message: le.message } }, null, 2) + '\n');
  process.stderr.write(`lowbit: ${le.code}: ${le.message}\n`);
  if (le.code === 'LOWBIT_INTERNAL' && process.env.LOWBIT_DEBUG) process.stderr.write(`${le.stack ?? le.message}\n`);
  return le.code === 'LOWBIT_ABORTED' ? EXIT.aborted : le.code === 'LOWBIT_INVALID_OPTION' ? EXIT.usage : EXIT.error;
}

export { formatBytes } from '../errors';

/** Human-readable count (K/M/B). */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

/** A plain text table with right-aligned numeric columns. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const width = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const numeric = header.map((_, c) => rows.every((r) => typeof r[c] === 'number' || /^[-+]?[\d.,]+( ?[%A-Za-z]+)?$/.test(r[c])));
  const line = (r: string[]) => r.map((s, c) => (numeric[c] ? s.padStart(width[c]) : s.padEnd(width[c]))).join('  ').trimEnd();
  return [line(cells[0]), width.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** A progress bar with ETA on stderr (plain periodic lines when stderr is not a terminal). */
export function progressBar(enabled: boolean): { update(p: Progress): void; stop(): void } {
  if (!enabled) return { update() {}, stop() {} };
  const bar = new SingleBar({
    format: '{phase} [{bar}] {value}/{total} | ETA {eta_formatted} | {module}',
    stream: process.stderr, hideCursor: true, clearOnComplete: true, noTTYOutput: !process.stderr.isTTY,
    notTTYSchedule: 5000, etaBuffer: 20,
  }, Presets.shades_classic);
  let started = false;
  return {
    update(p) {
      if (!started) { bar.start(p.total, p.done, { phase: p.phase, module: p.module ?? '' }); started = true; }
      bar.setTotal(p.total);
      bar.update(p.done, { phase: p.phase, module: p.module ?? '' });
    },
    stop() { if (started) bar.stop(); },
  };
}

/** Abort on SIGINT/SIGTERM: the running operation rejects with LOWBIT_ABORTED, no output left. */
export function abortOnSignals(): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const on = () => {
    if (ac.signal.aborted) process.exit(EXIT.aborted);
    process.stderr.write('\nlowbit: interrupted, cleaning up (press Ctrl-C again to exit at once)\n');
    ac.abort(new LowbitError('LOWBIT_ABORTED', 'interrupted'));
  };
  process.on('SIGINT', on);
  process.on('SIGTERM', on);
  return { signal: ac.signal, dispose() { process.off('SIGINT', on); process.off('SIGTERM', on); } };
}

/** Parse an integer flag, reporting the flag name on error. */
export function intFlag(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw optionError(name, `${name}: expected an integer, received ${JSON.stringify(v)}`);
    return n;
  };
}

/**
 * Parse a size flag: bytes, or a number with K, M, G or T (binary: 8G = 8 GiB; "GiB"/"GB" read
 * the same), e.g. `--max-memory 8G`.
 */
export function sizeFlag(name: string) {
  return (v: string): number => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(v);
    const n = m ? Math.round(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase())) : NaN;
    if (!m || !Number.isSafeInteger(n)) throw optionError(name, `${name}: expected a size such as 8G, 512M or a byte count, received ${JSON.stringify(v)}`);
    return n;
  };
}

/** Parse a number flag. */
export function numFlag(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw optionError(name, `${name}: expected a number, received ${JSON.stringify(v)}`);
    return n;
  };
}

/** Runs a command body, prints errors, records the exit code. */
export type RunFn = (fn: (json: boolean) => number | Promise<number>, json: boolean) => Promise<void>;

/**
 * The model argument of a command: with --download, a Hugging Face id is fetched into the local
 * cache first (progress on stderr) and its snapshot directory is used; otherwise the argument as
 * given (paths, or ids already in the cache, are resolved by the library).
 */
export async function modelArg(model: string, download: boolean | undefined, quiet: boolean): Promise<string> {
  if (!download) return model;
  if (!looksLikeRepoId(model)) throw optionError('download', `--download: ${JSON.stringify(model)} is not a Hugging Face id (org/name[@revision]) or is a local path`);
  return downloadModel(model, { onProgress: (p) => { if (!quiet && p.module) process.stderr.write(`lowbit: downloading ${p.module} (${p.done + 1}/${p.total})\n`); } });
}

/** The flags of `--kv-*`, `--act-*` and the static scales' `--calib*`, as commander parses them. */
export interface RuntimeQuantFlags {
  kvBits?: number;
  kvGroup?: number | 'head';
  kvSym?: boolean;
  kvAxis?: 'token' | 'channel';
  kvBlock?: number;
  kvWindow?: number;
  kvRotate?: boolean;
  /** false with --no-kv. */
  kv: boolean;
  actBits?: number;
  actScheme?: 'dynamic' | 'static';
  actInputs?: ActInput[];
  calib?: string;
  calibSamples?: number;
  calibSeqlen?: number;
}

const KV_FLAGS = ['kvGroup', 'kvSym', 'kvAxis', 'kvBlock', 'kvWindow', 'kvRotate'] as const;
const ACT_FLAGS = ['actScheme', 'actInputs'] as const;
const CALIB_FLAGS = ['calibSamples', 'calibSeqlen'] as const;

/** `kvBits` → `--kv-bits`. */
function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * The KV cache and activation quantization flags of `generate` and `eval` (what `loadModel`'s `kv` and
 * `actQuant` take; {@link runtimeQuantCall} turns them into those options).
 */
export function addRuntimeQuantOptions(cmd: Command): Command {
  return cmd
    .option('--kv-bits <n>', 'quantize the KV cache: 8, 4 or 2 bits per cached value (default: f32, or what the checkpoint stores)', intFlag('--kv-bits'))
    .option('--kv-group <n|head>', 'values per KV scale along the head: head (default) or a divisor of the head size', (v: string) => (v.trim() === 'head' ? 'head' : intFlag('--kv-group')(v)))
    .option('--kv-sym', 'symmetric KV codes (scale only; default: scale and minimum)')
    .option('--kv-axis <axis>', 'K grouped per token (default) or per channel over blocks of --kv-block tokens (KIVI)')
    .option('--kv-block <n>', 'tokens per block of per-channel K (--kv-axis channel; default 32)', intFlag('--kv-block'))
    .option('--kv-window <n>', 'the last N positions each query reads in full precision (default 0)', intFlag('--kv-window'))
    .option('--kv-rotate', 'rotate Q and K of every head (Hadamard) before K is quantized')
    .option('--no-kv', 'ignore the KV cache settings a checkpoint stores (f32 cache)')
    .option('--act-bits <n>', 'quantize the input of every linear module to N bits (2-8, symmetric)', intFlag('--act-bits'))
    .option('--act-scheme <scheme>', 'dynamic (a scale per token, default) or static (one scale per module input, measured on --calib)')
    .option('--act-inputs <list>', 'which inputs, comma-separated: qkv,o,gate_up,down (default: all four)', (v: string) => v.split(',').map((s) => s.trim()))
    .option('--calib <path>', 'calibration text for --act-scheme static: a UTF-8 text file, a .jsonl file of "text" records or a directory of .txt files')
    .option('--calib-samples <n>', 'calibration windows for --act-scheme static (default 128)', intFlag('--calib-samples'))
    .option('--calib-seqlen <n>', 'tokens per calibration window (default 2048, capped at the context)', intFlag('--calib-seqlen'));
}

/** What the `--kv-*` / `--act-*` / `--calib*` flags ask of `loadModel`: only what the user wrote. */
export interface RuntimeQuantCall {
  /** `kv` for loadModel: options, null (--no-kv), or absent (the checkpoint's own, if any). */
  kv?: KvCacheOptions | null;
  /** `actQuant` for loadModel (static: without its scales, measured on `calib` first). */
  actQuant?: ActQuantOptions;
  /** The static scales' calibration data and windows. */
  calib: { file: string; samples?: number; seqLen?: number } | null;
}

/**
 * Turn the flags into `loadModel` options. A flag that only refines another one (`--kv-sym` without
 * `--kv-bits`, `--act-scheme` without `--act-bits`, `--calib` without `--act-scheme static`) is an
 * error naming it: nothing the user wrote is dropped.
 */
export function runtimeQuantCall(cmd: Command): RuntimeQuantCall {
  const o = cmd.opts<RuntimeQuantFlags>();
  const given = (k: keyof RuntimeQuantFlags) => cmd.getOptionValueSource(k) === 'cli';
  const pick = <K extends keyof RuntimeQuantFlags>(k: K, as: string): Record<string, RuntimeQuantFlags[K]> => (given(k) ? { [as]: o[k] } : {});
  const out: RuntimeQuantCall = { calib: null };
  const kvGiven = KV_FLAGS.filter((k) => given(k));
  if (!o.kv) {
    const other = given('kvBits') ? 'kvBits' : kvGiven.at(0);
    if (other !== undefined) throw optionError('kv', `--no-kv: turns the quantized KV cache off, but ${flagName(other)} asks for one (give one or the other)`);
    out.kv = null;
  } else if (given('kvBits')) {
    out.kv = {
      bits: o.kvBits, ...pick('kvGroup', 'group'), ...(o.kvSym ? { sym: true } : {}), ...pick('kvAxis', 'axis'),
      ...pick('kvBlock', 'block'), ...pick('kvWindow', 'window'), ...(o.kvRotate ? { rotate: true } : {}),
    } as KvCacheOptions;
  } else if (kvGiven.length) {
    throw optionError(kvGiven[0], `${flagName(kvGiven[0])}: applies to the quantized KV cache; pass --kv-bits N (8, 4 or 2)`);
  }
  const actGiven = ACT_FLAGS.filter((k) => given(k));
  if (given('actBits')) {
    out.actQuant = { bits: o.actBits, ...pick('actScheme', 'scheme'), ...pick('actInputs', 'inputs') } as ActQuantOptions;
  } else if (actGiven.length) {
    throw optionError(actGiven[0], `${flagName(actGiven[0])}: applies to activation quantization; pass --act-bits N`);
  }
  const calibGiven = CALIB_FLAGS.filter((k) => given(k));
  if (!o.calib && calibGiven.length) throw optionError(calibGiven[0], `${flagName(calibGiven[0])}: applies to the calibration text of --act-scheme static; pass --calib FILE`);
  if (out.actQuant?.scheme === 'static') {
    if (!o.calib) throw optionError('calib', '--act-scheme static: the scales are measured on calibration text; pass --calib FILE');
    out.calib = { file: o.calib, ...pick('calibSamples', 'samples'), ...pick('calibSeqlen', 'seqLen') };
  } else if (o.calib) {
    throw optionError('calib', '--calib: the calibration text measures static activation scales; it applies to --act-bits N --act-scheme static only');
  }
  return out;
}

/** The flag that sets each `loadModel` option (for naming flags in the library's errors). */
const OPTION_FLAG: Record<string, keyof RuntimeQuantFlags> = {
  'kv.bits': 'kvBits', 'kv.group': 'kvGroup', 'kv.sym': 'kvSym', 'kv.axis': 'kvAxis', 'kv.block': 'kvBlock', 'kv.window': 'kvWindow', 'kv.rotate': 'kvRotate',
  'actQuant.bits': 'actBits', 'actQuant.scheme': 'actScheme', 'actQuant.inputs': 'actInputs',
  // measureActScales' windows
  samples: 'calibSamples', seqLen: 'calibSeqlen',
};

/**
 * A bad `kv` / `actQuant` value the library refused (`kv.bits: expected one of 2, 4, 8 …`), reported
 * with the flag the user wrote (`--kv-bits: expected …`); any other error is returned as it is.
 */
export function runtimeQuantFlagError(cmd: Command, e: unknown): unknown {
  if (!isLowbitError(e, 'LOWBIT_INVALID_OPTION')) return e;
  const option = String(e.details?.option);
  const key = Object.prototype.hasOwnProperty.call(OPTION_FLAG, option) ? OPTION_FLAG[option] : undefined;
  if (key === undefined || cmd.getOptionValueSource(key) !== 'cli' || !e.message.startsWith(`${option}:`)) return e;
  return optionError(option, `${flagName(key)}${e.message.slice(option.length)}`, { ...e.details, flag: flagName(key) });
}

/**
 * `actQuant` with its static scales: measured with {@link measureActScales} on the calibration
 * file, on the model loaded as `load` says but without KV or activation quantization (the inputs
 * of the full-precision model). Returns the options unchanged when they are dynamic.
 */
export async function withStaticScales(model: string, load: LoadModelOptions, call: RuntimeQuantCall, signal: AbortSignal): Promise<{ actQuant?: ActQuantOptions; scales: Float32Array | null }> {
  const a = call.actQuant;
  if (!a || !call.calib) return { actQuant: a, scales: null };
  const data = readCalibrationFile(call.calib.file);
  if (!data.texts) throw optionError('calib', `--calib: ${call.calib.file} holds token ids (input_ids); static activation scales are measured on text records`);
  const plain = await loadModel(model, { ...load, kv: null, actQuant: null });
  try {
    const scales = await measureActScales(plain, data.texts, {
      bits: a.bits, signal,
      ...(call.calib.samples !== undefined ? { samples: call.calib.samples } : {}), ...(call.calib.seqLen !== undefined ? { seqLen: call.calib.seqLen } : {}),
    });
    return { actQuant: { ...a, scales }, scales };
  } finally {
    plain.dispose();
  }
}

/** What a model runs quantized besides its weights, one line each (none when nothing does). */
export function quantizationLines(q: RuntimeQuantization): string[] {
  const lines: string[] = [];
  if (q.kv) {
    const k = q.kv;
    const ratio = (n: number) => `${(n / k.bytesPerToken).toFixed(2)}×`;
    lines.push(`kv cache: ${k.bits}-bit ${k.sym ? 'sym' : 'asym'}, group ${k.group === 0 ? 'head' : k.group}, K per ${k.axis}${k.axis === 'channel' ? ` (blocks of ${k.block})` : ''}, window ${k.window}, rotate ${k.rotate ? 'on' : 'off'} (${k.from}): ` +
      `${k.bytesPerToken} B/token (f32 ${k.f32BytesPerToken} B: ${ratio(k.f32BytesPerToken)} smaller; f16 ${k.f16BytesPerToken} B: ${ratio(k.f16BytesPerToken)} smaller)` +
      (k.fixedBytes ? `, plus ${formatBytes(k.fixedBytes)} fixed` : ''));
  }
  if (q.activations) {
    const a = q.activations;
    lines.push(`activations: ${a.bits}-bit ${a.scheme} on ${a.inputs.join(',')} (${a.from}): ${a.kernel} module inputs through the integer kernel, ${a.fake} fake-quantized`);
  }
  if (q.rotateDown) lines.push('down_proj input rotated online (R4)');
  return lines;
}
