/**
 * tokenizer: llama2.c run.c's encode/decode, exactly. The 14 `encode` cases and 6 `generate` runs
 * of stories260K/expected.json are the spec; a literal O(n²) port of run.c's merge loop checks the
 * heap-based implementation on random text (including vocabularies with tied scores); the 32,000
 * piece Llama 2 vocabulary checks round trips and a 200 KB encode.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer, type Vocab } from '../../lib/runtime/tokenizer';
import { readGguf } from '../../lib/formats/gguf';
import { LowbitError } from '../../lib/errors';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { Rng } from '../helpers/rng';
import { must } from '../helpers/assert';

interface EncodeCase { text: string; bos: boolean; expected_ids: number[] }
interface GenerateCase { id: string; expected_text: string; expected_ids: number[]; prompt: string; prompt_ids: number[] }
interface Expected { encode: EncodeCase[]; generate: GenerateCase[] }

/** A literal port of run.c's encode (O(n²)), the reference for the fast implementation. */
function runcEncode(v: Vocab, text: string, bos: boolean, eos = false): number[] {
  const key = (b: Uint8Array | number[]) => Buffer.from(b).toString('latin1');
  const lookup = new Map<string, number>();
  v.pieceBytes.forEach((b, i) => {
    if (!lookup.has(key(b))) lookup.set(key(b), i);
  });
  const bytes = Buffer.from(text, 'utf8');
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  if (bytes.length > 0) tokens.push(must(lookup.get(' '), 'the " " piece'));
  let buf: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    if ((bytes[i] & 0xc0) !== 0x80) buf = [];
    buf.push(bytes[i]);
    if (i + 1 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = lookup.get(key(buf));
    if (id !== undefined) tokens.push(id);
    else for (const b of buf) tokens.push(b + 3);
    buf = [];
  }
  for (;;) {
    let best = Math.fround(-1e10);
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = lookup.get(key(v.pieceBytes[tokens[i]]) + key(v.pieceBytes[tokens[i + 1]]));
      if (id !== undefined && v.scores[id] > best) {
        best = v.scores[id];
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  if (eos) tokens.push(2);
  return tokens;
}

/** What run.c prints for a generation: safe_printf(decode(prev, next)) for each consecutive pair. */
function runcPrint(tok: Tokenizer, ids: number[]): Buffer {
  const parts: Buffer[] = [];
  for (let i = 1; i < ids.length; i++) parts.push(Buffer.from(tok.printedPiece(ids[i - 1], ids[i])));
  return Buffer.concat(parts);
}

/** Random text mixing ASCII words, punctuation, whitespace, accents, CJK, emoji and mojibake. */
function randomText(rng: Rng, maxLen: number): string {
  const atoms = ['the', ' ', ' ', 'a', 'Once', 'upon', 'time', ',', '.', '\n', '\t', 'é', 'ï', '日本', '語', '😀', '👍🏽',
    'â€œ', 'Lily', 'x', 'q', 'ZZ', '12', '345', '  ', 'sh', 'ing', 'ed', '"', "'", '<0x41>', '\u00a0'];
  let s = '';
  const n = rng.int(0, maxLen);
  while (s.length < n) s += rng.next() < 0.15 ? String.fromCharCode(rng.int(0x21, 0x7e)) : atoms[rng.int(0, atoms.length - 1)];
  return s;
}

describe('tokenizer', () => {
  describe('stories260K tok512.bin (run.c semantics)', () => {
    let tok: Tokenizer;
    let expected: Expected;
    let dir: string;

    before(function () {
      const f = fixturesDir();
      if (!f) {
        console.log(`      (skipped: ${NO_FIXTURES})`);
        this.skip();
      }
      dir = path.join(f, 'stories260K');
      tok = Tokenizer.fromLlama2c(path.join(dir, 'tok512.bin'), 512);
      expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected;
    });

    it('has the README facts: 512 pieces, max length 7, " " at 410, byte pieces at 3…258', () => {
      assert.equal(tok.size, 512);
      assert.equal(tok.vocab.maxTokenLength, 7);
      assert.equal(tok.vocab.pieces[1], '\n<s>\n');
      assert.equal(tok.vocab.pieces[2], '\n</s>\n');
      assert.equal(tok.vocab.pieces[410], ' ');
      assert.equal(tok.pieceId(' '), 410);
      assert.equal(tok.vocab.pieces[3], '<0x00>');
      assert.equal(tok.vocab.pieces[258], '<0xFF>');
      assert.equal(tok.vocab.scores[260], -1);
    });

    it('reproduces all 14 encode cases of expected.json', () => {
      assert.equal(expected.encode.length, 14);
      for (const c of expected.encode) {
        assert.deepEqual(tok.encode(c.text, { bos: c.bos }), c.expected_ids, `encode(${JSON.stringify(c.text)}, bos=${c.bos})`);
      }
    });

    it('encodes each generate prompt to its prompt_ids', () => {
      for (const g of expected.generate) assert.deepEqual(tok.encode(g.prompt, { bos: true }), g.prompt_ids, g.id);
    });

    it('decodes every generate run to its expected_text byte for byte (run.c print rules)', () => {
      assert.equal(expected.generate.length, 6);
      for (const g of expected.generate) {
        assert.equal(g.expected_ids[0], 1, `${g.id}: first token is BOS`);
        const got = runcPrint(tok, g.expected_ids);
        const want = Buffer.from(g.expected_text, 'utf8');
        if (!got.equals(want)) {
          let i = 0;
          while (i < got.length && got[i] === want[i]) i++;
          assert.fail(`${g.id}: first difference at byte ${i}: got ${JSON.stringify(got.subarray(i, i + 40).toString())}, want ${JSON.stringify(want.subarray(i, i + 40).toString())}`);
        }
      }
    });

    it('decodePiece: leading space dropped after BOS only; <0xHH> → raw byte', () => {
      assert.deepEqual([...tok.decodePiece(1, 403)], [...Buffer.from('Once')]);
      assert.deepEqual([...tok.decodePiece(5, 403)], [...Buffer.from(' Once')]);
      assert.deepEqual([...tok.decodePiece(1, 410)], []);
      assert.deepEqual([...tok.decodePiece(7, 0x41 + 3)], [0x41]);
      assert.deepEqual([...tok.decodePiece(7, 0xe6 + 3)], [0xe6]);
      assert.deepEqual([...tok.decodePiece(7, 1)], [...Buffer.from('\n<s>\n')]);
    });

    it('printedPiece hides single non-printable bytes, keeps whitespace and printable ones', () => {
      assert.equal(tok.printedPiece(7, 0x41 + 3).length, 1); // 'A'
      assert.equal(tok.printedPiece(7, 0x0a + 3).length, 1); // '\n' (whitespace)
      assert.equal(tok.printedPiece(7, 0x09 + 3).length, 1); // '\t'
      assert.equal(tok.printedPiece(7, 0x01 + 3).length, 0); // control
      assert.equal(tok.printedPiece(7, 0x00 + 3).length, 0); // NUL prints nothing
      assert.equal(tok.printedPiece(7, 0xe6 + 3).length, 0); // lone byte ≥ 0x80
      assert.equal(tok.printedPiece(7, 0x7f + 3).length, 0); // DEL
    });

    it('decode(encode(s)) === s, with and without BOS; streaming decode agrees', () => {
      for (const s of ['Once upon a time', ' x', '  two leading', 'unseen 日本語 and emoji 😀!', 'tabs\tand\nnewlines', 'a', '']) {
        assert.equal(tok.decode(tok.encode(s)), s);
        assert.equal(tok.decode(tok.encode(s, { bos: true })), s);
        const st = tok.stream();
        let out = '';
        for (const id of tok.encode(s)) out += st.push(id);
        out += st.end();
        assert.equal(out, s);
      }
      assert.deepEqual(tok.decodeBytes([403, 407], 5), new Uint8Array(Buffer.from(' Once upon')));
    });

    it('matches a literal port of run.c on random text (seeded)', () => {
      const seed = 20240611;
      const rng = new Rng(seed);
      for (let k = 0; k < 60; k++) {
        const s = randomText(rng, 300);
        const bos = rng.next() < 0.5;
        assert.deepEqual(tok.encode(s, { bos }), runcEncode(tok.vocab, s, bos), `[seed ${seed}] case ${k}: ${JSON.stringify(s)}`);
      }
      assert.deepEqual(tok.encode('ab', { bos: true, eos: true }), runcEncode(tok.vocab, 'ab', true, true));
    });

    it('stops at the first NUL like a C string; raw bytes (invalid UTF-8) use byte fallback', () => {
      assert.deepEqual(tok.encode('a\u0000b'), tok.encode('a'));
      assert.deepEqual(tok.encode('\u0000abc'), []);
      const raw = Uint8Array.of(0x61, 0x80, 0x80, 0x80, 0x80, 0x80, 0xff);
      const ids = tok.encode(raw);
      assert.deepEqual([...tok.decodeBytes(ids)], [...raw]);
    });

    it('rejects bad ids with LOWBIT_INVALID_OPTION', () => {
      for (const bad of [-1, 512, 1.5, NaN]) {
        assert.throws(() => tok.decodePiece(1, bad), (e: unknown) => e instanceof LowbitError && e.code === 'LOWBIT_INVALID_OPTION');
      }
    });

    it('gives the same ids through the GGUF vocabulary', () => {
      const g = readGguf(path.join(dir, 'stories260K.gguf'));
      try {
        const tg = Tokenizer.fromGguf(g);
        for (const c of expected.encode) {
          assert.deepEqual(tg.encode(c.text, { bos: c.bos }), c.expected_ids, `GGUF encode(${JSON.stringify(c.text)})`);
        }
        for (const gen of expected.generate) assert.ok(runcPrint(tg, gen.expected_ids).equals(Buffer.from(gen.expected_text, 'utf8')), gen.id);
      } finally {
        g.close();
      }
    });
  });

  describe('tie-breaking on synthetic vocabularies', () => {
    /** A vocabulary with the 3 specials, 256 byte pieces, then `extra` pieces with given scores. */
    function vocabOf(extra: [string, number][]): Vocab {
      const texts = ['<unk>', '\n<s>\n', '\n</s>\n'];
      for (let b = 0; b < 256; b++) texts.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      const scores = new Array<number>(texts.length).fill(0);
      for (const [t, s] of extra) {
        texts.push(t);
        scores.push(s);
      }
      const pieceBytes = texts.map((t) => new Uint8Array(Buffer.from(t, 'utf8')));
      return {
        pieces: texts, pieceBytes, scores: Float32Array.from(scores), bos: 1, eos: 2,
        maxTokenLength: Math.max(...pieceBytes.map((b) => b.length)),
      };
    }

    it('picks the leftmost pair among equal scores, like run.c', () => {
      const v = vocabOf([[' ', -1], ['a', -1], ['b', -1], ['ab', -5], ['ba', -5], ['aba', -6], [' a', -9]]);
      const tok = new Tokenizer(v);
      const id = (t: string) => tok.pieceId(t);
      // " aba": pairs ( ,a) -9, (a,b) -5, (b,a) -5 → leftmost of the two -5 → [" ", "ab", "a"]
      // then (" ", ab) no, (ab, a) → "aba" -6 → [" ", "aba"].
      assert.deepEqual(tok.encode('aba'), [id(' '), id('aba')]);
      assert.deepEqual(tok.encode('aba'), runcEncode(v, 'aba', false));
      // "bab": (b,a) -5 first, then (ba, b) no piece, (" ", ba) no → [" ", "ba", "b"].
      assert.deepEqual(tok.encode('bab'), [id(' '), id('ba'), id('b')]);
    });

    it('never merges a pair scored at or below -1e10, nor a NaN score', () => {
      const v = vocabOf([[' ', -1], ['a', -1], ['b', -1], ['ab', Math.fround(-1e10)], ['ba', NaN]]);
      const tok = new Tokenizer(v);
      assert.deepEqual(tok.encode('abab'), [tok.pieceId(' '), tok.pieceId('a'), tok.pieceId('b'), tok.pieceId('a'), tok.pieceId('b')]);
    });

    it('matches the run.c port on random vocabularies with many tied scores (seeded)', () => {
      const seed = 777;
      const rng = new Rng(seed);
      for (let trial = 0; trial < 20; trial++) {
        const alphabet = ['a', 'b', 'c', ' '];
        const extra = new Map<string, number>();
        for (const ch of alphabet) extra.set(ch, -1);
        while (extra.size < 30) {
          let p = '';
          const len = rng.int(2, 4);
          for (let i = 0; i < len; i++) p += alphabet[rng.int(0, alphabet.length - 1)];
          extra.set(p, -rng.int(0, 3)); // only 4 distinct scores: ties everywhere
        }
        const v = vocabOf([...extra]);
        const tok = new Tokenizer(v);
        for (let k = 0; k < 10; k++) {
          let s = '';
          const n = rng.int(0, 40);
          for (let i = 0; i < n; i++) s += alphabet[rng.int(0, alphabet.length - 1)];
          assert.deepEqual(tok.encode(s), runcEncode(v, s, false), `[seed ${seed}] trial ${trial} text ${JSON.stringify(s)}`);
        }
      }
    });

    it('rejects an inconsistent vocabulary', () => {
      const v = vocabOf([[' ', -1]]);
      assert.throws(() => new Tokenizer({ ...v, scores: new Float32Array(3) }), (e: unknown) => e instanceof LowbitError && e.code === 'LOWBIT_INVALID_OPTION');
      assert.throws(() => new Tokenizer({ ...v, bos: v.pieces.length }), (e: unknown) => e instanceof LowbitError && e.code === 'LOWBIT_INVALID_OPTION');
    });
  });

  describe('Llama 2 tokenizer.bin (32,000 pieces)', () => {
    let tok: Tokenizer;
    let f: string;

    before(function () {
      const d = fixturesDir();
      const file = d ? path.join(d, 'llama2-tokenizer', 'tokenizer.bin') : null;
      if (!d || !file || !fs.existsSync(file)) {
        console.log(`      (skipped: ${d ? 'llama2-tokenizer/tokenizer.bin not found' : NO_FIXTURES})`);
        this.skip();
      }
      f = d;
      tok = Tokenizer.fromLlama2c(file, 32000);
    });

    it('loads with max_token_length 27 and the usual specials', () => {
      assert.equal(tok.size, 32000);
      assert.equal(tok.vocab.maxTokenLength, 27);
      assert.equal(tok.vocab.pieces[1], '\n<s>\n');
      assert.equal(tok.vocab.pieces[3], '<0x00>');
      assert.deepEqual(tok.encode('Hello world', { bos: true }), [1, 15043, 3186]);
    });

    it('round-trips ASCII, accents, CJK and emoji', () => {
      const samples = [
        'Hello, world! The quick brown fox jumps over the lazy dog.',
        '  two leading spaces and trailing  ',
        'café naïve résumé — Zürich, São Paulo, Ærøskøbing',
        '日本語のテキストと中文文本，한국어 텍스트',
        'emoji 😀🎉👍🏽👨‍👩‍👧 mixed with text 🚀',
        'tabs\tand\nnewlines\r\n',
        '\u00a0non-breaking\u2009thin',
      ];
      for (const s of samples) {
        const ids = tok.encode(s);
        assert.equal(tok.decode(ids), s, JSON.stringify(s));
        assert.deepEqual(ids, runcEncode(tok.vocab, s, false), `run.c port: ${JSON.stringify(s)}`);
      }
    });

    it('encodes 200 KB of tinystories-dev.txt and round-trips it', () => {
      let text = fs.readFileSync(path.join(f, 'text', 'tinystories-dev.txt'), 'utf8');
      while (Buffer.byteLength(text) < 200_000) text += text;
      text = text.slice(0, 200_000);
      const t0 = process.hrtime.bigint();
      const ids = tok.encode(text);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      console.log(`      encoded ${Buffer.byteLength(text)} bytes → ${ids.length} tokens in ${ms.toFixed(0)} ms`);
      assert.equal(tok.decode(ids), text);
    });
  });
});
