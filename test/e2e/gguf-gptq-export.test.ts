/**
 * GPTQ checkpoints into GGUF (issue #6): lowbit's packed codes and fp16 scales become ggml blocks
 * without a second rounding where the block type can hold them (4-bit sym g32 → Q4_0 and Q8_0,
 * 4-bit asym g32 → Q4_1 up to the fp16 min), so the GGUF file computes exactly what the checkpoint
 * computes; other layouts are re-encoded and say so.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSyntheticModel } from '../../lib/runtime/synthetic';
import { quantize } from '../../lib/pipeline/quantize';
import { exportGguf } from '../../lib/pipeline/gguf-export';
import { loadModel } from '../../lib/runtime/model';
import { readGguf, GGML_TYPES } from '../../lib/formats/gguf';
import type { Vocab } from '../../lib/runtime/tokenizer';
import { writeLlamaTokenizerJson } from '../helpers/hf-tokenizer';
import { must } from '../helpers/assert';

const SHAPE = { hiddenSize: 128, intermediateSize: 256, layers: 2, heads: 4, kvHeads: 2, vocabSize: 96, maxPositions: 64 };

function maxRel(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / m;
}

/** A 96-piece vocabulary: <unk>, <s>, </s>, then letters and letter pairs. */
function tinyVocab(): Vocab {
  const pieces = ['<unk>', '\n<s>\n', '\n</s>\n'];
  const letters = 'abcdefghijklmnopqrstuvwxyz'.split('');
  for (const c of letters) pieces.push(c);
  pieces.push(' ');
  for (const a of ['a', 'e', 'o']) for (const b of letters) if (pieces.length < 96) pieces.push(a + b);
  while (pieces.length < 96) pieces.push(` ${letters[pieces.length % 26]}`);
  const pieceBytes = pieces.map((p) => new Uint8Array(Buffer.from(p, 'utf8')));
  return { pieces, pieceBytes, scores: Float32Array.from(pieces, (_, i) => -i), bos: 1, eos: 2, maxTokenLength: Math.max(...pieceBytes.map((b) => b.length)) };
}

describe('GPTQ checkpoints → GGUF', function () {
  let root: string, src: string;
  before(async function () {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-gptq-gguf-'));
    src = await writeSyntheticModel(path.join(root, 'src'), { shape: SHAPE, dtype: 'F16', seed: 9 });
    writeLlamaTokenizerJson(src, tinyVocab());
  });
  after(function () {
    fs.rmSync(root, { recursive: true, force: true });
  });

  const toks = Int32Array.from({ length: 40 }, (_, i) => (i * 37) % 96);
  async function logits(file: string): Promise<Float32Array> {
    const m = await loadModel(file, { packed: false });
    try {
      return await m.forward(toks, 0, 40);
    } finally {
      m.dispose();
    }
  }

  for (const [sym, type, how] of [[true, 'Q4_0', 'exact'], [true, 'Q8_0', 'exact'], [true, 'Q4_1', 'exact'], [false, 'Q4_1', 'rounded']] as const) {
    it(`4-bit g32 ${sym ? 'sym' : 'asym'} → ${type}: every linear ${how}, ${how === 'exact' ? 'the same logits' : 'logits within 1e-2 (fp16 min)'} as the checkpoint (dequantized at load)`, async function () {
      const q = path.join(root, `q-${sym}`);
      if (!fs.existsSync(q)) await quantize(src, { method: 'rtn', bits: 4, groupSize: 32, sym, format: 'gptq' }, { out: q });
      const file = path.join(root, `${sym}-${type}.gguf`);
      const r = await exportGguf(q, file, { type, overwrite: true });
      assert.equal(r.conversions.length, 14);
      assert.ok(r.conversions.every((c) => c.how === how || (how === 'rounded' && c.how === 'exact')), JSON.stringify(r.conversions.filter((c) => c.how !== how)));
      if (how === 'rounded') assert.ok(r.conversions.some((c) => c.how === 'rounded' && /fp16/.test(c.detail ?? '')));
      const g = readGguf(file);
      const types = new Set(g.tensors.filter((t) => t.name.startsWith('blk.') && t.shape.length === 2).map((t) => t.type));
      g.close();
      assert.deepEqual([...types], [GGML_TYPES[type].id]);
      const rel = maxRel(await logits(file), await logits(q));
      assert.ok(how === 'exact' ? rel < 1e-6 : rel < 1e-2, `logits rel ${rel}`);
    });
  }

  it('4-bit g32 signed-max (Q4_0\'s own grid, zeros 8 and 7) → Q4_0: every linear exact (zero 7 as d = −s, codes 15 − q), the same logits; the checkpoint says sym: false', async function () {
    const q = path.join(root, 'q-signed-max');
    await quantize(src, { method: 'rtn', bits: 4, groupSize: 32, sym: true, signedMax: true, format: 'gptq' }, { out: q });
    const qc = JSON.parse(fs.readFileSync(path.join(q, 'quantize_config.json'), 'utf8')) as { sym: boolean };
    assert.equal(qc.sym, false);
    const file = path.join(root, 'signed-max-Q4_0.gguf');
    const r = await exportGguf(q, file, { type: 'Q4_0', overwrite: true });
    assert.equal(r.conversions.length, 14);
    assert.ok(r.conversions.every((c) => c.how === 'exact'), JSON.stringify(r.conversions.filter((c) => c.how !== 'exact')));
    // both kinds of group occur: some Q4_0 scales are negative
    const g = readGguf(file);
    const t = must(g.tensors.find((x) => x.name === 'blk.0.ffn_down.weight'), 'blk.0.ffn_down.weight');
    const bytes = g.bytes(t.name);
    let neg = 0, pos = 0;
    for (let o = 0; o < bytes.length; o += 18) {
      if (bytes[o + 1] & 0x80) neg++;
      else pos++;
    }
    g.close();
    assert.ok(neg > 0 && pos > 0, `negative ${neg}, positive ${pos} scales`);
    const rel = maxRel(await logits(file), await logits(q));
    assert.ok(rel < 1e-6, `logits rel ${rel}`);
  });

  it('layouts a block type cannot hold (per-channel groups, 8 bits into Q4_0) are re-encoded and say why; the file still runs', async function () {
    const q = path.join(root, 'q-pc');
    await quantize(src, { method: 'rtn', bits: 8, groupSize: -1, sym: true, format: 'gptq' }, { out: q });
    const file = path.join(root, 'pc.gguf');
    const r = await exportGguf(q, file, { type: 'Q4_0' });
    assert.ok(r.conversions.every((c) => c.how === 'requantized' && /groups of (128|256) input channels, not 32: dequantized and re-encoded as Q4_0/.test(c.detail ?? '')), JSON.stringify(r.conversions[0]));
    const rel = maxRel(await logits(file), await logits(q));
    assert.ok(rel > 1e-6 && rel < 0.5, `re-encoded: logits rel ${rel}`);
  });
});
