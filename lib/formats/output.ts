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
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** The file in a staging directory that names its owner (removed before the commit). */
const OWNER_FILE = '.lowbit-owner.json';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/**
 * Remove the staging directories of `target` that a killed or crashed run left behind: those
 * whose owner file names this host and a process that no longer exists. Nothing else is touched —
 * not a live run's staging (this process's or another's), not another host's on a shared file
 * system, not a directory without an owner file. Returns what was removed.
 * @internal
 */
export function removeAbandonedStaging(target: string): string[] {
  const abs = path.resolve(target);
  const parent = path.dirname(abs), prefix = `.${path.basename(abs)}.tmp-`;
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const dir = path.join(parent, name);
    let owner: { host?: unknown; pid?: unknown };
    try {
      owner = JSON.parse(fs.readFileSync(path.join(dir, OWNER_FILE), 'utf8')) as { host?: unknown; pid?: unknown };
    } catch {
      continue; // not ours to judge
    }
    if (owner.host !== os.hostname() || typeof owner.pid !== 'number' || owner.pid === process.pid || pidAlive(owner.pid)) continue;
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // left for the next run
    }
  }
  return removed;
}

/**
 * Prepare to write `target`. A target that exists and is not empty is an error unless
 * `overwrite` (then it is replaced only at commit time, never before). Staging directories a
 * killed run left for the same target are removed first ({@link removeAbandonedStaging}).
 */
export async function stageDir(target: string, overwrite: boolean): Promise<StagedDir> {
  const abs = path.resolve(target);
  const parent = path.dirname(abs);
  removeAbandonedStaging(abs);
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
  const tmp = path.join(parent, `.${path.basename(abs)}.tmp-${randomBytes(6).toString('hex')}`);
  try {
    await fs.promises.mkdir(tmp);
    // who owns it: a later run removes it if this process dies before commit or abort
    await fs.promises.writeFile(path.join(tmp, OWNER_FILE), JSON.stringify({ host: os.hostname(), pid: process.pid, started: new Date().toISOString() }) + '\n');
  } catch (e) {
    throw toLowbitError(e, `${abs}: cannot create a temporary directory next to the output`);
  }
  let done = false;
  return {
    tmp,
    target: abs,
    async commit() {
      if (done) return;
      done = true;
      let old: string | null = null;
      try {
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
      await fs.promises.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

/** Write a JSON file (pretty, trailing newline) with an atomic temp + rename. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    const fh = await fs.promises.open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(value, null, 2) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    throw toLowbitError(e, file);
  }
}
