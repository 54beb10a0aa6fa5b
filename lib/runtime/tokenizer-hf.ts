/**
 * Hugging Face `tokenizer.json` tokenizers through @huggingface/tokenizers (pure JS, no
 * dependencies), behind the same small interface the runtime uses for llama2.c vocabularies.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';
import { LowbitError, badFormat, isLowbitError } from '../errors';
import { readJsonFile, MAX_JSON_FILE_BYTES, MAX_TOKENIZER_JSON_BYTES } from '../formats/json';
import type { EncodeOptions, TextTokenizer, Vocab } from './tokenizer';

/**
 * A JSON object file (size, UTF-8 and nesting depth checked first, see formats/json): anything
 * else is LOWBIT_BAD_FORMAT naming the file.
 */
function readJson(file: string, maxBytes = MAX_JSON_FILE_BYTES): Record<string, unknown> {
  const v = readJsonFile(file, maxBytes);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw badFormat(file, `expected a JSON object, found ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}`);
  }
  return v as Record<string, unknown>;
}

/** Largest token id accepted in a tokenizer.json (ids index 32-bit embedding rows). */
const MAX_TOKEN_ID = 2 ** 31 - 2;

/** A JSON value for a message (at most 80 characters; `undefined` and functions by their type). */
function show(v: unknown): string {
  const s = JSON.stringify(v) as string | undefined;
  return s === undefined ? typeof v : s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

const isTokenId = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_TOKEN_ID;

/**
 * The ids tokenizer.json assigns, checked before the tokenizer library sees them: every
 * `model.vocab` value (when it is a piece → id object) and every `added_tokens[].id` must be an
 * integer id; the library accepts anything there and then returns it from encode().
 */
function checkIds(file: string, json: Record<string, unknown>): void {
  const model = json.model;
  if (model !== undefined && (typeof model !== 'object' || model === null || Array.isArray(model))) {
    throw badFormat(file, `"model": expected an object, found ${model === null ? 'null' : Array.isArray(model) ? 'an array' : typeof model}`);
  }
  const vocab = (model as { vocab?: unknown } | undefined)?.vocab;
  if (vocab !== null && typeof vocab === 'object' && !Array.isArray(vocab)) {
    for (const [piece, id] of Object.entries(vocab)) {
      if (!isTokenId(id)) throw badFormat(file, `model.vocab ${JSON.stringify(piece)}: expected a token id (an integer 0 … ${MAX_TOKEN_ID}), found ${show(id)}`);
    }
  }
  const added = json.added_tokens;
  if (added === undefined || added === null) return;
  if (!Array.isArray(added)) throw badFormat(file, `added_tokens: expected an array, found ${typeof added}`);
  added.forEach((t: unknown, i: number) => {
    const e = (typeof t === 'object' && t !== null ? t : {}) as { id?: unknown; content?: unknown };
    if (!isTokenId(e.id) || typeof e.content !== 'string') {
      throw badFormat(file, `added_tokens[${i}]: expected { id: a token id, content: a string }, found ${show(t)}`);
    }
  });
}

/** A tokenizer.json tokenizer. */
export class HfTokenizer implements TextTokenizer {
  readonly size: number;
  readonly bosId: number;
  private readonly impl: HfTokenizerImpl;
  private readonly file: string;
  /** The id of `model.unk_token`, or -1. */
  private readonly unkId: number;

  private constructor(impl: HfTokenizerImpl, size: number, bosId: number, file: string, unkId: number) {
    this.impl = impl;
    this.size = size;
    this.bosId = bosId;
    this.file = file;
    this.unkId = unkId;
  }

  /**
   * Load `tokenizer.json` (+ `tokenizer_config.json`, `config.json` for the BOS id) from a model directory.
   *
   * Errors: LOWBIT_NOT_FOUND (no tokenizer.json), LOWBIT_BAD_FORMAT (not a JSON object, invalid
   * UTF-8, nested deeper than 64 levels, larger than 500 MiB, ids that are not integers, or a
   * tokenizer that fails on a short probe text), LOWBIT_UNSUPPORTED (components the tokenizer
   * library cannot build).
   */
  static fromDir(dir: string, vocabSize: number, bosFromConfig?: number): HfTokenizer {
    const file = path.join(dir, 'tokenizer.json');
    if (!fs.existsSync(file)) throw new LowbitError('LOWBIT_NOT_FOUND', `${dir}: no tokenizer.json (pass a llama2.c tokenizer.bin with --tokenizer)`, { file });
    const json = readJson(file, MAX_TOKENIZER_JSON_BYTES);
    checkIds(file, json);
    const cfgFile = path.join(dir, 'tokenizer_config.json');
    const cfg = fs.existsSync(cfgFile) ? readJson(cfgFile) : {};
    let impl: HfTokenizerImpl;
    try {
      impl = new HfTokenizerImpl(json, cfg);
    } catch (e) {
      throw new LowbitError('LOWBIT_UNSUPPORTED', `${file}: cannot build the tokenizer (${e instanceof Error ? e.message : String(e)})`, { file });
    }
    const model = json.model as { vocab?: Record<string, number> | [string, number][]; unk_token?: unknown } | undefined;
    const vocab = model?.vocab;
    const unk = typeof model?.unk_token === 'string' && vocab && !Array.isArray(vocab) && Object.prototype.hasOwnProperty.call(vocab, model.unk_token) ? vocab[model.unk_token] : -1;
    const tok = new HfTokenizer(impl, 0, 1, file, unk);
    // Components the library builds lazily (regexes, decoders) fail on first use: probe them here,
    // so a broken file fails at load, naming it, rather than in the middle of a run.
    const encodes = (text: string): number[] | null => {
      try {
        return tok.encode(text);
      } catch (e) {
        if (isLowbitError(e, 'LOWBIT_UNSUPPORTED')) return null; // text this vocabulary cannot encode: not a broken file
        throw e;
      }
    };
    const probe = encodes('Hello world 1');
    if (probe) tok.decode(probe);
    let bos = bosFromConfig ?? -1;
    const bosTok = typeof cfg.bos_token === 'string' ? cfg.bos_token : (cfg.bos_token as { content?: unknown } | null | undefined)?.content;
    if (bos < 0 && typeof bosTok === 'string') {
      const ids = encodes(bosTok);
      if (ids?.length === 1) bos = ids[0];
    }
    // the tokenizer's own size: the largest id it knows, +1 (embeddings are often padded beyond it);
    // checkIds made every id an integer
    let size = 0;
    if (model && Array.isArray(model.vocab)) size = model.vocab.length;
    else if (model?.vocab && typeof model.vocab === 'object') for (const id of Object.values(model.vocab as Record<string, number>)) size = Math.max(size, id + 1);
    for (const t of (json.added_tokens as { id: number }[] | null | undefined) ?? []) size = Math.max(size, t.id + 1);
    if (size === 0) size = vocabSize;
    return new HfTokenizer(impl, size, bos < 0 ? 1 : bos, file, unk);
  }

  /** Run the tokenizer library; whatever it throws becomes LOWBIT_BAD_FORMAT naming the file. */
  private _lib<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (isLowbitError(e)) throw e;
      throw new LowbitError('LOWBIT_BAD_FORMAT', `${this.file}: the tokenizer failed to ${what} (${e instanceof Error ? e.message : String(e)})`, { file: this.file }, { cause: e });
    }
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const raw: unknown[] = this._lib('encode', () => this.impl.encode(text, { add_special_tokens: false }).ids);
    // the library's WordLevel model gives `undefined` for a word outside its vocabulary (instead of
    // the unknown token): such an id becomes unk_token's, or the text cannot be encoded
    const ids = raw.map((id) => {
      if (typeof id === 'number' && Number.isInteger(id) && id >= 0) return id;
      if (this.unkId >= 0) return this.unkId;
      throw new LowbitError('LOWBIT_UNSUPPORTED', `${this.file}: the tokenizer has no id for a piece of the text and no unk_token to stand for it`, { file: this.file });
    });
    return opts.bos ? [this.bosId, ...ids] : ids;
  }

  /** The text `id` adds after `prev` (decoding the pair keeps SentencePiece's leading spaces right). */
  printedPiece(prev: number, id: number): Uint8Array {
    if (id < 0 || id >= this.size) return new Uint8Array(0); // an id of the padded embedding rows
    if (prev < 0 || prev >= this.size) prev = this.bosId;
    const o = { skip_special_tokens: true };
    return this._lib('decode', () => {
      const a = this.impl.decode([prev], o), b = this.impl.decode([prev, id], o);
      return Buffer.from(b.startsWith(a) ? b.slice(a.length) : this.impl.decode([id], o), 'utf8');
    });
  }

  decode(ids: number[]): string {
    if (ids.length === 0) return ''; // the library throws on an empty list
    return this._lib('decode', () => this.impl.decode(ids, { skip_special_tokens: true }));
  }
}

/** A token given in tokenizer_config.json as a string or as `{ content }`. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/**
 * The SentencePiece vocabulary of a Llama-style `tokenizer.json` (model type BPE with
 * `byte_fallback`, `▁` for spaces: Llama 1/2, TinyLlama, Mistral, Vicuna, …) as a {@link Vocab},
 * for GGUF's `tokenizer.ggml.model = "llama"`.
 *
 * tokenizer.json carries merges, not scores; llama.cpp's SentencePiece tokenizer merges the adjacent
 * pair whose concatenation has the highest score. Each piece that some merge produces gets
 * score = −(rank of its best merge), so the highest-ranked merge wins in both tokenizers and a
 * tokenizer.json converted from a SentencePiece model tokenizes exactly as the original (tested
 * against the Llama 2 vocabulary). (llama.cpp's own converter writes −1000 for every piece of such
 * a file, which loses the merge order.) Pieces no merge produces (single characters, bytes,
 * specials) get scores below every merge result; they are never looked up as a merge.
 * Token types: `<0xHH>` byte (6), the unknown token (2), special added tokens (3), other added
 * tokens (4), the rest normal (1); embedding rows past the tokenizer's ids are `[PADn]`, unused (5),
 * as llama.cpp writes them.
 *
 * Errors: LOWBIT_NOT_FOUND (no tokenizer.json), LOWBIT_BAD_FORMAT (malformed file, ids past
 * `vocabSize`, holes in the ids), LOWBIT_UNSUPPORTED (byte-level BPE such as Llama 3 / Qwen2, or
 * other model types: GGUF stores those as "gpt2" vocabularies, which lowbit does not write yet).
 */
export function hfVocab(dir: string, vocabSize: number, ids: { bos?: number; eos?: number } = {}): Vocab {
  const file = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(file)) throw new LowbitError('LOWBIT_NOT_FOUND', `${dir}: no tokenizer.json (pass a llama2.c tokenizer.bin with --tokenizer)`, { file });
  const json = readJson(file, MAX_TOKENIZER_JSON_BYTES);
  const bad = (msg: string) => new LowbitError('LOWBIT_BAD_FORMAT', `${file}: ${msg}`, { file });
  const model = json.model as { type?: string; vocab?: unknown; merges?: unknown; byte_fallback?: boolean; unk_token?: string } | undefined;
  if (!model || typeof model !== 'object') throw bad('no "model" object');
  if (model.type !== 'BPE' || model.byte_fallback !== true) {
    throw new LowbitError('LOWBIT_UNSUPPORTED',
      `${file}: model type ${JSON.stringify(model.type)}${model.type === 'BPE' ? ' without byte_fallback (byte-level BPE, e.g. Llama 3 or Qwen2)' : ''}: ` +
      'only SentencePiece-style BPE vocabularies (byte_fallback, as Llama 1/2 and Mistral have) are written to GGUF; pass a llama2.c tokenizer.bin with --tokenizer',
      { file });
  }
  if (!model.vocab || typeof model.vocab !== 'object' || Array.isArray(model.vocab)) throw bad('model.vocab: expected an object of piece → id');
  const byId = new Map<number, string>();
  const put = (piece: string, idRaw: unknown, where: string) => {
    if (typeof idRaw !== 'number' || !Number.isInteger(idRaw) || idRaw < 0) throw bad(`${where}: id ${JSON.stringify(idRaw)} of ${JSON.stringify(piece)} is not a non-negative integer`);
    const id = idRaw;
    if (id >= vocabSize) throw bad(`${where}: id ${id} of ${JSON.stringify(piece)} is outside the model's vocabulary (${vocabSize} rows)`);
    const had = byId.get(id);
    if (had !== undefined && had !== piece) throw bad(`${where}: id ${id} is both ${JSON.stringify(had)} and ${JSON.stringify(piece)}`);
    byId.set(id, piece);
  };
  for (const [piece, id] of Object.entries(model.vocab as Record<string, unknown>)) put(piece, id, 'model.vocab');
  const special = new Set<number>(), added = new Set<number>();
  const addedTokens = json.added_tokens ?? [];
  if (!Array.isArray(addedTokens)) throw bad('added_tokens: expected an array');
  for (const entry of addedTokens as unknown[]) {
    const t = (typeof entry === 'object' && entry !== null ? entry : {}) as { id?: unknown; content?: unknown; special?: unknown };
    if (typeof t.content !== 'string') throw bad('added_tokens: an entry without "content"');
    put(t.content, t.id, 'added_tokens');
    (t.special === true ? special : added).add(t.id as number);
  }
  let size = 0;
  for (const id of byId.keys()) size = Math.max(size, id + 1);
  for (let id = 0; id < size; id++) if (!byId.has(id)) throw bad(`no piece has id ${id} (ids must run 0 … ${size - 1} without holes)`);
  // score = −rank of the best merge producing the piece
  const merges = model.merges ?? [];
  if (!Array.isArray(merges)) throw bad('model.merges: expected an array');
  const idOf = new Map<string, number>();
  for (const [id, p] of byId) {
    const seen = idOf.get(p);
    if (seen === undefined || id < seen) idOf.set(p, id);
  }
  const rank = new Float64Array(size).fill(Infinity);
  for (let r = 0; r < merges.length; r++) {
    const m = merges[r] as unknown;
    let a: string, b: string;
    if (typeof m === 'string') {
      const sp = m.indexOf(' ');
      if (sp <= 0 || m.indexOf(' ', sp + 1) !== -1) throw bad(`model.merges[${r}]: expected "left right", got ${JSON.stringify(m)}`);
      a = m.slice(0, sp);
      b = m.slice(sp + 1);
    } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') [a, b] = m as [string, string];
    else throw bad(`model.merges[${r}]: expected "left right" or [left, right], got ${JSON.stringify(m)}`);
    const id = idOf.get(a + b);
    if (id === undefined) throw bad(`model.merges[${r}]: ${JSON.stringify(a + b)} is not in the vocabulary`);
    if (r < rank[id]) rank[id] = r;
  }
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  const cfg = fs.existsSync(cfgFile) ? readJson(cfgFile) : {};
  const named = (key: string, dflt: number, given?: number): number => {
    if (given !== undefined) return given;
    const t = tokenText(cfg[key]);
    const id = t === undefined ? undefined : idOf.get(t);
    return id ?? (dflt < size ? dflt : -1);
  };
  const bos = named('bos_token', 1, ids.bos), eos = named('eos_token', 2, ids.eos);
  if (bos < 0 || eos < 0 || bos >= vocabSize || eos >= vocabSize) throw bad(`cannot tell the BOS/EOS ids (bos ${bos}, eos ${eos}): set bos_token/eos_token in tokenizer_config.json`);
  const unk = typeof model.unk_token === 'string' ? idOf.get(model.unk_token) : undefined;
  const pieces = new Array<string>(vocabSize);
  const pieceBytes = new Array<Uint8Array>(vocabSize);
  const scores = new Float32Array(vocabSize);
  const tokenTypes = new Int32Array(vocabSize);
  let maxTokenLength = 0;
  for (let id = 0; id < vocabSize; id++) {
    let p: string, type: number, score: number;
    if (id >= size) {
      p = `[PAD${id}]`;
      type = 5;
      score = -1e9;
    } else {
      const raw = byId.get(id) ?? ''; // ids 0 … size − 1 were checked above to have pieces
      p = id === bos ? '\n<s>\n' : id === eos ? '\n</s>\n' : raw.replace(/\u2581/g, ' ');
      type = /^<0x[0-9A-Fa-f]{2}>$/.test(raw) ? 6 : id === unk ? 2 : special.has(id) ? 3 : added.has(id) ? 4 : 1;
      // merge results: −rank (0 is the best); the rest below them all, in id order
      score = Number.isFinite(rank[id]) ? -rank[id] : -(merges.length + id);
    }
    pieces[id] = p;
    const b = new Uint8Array(Buffer.from(p, 'utf8'));
    pieceBytes[id] = b;
    if (b.length > maxTokenLength) maxTokenLength = b.length;
    scores[id] = score;
    tokenTypes[id] = type;
  }
  return { pieces, pieceBytes, scores, bos, eos, maxTokenLength, tokenTypes };
}
