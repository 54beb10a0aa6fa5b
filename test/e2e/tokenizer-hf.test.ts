/** HF tokenizer.json (through @huggingface/tokenizers) as the runtime's tokenizer of an HF directory. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HfTokenizer } from '../../lib/runtime/tokenizer-hf';
import { writeSyntheticModel } from '../../lib/runtime/synthetic';
import { loadModel } from '../../lib/runtime/model';
import { evaluate } from '../../lib/runtime/evaluate';
import { calibrate } from '../../lib/runtime/calibrate';
import { isLowbitError } from '../../lib/errors';

const WORDS = ['<unk>', '<s>', '</s>', 'once', 'upon', 'a', 'time', 'there', 'was', 'cat', '.', ','];

function writeTokenizer(dir: string): void {
  const vocab = Object.fromEntries(WORDS.map((w, i) => [w, i]));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0', added_tokens: [{ id: 1, content: '<s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: { type: 'Lowercase' }, pre_tokenizer: { type: 'Whitespace' }, post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true }, model: { type: 'WordLevel', vocab, unk_token: '<unk>' },
  }));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>' }));
}

describe('HF tokenizer.json', function () {
  let root: string;
  before(function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-hftok-'));
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('encodes, decodes and finds BOS from tokenizer_config.json', function () {
    writeTokenizer(root);
    const t = HfTokenizer.fromDir(root, 12);
    assert.deepEqual(t.encode('Once upon a time, there was a cat.', { bos: true }), [1, 3, 4, 5, 6, 11, 7, 8, 5, 9, 10]);
    assert.equal(t.bosId, 1);
    assert.equal(t.decode([3, 4, 5, 6]), 'once upon a time');
    assert.equal(Buffer.from(t.printedPiece(3, 4)).toString(), ' upon');
  });

  it('an HF model directory with tokenizer.json evaluates, calibrates and generates without --tokenizer', async function () {
    const dir = await writeSyntheticModel(path.join(root, 'm'), { shape: { hiddenSize: 64, intermediateSize: 128, layers: 2, heads: 4, kvHeads: 2, vocabSize: 64, maxPositions: 64 }, dtype: 'F32' });
    writeTokenizer(dir);
    const m = await loadModel(dir);
    try {
      assert.ok(m.tokenizer instanceof HfTokenizer);
      const text = 'once upon a time there was a cat . '.repeat(20);
      const e = await evaluate(m, { text, ctx: 16 });
      assert.ok(e.ppl > 1 && Number.isFinite(e.ppl) && e.tokens === e.chunks * 15);
      const c = await calibrate(m, { text, samples: 2, seqLen: 16 });
      assert.equal(c.layers.length, 2);
      const g = await m.generate({ prompt: 'once upon', steps: 8, temperature: 0 });
      assert.ok(g.stoppedBy === 'bos' ? g.ids.length <= 9 : g.ids.length === 9, `ids ${g.ids.length}`); // BOS + one token per step (run.c)
      assert.ok(g.text.startsWith('once upon'), JSON.stringify(g.text)); // the prompt's pieces are printed first
    } finally {
      m.dispose();
    }
  });

  it('a broken tokenizer.json is a typed error naming the file', function () {
    const d = path.join(root, 'bad');
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'tokenizer.json'), '{not json');
    assert.throws(() => HfTokenizer.fromDir(d, 10), (e: unknown) => isLowbitError(e, 'LOWBIT_BAD_FORMAT') && /tokenizer\.json/.test((e as Error).message));
    assert.throws(() => HfTokenizer.fromDir(path.join(root, 'none'), 10), (e: unknown) => isLowbitError(e, 'LOWBIT_NOT_FOUND'));
  });
});
