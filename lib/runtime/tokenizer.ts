/**
 * A SentencePiece-style BPE tokenizer that reproduces llama2.c `run.c`'s `encode` and `decode`
 * exactly (docs/formats.md §8.4; the fixture `stories260K/expected.json` is the spec).
 *
 * encode (run.c): optional BOS; if the text is non-empty, the dummy-prefix piece `" "`; then each
 * UTF-8 code point (a lead byte plus up to 3 continuation bytes) becomes its piece when one exists,
 * else one byte-fallback token per byte (byte `b` → id `b + 3`); then, repeatedly, the adjacent
 * pair whose concatenation is a piece with the highest score is merged (the leftmost pair on ties;
 * a pair whose score is not above −1e10 never merges) until no pair merges.
 *
 * run.c rescans every pair after each merge (O(n²)). Here the candidate pairs sit in a binary heap
 * keyed by (score descending, position of the left symbol ascending) over a linked list of
 * symbols; stale entries are dropped lazily via per-symbol version counters. Because merges never
 * reorder symbols, "smallest left position" is exactly run.c's "first pair in the scan", so the
 * result is identical while the cost is O(n log n).
 *
 * decode (run.c): the piece of `id`; after BOS a leading space is dropped; a piece `<0xHH>` stands
 * for that raw byte. run.c's `safe_printf` additionally hides single bytes that are neither
 * printable nor whitespace: {@link Tokenizer.printedPiece}.
 *
 * Text is handled as C strings, as run.c does: encoding stops at the first NUL character. Two
 * departures where run.c would misbehave: a vocabulary without a `" "` piece gets no dummy prefix
 * (run.c would emit id −1), and one too small for id `b + 3` uses its `<0xHH>` piece for byte `b`
 * (or throws LOWBIT_UNSUPPORTED when there is none).
 */
import { LowbitError } from '../errors';
import { invalidOption, checkObject } from '../config/validate';
import { readLlama2cTokenizer } from '../formats/llama2c';
import { ggufVocab, type GgufFile } from '../formats/gguf';
import type { Vocab } from '../formats/vocab';
export type { Vocab } from '../formats/vocab';


/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Prepend the BOS id. @default false */
  bos?: boolean;
  /** Append the EOS id. @default false */
  eos?: boolean;
}

/** Incremental decoder: feed ids one at a time, get text that never splits a UTF-8 sequence. */
export interface TokenTextStream {
  /** Decode one more id; returns the text completed by it (possibly ""). */
  push(id: number): string;
  /** Flush a trailing incomplete UTF-8 sequence (as U+FFFD) and return it. */
  end(): string;
}

/** run.c compares candidate scores with `>` starting from this float. */
const MIN_MERGE_SCORE = Math.fround(-1e10);

const SINGLE_BYTES: Uint8Array[] = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
const EMPTY = new Uint8Array(0);

function latin1(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let s = '';
  for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

function isHexDigit(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** C `isspace` in the "C" locale. */
function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/**
 * run.c's `sscanf(piece, "<0x%02hhX>", &byte) == 1`: the piece starts with `<0x`, then (after
 * optional whitespace and sign) one or two hex digits; the closing `>` is not checked (sscanf's
 * count does not depend on it). Returns the byte, or -1.
 */
function parseBytePiece(b: Uint8Array): number {
  if (b.length < 4 || b[0] !== 0x3c || b[1] !== 0x30 || b[2] !== 0x78) return -1;
  let i = 3;
  while (i < b.length && isSpace(b[i])) i++;
  let width = 2;
  let neg = false;
  if (i < b.length && (b[i] === 0x2b || b[i] === 0x2d)) {
    neg = b[i] === 0x2d;
    i++;
    width--;
  }
  let v = 0;
  let digits = 0;
  while (digits < width && i < b.length && isHexDigit(b[i])) {
    v = v * 16 + parseInt(String.fromCharCode(b[i]), 16);
    i++;
    digits++;
  }
  if (digits === 0) return -1;
  return (neg ? -v : v) & 0xff;
}

/** The bytes printf("%s") would write: up to the first NUL. */
function cString(b: Uint8Array): Uint8Array {
  const z = b.indexOf(0);
  return z < 0 ? b : b.subarray(0, z);
}

/** llama2.c-compatible BPE tokenizer over a {@link Vocab}. */
/** What the runtime needs from a tokenizer (llama2.c vocabularies here; tokenizer.json in tokenizer-hf.ts). */
export interface TextTokenizer {
  /** Number of token ids. */
  readonly size: number;
  /** The BOS id. */
  readonly bosId: number;
  encode(text: string, opts?: EncodeOptions): number[];
  /** The bytes printed for `id` following `prev`. */
  printedPiece(prev: number, id: number): Uint8Array;
}

export class Tokenizer implements TextTokenizer {
  /** The vocabulary (do not modify it after construction). */
  readonly vocab: Vocab;
  /** The BOS id. */
  get bosId(): number {
    return this.vocab.bos;
  }
  /** @internal piece bytes as latin1 strings, by id */
  private readonly _keys: string[];
  /** @internal latin1 key → id (the lowest id when a piece occurs twice) */
  private readonly _lookup: Map<string, number>;
  /** @internal raw byte of each `<0xHH>` piece, else -1 */
  private readonly _byteOf: Int16Array;
  /** @internal id of the byte-fallback token per byte value, -1 when the vocabulary has none */
  private readonly _byteIds: Int32Array;
  /** @internal id of the dummy-prefix piece " ", or -1 */
  private readonly _space: number;

  /** Wrap a vocabulary (checked for consistent lengths and ids). */
  constructor(vocab: Vocab) {
    checkObject('vocab', vocab, 'a Vocab object');
    const pieceBytes: unknown = vocab.pieceBytes;
    const n = Array.isArray(pieceBytes) ? pieceBytes.length : 0;
    if (n === 0) throw invalidOption('vocab.pieceBytes', 'a non-empty array of Uint8Array', vocab.pieceBytes);
    if (!Array.isArray(vocab.pieces) || vocab.pieces.length !== n) throw invalidOption('vocab.pieces', `an array of ${n} strings`, vocab.pieces);
    if (!(vocab.scores instanceof Float32Array) || vocab.scores.length !== n) throw invalidOption('vocab.scores', `a Float32Array of length ${n}`, vocab.scores);
    for (const [k, v] of [['vocab.bos', vocab.bos], ['vocab.eos', vocab.eos]] as const) {
      if (!Number.isInteger(v) || v < -1 || v >= n) throw invalidOption(k, `an id in [-1, ${n})`, v);
    }
    this.vocab = vocab;
    this._keys = new Array<string>(n);
    this._lookup = new Map();
    this._byteOf = new Int16Array(n);
    for (let id = 0; id < n; id++) {
      const b = vocab.pieceBytes[id];
      if (!(b instanceof Uint8Array)) throw invalidOption(`vocab.pieceBytes[${id}]`, 'a Uint8Array', b);
      const key = latin1(b);
      this._keys[id] = key;
      if (!this._lookup.has(key)) this._lookup.set(key, id);
      this._byteOf[id] = parseBytePiece(b);
    }
    // run.c uses id b + 3 for byte b; a vocabulary too small for that falls back to a `<0xHH>`
    // piece wherever it is, and a byte with neither cannot be encoded.
    this._byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) {
      if (b + 3 < n) this._byteIds[b] = b + 3;
      else {
        const id = this._lookup.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
        if (id !== undefined) this._byteIds[b] = id;
      }
    }
    this._space = this._lookup.get(' ') ?? -1;
  }

  /** Read a llama2.c `tokenizer.bin` (the count comes from the model header). */
  static fromLlama2c(file: string, vocabSize: number): Tokenizer {
    return new Tokenizer(readLlama2cTokenizer(file, vocabSize));
  }

  /** The vocabulary of a GGUF file (`tokenizer.ggml.*`, converted as in {@link ggufVocab}). */
  static fromGguf(g: GgufFile): Tokenizer {
    return new Tokenizer(ggufVocab(g));
  }

  /** Number of pieces. */
  get size(): number {
    return this.vocab.pieceBytes.length;
  }

  /** The id of a piece given as text (spaces, not `▁`), or -1. */
  pieceId(piece: string): number {
    return this._lookup.get(latin1(Buffer.from(piece, 'utf8'))) ?? -1;
  }

  /**
   * Encode text exactly as run.c's `encode(t, text, bos, eos, …)`.
   *
   * @param text a string (encoded as UTF-8; lone surrogates become U+FFFD) or raw bytes. Like
   *   run.c's C string, it ends at the first NUL.
   * @returns token ids.
   */
  encode(text: string | Uint8Array, opts: EncodeOptions = {}): number[] {
    let bytes: Uint8Array;
    if (typeof text === 'string') bytes = Buffer.from(text, 'utf8');
    else if (text instanceof Uint8Array) bytes = text;
    else throw invalidOption('text', 'a string or a Uint8Array', text);
    checkObject('options', opts, 'an object');
    const z = bytes.indexOf(0);
    const len = z < 0 ? bytes.length : z;

    // run.c puts BOS into the same array before merging, so BOS takes part in pair merges too
    // (a no-op for real vocabularies, whose BOS piece "\n<s>\n" starts no longer piece).
    const syms: number[] = [];
    if (opts.bos) syms.push(this.vocab.bos);
    if (len > 0) {
      // 1. Code points → pieces or byte fallback (run.c's str_buffer loop).
      if (this._space >= 0) syms.push(this._space);
      let i = 0;
      while (i < len) {
        let j = i + 1;
        while (j < len && (bytes[j] & 0xc0) === 0x80 && j - i < 4) j++;
        const id = this._lookup.get(latin1(bytes, i, j));
        if (id !== undefined) syms.push(id);
        else {
          for (let k = i; k < j; k++) {
            const bid = this._byteIds[bytes[k]];
            if (bid < 0) {
              throw new LowbitError('LOWBIT_UNSUPPORTED', `tokenizer: byte 0x${bytes[k].toString(16).padStart(2, '0')} has no piece and the vocabulary (${this.size} pieces) has no byte-fallback token for it`);
            }
            syms.push(bid);
          }
        }
        i = j;
      }
    }
    // 2. Merges; EOS is appended after them, as in run.c.
    const out = this._merge(syms);
    if (opts.eos) out.push(this.vocab.eos);
    return out;
  }

  /** @internal BPE merges over `syms` (see the file comment for the algorithm). */
  private _merge(syms: number[]): number[] {
    const m = syms.length;
    if (m < 2) return syms.slice();
    const scores = this.vocab.scores;
    const keys = this._keys;
    const lookup = this._lookup;
    const tok = Int32Array.from(syms); // current id per symbol; -1 once merged into its left neighbour
    const next = new Int32Array(m);
    const prev = new Int32Array(m);
    const ver = new Uint32Array(m);
    for (let i = 0; i < m; i++) {
      next[i] = i + 1 < m ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Candidate pool: at most (m − 1) initial pairs + 2 per merge (≤ m − 1 merges).
    const cap = 3 * m;
    const eScore = new Float64Array(cap);
    const eLeft = new Int32Array(cap);
    const eRight = new Int32Array(cap);
    const eId = new Int32Array(cap);
    const eVerL = new Uint32Array(cap);
    const eVerR = new Uint32Array(cap);
    const heap = new Int32Array(cap);
    let nEntries = 0;
    let nHeap = 0;

    // a sorts before b: higher score, then the smaller (leftmost) left symbol.
    const before = (a: number, b: number): boolean =>
      eScore[a] > eScore[b] || (eScore[a] === eScore[b] && eLeft[a] < eLeft[b]);

    const push = (l: number, r: number): void => {
      const id = lookup.get(keys[tok[l]] + keys[tok[r]]);
      if (id === undefined) return;
      const s = scores[id];
      if (!(s > MIN_MERGE_SCORE)) return; // run.c: never chosen (also NaN)
      const e = nEntries++;
      eScore[e] = s;
      eLeft[e] = l;
      eRight[e] = r;
      eId[e] = id;
      eVerL[e] = ver[l];
      eVerR[e] = ver[r];
      let k = nHeap++;
      while (k > 0) {
        const p = (k - 1) >> 1;
        if (!before(e, heap[p])) break;
        heap[k] = heap[p];
        k = p;
      }
      heap[k] = e;
    };

    const pop = (): number => {
      const top = heap[0];
      const last = heap[--nHeap];
      let k = 0;
      for (;;) {
        const c1 = 2 * k + 1;
        if (c1 >= nHeap) break;
        const c2 = c1 + 1;
        const c = c2 < nHeap && before(heap[c2], heap[c1]) ? c2 : c1;
        if (!before(heap[c], last)) break;
        heap[k] = heap[c];
        k = c;
      }
      heap[k] = last;
      return top;
    };

    for (let i = 0; i + 1 < m; i++) push(i, i + 1);
    while (nHeap > 0) {
      const e = pop();
      const l = eLeft[e];
      const r = eRight[e];
      if (tok[l] < 0 || tok[r] < 0 || next[l] !== r || ver[l] !== eVerL[e] || ver[r] !== eVerR[e]) continue; // stale
      tok[l] = eId[e];
      ver[l]++;
      tok[r] = -1;
      const rn = next[r];
      next[l] = rn;
      if (rn >= 0) prev[rn] = l;
      if (prev[l] >= 0) push(prev[l], l);
      if (rn >= 0) push(l, rn);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(tok[i]);
    return out;
  }

  /** @internal */
  private _checkId(what: string, id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.size) throw invalidOption(what, `a token id in [0, ${this.size})`, id);
  }

  /**
   * run.c's `decode(t, prev, id)`: the piece's bytes; after BOS (`prev === vocab.bos`) a leading
   * space is dropped; a `<0xHH>` piece gives that single raw byte. The result may share memory
   * with the vocabulary: do not modify it.
   */
  decodePiece(prev: number, id: number): Uint8Array {
    this._checkId('id', id);
    let b = this.vocab.pieceBytes[id];
    let byte = this._byteOf[id];
    if (prev === this.vocab.bos && b.length > 0 && b[0] === 0x20) {
      b = b.subarray(1);
      byte = parseBytePiece(b);
    }
    return byte >= 0 ? SINGLE_BYTES[byte] : b;
  }

  /**
   * What run.c's `safe_printf(decode(t, prev, id))` writes: {@link decodePiece} up to its first
   * NUL, and nothing for a single byte that is neither printable nor whitespace (C locale:
   * 0x20–0x7E printable, 0x09–0x0D whitespace; so a lone byte ≥ 0x80 is not printed either).
   */
  printedPiece(prev: number, id: number): Uint8Array {
    const b = cString(this.decodePiece(prev, id));
    if (b.length === 1 && !((b[0] >= 0x20 && b[0] <= 0x7e) || isSpace(b[0]))) return EMPTY;
    return b;
  }

  /**
   * The bytes of `ids` decoded with {@link decodePiece}, each id after its predecessor; the first
   * one after `prev`.
   * @param prev the token before `ids[0]`. @default vocab.bos (so the dummy-prefix space is dropped)
   */
  decodeBytes(ids: ArrayLike<number>, prev: number = this.vocab.bos): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const p = this.decodePiece(prev, ids[i]);
      parts.push(p);
      total += p.length;
      prev = ids[i];
    }
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  /**
   * Text of a token sequence: the ids are taken to follow BOS, and a leading BOS id is skipped, so
   * `decode(encode(s)) === s` and `decode(encode(s, { bos: true })) === s` (for `s` without NUL).
   * Other ids, EOS and later BOS included, decode to their pieces as in run.c. Invalid UTF-8
   * (e.g. a multi-byte character cut by the end of `ids`) becomes U+FFFD.
   */
  decode(ids: ArrayLike<number>): string {
    const start = ids.length > 0 && ids[0] === this.vocab.bos ? 1 : 0;
    const rest = start === 0 ? ids : Array.prototype.slice.call(ids, 1) as number[];
    return Buffer.from(this.decodeBytes(rest, this.vocab.bos)).toString('utf8');
  }

  /**
   * A streaming decoder (for generation): `push(id)` returns the newly completed text, holding
   * back an incomplete UTF-8 sequence until its remaining bytes arrive.
   * @param prev the token before the first pushed id. @default vocab.bos
   */
  stream(prev: number = this.vocab.bos): TokenTextStream {
    const td = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }); // a generated U+FEFF is text too
    let last = prev;
    return {
      push: (id: number): string => {
        const b = this.decodePiece(last, id);
        last = id;
        return td.decode(b, { stream: true });
      },
      end: (): string => td.decode(),
    };
  }
}
