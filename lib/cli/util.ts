/** Shared CLI helpers: error printing, exit codes, tables, sizes, progress bar. */
import { SingleBar, Presets } from 'cli-progress';
import { LowbitError, toLowbitError, optionError } from '../errors';
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
