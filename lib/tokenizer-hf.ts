/**
 * Hugging Face `tokenizer.json` tokenizers through @huggingface/tokenizers (pure JS, no
 * dependencies), behind the same small interface the runtime uses for llama2.c vocabularies.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';
import { LowbitError } from './errors';
import type { EncodeOptions, TextTokenizer } from './tokenizer';

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new LowbitError('LOWBIT_BAD_FORMAT', `${file}: not valid JSON (${(e as Error).message})`, { file });
  }
}

/** A tokenizer.json tokenizer. */
export class HfTokenizer implements TextTokenizer {
  readonly size: number;
  readonly bosId: number;
  private readonly impl: HfTokenizerImpl;

  private constructor(impl: HfTokenizerImpl, size: number, bosId: number) {
    this.impl = impl;
    this.size = size;
    this.bosId = bosId;
  }

  /** Load `tokenizer.json` (+ `tokenizer_config.json`, `config.json` for the BOS id) from a model directory. */
  static fromDir(dir: string, vocabSize: number, bosFromConfig?: number): HfTokenizer {
    const file = path.join(dir, 'tokenizer.json');
    if (!fs.existsSync(file)) throw new LowbitError('LOWBIT_NOT_FOUND', `${dir}: no tokenizer.json (pass a llama2.c tokenizer.bin with --tokenizer)`, { file });
    const json = readJson(file);
    const cfgFile = path.join(dir, 'tokenizer_config.json');
    const cfg = fs.existsSync(cfgFile) ? readJson(cfgFile) : {};
    let impl: HfTokenizerImpl;
    try {
      impl = new HfTokenizerImpl(json, cfg);
    } catch (e) {
      throw new LowbitError('LOWBIT_UNSUPPORTED', `${file}: cannot build the tokenizer (${(e as Error).message})`, { file });
    }
    let bos = bosFromConfig ?? -1;
    const bosTok = typeof cfg.bos_token === 'string' ? cfg.bos_token : (cfg.bos_token as { content?: string } | undefined)?.content;
    if (bos < 0 && typeof bosTok === 'string') {
      const ids = impl.encode(bosTok, { add_special_tokens: false }).ids;
      if (ids.length === 1) bos = ids[0];
    }
    // the tokenizer's own size: the largest id it knows, +1 (embeddings are often padded beyond it)
    const model = json.model as { vocab?: Record<string, number> | [string, number][] } | undefined;
    let size = 0;
    if (model && Array.isArray(model.vocab)) size = model.vocab.length;
    else if (model && model.vocab && typeof model.vocab === 'object') for (const id of Object.values(model.vocab)) size = Math.max(size, id + 1);
    for (const t of (json.added_tokens as { id: number }[] | undefined) ?? []) size = Math.max(size, t.id + 1);
    if (size === 0) size = vocabSize;
    return new HfTokenizer(impl, size, bos < 0 ? 1 : bos);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids = this.impl.encode(text, { add_special_tokens: false }).ids;
    return opts.bos ? [this.bosId, ...ids] : ids;
  }

  /** The text `id` adds after `prev` (decoding the pair keeps SentencePiece's leading spaces right). */
  printedPiece(prev: number, id: number): Uint8Array {
    if (id < 0 || id >= this.size) return new Uint8Array(0); // an id of the padded embedding rows
    if (prev < 0 || prev >= this.size) prev = this.bosId;
    const o = { skip_special_tokens: true };
    const a = this.impl.decode([prev], o), b = this.impl.decode([prev, id], o);
    return Buffer.from(b.startsWith(a) ? b.slice(a.length) : this.impl.decode([id], o), 'utf8');
  }

  decode(ids: number[]): string {
    return this.impl.decode(ids, { skip_special_tokens: true });
  }
}
