/**
 * What names a run's inputs without reading them: canonical JSON (equal data, equal text) and the
 * fingerprint of an input path — each file's relative name, size and mtime (a directory: its
 * files, two levels deep). The queue's job ids and the pipeline's resume key are hashes of both:
 * the same inputs and options give the same key, and touching an input gives a new one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';

/** JSON with object keys sorted at every level and undefined members dropped: equal data, equal text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonicalJson(x))).join(',')}]`;
  if (v instanceof RegExp) return JSON.stringify(String(v));
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** One input as a key sees it: its files' relative names, sizes and mtimes, or absent. */
export function fingerprint(p: string): unknown {
  const stat = (f: string) => {
    try {
      return fs.statSync(f); // follows links (a Hugging Face cache snapshot is links to blobs)
    } catch {
      return null;
    }
  };
  const top = stat(p);
  if (!top) return { path: p, absent: true };
  if (!top.isDirectory()) return { path: p, size: top.size, mtimeMs: top.mtimeMs };
  const files: [string, number, number][] = [];
  const walk = (dir: string, rel: string, depth: number) => {
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const n of names) {
      const s = stat(path.join(dir, n));
      if (!s) continue;
      if (s.isDirectory()) {
        if (depth < 2) walk(path.join(dir, n), `${rel}${n}/`, depth + 1);
      } else {
        files.push([`${rel}${n}`, s.size, s.mtimeMs]);
      }
    }
  };
  walk(p, '', 1);
  return { path: p, files };
}

/** SHA-256 hex of the canonical JSON of `v`. */
export function keyOf(v: unknown): string {
  return createHash('sha256').update(canonicalJson(v)).digest('hex');
}
