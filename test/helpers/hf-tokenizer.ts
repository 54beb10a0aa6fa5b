/**
 * Test helper: a SentencePiece vocabulary (llama2.c tokenizer.bin) written as the tokenizer.json
 * Hugging Face's LlamaConverter makes of it — BPE with byte_fallback, `▁` for spaces, and merges
 * (left, right) for every split of a piece into two pieces of the vocabulary, ordered by the merged
 * piece's score (best first; ties by the ids of left, right) — so tests can check lowbit's
 * tokenizer.json → GGUF vocabulary against the original.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Vocab } from '../../lib/runtime/tokenizer';

export function writeLlamaTokenizerJson(dir: string, v: Vocab): void {
  const n = v.pieces.length;
  const text = (id: number) => (id === v.bos ? '<s>' : id === v.eos ? '</s>' : v.pieces[id].replace(/ /g, '\u2581'));
  const isByte = (id: number) => /^<0x[0-9A-F]{2}>$/.test(v.pieces[id]);
  const vocab = new Map<string, number>(); // not an object: pieces such as "toString" exist
  for (let id = 0; id < n; id++) if (!vocab.has(text(id))) vocab.set(text(id), id);
  const merges: [number, number, number][] = []; // left id, right id, merged id
  for (let id = 0; id < n; id++) {
    if (id === 0 || id === v.bos || id === v.eos || isByte(id)) continue;
    const cps = Array.from(text(id));
    for (let i = 1; i < cps.length; i++) {
      const a = vocab.get(cps.slice(0, i).join('')), b = vocab.get(cps.slice(i).join(''));
      if (a !== undefined && b !== undefined && a > 2 && b > 2 && !isByte(a) && !isByte(b)) merges.push([a, b, id]);
    }
  }
  merges.sort((x, y) => v.scores[y[2]] - v.scores[x[2]] || x[0] - y[0] || x[1] - y[1]);
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const json = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [special(0, '<unk>'), special(v.bos, '<s>'), special(v.eos, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true,
      vocab: Object.fromEntries(vocab), merges: merges.map(([a, b]) => `${text(a)} ${text(b)}`) },
  };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', add_bos_token: true }));
}
