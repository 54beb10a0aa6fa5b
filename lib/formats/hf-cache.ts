/**
 * Models named by their Hugging Face id, `org/name[@revision]`, found in the local Hugging Face
 * cache the way huggingface_hub lays it out: `<cache>/models--org--name/refs/<branch>` holds a
 * commit hash, `<cache>/models--org--name/snapshots/<hash>/` the files. The cache is
 * `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. Nothing is downloaded
 * here (that is lib/pipeline/download.ts, asked for with --download): a model that is not in the
 * cache is LOWBIT_NOT_FOUND naming every place looked at.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LowbitError, invalidOption } from '../errors';

/** `org/name` or `org/name@revision` (a branch, tag or commit hash). */
const REPO_ID = /^([A-Za-z0-9][\w.-]{0,95})\/([\w.-]{1,96})(?:@([\w./-]{1,128}))?$/;

/** Whether `spec` reads as a Hugging Face model id rather than a path. */
export function looksLikeRepoId(spec: string): boolean {
  return REPO_ID.test(spec) && !spec.startsWith('.') && !fs.existsSync(spec);
}

/** The cache directories to search, in order, with the variable each came from. */
export function hfCacheDirs(env: NodeJS.ProcessEnv = process.env): { dir: string; from: string }[] {
  const out: { dir: string; from: string }[] = [];
  if (env.HF_HUB_CACHE) out.push({ dir: env.HF_HUB_CACHE, from: 'HF_HUB_CACHE' });
  if (env.HF_HOME) out.push({ dir: path.join(env.HF_HOME, 'hub'), from: 'HF_HOME/hub' });
  out.push({ dir: path.join(os.homedir(), '.cache', 'huggingface', 'hub'), from: 'the default ~/.cache/huggingface/hub' });
  return out;
}

/**
 * The local snapshot directory of `org/name[@revision]` (revision default `main`), or
 * LOWBIT_NOT_FOUND listing each cache and what was missing there.
 */
export function resolveRepoId(spec: string, env: NodeJS.ProcessEnv = process.env): string {
  const m = REPO_ID.exec(spec);
  if (!m) throw invalidOption('model', 'a path or a Hugging Face id (org/name[@revision])', spec);
  const [, org, name, revision = 'main'] = m;
  const looked: string[] = [];
  for (const { dir, from } of hfCacheDirs(env)) {
    const repo = path.join(dir, `models--${org}--${name}`);
    if (!fs.existsSync(repo)) {
      looked.push(`${from} (${dir}): no models--${org}--${name}`);
      continue;
    }
    // a branch or tag names a commit in refs/; a commit hash names its snapshot directly
    const ref = path.join(repo, 'refs', revision);
    let commit = revision;
    if (fs.existsSync(ref)) commit = fs.readFileSync(ref, 'utf8').trim();
    const snap = path.join(repo, 'snapshots', commit);
    if (/^[\w.-]+$/.test(commit) && fs.existsSync(snap) && fs.statSync(snap).isDirectory()) return snap;
    looked.push(`${from} (${dir}): models--${org}--${name} has no snapshot for "${revision}"${commit !== revision ? ` (refs/${revision} → ${commit})` : ''}`);
  }
  throw new LowbitError('LOWBIT_NOT_FOUND',
    `${spec}: not in the local Hugging Face cache (looked in ${looked.join('; ')}); fetch it with --download (downloadModel() in the API) or \`huggingface-cli download ${org}/${name}\`, or pass a local path`,
    { model: spec, looked });
}
