/**
 * Text-ish targets: tokenizers (llama2.c tokenizer.bin, Hugging Face tokenizer.json +
 * tokenizer_config.json) and calibration data (text, JSONL of text or input_ids, a directory of
 * .txt files).
 */
import * as path from 'node:path';
import { Tokenizer, HfTokenizer, readLlama2cTokenizer, loadModel, evaluate } from '../../lib/index';
import { readCalibrationFile } from '../../lib/formats/calib';
import type { FuzzRng } from './rng';
import type { Corpus, FileSet } from './seeds';
import { SEED_SHAPE } from './seeds';
import type { CaseContext, FuzzTarget } from './types';
import { JObj, JRaw, concat, damageText, fromTree, mutateJson, toTree, BAD_UTF8, type JNode } from './json-mutate';
import { cutNear, flipBits, junk, withI32, withU32 } from './bytes';
import { TEXTS, fullModelSteps } from './steps';
import { tokenizerSteps } from './targets-model';
import { writeCaseFiles } from './case-files';

// ---------------------------------------------------------------------------------------------
// tokenizer.bin
// ---------------------------------------------------------------------------------------------

interface RecordAt {
  at: number;
  len: number;
}

function records(b: Uint8Array): RecordAt[] {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const out: RecordAt[] = [];
  for (let p = 4; p + 8 <= b.length;) {
    const len = buf.readInt32LE(p + 4);
    out.push({ at: p, len });
    p += 8 + len;
  }
  return out;
}

function mutateTokenizerBin(rng: FuzzRng, b: Uint8Array): { bytes: Uint8Array; mutation: string; vocabSize: number } {
  const V = SEED_SHAPE.vocabSize;
  const recs = records(b);
  const maxLen = Buffer.from(b.buffer, b.byteOffset, b.byteLength).readUInt32LE(0);
  const i = rng.int(recs.length);
  const r = recs[i];
  const op = rng.int(100);
  if (op < 10) {
    const v = rng.pick([0, 1, 2, maxLen - 1, 0xffffffff, 0x80000000]);
    return { bytes: withU32(b, 0, v), mutation: `max_token_length ${maxLen} → ${v}`, vocabSize: V };
  }
  if (op < 35) {
    const v = rng.pick([-1, -0x80000000, 0x7fffffff, r.len + 1, r.len - 1, 0, maxLen + 1, 1 << 20]);
    return { bytes: withI32(b, r.at + 4, v), mutation: `record ${i}: length ${r.len} → ${v}`, vocabSize: V };
  }
  if (op < 45) {
    const v = rng.pick([NaN, Infinity, -Infinity, -1e10, 3.4e38, -0]);
    const out = Buffer.from(b);
    out.writeFloatLE(v, r.at);
    return { bytes: out, mutation: `record ${i}: score := ${v}`, vocabSize: V };
  }
  if (op < 60) {
    const other = recs[rng.int(recs.length)];
    const piece = rng.pick<Uint8Array>([
      Uint8Array.from(rng.pick(BAD_UTF8)), Buffer.from('a\u0000b'), b.slice(other.at + 8, other.at + 8 + other.len), new Uint8Array(0),
      Buffer.from('<0x41>'), Buffer.from('<0xZZ>'), Buffer.from('<0x-1>'), Buffer.from(' '), new Uint8Array(maxLen).fill(0x61),
    ]);
    const len = Buffer.alloc(4);
    len.writeInt32LE(piece.length);
    const out = concat(b.subarray(0, r.at + 4), len, piece, b.subarray(r.at + 8 + r.len));
    return { bytes: out, mutation: `record ${i}: piece := ${piece.length} bytes [${Array.from(piece.subarray(0, 8)).map((x) => x.toString(16)).join(' ')}]`, vocabSize: V };
  }
  if (op < 75) {
    const bounds = [0, 1, 3, 4, ...recs.flatMap((x) => [x.at, x.at + 4, x.at + 8, x.at + 8 + x.len])];
    const at = cutNear(rng, bounds, b.length);
    return { bytes: b.slice(0, at), mutation: `truncated at byte ${at} of ${b.length}`, vocabSize: V };
  }
  if (op < 80) {
    const j = junk(rng);
    return { bytes: concat(b, j), mutation: `${j.length} bytes appended`, vocabSize: V };
  }
  if (op < 90) {
    const v = rng.pick([V - 1, V + 1, 1, 0, -1, 2 ** 31, 1.5, NaN, 2 ** 53, 2 ** 28]);
    return { bytes: b, mutation: `vocabSize argument ${V} → ${v}`, vocabSize: v };
  }
  const f = flipBits(rng, b, rng.range(1, 6));
  return { bytes: f.bytes, mutation: `bytes changed at ${f.where.join(', ')}`, vocabSize: V };
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json
// ---------------------------------------------------------------------------------------------

/** Paths into tokenizer.json and values that make sense to the schema's eye but not to a tokenizer. */
const TOKENIZER_EDITS: [string[], JNode][] = [
  [['model', 'vocab', 'a'], -1], [['model', 'vocab', 'a'], 1e9], [['model', 'vocab', 'a'], 300], [['model', 'vocab', 'a'], 3], [['model', 'vocab', 'a'], '5'],
  [['model', 'merges'], ['a']], [['model', 'merges'], [['a']]], [['model', 'merges'], [1]], [['model', 'merges'], 'x'], [['model', 'merges'], ['t h e']], [['model', 'merges'], ['zz yy']],
  [['added_tokens'], null], [['added_tokens'], [null]], [['added_tokens'], [new JObj([['id', -1], ['content', 'x']])]], [['added_tokens'], [new JObj([['id', 1e9], ['content', 'x']])]],
  [['added_tokens'], new JObj([['x', 1]])], [['added_tokens'], [new JObj([['id', 5]])]], [['added_tokens'], [new JObj([['id', '5'], ['content', 'x']])]],
  [['model', 'type'], 'Unigram'], [['model', 'type'], 'WordPiece'], [['model', 'type'], 'WordLevel'], [['model', 'type'], ''], [['model', 'type'], null],
  [['model'], null], [['model'], []], [['model', 'vocab'], []], [['model', 'vocab'], null], [['model', 'byte_fallback'], 'yes'],
  [['normalizer'], new JObj([['type', 'Bogus']])], [['normalizer'], new JObj([['type', 'Replace'], ['pattern', new JObj([['Regex', '(']])], ['content', '']])],
  [['pre_tokenizer'], new JObj([['type', 'Split'], ['pattern', new JObj([['Regex', '[']])], ['behavior', 'Isolated']])],
  [['pre_tokenizer'], new JObj([['type', 'Sequence'], ['pretokenizers', null]])], [['decoder'], new JObj([['type', 'Nope']])],
  [['decoder'], new JObj([['type', 'Sequence'], ['decoders', [null]]])], [['post_processor'], new JObj([['type', 'TemplateProcessing'], ['single', 5]])],
];

function setPath(root: JNode, keys: string[], value: JNode): void {
  let node = root;
  for (let i = 0; i < keys.length; i++) {
    if (!(node instanceof JObj)) return;
    const e = node.entries.find((x) => x[0] === keys[i]);
    if (i === keys.length - 1) {
      if (e) e[1] = value;
      else node.entries.push([keys[i], value]);
      return;
    }
    if (!e) return;
    node = e[1];
  }
}

function mutateTokenizerJson(rng: FuzzRng, corpus: Corpus): { files: FileSet; mutation: string } {
  const kind = rng.int(corpus.tokenizerJsons.length);
  let json: Uint8Array = corpus.tokenizerJsons[kind];
  let cfg: Uint8Array = corpus.tokenizerConfigJson;
  let mutation: string;
  const op = rng.int(100);
  if (op < 60) {
    const m = mutateJson(rng, Buffer.from(json).toString('utf8'));
    json = m.bytes;
    mutation = `tokenizer.json: ${m.mutation}`;
  } else if (op < 80) {
    const root = toTree(Buffer.from(json).toString('utf8'));
    const [keys, value] = rng.pick(TOKENIZER_EDITS);
    setPath(root, keys, value);
    json = Buffer.from(fromTree(root), 'utf8');
    mutation = `tokenizer.json: ${keys.join('.')} := ${fromTree(value)}`;
  } else if (op < 88) {
    const root = toTree(Buffer.from(cfg).toString('utf8'));
    const v = rng.pick<JNode>([5, new JObj([['content', 5]]), new JObj([]), '<unk>', 'nonexistent', [], null, new JObj([['content', '</s>']]), new JRaw('"\\ud800"')]);
    setPath(root, [rng.pick(['bos_token', 'eos_token'])], v);
    cfg = Buffer.from(fromTree(root), 'utf8');
    mutation = `tokenizer_config.json: a special token := ${fromTree(v)}`;
  } else {
    const m = mutateJson(rng, Buffer.from(cfg).toString('utf8'));
    cfg = m.bytes;
    mutation = `tokenizer_config.json: ${m.mutation}`;
  }
  return { files: new Map([['tok/tokenizer.json', json], ['tok/tokenizer_config.json', cfg]]), mutation: `${['BPE', 'WordLevel', 'Unigram'][kind]} ${mutation}` };
}

async function hfTokenizerSteps(ctx: CaseContext, tok: HfTokenizer): Promise<void> {
  for (const text of TEXTS) {
    const ids = await ctx.probe('HfTokenizer.encode', () => tok.encode(text, { bos: true }));
    if (!ids) continue;
    const bad = ids.find((id) => !Number.isInteger(id) || id < 0);
    if (bad !== undefined) ctx.wrong('HfTokenizer.encode', `id ${bad} is not a token id`);
    await ctx.probe('HfTokenizer.decode', () => tok.decode(ids));
    for (let i = 1; i < Math.min(ids.length, 4); i++) await ctx.probe('HfTokenizer.printedPiece', () => tok.printedPiece(ids[i - 1], ids[i]));
  }
}

/** Load a model with this tokenizer and evaluate a few tokens of text. */
async function evalSteps(ctx: CaseContext, model: string, tokenizer?: string): Promise<void> {
  const m = await ctx.probe('loadModel', () => loadModel(model, tokenizer === undefined ? {} : { tokenizer }));
  if (!m) return;
  try {
    await ctx.probe('evaluate', () => evaluate(m, { text: TEXTS.slice(0, 2).join(' ').repeat(4), ctx: 8, maxChunks: 1 }));
  } finally {
    m.dispose();
  }
}

export const tokenizerTarget: FuzzTarget = {
  name: 'tokenizer',
  make(rng, corpus) {
    if (rng.chance(0.3)) {
      const { files, mutation } = mutateTokenizerJson(rng, corpus);
      return { files, mutation, entry: 'tok', vocabSize: SEED_SHAPE.vocabSize };
    }
    const m = mutateTokenizerBin(rng, corpus.tokenizerBin);
    return { files: new Map([['tokenizer.bin', m.bytes]]), mutation: `tokenizer.bin: ${m.mutation}`, entry: 'tokenizer.bin', vocabSize: m.vocabSize };
  },
  async run(c, ctx, corpus) {
    const V = c.vocabSize ?? SEED_SHAPE.vocabSize;
    if (c.entry === 'tok') {
      const tok = await ctx.probe('HfTokenizer.fromDir', () => HfTokenizer.fromDir(ctx.entry, V));
      if (tok) await hfTokenizerSteps(ctx, tok);
      if (ctx.full) {
        // the same files inside a model directory: loadModel picks tokenizer.json up itself
        const files: FileSet = new Map(corpus.hfSingle);
        files.set('model/tokenizer.json', c.files.get('tok/tokenizer.json') as Uint8Array);
        files.set('model/tokenizer_config.json', c.files.get('tok/tokenizer_config.json') as Uint8Array);
        writeCaseFiles(ctx.dir, files);
        await evalSteps(ctx, path.join(ctx.dir, 'model'));
      }
      return;
    }
    const vocab = await ctx.probe('readLlama2cTokenizer', () => readLlama2cTokenizer(ctx.entry, V));
    if (vocab && vocab.pieceBytes.length !== V) ctx.wrong('readLlama2cTokenizer', `${vocab.pieceBytes.length} pieces, asked for ${V}`);
    const tok = await ctx.probe('Tokenizer.fromLlama2c', () => Tokenizer.fromLlama2c(ctx.entry, V));
    if (tok) await tokenizerSteps(ctx, tok);
    if (ctx.full) {
      writeCaseFiles(ctx.dir, new Map([['model.bin', corpus.llama2c[0].bytes]]));
      await evalSteps(ctx, path.join(ctx.dir, 'model.bin'), ctx.entry);
    }
  },
};

// ---------------------------------------------------------------------------------------------
// calibration data
// ---------------------------------------------------------------------------------------------

const BAD_LINES = [
  'null', '[]', '"x"', '{}', '{"text":5}', '{"text":"a","input_ids":[1]}', '{"input_ids":[1.5]}', '{"input_ids":[-1]}', '{"input_ids":[2147483648]}',
  '{"input_ids":[1e400]}', '{"input_ids":[[1]]}', '{"input_ids":"123"}', '{"input_ids":[]}', '{"text":""}', '{"text":"a"}', '{"input_ids":[1,2,3]}',
  '{"input_ids":[299,300,301]}', '{"text":"\\ud800"}', '{"__proto__":{"text":"x"}}', '{"text":"a"}{"text":"b"}',
];

function mutateLines(rng: FuzzRng, text: string): { text: string | Uint8Array; mutation: string } {
  const lines = text.split('\n');
  const op = rng.int(100);
  const i = rng.int(lines.length);
  if (op < 35) {
    const m = lines[i].trim() === '' ? { bytes: Buffer.from('{}'), mutation: 'blank line := {}' } : mutateJson(rng, lines[i]);
    return { text: concat(Buffer.from(lines.slice(0, i).map((l) => `${l}\n`).join('')), m.bytes, Buffer.from(`\n${lines.slice(i + 1).join('\n')}`)), mutation: `line ${i + 1}: ${m.mutation}` };
  }
  if (op < 70) {
    const l = rng.pick(BAD_LINES);
    lines[i] = l;
    return { text: lines.join('\n'), mutation: `line ${i + 1} := ${l}` };
  }
  if (op < 78) return { text: lines.join('\r\n'), mutation: 'CRLF line ends' };
  if (op < 84) return { text: rng.pick(['', '\n\n\n', '   \n\t\n', '\u0000']), mutation: 'no records' };
  const d = damageText(rng, Buffer.from(text, 'utf8'));
  return { text: d.bytes, mutation: d.mutation };
}

export const calibTarget: FuzzTarget = {
  name: 'calib',
  make(rng, corpus) {
    const kind = rng.int(100);
    if (kind < 25) {
      let b: Uint8Array = corpus.calibText;
      let mutation: string;
      const op = rng.int(6);
      if (op === 0) ({ bytes: b, mutation } = damageText(rng, b));
      else if (op === 1) {
        const at = rng.int(b.length);
        b = b.slice(0, at);
        mutation = `cut at byte ${at}`;
      } else if (op === 2) {
        b = rng.pick([new Uint8Array(0), Buffer.from('   \n'), new Uint8Array(1 << 20).fill(0x61), Buffer.from('\ufeff')]);
        mutation = `content := ${b.length} bytes`;
      } else if (op === 3) {
        const f = flipBits(rng, b, rng.range(1, 16));
        b = f.bytes;
        mutation = `bytes changed at ${f.where.length} places`;
      } else {
        b = concat(b, Uint8Array.from(rng.pick(BAD_UTF8)));
        mutation = 'invalid UTF-8 at the end';
      }
      const name = rng.chance(0.2) ? 'calib.jsonl' : 'calib.txt';
      return { files: new Map([[name, b]]), mutation: `${name}: ${mutation}`, entry: name };
    }
    if (kind < 85) {
      const ids = kind >= 55;
      const src = Buffer.from(ids ? corpus.calibJsonlIds : corpus.calibJsonlText).toString('utf8');
      const m = mutateLines(rng, src);
      const b = typeof m.text === 'string' ? Buffer.from(m.text, 'utf8') : m.text;
      return { files: new Map([['calib.jsonl', b]]), mutation: `calib.jsonl (${ids ? 'input_ids' : 'text'}): ${m.mutation}`, entry: 'calib.jsonl' };
    }
    const files: FileSet = new Map(corpus.calibDir);
    const dirs: string[] = [];
    const op = rng.int(5);
    let mutation: string;
    if (op === 0) {
      files.clear();
      dirs.push('calib');
      mutation = 'no .txt files';
    } else if (op === 1) {
      dirs.push('calib/sub.txt');
      mutation = 'a directory named sub.txt';
    } else if (op === 2) {
      files.set('calib/notes.md', Buffer.from('# not calibration'));
      files.set('calib/empty.txt', new Uint8Array(0));
      mutation = 'an empty .txt and a .md';
    } else {
      const f = rng.pick([...files.keys()]);
      const d = damageText(rng, files.get(f) as Uint8Array);
      files.set(f, d.bytes);
      mutation = `${f}: ${d.mutation}`;
    }
    return { files, dirs, mutation: `calib/: ${mutation}`, entry: 'calib' };
  },
  async run(_c, ctx, corpus) {
    const d = await ctx.probe('readCalibrationFile', () => readCalibrationFile(ctx.entry));
    if (d) {
      const n = d.texts?.length ?? d.ids?.length ?? -1;
      if (n !== d.records) ctx.wrong('readCalibrationFile', `${d.records} records but ${n} texts/ids`);
      if (d.ids?.some((r) => r.some((id) => !Number.isInteger(id) || id < 0))) ctx.wrong('readCalibrationFile', 'an input id that is not a non-negative integer');
    }
    if (ctx.full) {
      const files: FileSet = new Map(corpus.hfSingle);
      files.set('model/tokenizer.bin', corpus.tokenizerBin);
      writeCaseFiles(ctx.dir, files);
      await fullModelSteps(ctx, path.join(ctx.dir, 'model'), { calibration: { file: ctx.entry, samples: 2, seqLen: 8 } }, { method: 'gptq', bits: 4, groupSize: 32 });
    }
  },
};
