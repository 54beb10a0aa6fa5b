/**
 * GGUF vocabularies from Hugging Face tokenizer.json (issue #6: "tokenizer metadata from HF or
 * llama2.c tokenizers"). The real Llama 2 and stories260K SentencePiece vocabularies are converted
 * the way Hugging Face converts them (test/helpers/hf-tokenizer.ts); lowbit's tokenizer.json →
 * GGUF vocabulary must tokenize the dev text exactly as the SentencePiece original, and as
 * @huggingface/tokenizers does with the same tokenizer.json; `lowbit quantize --format gguf:*` of an
 * HF directory then needs no --tokenizer.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hfVocab, HfTokenizer } from '../../lib/runtime/tokenizer-hf';
import { Tokenizer } from '../../lib/runtime/tokenizer';
import { readLlama2cTokenizer } from '../../lib/formats/llama2c';
import { readGguf, ggufVocab } from '../../lib/formats/gguf';
import { writeSyntheticModel, SYNTHETIC_PRESETS } from '../../lib/runtime/synthetic';
import { exportGguf } from '../../lib/pipeline/gguf-export';
import { isLowbitError } from '../../lib/errors';
import { packageRoot } from '../../lib/native';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { writeLlamaTokenizerJson } from '../helpers/hf-tokenizer';
import { throwsCode } from '../helpers/errors';
import { must } from '../helpers/assert';

const TRICKY = ['', ' ', 'a', '  two  spaces  ', 'Once upon a time, there was a little girl named Lily.\nShe liked to play.',
  'naïve café — “quotes” ½ 日本語のテキスト 🙂🚀', 'tabs\tand\r\nCRLF', '<s> </s> <unk> <0x0A>', '1234567890 3.14159 x=y+z'];

describe('GGUF vocabulary from tokenizer.json', function () {
  let fx: string, root: string, dev: string;
  before(function () {
    const d = fixturesDir();
    if (!d) {
      console.log(`      ${NO_FIXTURES}`);
      this.skip();
    }
    fx = d;
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-hfvocab-'));
    dev = fs.readFileSync(path.join(fx, 'text', 'tinystories-dev.txt'), 'utf8').slice(0, 60000);
  });
  after(function () {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  for (const [name, rel, n] of [['Llama 2 (32000 pieces)', 'llama2-tokenizer/tokenizer.bin', 32000], ['stories260K (512 pieces)', 'stories260K/tok512.bin', 512]] as const) {
    it(`${name}: tokenizes 60k characters of dev text and odd strings exactly as the SentencePiece original and as @huggingface/tokenizers`, function () {
      const spm = readLlama2cTokenizer(path.join(fx, rel), n);
      const dir = fs.mkdtempSync(path.join(root, 'tok-'));
      writeLlamaTokenizerJson(dir, spm);
      const v = hfVocab(dir, n);
      assert.equal(v.pieces.length, n);
      // Llama 2 has U+FEFF as piece 30143: a UTF-8 decoder that strips BOMs would write it as ""
      if (n === 32000) assert.deepEqual([spm.pieces[30143], v.pieces[30143]], ['\uFEFF', '\uFEFF']);
      assert.deepEqual([v.bos, v.eos], [spm.bos, spm.eos]);
      const ours = new Tokenizer(v), orig = new Tokenizer(spm), hf = HfTokenizer.fromDir(dir, n);
      for (const t of [dev, ...TRICKY]) {
        const want = orig.encode(t, { bos: true });
        assert.deepEqual(ours.encode(t, { bos: true }), want, `vs SentencePiece: ${JSON.stringify(t.slice(0, 40))}`);
        // (HF splits added tokens such as "<s>" out of raw text first; SentencePiece does not)
        if (t !== '' && !t.includes('<s>')) assert.deepEqual(hf.encode(t, { bos: true }), want, `the converted tokenizer.json itself (HF): ${JSON.stringify(t.slice(0, 40))}`);
      }
      // types: unknown, control, bytes, normal
      const types = must(v.tokenTypes, 'tokenTypes');
      assert.deepEqual([types[0], types[1], types[2], types[3], types[258], types[300]], [2, 3, 3, 6, 6, 1]);
      // embedding rows past the tokenizer: [PADn], unused
      const padded = hfVocab(dir, n + 3);
      assert.deepEqual(padded.pieces.slice(n), [`[PAD${n}]`, `[PAD${n + 1}]`, `[PAD${n + 2}]`]);
      assert.deepEqual(Array.from(must(padded.tokenTypes, 'padded tokenTypes').slice(n)), [5, 5, 5]);
    });
  }

  it('quantize --format gguf:q8_0 of an HF directory takes its tokenizer.json: same tokens and types as the tokenizer.bin route, same tokenization', async function () {
    const model = await writeSyntheticModel(path.join(root, 'hf'), { shape: { ...SYNTHETIC_PRESETS.tiny, vocabSize: 512 }, dtype: 'F16' });
    const bin = path.join(fx, 'stories260K', 'tok512.bin');
    writeLlamaTokenizerJson(model, readLlama2cTokenizer(bin, 512));
    const a = path.join(root, 'a.gguf'), b = path.join(root, 'b.gguf');
    const r = spawnSync(process.execPath, [path.join(packageRoot(), 'bin', 'lowbit.js'), 'quantize', model, '--format', 'gguf:q8_0', '--out', a, '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    await exportGguf(model, b, { type: 'Q8_0', tokenizer: bin });
    const ga = readGguf(a), gb = readGguf(b);
    try {
      for (const k of ['tokenizer.ggml.model', 'tokenizer.ggml.tokens', 'tokenizer.ggml.token_type', 'tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id', 'tokenizer.ggml.unknown_token_id']) {
        assert.deepEqual(must(ga.metadata.get(k), `a: ${k}`).value, must(gb.metadata.get(k), `b: ${k}`).value, k);
      }
      const ta = new Tokenizer(ggufVocab(ga)), tb = new Tokenizer(ggufVocab(gb));
      for (const t of [dev.slice(0, 20000), ...TRICKY]) assert.deepEqual(ta.encode(t, { bos: true }), tb.encode(t, { bos: true }));
    } finally {
      ga.close();
      gb.close();
    }
  });
});

describe('tokenizer.json → GGUF vocabulary: bad input', function () {
  let root: string;
  before(function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-hfvocab-bad-'));
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });
  const write = (name: string, model: object, extra: object = {}) => {
    const dir = path.join(root, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ version: '1.0', added_tokens: [], model, ...extra }));
    return dir;
  };
  const vocab = { '<unk>': 0, '<s>': 1, '</s>': 2, '\u2581': 3, a: 4, '\u2581a': 5 };
  const expectError = throwsCode;

  it('byte-level BPE, other model types, ids out of range, holes, unknown merges, no file', function () {
    expectError(() => hfVocab(write('l3', { type: 'BPE', byte_fallback: false, vocab, merges: [] }), 6), 'LOWBIT_UNSUPPORTED', /byte-level BPE.*--tokenizer/);
    expectError(() => hfVocab(write('wp', { type: 'WordPiece', vocab }), 6), 'LOWBIT_UNSUPPORTED', /"WordPiece"/);
    expectError(() => hfVocab(write('ok', { type: 'BPE', byte_fallback: true, vocab, merges: ['\u2581 a'] }), 5), 'LOWBIT_BAD_FORMAT', /id 5 of "▁a" is outside the model's vocabulary \(5 rows\)/);
    expectError(() => hfVocab(write('hole', { type: 'BPE', byte_fallback: true, vocab: { ...vocab, b: 8 }, merges: [] }), 9), 'LOWBIT_BAD_FORMAT', /no piece has id 6/);
    expectError(() => hfVocab(write('merge', { type: 'BPE', byte_fallback: true, vocab, merges: ['a \u2581'] }), 6), 'LOWBIT_BAD_FORMAT', /merges\[0\]: "a▁" is not in the vocabulary/);
    expectError(() => hfVocab(write('dup', { type: 'BPE', byte_fallback: true, vocab, merges: [] }, { added_tokens: [{ id: 4, content: '<x>', special: true }] }), 6), 'LOWBIT_BAD_FORMAT', /id 4 is both "a" and "<x>"/);
    expectError(() => hfVocab(path.join(root, 'none'), 6), 'LOWBIT_NOT_FOUND', /no tokenizer.json/);
    const v = hfVocab(path.join(root, 'ok'), 6);
    assert.deepEqual(Array.from(v.scores), [-1, -2, -3, -4, -5, -0]); // merge results −rank; the rest −(merges + id)
    assert.deepEqual(v.pieces, ['<unk>', '\n<s>\n', '\n</s>\n', ' ', 'a', ' a']);
  });

  it('GGUF export of a directory without tokenizer.json and without --tokenizer names the missing vocabulary', async function () {
    const model = await writeSyntheticModel(path.join(root, 'm'), { shape: 'tiny', dtype: 'F16' });
    await assert.rejects(exportGguf(model, path.join(root, 'x.gguf'), { type: 'Q8_0' }), (e: unknown) => isLowbitError(e, 'LOWBIT_INVALID_OPTION') && /has no tokenizer.json.*--tokenizer/.test(e.message));
    assert.ok(!fs.existsSync(path.join(root, 'x.gguf')));
  });
});
