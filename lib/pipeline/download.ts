/**
 * Download a model from the Hugging Face Hub into the local cache (huggingface_hub's layout, so the
 * Python tools share it), through @huggingface/hub: only what lowbit reads — config.json, the
 * safetensors weights and their index, the tokenizer files, generation_config.json — never
 * duplicate PyTorch .bin weights. Returns the snapshot directory, which every command then reads
 * like a local model. This needs the network; lowbit's tests check it only against an unreachable
 * hub (the typed error), because no test here may reach the Hub.
 */
import * as path from 'node:path';
import { LowbitError, invalidOption } from '../errors';
import { checkSignal } from '../config/validate';
import { hfCacheDirs } from '../formats/hf-cache';
import { safeReporter, type Progress } from '../config/run';

/** Options of {@link downloadModel}. */
export interface DownloadModelOptions {
  /** Cache directory. @default $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub */
  cacheDir?: string;
  /** Access token (gated or private models). @default $HF_TOKEN */
  accessToken?: string;
  /** The Hub's URL. @default https://huggingface.co */
  hubUrl?: string;
  signal?: AbortSignal;
  /** Progress in files (phase 'download', module = the file). Latest wins. */
  onProgress?: (p: Progress) => void;
}

/** The files of a repository lowbit needs. */
export function wantedRepoFile(p: string): boolean {
  const base = path.posix.basename(p);
  if (p.includes('/')) return false; // the model lives at the repository root
  return base === 'config.json' || base.endsWith('.safetensors') || base === 'model.safetensors.index.json' ||
    ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json', 'tokenizer.bin'].includes(base);
}

/** Download `org/name[@revision]` (its safetensors model) into the local Hugging Face cache; resolves to the snapshot directory. */
export async function downloadModel(spec: string, options: DownloadModelOptions = {}): Promise<string> {
  const m = /^([A-Za-z0-9][\w.-]{0,95}\/[\w.-]{1,96})(?:@([\w./-]{1,128}))?$/.exec(spec);
  if (!m) throw invalidOption('model', 'a Hugging Face id (org/name[@revision])', spec);
  const [, repo, revision = 'main'] = m;
  const signal = checkSignal(options.signal);
  const report = safeReporter(options.onProgress);
  const cacheDir = options.cacheDir ?? hfCacheDirs()[0].dir;
  const accessToken = options.accessToken ?? process.env.HF_TOKEN;
  const hub = await import('@huggingface/hub');
  const common = { repo: { type: 'model' as const, name: repo }, revision, ...(options.hubUrl ? { hubUrl: options.hubUrl } : {}), ...(accessToken ? { accessToken } : {}) };
  const files: string[] = [];
  try {
    for await (const f of hub.listFiles(common)) if (f.type === 'file' && wantedRepoFile(f.path)) files.push(f.path);
  } catch (e) {
    throw new LowbitError('LOWBIT_IO', `${spec}: cannot list the repository on the Hub (${(e as Error).message}); check the id, the network and HF_TOKEN for gated models`, { model: spec }, { cause: e });
  }
  if (!files.includes('config.json') || !files.some((f) => f.endsWith('.safetensors'))) {
    throw new LowbitError('LOWBIT_NOT_FOUND', `${spec}: the repository has no config.json with safetensors weights at its root (found: ${files.join(', ') || 'nothing lowbit reads'})`, { model: spec });
  }
  let snapshot = '';
  for (const [i, file] of files.entries()) {
    if (signal?.aborted) throw new LowbitError('LOWBIT_ABORTED', `downloadModel: aborted by signal after ${i}/${files.length} files (the cache keeps what was complete)`);
    report({ phase: 'download', done: i, total: files.length, module: file });
    try {
      const local = await hub.downloadFileToCacheDir({ ...common, path: file, cacheDir });
      snapshot = path.dirname(local);
    } catch (e) {
      throw new LowbitError('LOWBIT_IO', `${spec}: downloading ${file} failed (${(e as Error).message})`, { model: spec, file }, { cause: e });
    }
  }
  report({ phase: 'download', done: files.length, total: files.length });
  return snapshot;
}
