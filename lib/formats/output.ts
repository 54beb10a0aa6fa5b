/**
 * Atomic output directories: everything is written into a sibling temp directory, which is
 * renamed into place only when complete. On failure or cancellation the temp directory is
 * removed, so a user never sees a half-written model.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { LowbitError, toLowbitError } from '../errors';

/** A directory being written; `commit()` moves it into place, `abort()` deletes it. */
export interface StagedDir {
  /** Where to write now (the temp directory). */
  readonly tmp: string;
  /** The final path. */
  readonly target: string;
  /**
   * A resumable run's state directory inside `tmp` (`.resume`, removed before the commit), kept
   * when the process dies so that the same run started again finds it; null for a run staged
   * without a resume key.
   */
  readonly resumeDir: string | null;
  /** Whether the staging directory was taken over from a dead run (its `resumeDir` may hold state). */
  readonly takenOver: boolean;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** The file in a staging directory that names its owner (removed before the commit). */
const OWNER_FILE = '.lowbit-owner.json';
/** The resumable state inside a staging directory. */
const RESUME_DIR = '.resume';
/** How often a live owner touches its owner file, and how old a heartbeat from another host must be to count as dead. */
const HEARTBEAT_MS = 30_000;
const STALE_MS = 10 * 60_000;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
  // a killed process not yet reaped (a zombie: its parent, or a container's init, has not waited for it) is dead
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc (macOS): kill(0) said it exists
  }
}

type OwnerState = 'none' | 'self' | 'live' | 'dead';

/**
 * Who owns a staging directory: none (no readable owner file: not ours to judge), this process,
 * a live run, or a dead one — on this host, a process that no longer exists; on another host
 * (a shared file system), an owner whose heartbeat (the owner file's mtime, touched every 30 s)
 * is more than ten minutes old.
 */
function ownerOf(dir: string): OwnerState {
  const file = path.join(dir, OWNER_FILE);
  let owner: { host?: unknown; pid?: unknown };
  let mtimeMs: number;
  try {
    owner = JSON.parse(fs.readFileSync(file, 'utf8')) as { host?: unknown; pid?: unknown };
    mtimeMs = fs.statSync(file).mtimeMs;
  } catch {
    return 'none';
  }
  if (typeof owner.pid !== 'number' || typeof owner.host !== 'string') return 'none';
  if (owner.host !== os.hostname()) return Date.now() - mtimeMs > STALE_MS ? 'dead' : 'live';
  if (owner.pid === process.pid) return 'self';
  return pidAlive(owner.pid) ? 'live' : 'dead';
}

/** How long ago `p` was modified (0 when it cannot be read). */
function ageMs(p: string): number {
  try {
    return Date.now() - fs.statSync(p).mtimeMs;
  } catch {
    return 0;
  }
}

/** Name this process the owner of a staging directory just created (see {@link removeAbandonedStaging}). */
export function claimStaging(dir: string): void {
  fs.writeFileSync(path.join(dir, OWNER_FILE), JSON.stringify({ host: os.hostname(), pid: process.pid, started: new Date().toISOString() }) + '\n');
}

/**
 * Remove the staging directories of `target` that a killed or crashed run left behind (the
 * output's `.<name>.tmp-*` and a converted source's `.<name>.source-*`): those
 * whose owner is dead (this host and a process that no longer exists; another host and a
 * heartbeat older than ten minutes), except `keep` (the one a resumed run takes over). Nothing
 * else is touched — not a live run's staging (this process's or another's), not a directory
 * without an owner file. Returns what was removed.
 * @internal
 */
export function removeAbandonedStaging(target: string, keep?: string): string[] {
  const abs = path.resolve(target);
  const parent = path.dirname(abs), prefixes = [`.${path.basename(abs)}.tmp-`, `.${path.basename(abs)}.source-`];
  // a staging directory being made or taken over (stageDir): it lives for milliseconds, so one with
  // no owner file yet is abandoned once a minute old
  const claim = `.${path.basename(abs)}.claim-`;
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return removed;
  }
  for (const name of names) {
    const claiming = name.startsWith(claim);
    if (!claiming && !prefixes.some((p) => name.startsWith(p))) continue;
    const dir = path.join(parent, name);
    if (keep !== undefined && path.resolve(keep) === dir) continue;
    const owner = ownerOf(dir);
    if (owner !== 'dead' && !(claiming && owner === 'none' && ageMs(dir) > 60_000)) continue;
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // left for the next run
    }
  }
  return removed;
}

/** Options of {@link stageDir}. */
export interface StageOptions {
  /**
   * Names the run (a hash of its inputs and options): the staging directory is
   * `.<name>.tmp-r<key>` instead of a random name, so that the same run started again after a
   * crash or kill finds it, takes it over and resumes from its `.resume` state.
   */
  resumeKey?: string;
}

/**
 * Prepare to write `target`. A target that exists and is not empty is an error unless
 * `overwrite` (then it is replaced only at commit time, never before). Staging directories a
 * killed run left for the same target are removed first ({@link removeAbandonedStaging}), except
 * the one a resumable run of the same key left: that one is taken over (its resume state kept,
 * every other file in it removed). A live run writing the same key is an error.
 */
export async function stageDir(target: string, overwrite: boolean, opts: StageOptions = {}): Promise<StagedDir> {
  const abs = path.resolve(target);
  const parent = path.dirname(abs);
  const resumeKey = opts.resumeKey;
  if (resumeKey !== undefined && !/^[0-9a-f]{16,64}$/.test(resumeKey)) throw new LowbitError('LOWBIT_INTERNAL', `stageDir: resume key ${JSON.stringify(resumeKey)} is not hex`);
  const tmp = path.join(parent, `.${path.basename(abs)}.tmp-${resumeKey !== undefined ? `r${resumeKey.slice(0, 24)}` : randomBytes(6).toString('hex')}`);
  removeAbandonedStaging(abs, resumeKey !== undefined ? tmp : undefined);
  try {
    const st = fs.statSync(abs);
    if (!st.isDirectory()) throw new LowbitError('LOWBIT_IO', `${abs}: output path exists and is a file`, { file: abs });
    if (fs.readdirSync(abs).length > 0 && !overwrite) {
      throw new LowbitError('LOWBIT_IO', `${abs}: output directory exists and is not empty (pass overwrite / --force to replace it)`, { file: abs });
    }
  } catch (e) {
    if (e instanceof LowbitError) throw e;
    // does not exist: fine
  }
  try {
    fs.mkdirSync(parent, { recursive: true });
    fs.accessSync(parent, fs.constants.W_OK);
  } catch (e) {
    throw toLowbitError(e, `${abs}: cannot create the output directory`);
  }
  // The directory appears with its owner file already in it (made aside, then renamed into place),
  // and a dead run's is taken over by moving it aside first: only one contender's rename succeeds,
  // so two runs never write the same staging directory.
  const busy = () => new LowbitError('LOWBIT_IO', `${abs}: another live run with the same inputs and options is writing it (staging directory ${tmp}); wait for it, or stop it`, { file: abs });
  const aside = path.join(parent, `.${path.basename(abs)}.claim-${randomBytes(6).toString('hex')}`);
  const owned = () => fs.promises.writeFile(path.join(aside, OWNER_FILE), JSON.stringify({ host: os.hostname(), pid: process.pid, started: new Date().toISOString() }) + '\n');
  const raced = (e: unknown) => ['ENOENT', 'EEXIST', 'ENOTEMPTY'].includes((e as NodeJS.ErrnoException).code ?? '');
  let takenOver = false;
  try {
    if (resumeKey !== undefined && fs.existsSync(tmp)) {
      // a dead run's: keep its resume state only. (A directory without an owner file is not one
      // lowbit left: staging directories are created with theirs.)
      if (ownerOf(tmp) !== 'dead') throw busy();
      try {
        await fs.promises.rename(tmp, aside);
      } catch (e) {
        if (raced(e)) throw busy(); // another run took it over first
        throw e;
      }
      for (const f of await fs.promises.readdir(aside)) if (f !== RESUME_DIR) await fs.promises.rm(path.join(aside, f), { recursive: true, force: true });
      takenOver = true;
    } else {
      await fs.promises.mkdir(aside);
    }
    // who owns it: a later run removes (or, with the same key, resumes) it if this process dies before commit or abort
    await owned();
    if (resumeKey !== undefined) await fs.promises.mkdir(path.join(aside, RESUME_DIR), { recursive: true });
    try {
      await fs.promises.rename(aside, tmp);
    } catch (e) {
      await fs.promises.rm(aside, { recursive: true, force: true }).catch(() => undefined);
      if (raced(e)) throw busy(); // another run made it meanwhile
      throw e;
    }
  } catch (e) {
    if (e instanceof LowbitError) throw e;
    await fs.promises.rm(aside, { recursive: true, force: true }).catch(() => undefined);
    throw toLowbitError(e, `${abs}: cannot create a temporary directory next to the output`);
  }
  // the heartbeat another host's run reads to tell this live run from a dead one
  const beat = setInterval(() => {
    const now = new Date();
    fs.utimes(path.join(tmp, OWNER_FILE), now, now, () => undefined);
  }, HEARTBEAT_MS);
  beat.unref();
  let done = false;
  return {
    tmp,
    target: abs,
    resumeDir: resumeKey !== undefined ? path.join(tmp, RESUME_DIR) : null,
    takenOver,
    async commit() {
      if (done) return;
      done = true;
      clearInterval(beat);
      let old: string | null = null;
      try {
        await fs.promises.rm(path.join(tmp, RESUME_DIR), { recursive: true, force: true });
        await fs.promises.rm(path.join(tmp, OWNER_FILE), { force: true });
        if (fs.existsSync(abs)) {
          old = path.join(parent, `.${path.basename(abs)}.old-${randomBytes(6).toString('hex')}`);
          await fs.promises.rename(abs, old);
        }
        await fs.promises.rename(tmp, abs);
      } catch (e) {
        if (old && !fs.existsSync(abs)) await fs.promises.rename(old, abs).catch(() => undefined);
        await fs.promises.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
        throw toLowbitError(e, `${abs}: cannot move the finished output into place`);
      }
      if (old) await fs.promises.rm(old, { recursive: true, force: true }).catch(() => undefined);
    },
    async abort() {
      if (done) return;
      done = true;
      clearInterval(beat);
      await fs.promises.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

/** Write `file` through a temp file beside it: filled by `fill`, synced, renamed into place (a reader sees the old file or the whole new one). */
export async function writeFileDurable(file: string, fill: (fh: fs.promises.FileHandle) => Promise<void>): Promise<void> {
  const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    const fh = await fs.promises.open(tmp, 'w');
    try {
      await fill(fh);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    throw e instanceof LowbitError ? e : toLowbitError(e, file);
  }
}

/** Write a JSON file (pretty, trailing newline) with an atomic temp + rename. */
export function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  return writeFileDurable(file, async (fh) => {
    await fh.writeFile(JSON.stringify(value, null, 2) + '\n');
  });
}
