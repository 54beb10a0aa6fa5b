/**
 * Resource caps and parser hardening (issue 17, "nothing bad gets through"): one regression test per
 * bug the fuzzer (scripts/fuzz) found, and one per cap that refuses an input before allocating for
 * it. Every input is built from bytes here; large inputs are sparse files (a size, no data), so the
 * caps are tested at their real values without writing gigabytes.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openSafetensors, readHfConfig, openModel, inspectModel, readGguf, ggufLlamaConfig, readLlama2cModel, readLlama2cTokenizer, HfTokenizer, writeSyntheticModel } from '../../lib/index';
import { readCalibrationFile, MAX_CALIB_BYTES } from '../../lib/formats/calib';
import { MAX_JSON_DEPTH, MAX_JSON_FILE_BYTES, jsonDepth } from '../../lib/formats/json';
import { MAX_HEADER_BYTES } from '../../lib/formats/safetensors';
import { GGUF_MAX_TENSORS } from '../../lib/formats/gguf';
import { MAX_CONFIG_INT } from '../../lib/formats/hf-config';
import { LLAMA2C_MAX_TOKEN_LENGTH } from '../../lib/formats/llama2c';
import { throwsCode } from '../helpers/errors';

/** `[[[…]]]`, `depth` levels. */
const deep = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

/** A safetensors file: u64 header length, header text, data. */
function safetensorsBytes(header: string, data: Uint8Array): Buffer {
  const h = Buffer.from(header, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

/** A little-endian GGUF v3 file from parts (no validation: these files are meant to be wrong). */
function ggufBytes(opts: { kvs?: [string, number, Buffer][]; tensors?: { name: string; ne: bigint[]; type: number; offset: bigint }[]; tensorCount?: bigint; data?: Buffer }): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(v); parts.push(b); };
  const str = (s: string) => { u64(BigInt(Buffer.byteLength(s))); parts.push(Buffer.from(s)); };
  const kvs = opts.kvs ?? [];
  const tensors = opts.tensors ?? [];
  u32(0x46554747);
  u32(3);
  u64(opts.tensorCount ?? BigInt(tensors.length));
  u64(BigInt(kvs.length));
  for (const [k, type, value] of kvs) {
    str(k);
    u32(type);
    parts.push(value);
  }
  for (const t of tensors) {
    str(t.name);
    u32(t.ne.length);
    for (const d of t.ne) u64(d);
    u32(t.type);
    u64(t.offset);
  }
  const head = Buffer.concat(parts);
  const pad = Buffer.alloc((32 - (head.length % 32)) % 32);
  return Buffer.concat([head, pad, opts.data ?? Buffer.alloc(0)]);
}

const u32Value = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
const f32Value = (v: number) => { const b = Buffer.alloc(4); b.writeFloatLE(v); return b; };
const strValue = (s: string) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(Buffer.byteLength(s))); return Buffer.concat([b, Buffer.from(s)]); };

/** A llama2.c v0 header (7 × i32) followed by `body` bytes. */
function llama2cV0(fields: number[], body = 64): Buffer {
  const h = Buffer.alloc(28);
  fields.forEach((v, i) => h.writeInt32LE(v, 4 * i));
  return Buffer.concat([h, Buffer.alloc(body)]);
}

/** A minimal BPE tokenizer.json (no normalizer, no byte fallback). */
function tokenizerJson(vocab: Record<string, unknown>, addedTokens: unknown = [{ id: 0, content: '<unk>', special: true }]): string {
  return JSON.stringify({
    version: '1.0', added_tokens: addedTokens, normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null,
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: ['a b'] },
  });
}

describe('parser caps and hardening (issue 17)', function () {
  let tmp: string;
  let n = 0;
  const fresh = () => {
    const d = path.join(tmp, `case-${n++}`);
    fs.mkdirSync(d);
    return d;
  };
  /** A file of `size` bytes that starts with `head` (the rest a hole: sparse on every common file system). */
  const sparse = (file: string, head: Uint8Array, size: number) => {
    fs.writeFileSync(file, head);
    fs.truncateSync(file, size);
    return file;
  };

  before(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-caps-'));
  });
  after(function () {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('JSON depth', function () {
    it('jsonDepth counts nesting, skipping strings and their escapes', function () {
      assert.equal(jsonDepth('1').depth, 0);
      assert.equal(jsonDepth('{"a":[1,{"b":"[[[\\"[["}]}').depth, 3);
      assert.equal(jsonDepth(deep(5000)).depth, MAX_JSON_DEPTH + 1); // stops one level past the cap
    });
  });

  describe('safetensors', function () {
    it(`a header nested deeper than ${MAX_JSON_DEPTH} levels is LOWBIT_BAD_FORMAT (it was accepted)`, function () {
      const f = path.join(fresh(), 'model.safetensors');
      fs.writeFileSync(f, safetensorsBytes(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":${deep(100_000)}}}`, new Uint8Array(4)));
      throwsCode(() => openSafetensors(f), 'LOWBIT_BAD_FORMAT', f, `nested more than ${MAX_JSON_DEPTH} levels`);
    });

    it('an index larger than the header limit is refused from its size, before it is read', function () {
      const d = fresh();
      sparse(path.join(d, 'model.safetensors.index.json'), Buffer.from('{"weight_map":{'), MAX_HEADER_BYTES + 1);
      throwsCode(() => openSafetensors(d), 'LOWBIT_BAD_FORMAT', 'model.safetensors.index.json', `exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
    });

    it('an index nested too deep is LOWBIT_BAD_FORMAT', function () {
      const d = fresh();
      fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), `{"weight_map":{},"x":${deep(1000)}}`);
      throwsCode(() => openSafetensors(d), 'LOWBIT_BAD_FORMAT', 'index JSON is nested more than');
    });
  });

  describe('GGUF', function () {
    it('a dimension past 2^53 − 1 (beside a 0, so the file is small) is LOWBIT_UNSUPPORTED (it was read as an inexact number)', function () {
      const f = path.join(fresh(), 'm.gguf');
      fs.writeFileSync(f, ggufBytes({ tensors: [{ name: 'w', ne: [0n, 2n ** 60n], type: 0, offset: 0n }] }));
      throwsCode(() => readGguf(f), 'LOWBIT_UNSUPPORTED', f, 'ne[1] = 1152921504606846976 exceeds 2^53 − 1');
    });

    it(`tensor_count above ${GGUF_MAX_TENSORS} is refused before any tensor info is read`, function () {
      // 30 MB of zeros would hold 1.25 M minimal tensor infos: the byte bound alone lets it through
      const f = sparse(path.join(fresh(), 'm.gguf'), ggufBytes({ tensorCount: BigInt(GGUF_MAX_TENSORS + 1) }), 30_000_000);
      throwsCode(() => readGguf(f), 'LOWBIT_BAD_FORMAT', f, `tensor_count ${GGUF_MAX_TENSORS + 1} exceeds the limit of ${GGUF_MAX_TENSORS} tensors`);
    });

    it('a llama size key above 2^31 − 1 is LOWBIT_BAD_FORMAT (loadModel failed later with an untyped error)', function () {
      const kvs: [string, number, Buffer][] = [
        ['general.architecture', 8, strValue('llama')], ['llama.embedding_length', 4, u32Value(32)], ['llama.feed_forward_length', 4, u32Value(64)],
        ['llama.block_count', 4, u32Value(1)], ['llama.attention.head_count', 4, u32Value(4)], ['llama.context_length', 4, u32Value(0xffffffff)],
        ['llama.attention.layer_norm_rms_epsilon', 6, f32Value(1e-5)], ['llama.vocab_size', 4, u32Value(300)],
      ];
      const f = path.join(fresh(), 'm.gguf');
      fs.writeFileSync(f, ggufBytes({ kvs }));
      const g = readGguf(f);
      try {
        throwsCode(() => ggufLlamaConfig(g), 'LOWBIT_BAD_FORMAT', f, 'llama.context_length', '4294967295');
      } finally {
        g.close();
      }
    });
  });

  describe('llama2.c', function () {
    // the size is now computed in closed form: the reader listed one segment per layer first
    // (2^31 − 1 layers: seconds of work and GBs of objects before the size check)
    for (const [what, bytes] of [
      ['v0', llama2cV0([32, 64, 2147483647, 4, 2, 300, 32])],
      ['v0 (unshared)', llama2cV0([32, 64, 1 << 30, 4, 2, -300, 32])],
    ] as const) {
      it(`${what}: n_layers in the billions is refused from the file size at once`, function () {
        const f = path.join(fresh(), 'model.bin');
        fs.writeFileSync(f, bytes);
        throwsCode(() => readLlama2cModel(f), 'LOWBIT_BAD_FORMAT', f, 'n_layers', 'truncated file?');
      });
    }

    it('v1: n_layers 2^31 − 1 is refused from the file size at once', function () {
      const h = Buffer.alloc(256);
      h.writeUInt32LE(0x616b3432, 0);
      h.writeInt32LE(1, 4);
      [32, 64, 2147483647, 4, 2, 300, 32].forEach((v, i) => h.writeInt32LE(v, 8 + 4 * i));
      h[36] = 1;
      const f = path.join(fresh(), 'model.bin');
      fs.writeFileSync(f, Buffer.concat([h, Buffer.alloc(64)]));
      throwsCode(() => readLlama2cModel(f), 'LOWBIT_BAD_FORMAT', f, 'n_layers 2147483647');
    });

    it('a v1 header gets the legacy header\'s plausibility limits when a model is detected (seq_len 2^31 − 1 aborted loadModel)', function () {
      const h = Buffer.alloc(256);
      h.writeUInt32LE(0x616b3432, 0);
      h.writeInt32LE(1, 4);
      [32, 64, 1, 4, 2, 300, 2147483647].forEach((v, i) => h.writeInt32LE(v, 8 + 4 * i));
      h[36] = 1;
      const f = path.join(fresh(), 'model.bin');
      fs.writeFileSync(f, Buffer.concat([h, Buffer.alloc(64)]));
      throwsCode(() => inspectModel(f), 'LOWBIT_BAD_FORMAT', f, 'llama2.c: its 7-integer header (32, 64, 1, 4, 2, 300, 2147483647) is not a model\'s dimensions');
    });

    it('tokenizer.bin: only what vocab_size records can fill is read (a 3 GiB file was read whole first)', function () {
      const head = Buffer.alloc(4);
      head.writeUInt32LE(4); // max_token_length 4: 2 records end by byte 4 + 2 · 12
      const size = 3 * 2 ** 30;
      const f = sparse(path.join(fresh(), 'tokenizer.bin'), head, size);
      throwsCode(() => readLlama2cTokenizer(f, 2), 'LOWBIT_BAD_FORMAT', f, `${size - 20} trailing bytes after 2 records`);
    });

    it(`tokenizer.bin: max_token_length above ${LLAMA2C_MAX_TOKEN_LENGTH} is refused (a GGUF passed as the tokenizer)`, function () {
      const f = path.join(fresh(), 'tokenizer.bin');
      fs.writeFileSync(f, ggufBytes({}));
      throwsCode(() => readLlama2cTokenizer(f, 1), 'LOWBIT_BAD_FORMAT', f, 'max_token_length 1179993927 exceeds the limit');
    });
  });

  describe('config.json', function () {
    const config = (extra: Record<string, unknown>) => JSON.stringify({
      architectures: ['LlamaForCausalLM'], hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4,
      vocab_size: 300, max_position_embeddings: 32, ...extra,
    });

    for (const [field, value] of [['num_hidden_layers', 2 ** 31], ['max_position_embeddings', 1e300], ['vocab_size', 2 ** 53]] as const) {
      it(`${field} ${value} (above ${MAX_CONFIG_INT}) is LOWBIT_BAD_FORMAT naming the field`, function () {
        const d = fresh();
        fs.writeFileSync(path.join(d, 'config.json'), config({ [field]: value }));
        throwsCode(() => readHfConfig(d), 'LOWBIT_BAD_FORMAT', path.join(d, 'config.json'), field, `≤ ${MAX_CONFIG_INT}`);
      });
    }

    it(`nesting deeper than ${MAX_JSON_DEPTH} levels is LOWBIT_BAD_FORMAT (a quantize run then overflowed the stack writing config.json)`, function () {
      const d = fresh();
      fs.writeFileSync(path.join(d, 'config.json'), `${config({}).slice(0, -1)},"extra":${deep(100_000)}}`);
      throwsCode(() => readHfConfig(d), 'LOWBIT_BAD_FORMAT', path.join(d, 'config.json'), `nested more than ${MAX_JSON_DEPTH} levels`);
    });

    it('invalid UTF-8 is LOWBIT_BAD_FORMAT (it was replaced by U+FFFD silently)', function () {
      const d = fresh();
      fs.writeFileSync(path.join(d, 'config.json'), Buffer.concat([Buffer.from(config({}).slice(0, -1) + ',"name":"'), Buffer.of(0xff, 0xfe), Buffer.from('"}')]));
      throwsCode(() => readHfConfig(d), 'LOWBIT_BAD_FORMAT', 'config.json', 'not valid UTF-8');
    });

    it(`a config.json over ${MAX_JSON_FILE_BYTES} bytes is refused from its size`, function () {
      const d = fresh();
      sparse(path.join(d, 'config.json'), Buffer.from('{'), MAX_JSON_FILE_BYTES + 1);
      throwsCode(() => readHfConfig(d), 'LOWBIT_BAD_FORMAT', 'config.json', `${MAX_JSON_FILE_BYTES}-byte`);
    });
  });

  describe('model directories', function () {
    let model: string;
    before(async function () {
      model = path.join(tmp, 'model');
      await writeSyntheticModel(model, { shape: { hiddenSize: 32, intermediateSize: 64, layers: 1, heads: 4, kvHeads: 2, vocabSize: 64, maxPositions: 32 }, dtype: 'F32' });
    });

    it('openModel: a shape error names the model directory (it named only the tensor)', function () {
      const d = fresh();
      for (const f of fs.readdirSync(model)) fs.copyFileSync(path.join(model, f), path.join(d, f));
      const cfg = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
      fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...cfg, num_hidden_layers: 2 }));
      throwsCode(() => openModel(d), 'LOWBIT_BAD_FORMAT', d, 'model.layers.1.');
    });

    it('inspectModel: a dangling symlink beside the files is skipped (it was a raw ENOENT)', function () {
      const d = fresh();
      for (const f of fs.readdirSync(model)) fs.copyFileSync(path.join(model, f), path.join(d, f));
      fs.symlinkSync('../blobs/gone', path.join(d, 'extra.bin'));
      const s = inspectModel(d);
      assert.ok(s.bytesOnDisk > s.tensorBytes, `bytesOnDisk ${s.bytesOnDisk}`);
    });
  });

  describe('tokenizer.json', function () {
    const dirWith = (json: string) => {
      const d = fresh();
      fs.writeFileSync(path.join(d, 'tokenizer.json'), json);
      return d;
    };

    it('a vocabulary id that is not an integer is LOWBIT_BAD_FORMAT (encode returned it as a token id)', function () {
      const d = dirWith(tokenizerJson({ '<unk>': 0, a: 1.5, b: 2, ab: 3 }));
      throwsCode(() => HfTokenizer.fromDir(d, 10), 'LOWBIT_BAD_FORMAT', 'tokenizer.json', 'model.vocab "a"', '1.5');
    });

    it('an added token whose id is a string is LOWBIT_BAD_FORMAT (encode returned "5")', function () {
      const d = dirWith(tokenizerJson({ '<unk>': 0, a: 1, b: 2, ab: 3 }, [{ id: '5', content: 'x', special: true }]));
      throwsCode(() => HfTokenizer.fromDir(d, 10), 'LOWBIT_BAD_FORMAT', 'added_tokens[0]');
    });

    it('added_tokens that is not an array, and a file that is not an object, are LOWBIT_BAD_FORMAT', function () {
      throwsCode(() => HfTokenizer.fromDir(dirWith(tokenizerJson({ '<unk>': 0 }, {})), 10), 'LOWBIT_BAD_FORMAT', 'added_tokens: expected an array');
      throwsCode(() => HfTokenizer.fromDir(dirWith('null'), 10), 'LOWBIT_BAD_FORMAT', 'expected a JSON object, found null');
      throwsCode(() => HfTokenizer.fromDir(dirWith(`{"model":${deep(500)}}`), 10), 'LOWBIT_BAD_FORMAT', 'nested more than');
    });

    it('a word outside a WordLevel vocabulary encodes to unk_token (the library gave undefined ids); decode([]) is ""', function () {
      const json = JSON.stringify({
        version: '1.0', added_tokens: [], normalizer: null, pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null,
        model: { type: 'WordLevel', vocab: { '<unk>': 0, once: 1, upon: 2 }, unk_token: '<unk>' },
      });
      const t = HfTokenizer.fromDir(dirWith(json), 3);
      assert.deepEqual(t.encode('once upon never'), [1, 2, 0]);
      assert.equal(t.decode([]), '');
    });

    it('a valid file still loads and encodes', function () {
      const t = HfTokenizer.fromDir(dirWith(tokenizerJson({ '<unk>': 0, a: 1, b: 2, ab: 3 })), 10);
      assert.deepEqual(t.encode('ab'), [3]);
      assert.equal(t.size, 4);
    });
  });

  describe('calibration files', function () {
    it(`a file over ${MAX_CALIB_BYTES} bytes is refused from its size (a 600 MB file was read, then failed decoding with an untyped error)`, function () {
      const f = sparse(path.join(fresh(), 'big.txt'), Buffer.from('Once upon a time'), 600_000_000);
      throwsCode(() => readCalibrationFile(f), 'LOWBIT_BAD_FORMAT', f, `${MAX_CALIB_BYTES}-byte limit`);
    });

    it('the limit holds for the .txt files of a directory together', function () {
      const d = fresh();
      fs.writeFileSync(path.join(d, 'a.txt'), Buffer.alloc(1024, 0x61));
      sparse(path.join(d, 'b.txt'), Buffer.from('b'), MAX_CALIB_BYTES - 512); // under the limit alone, over it with a.txt
      throwsCode(() => readCalibrationFile(d), 'LOWBIT_BAD_FORMAT', 'b.txt', `with the files before it in the directory, ${MAX_CALIB_BYTES + 512} bytes`);
    });

    it('a JSONL line nested too deep is LOWBIT_BAD_FORMAT naming the line', function () {
      const f = path.join(fresh(), 'c.jsonl');
      fs.writeFileSync(f, `{"text":"a"}\n{"text":"b","x":${deep(10_000)}}\n`);
      throwsCode(() => readCalibrationFile(f), 'LOWBIT_BAD_FORMAT', f, 'line 2: JSON nested more than');
    });
  });

});
