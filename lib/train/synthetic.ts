/**
 * Data-free training data as LLM-QAT generates it (its generate_data.py): each sequence starts
 * from one token drawn uniformly from the vocabulary, continues greedily from the teacher for the
 * first few tokens (3, 4 or 5 in turn, the prefix lengths LLM-QAT uses), and is sampled from the
 * teacher's top-k (default 50, the library default LLM-QAT ran with) at temperature 1 after that.
 * Generation runs through lowbit's runtime with its KV cache, one sequence after another.
 *
 * Written as JSONL ({"input_ids": [...]} per line) — the calibration format every post-training
 * method reads (`--calib FILE.jsonl`) — with a sidecar FILE.meta.json saying what made it (the
 * teacher, seed, temperature, top-k, counts) so a run can be repeated or the data reused.
 */
import * as fs from 'node:fs';
import { LowbitError } from '../errors';
import { invalidOption, checkInt, checkNumber, checkSignal } from '../config/validate';
import type { Progress } from '../config/run';
import { writeFileDurable } from '../formats/output';
import type { LanguageModel } from '../runtime/model';
import { Mulberry32 } from '../runtime/rng';

/** Options of {@link generateSyntheticData}. */
export interface SyntheticDataOptions {
  /** Sequences to generate. */
  count: number;
  /** Tokens per sequence (capped at the model's context). */
  seqLen: number;
  /** @default 0 */
  seed?: number;
  /** @default 1 */
  temperature?: number;
  /** Sample among the k most likely tokens (0: the whole vocabulary). @default 50 */
  topK?: number;
  /** Greedy prefix lengths, in turn (the start token included). @default [3, 4, 5] */
  greedyPrefix?: number[];
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

/** What made a synthetic dataset (its sidecar). */
export interface SyntheticDataMeta {
  kind: 'lowbit-synthetic';
  teacher: string;
  count: number;
  seqLen: number;
  seed: number;
  temperature: number;
  topK: number;
  greedyPrefix: number[];
  tokens: number;
  seconds: number;
}

/** Sequences generated from `teacher` (see the file header). */
export async function generateSyntheticData(teacher: LanguageModel, o: SyntheticDataOptions): Promise<{ sequences: Int32Array[]; meta: SyntheticDataMeta }> {
  const t0 = performance.now();
  const count = checkInt('count', o.count, 1, 1e7);
  const seqLen = Math.min(checkInt('seqLen', o.seqLen, 2, 1 << 20), teacher.config.seqLen);
  const seed = checkInt('seed', o.seed ?? 0, 0, 2 ** 32 - 1);
  const temperature = checkNumber('temperature', o.temperature ?? 1, 0, 100);
  const topK = checkInt('topK', o.topK ?? 50, 0, 1 << 30);
  const prefix = o.greedyPrefix ?? [3, 4, 5];
  if (!Array.isArray(prefix) || prefix.length === 0) throw invalidOption('greedyPrefix', 'a non-empty array of prefix lengths', prefix);
  for (const p of prefix) checkInt('greedyPrefix', p, 1, seqLen);
  const signal = checkSignal(o.signal);
  const V = teacher.config.vocabSize;
  const rng = new Mulberry32(seed);
  const sequences: Int32Array[] = [];
  for (let s = 0; s < count; s++) {
    const ids = new Int32Array(seqLen);
    ids[0] = Math.floor(rng.next() * V);
    const greedy = prefix[s % prefix.length];
    for (let t = 1; t < seqLen; t++) {
      if (signal?.aborted) throw new LowbitError('LOWBIT_ABORTED', 'synthetic data: aborted by signal');
      const logits = await teacher.forward(ids.subarray(t - 1, t), t - 1, 1, signal);
      ids[t] = t < greedy || temperature === 0 ? argmax(logits) : sampleTopK(logits, temperature, topK, rng);
    }
    sequences.push(ids);
    o.onProgress?.({ phase: 'generate', done: s + 1, total: count });
  }
  const meta: SyntheticDataMeta = {
    kind: 'lowbit-synthetic', teacher: teacher.source, count, seqLen, seed, temperature, topK, greedyPrefix: prefix,
    tokens: count * seqLen, seconds: (performance.now() - t0) / 1000,
  };
  return { sequences, meta };
}

function argmax(z: Float32Array): number {
  let b = 0;
  for (let i = 1; i < z.length; i++) if (z[i] > z[b]) b = i;
  return b;
}

/** A token from softmax(z / T) restricted to the k largest logits (ties by index). */
function sampleTopK(z: Float32Array, temperature: number, k: number, rng: Mulberry32): number {
  let idx = Array.from({ length: z.length }, (_, i) => i);
  if (k > 0 && k < z.length) idx = idx.sort((a, b) => z[b] - z[a] || a - b).slice(0, k);
  let mx = -Infinity;
  for (const i of idx) mx = Math.max(mx, z[i]);
  const p = idx.map((i) => Math.exp((z[i] - mx) / temperature));
  const sum = p.reduce((a, b) => a + b, 0);
  let r = rng.next() * sum;
  for (let j = 0; j < idx.length; j++) {
    r -= p[j];
    if (r < 0) return idx[j];
  }
  return idx[idx.length - 1];
}

/** Write sequences as JSONL (`input_ids`) and the sidecar `${file}.meta.json`, each atomically. */
export async function writeSyntheticData(file: string, sequences: Int32Array[], meta: SyntheticDataMeta): Promise<void> {
  await writeFileDurable(file, async (fh) => {
    for (const s of sequences) await fh.writeFile(JSON.stringify({ input_ids: Array.from(s) }) + '\n');
  });
  await writeFileDurable(`${file}.meta.json`, async (fh) => { await fh.writeFile(JSON.stringify(meta, null, 2) + '\n'); });
}

/** The sidecar of a dataset written by {@link writeSyntheticData}, or null when there is none. */
export function readSyntheticMeta(file: string): SyntheticDataMeta | null {
  const f = `${file}.meta.json`;
  if (!fs.existsSync(f)) return null;
  try {
    return JSON.parse(fs.readFileSync(f, 'utf8')) as SyntheticDataMeta;
  } catch {
    throw new LowbitError('LOWBIT_BAD_FORMAT', `${f}: not a JSON sidecar`, { file: f });
  }
}
