/**
 * The fuzzer's seed corpus: one small VALID input of every kind, built in memory by lowbit's own
 * writers (safetensors, GGUF, tokenizer.bin) or by the byte layout of docs/formats.md (llama2.c,
 * tokenizer.json, calibration files), all from fixed seeds, so a run is reproducible from its seed.
 *
 * Every model has the same tiny shape (dim 32, FFN 64, 1 layer, 4 heads, 2 KV heads, 300-piece
 * vocabulary, context 32): tens of KB per file, so a case writes and parses in well under a
 * millisecond, and the few full cases (quantize, load, forward) take tens of milliseconds.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeSyntheticModel, openSafetensors, writeSafetensors, writeGguf, buildLlamaGgufSpec, type TensorEntry } from '../../lib/index';
import { writeLlama2cTokenizer } from '../../lib/formats/llama2c';
import type { Vocab } from '../../lib/formats/vocab';
import { FuzzRng } from './rng';

/** The shape of every seed model. */
export const SEED_SHAPE = { dim: 32, hiddenDim: 64, nLayers: 1, nHeads: 4, nKvHeads: 2, vocabSize: 300, seqLen: 32 } as const;

/** Relative path → bytes: the files of one input. */
export type FileSet = Map<string, Uint8Array>;

/** A llama2.c seed file and where its parts start. */
export interface Llama2cSeed {
  version: 0 | 1;
  shared: boolean;
  bytes: Uint8Array;
  /** Byte offsets of every segment start (header end first) and the file end. */
  boundaries: number[];
}

/** Every seed input. */
export interface Corpus {
  vocab: Vocab;
  /** `model/config.json` + `model/model.safetensors` (F16). */
  hfSingle: FileSet;
  /** `model/config.json` + two shards + `model/model.safetensors.index.json` (F32). */
  hfSharded: FileSet;
  /** GGUF with Q8_0 weights and an output tensor; GGUF with F16 weights, tied. */
  gguf: Uint8Array[];
  llama2c: Llama2cSeed[];
  tokenizerBin: Uint8Array;
  /** tokenizer.json of three model types: BPE with byte fallback (Llama), WordLevel, Unigram. */
  tokenizerJsons: Uint8Array[];
  tokenizerConfigJson: Uint8Array;
  calibText: Uint8Array;
  calibJsonlText: Uint8Array;
  calibJsonlIds: Uint8Array;
  calibDir: FileSet;
}

const WORDS = [
  ' ', 'e', 't', 'a', 'o', 'n', 'h', 's', 'i', 'r', 'd', 'u', 'p', 'c', 'm', 'O', 'T', 'l', 'y', 'w',
  ' t', 'th', 'he', ' th', ' the', 'in', ' a', 'an', 'nd', ' and', 'on', 'nc', 'Onc', 'Once', ' u', 'up', ' up', 'ü', 'é', '日本', '\ufeff',
];

/** A 300-piece SentencePiece-style vocabulary: unk, BOS, EOS, 256 byte pieces, then words. */
export function seedVocab(): Vocab {
  const pieces = ['<unk>', '\n<s>\n', '\n</s>\n'];
  for (let b = 0; b < 256; b++) pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  for (const w of WORDS) pieces.push(w);
  while (pieces.length < SEED_SHAPE.vocabSize) pieces.push(`w${pieces.length}`);
  const scores = new Float32Array(pieces.length);
  for (let i = 259; i < pieces.length; i++) scores[i] = -(i - 259) - (pieces[i].length === 1 ? 1000 : 0);
  const pieceBytes = pieces.map((p) => new Uint8Array(Buffer.from(p, 'utf8')));
  return { pieces, pieceBytes, scores, bos: 1, eos: 2, maxTokenLength: pieceBytes.reduce((m, b) => Math.max(m, b.length), 0) };
}

/** tokenizer.json (BPE with byte_fallback, `▁` for spaces, merges for every split into two pieces) of a vocabulary. */
function tokenizerJson(v: Vocab): string {
  const n = v.pieces.length;
  const text = (id: number) => (id === v.bos ? '<s>' : id === v.eos ? '</s>' : v.pieces[id].replace(/ /g, '\u2581'));
  const isByte = (id: number) => id >= 3 && id < 259;
  const ids = new Map<string, number>();
  for (let id = 0; id < n; id++) if (!ids.has(text(id))) ids.set(text(id), id);
  const merges: [string, number][] = [];
  for (let id = 259; id < n; id++) {
    const cps = Array.from(text(id));
    for (let i = 1; i < cps.length; i++) {
      const a = ids.get(cps.slice(0, i).join('')), b = ids.get(cps.slice(i).join(''));
      if (a !== undefined && b !== undefined && a >= 259 && b >= 259 && !isByte(a) && !isByte(b)) merges.push([`${text(a)} ${text(b)}`, v.scores[id]]);
    }
  }
  merges.sort((x, y) => y[1] - x[1]);
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return JSON.stringify({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true,
      vocab: Object.fromEntries(ids), merges: merges.map(([m]) => m),
    },
  });
}

/** A WordLevel tokenizer.json (lowercase, whitespace split) and a Unigram one (Metaspace), over words of the story. */
function otherTokenizerJsons(): string[] {
  const words = ['<unk>', '<s>', '</s>', 'once', 'upon', 'a', 'time', 'there', 'was', 'little', 'girl', 'named', 'lily', '.', ','];
  const specials = [0, 1, 2].map((id) => ({ id, content: words[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const wordLevel = {
    version: '1.0', truncation: null, padding: null, added_tokens: specials, normalizer: { type: 'Lowercase' }, pre_tokenizer: { type: 'Whitespace' },
    post_processor: null, decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordLevel', vocab: Object.fromEntries(words.map((w, i) => [w, i])), unk_token: '<unk>' },
  };
  const pieces = ['<unk>', '<s>', '</s>', '\u2581', 'a', 'b', 'c', 'e', 'i', 'l', 'n', 'o', 'p', 't', 'u', '\u2581once', '\u2581upon', '\u2581a', '\u2581time', 'on', 'ce', 'up'];
  const meta = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true };
  const unigram = {
    version: '1.0', truncation: null, padding: null, added_tokens: specials.map((t) => ({ ...t, content: pieces[t.id] })), normalizer: null,
    pre_tokenizer: meta, post_processor: null, decoder: meta,
    model: { type: 'Unigram', unk_id: 0, vocab: pieces.map((p, i) => [p, -i]), byte_fallback: false },
  };
  return [JSON.stringify(wordLevel), JSON.stringify(unigram)];
}

/** Row-major shapes of the llama tensors (HF names), in the order a writer lists them. */
function llamaShapes(tied: boolean): [string, number[]][] {
  const { dim, hiddenDim, nHeads, nKvHeads, vocabSize } = SEED_SHAPE;
  const kv = (dim / nHeads) * nKvHeads;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [vocabSize, dim]]];
  const p = 'model.layers.0';
  out.push([`${p}.input_layernorm.weight`, [dim]], [`${p}.self_attn.q_proj.weight`, [dim, dim]], [`${p}.self_attn.k_proj.weight`, [kv, dim]],
    [`${p}.self_attn.v_proj.weight`, [kv, dim]], [`${p}.self_attn.o_proj.weight`, [dim, dim]], [`${p}.post_attention_layernorm.weight`, [dim]],
    [`${p}.mlp.gate_proj.weight`, [hiddenDim, dim]], [`${p}.mlp.up_proj.weight`, [hiddenDim, dim]], [`${p}.mlp.down_proj.weight`, [dim, hiddenDim]],
    ['model.norm.weight', [dim]]);
  if (!tied) out.push(['lm_head.weight', [vocabSize, dim]]);
  return out;
}

function randomF32(rng: FuzzRng, n: number, norm: boolean): Float32Array {
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = norm ? 1 + rng.normal(0.05) : rng.normal(0.05);
  return f;
}

/** llama2.c segment sizes in floats, in file order (docs/formats.md §8.1, §8.2). */
export function llama2cSegments(version: 0 | 1, shared: boolean): number[] {
  const { dim, hiddenDim: hid, nLayers: L, nHeads, nKvHeads, vocabSize: V, seqLen } = SEED_SHAPE;
  const hs = dim / nHeads, kv = nKvHeads * hs;
  const per = (n: number) => new Array<number>(L).fill(n);
  const matrices = [...per(dim * dim), ...per(kv * dim), ...per(kv * dim), ...per(dim * dim)];
  const ffn = [...per(hid * dim), ...per(dim * hid), ...per(hid * dim)];
  const segs = version === 0
    ? [V * dim, ...per(dim), ...matrices, ...per(dim), ...ffn, dim, seqLen * (hs / 2), seqLen * (hs / 2)]
    : [...per(dim), ...per(dim), dim, V * dim, ...matrices, ...ffn];
  if (!shared) segs.push(V * dim);
  return segs;
}

function llama2cSeed(version: 0 | 1, shared: boolean, rng: FuzzRng): Llama2cSeed {
  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen } = SEED_SHAPE;
  const headerBytes = version === 0 ? 28 : 256;
  const segs = llama2cSegments(version, shared);
  const floats = segs.reduce((a, b) => a + b, 0);
  const buf = Buffer.alloc(headerBytes + 4 * floats);
  let at = 0;
  if (version === 1) {
    buf.writeUInt32LE(0x616b3432, 0);
    buf.writeInt32LE(1, 4);
    at = 8;
  }
  for (const v of [dim, hiddenDim, nLayers, nHeads, nKvHeads, version === 0 && !shared ? -vocabSize : vocabSize, seqLen]) {
    buf.writeInt32LE(v, at);
    at += 4;
  }
  if (version === 1) buf[36] = shared ? 1 : 0;
  const w = randomF32(rng, floats, false);
  Buffer.from(w.buffer).copy(buf, headerBytes);
  const boundaries = [headerBytes];
  for (const s of segs) boundaries.push(boundaries[boundaries.length - 1] + 4 * s);
  return { version, shared, bytes: new Uint8Array(buf), boundaries };
}

const STORY = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. ' +
  'One day, she saw a big red ball in the park. "Can I play with it?" she asked. Her mom said yes, ' +
  'and Lily ran and ran until the sun went down. Über café 日本語 🙂.\n';

function readDir(dir: string, prefix: string): FileSet {
  const out: FileSet = new Map();
  for (const f of fs.readdirSync(dir).sort()) out.set(`${prefix}/${f}`, new Uint8Array(fs.readFileSync(path.join(dir, f))));
  return out;
}

/** Build the corpus; `scratch` is an empty directory it may use (and leaves empty). */
export async function buildCorpus(scratch: string): Promise<Corpus> {
  const rng = new FuzzRng(0x5eed);
  const vocab = seedVocab();
  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen } = SEED_SHAPE;
  try {
    // Hugging Face directories
    const single = path.join(scratch, 'single');
    await writeSyntheticModel(single, { shape: { hiddenSize: dim, intermediateSize: hiddenDim, layers: nLayers, heads: nHeads, kvHeads: nKvHeads, vocabSize, maxPositions: seqLen }, dtype: 'F16', seed: 1 });
    const hfSingle = readDir(single, 'model');
    const sharded = path.join(scratch, 'sharded');
    const entries: TensorEntry[] = llamaShapes(false).map(([name, shape]) => ({
      name, dtype: 'F32', shape, data: new Uint8Array(randomF32(rng, shape.reduce((a, b) => a * b, 1), shape.length === 1).buffer),
    }));
    const total = entries.reduce((s, e) => s + (e.data as Uint8Array).byteLength, 0);
    await writeSafetensors(sharded, entries, { maxShardBytes: Math.ceil(total / 2) });
    fs.copyFileSync(path.join(single, 'config.json'), path.join(sharded, 'config.json'));
    const hfSharded = readDir(sharded, 'model');
    // a reader round trip: the seeds must be valid
    openSafetensors(single).close();
    openSafetensors(sharded).close();

    // GGUF
    const gguf: Uint8Array[] = [];
    for (const [type, tied] of [['Q8_0', false], ['F16', true]] as const) {
      const tensors = new Map(llamaShapes(tied).map(([name, shape]) => [name, { data: randomF32(rng, shape.reduce((a, b) => a * b, 1), shape.length === 1), shape }]));
      const spec = buildLlamaGgufSpec({ name: 'fuzz-seed', dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, contextLength: seqLen, rmsEps: 1e-5, ropeTheta: 10000 },
        vocab, tensors, { type, ropeOrder: 'adjacent' });
      const file = path.join(scratch, `seed-${type}.gguf`);
      await writeGguf(file, spec);
      gguf.push(new Uint8Array(fs.readFileSync(file)));
    }

    // llama2.c checkpoints and tokenizer.bin
    const llama2c = [llama2cSeed(0, true, rng), llama2cSeed(0, false, rng), llama2cSeed(1, true, rng), llama2cSeed(1, false, rng)];
    const tokFile = path.join(scratch, 'tokenizer.bin');
    writeLlama2cTokenizer(vocab, tokFile);
    const tokenizerBin = new Uint8Array(fs.readFileSync(tokFile));

    // calibration data
    const lines = STORY.trim().split(/(?<=\.) /);
    const calibJsonlText = lines.map((t) => JSON.stringify({ text: t })).join('\n') + '\n';
    const calibJsonlIds = lines.map((_, i) => JSON.stringify({ input_ids: Array.from({ length: 12 }, (_x, j) => (i * 37 + j * 11) % vocabSize) })).join('\n') + '\n';
    const calibDir: FileSet = new Map(lines.slice(0, 3).map((t, i) => [`calib/part-${i}.txt`, new Uint8Array(Buffer.from(t, 'utf8'))]));

    return {
      vocab, hfSingle, hfSharded, gguf, llama2c, tokenizerBin,
      tokenizerJsons: [tokenizerJson(vocab), ...otherTokenizerJsons()].map((t) => new Uint8Array(Buffer.from(t, 'utf8'))),
      tokenizerConfigJson: Buffer.from(JSON.stringify({ bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', add_bos_token: true }), 'utf8'),
      calibText: Buffer.from(STORY.repeat(4), 'utf8'),
      calibJsonlText: Buffer.from(calibJsonlText, 'utf8'),
      calibJsonlIds: Buffer.from(calibJsonlIds, 'utf8'),
      calibDir,
    };
  } finally {
    for (const f of fs.readdirSync(scratch)) fs.rmSync(path.join(scratch, f), { recursive: true, force: true });
  }
}
