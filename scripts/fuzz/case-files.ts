/** Writing a case's inputs into its directory (the APIs take paths, so every input goes to disk). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FileSet } from './seeds';

/** Write `files` (relative paths) under `dir`, creating parent directories, and create `dirs` and `links`. */
export function writeCaseFiles(dir: string, files: FileSet, dirs: readonly string[] = [], links: readonly [string, string][] = []): void {
  const made = new Set<string>();
  const mkdir = (d: string) => {
    if (made.has(d)) return;
    fs.mkdirSync(d, { recursive: true });
    made.add(d);
  };
  for (const d of dirs) mkdir(path.join(dir, d));
  for (const [rel, bytes] of files) {
    const abs = path.join(dir, rel);
    mkdir(path.dirname(abs));
    fs.writeFileSync(abs, bytes);
  }
  for (const [rel, target] of links) {
    const abs = path.join(dir, rel);
    mkdir(path.dirname(abs));
    fs.symlinkSync(target, abs);
  }
}

/**
 * Make `dir` hold exactly `files` and `dirs`: files and directories the new case does not use are
 * removed, its files (over)written. Directories it needs are kept rather than recreated: removing
 * and recreating a tree every case was the harness's largest cost.
 */
export function syncCaseDir(dir: string, files: FileSet, dirs: readonly string[] = [], links: readonly [string, string][] = []): void {
  const keep = new Set<string>();
  const addParents = (rel: string) => {
    for (let d = path.dirname(rel); d !== '.' && !keep.has(d); d = path.dirname(d)) keep.add(d);
  };
  for (const d of dirs) {
    keep.add(path.normalize(d));
    addParents(d);
  }
  for (const f of files.keys()) addParents(f);
  for (const [l] of links) addParents(l);
  const sweep = (abs: string, rel: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(abs, { withFileTypes: true });
    } catch {
      fs.mkdirSync(abs, { recursive: true });
      return;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const p = path.join(abs, e.name);
      if (e.isDirectory() && keep.has(r)) sweep(p, r);
      // a link is always removed: writing a file through it would follow it
      else if (e.isDirectory() || e.isSymbolicLink() || !files.has(r)) fs.rmSync(p, { recursive: true, force: true });
    }
  };
  sweep(dir, '');
  writeCaseFiles(dir, files, dirs, links);
}

/** Empty `dir` (created when missing). */
export function resetDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
}
