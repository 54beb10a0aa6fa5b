/**
 * formats/llama2c: stories260K in v0 and v1 (config, shapes, bit-identical weights, also against the
 * GGUF copy), hand-made v0/v1 files with an unshared classifier, and one malformed file per reader
 * rule of docs/formats.md §8.1/§8.2/§8.4.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readLlama2cModel, readLlama2cTokenizer, type Llama2cConfig, type Llama2cModel } from '../../lib/formats/llama2c';
import { readGguf, ggufLlamaTensorName } from '../../lib/formats/gguf';
import type { ErrorCode } from '../../lib/errors';
import * as native from '../../lib/native';
import { fixturesDir, NO_FIXTURES } from '../helpers/fixtures';
import { isCode } from '../helpers/errors';
import { must } from '../helpers/assert';

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Expected row-major shape of each HF-style tensor name (docs/formats.md §3.2). */
function expectedShape(name: string, c: Llama2cConfig): number[] {
  const { dim, hiddenDim, vocabSize, kvDim } = c;
  const table: [RegExp, number[]][] = [
    [/^model\.embed_tokens\.weight$/, [vocabSize, dim]],
    [/^lm_head\.weight$/, [vocabSize, dim]],
    [/^model\.norm\.weight$/, [dim]],
    [/layernorm\.weight$/, [dim]],
    [/q_proj\.weight$/, [dim, dim]],
    [/[kv]_proj\.weight$/, [kvDim, dim]],
    [/o_proj\.weight$/, [dim, dim]],
    [/(gate|up)_proj\.weight$/, [hiddenDim, dim]],
    [/down_proj\.weight$/, [dim, hiddenDim]],
  ];
  for (const [re, s] of table) if (re.test(name)) return s;
  throw new Error(`unexpected tensor ${name}`);
}

function checkShapes(m: Llama2cModel): void {
  const perLayer = 9;
  assert.equal(m.tensors.size, 2 + perLayer * m.config.nLayers + (m.config.sharedClassifier ? 0 : 1));
  for (const [name, t] of m.tensors) {
    const s = expectedShape(name, m.config);
    assert.deepEqual(m.shapes.get(name), s, name);
    assert.equal(t.length, s.reduce((a, b) => a * b, 1), name);
  }
}

describe('formats/llama2c', () => {
  let tmp: string;
  let n = 0;
  const write = (b: Uint8Array, name = 'model.bin') => {
    const d = path.join(tmp, `case-${n++}`);
    fs.mkdirSync(d);
    const f = path.join(d, name);
    fs.writeFileSync(f, b);
    return f;
  };

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-llama2c-'));
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('stories260K', () => {
    let dir: string;
    let v0: Llama2cModel;
    let v1: Llama2cModel;

    before(function () {
      const f = fixturesDir();
      if (!f) {
        console.log(`      (skipped: ${NO_FIXTURES})`);
        this.skip();
      }
      dir = path.join(f, 'stories260K');
      v0 = readLlama2cModel(path.join(dir, 'stories260K.bin'));
      v1 = readLlama2cModel(path.join(dir, 'stories260K.v1.bin'));
    });

    it('loads v0 and v1 with the README config', () => {
      const want = { dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512, headSize: 8, kvDim: 32, sharedClassifier: true };
      assert.deepEqual(v0.config, want);
      assert.deepEqual(v1.config, want);
      assert.equal(v0.version, 0);
      assert.equal(v1.version, 1);
      assert.equal(v0.file, path.join(dir, 'stories260K.bin'));
      assert.ok(!v0.tensors.has('lm_head.weight'));
    });

    it('has every tensor with the right shape, in canonical order', () => {
      checkShapes(v0);
      checkShapes(v1);
      const names = [...v0.tensors.keys()];
      assert.equal(names[0], 'model.embed_tokens.weight');
      assert.equal(names[1], 'model.layers.0.input_layernorm.weight');
      assert.equal(names[names.length - 1], 'model.norm.weight');
      assert.deepEqual([...v1.tensors.keys()], names);
    });

    it('v0 and v1 tensors are bit-identical', () => {
      for (const [name, t] of v0.tensors) assert.ok(bitsEqual(t, must(v1.tensors.get(name), `v1 ${name}`)), name);
    });

    it('the GGUF copy is bit-identical (names mapped; output.weight = the shared embedding)', () => {
      const g = readGguf(path.join(dir, 'stories260K.gguf'));
      try {
        let compared = 0;
        for (const ti of g.tensors) {
          const name = ggufLlamaTensorName(ti.name);
          assert.ok(name, ti.name);
          const ref = name === 'lm_head.weight' ? v0.tensors.get('model.embed_tokens.weight') : v0.tensors.get(name);
          assert.ok(ref, `${ti.name} → ${name}`);
          assert.deepEqual(ti.shape, name === 'lm_head.weight' ? v0.shapes.get('model.embed_tokens.weight') : v0.shapes.get(name), ti.name);
          assert.ok(bitsEqual(g.tensorF32(ti.name), ref), ti.name);
          compared++;
        }
        assert.equal(compared, 48);
      } finally {
        g.close();
      }
    });

    it('tensors are zero-copy views over one mapping (with the addon)', function () {
      if (!native.hasAddon()) {
        console.log('      (skipped: native addon not built; the fs fallback is used)');
        this.skip();
      }
      const size = fs.statSync(v0.file).size;
      const emb = must(v0.tensors.get('model.embed_tokens.weight'), 'model.embed_tokens.weight');
      assert.equal(emb.byteOffset, 28);
      for (const t of v0.tensors.values()) {
        assert.equal(t.buffer, emb.buffer);
        assert.equal(t.buffer.byteLength, size);
      }
      assert.equal(must(v1.tensors.get('model.layers.0.input_layernorm.weight'), 'input_layernorm').byteOffset, 256);
    });

    describe('malformed model files', () => {
      let bin: Buffer;
      let bin1: Buffer;
      before(() => {
        bin = fs.readFileSync(path.join(dir, 'stories260K.bin'));
        bin1 = fs.readFileSync(path.join(dir, 'stories260K.v1.bin'));
      });
      const withI32 = (b: Buffer, at: number, v: number) => {
        const c = Buffer.from(b);
        c.writeInt32LE(v, at);
        return c;
      };

      const cases: [string, () => Buffer, ErrorCode, string[]][] = [
        ['truncated v0', () => bin.subarray(0, bin.length - 4), 'LOWBIT_BAD_FORMAT', ['expected 1056540 bytes', 'found 1056536']],
        ['truncated v1', () => bin1.subarray(0, 100_000), 'LOWBIT_BAD_FORMAT', ['expected 1040384 bytes']],
        ['v0 with trailing bytes', () => Buffer.concat([bin, Buffer.alloc(4)]), 'LOWBIT_BAD_FORMAT', ['expected 1056540 bytes', 'found 1056544']],
        ['shorter than a header', () => bin.subarray(0, 20), 'LOWBIT_BAD_FORMAT', ['too short']],
        ['v1 magic, shorter than 256 bytes', () => bin1.subarray(0, 100), 'LOWBIT_BAD_FORMAT', ['256']],
        ['v1 with a bad magic (read as v0)', () => withI32(bin1, 0, 0x616b3433), 'LOWBIT_BAD_FORMAT', []],
        ['version 2', () => withI32(bin1, 4, 2), 'LOWBIT_UNSUPPORTED', ['version 2']],
        ['version 3', () => withI32(bin1, 4, 3), 'LOWBIT_BAD_FORMAT', ['version 3']],
        ['dim not divisible by n_heads', () => withI32(bin, 12, 7), 'LOWBIT_BAD_FORMAT', ['dim 64 is not divisible by n_heads 7']],
        ['n_heads not divisible by n_kv_heads', () => withI32(bin, 16, 3), 'LOWBIT_BAD_FORMAT', ['n_heads 8 is not divisible by n_kv_heads 3']],
        ['odd head size', () => withI32(bin, 12, 64), 'LOWBIT_BAD_FORMAT', ['head size', 'even']],
        ['negative dim', () => withI32(bin, 0, -64), 'LOWBIT_BAD_FORMAT', ['dim must be positive, found -64']],
        ['zero n_layers', () => withI32(bin, 8, 0), 'LOWBIT_BAD_FORMAT', ['n_layers must be positive, found 0']],
        ['negative seq_len', () => withI32(bin, 24, -1), 'LOWBIT_BAD_FORMAT', ['seq_len']],
        ['zero vocab_size (v0)', () => withI32(bin, 20, 0), 'LOWBIT_BAD_FORMAT', ['vocab_size']],
        ['negative vocab_size in v0 (needs a classifier that is absent)', () => withI32(bin, 20, -512), 'LOWBIT_BAD_FORMAT', ['unshared classifier']],
        ['negative vocab_size in v1', () => withI32(bin1, 8 + 20, -512), 'LOWBIT_BAD_FORMAT', ['vocab_size must be positive']],
        ['wrong hidden_dim (size mismatch)', () => withI32(bin, 4, 171), 'LOWBIT_BAD_FORMAT', ['hidden_dim 171', 'expected']],
        ['v1 shared_classifier byte 2', () => { const c = Buffer.from(bin1); c[36] = 2; return c; }, 'LOWBIT_BAD_FORMAT', ['shared_classifier']],
        ['v1 unshared without a classifier', () => { const c = Buffer.from(bin1); c[36] = 0; return c; }, 'LOWBIT_BAD_FORMAT', ['unshared classifier']],
      ];
      for (const [what, make, code, frags] of cases) {
        it(`${what} → ${code}`, () => {
          const f = write(make());
          assert.throws(() => readLlama2cModel(f), isCode(code, f, ...frags));
        });
      }
    });

    describe('tokenizer.bin', () => {
      let tok: Buffer;
      before(() => {
        tok = fs.readFileSync(path.join(dir, 'tok512.bin'));
      });

      it('reads tok512.bin', () => {
        const v = readLlama2cTokenizer(path.join(dir, 'tok512.bin'), 512);
        assert.equal(v.pieces.length, 512);
        assert.equal(v.maxTokenLength, 7);
        assert.equal(v.bos, 1);
        assert.equal(v.eos, 2);
        assert.equal(v.pieces[403], ' Once');
        assert.equal(v.scores[403], -(403 - 259));
        assert.equal(v.pieceBytes[511].length, 3);
      });

      const cases: [string, () => Buffer, number, string[]][] = [
        ['truncated', () => tok.subarray(0, tok.length - 1), 512, ['record 511', 'past the end']],
        ['trailing bytes', () => Buffer.concat([tok, Buffer.of(0)]), 512, ['1 trailing bytes']],
        ['vocab size too small', () => tok, 511, ['trailing bytes']],
        ['vocab size too large', () => tok, 513, ['record 512']],
        ['impossible vocab size', () => tok, 10_000_000, ['expected 10000000 records']],
        ['length above max_token_length', () => { const c = Buffer.from(tok); c.writeUInt32LE(3, 0); return c; }, 512, ['exceeds max_token_length 3']],
        ['negative length', () => { const c = Buffer.from(tok); c.writeInt32LE(-1, 4 + 4); return c; }, 512, ['record 0', 'negative length']],
        ['shorter than 4 bytes', () => Buffer.of(7, 0), 512, ['too short']],
      ];
      for (const [what, make, vs, frags] of cases) {
        it(`${what} → LOWBIT_BAD_FORMAT`, () => {
          const f = write(make(), 'tokenizer.bin');
          assert.throws(() => readLlama2cTokenizer(f, vs), isCode('LOWBIT_BAD_FORMAT', f, ...frags));
        });
      }

      it('bad vocabSize → LOWBIT_INVALID_OPTION', () => {
        for (const vs of [0, -1, 1.5, NaN]) {
          assert.throws(() => readLlama2cTokenizer(path.join(dir, 'tok512.bin'), vs), isCode('LOWBIT_INVALID_OPTION', 'vocabSize'));
        }
      });
    });
  });

  describe('hand-made models with an unshared classifier', () => {
    // dim 8, hidden 12, 2 layers, 2 heads, 1 kv head, vocab 6, seq 3 → hs 4, kv_dim 4.
    const cfg = { dim: 8, hid: 12, L: 2, H: 2, KV: 1, V: 6, S: 3 };
    const hs = cfg.dim / cfg.H;
    const kvDim = cfg.KV * hs;
    type Arr = [string | null, number];
    const per = (part: string, numel: number): Arr[] => Array.from({ length: cfg.L }, (_, i) => [`model.layers.${i}.${part}.weight`, numel] as Arr);
    const emb: Arr[] = [['model.embed_tokens.weight', cfg.V * cfg.dim]];
    const attn = per('input_layernorm', cfg.dim);
    const ffnN = per('post_attention_layernorm', cfg.dim);
    const mats = [...per('self_attn.q_proj', cfg.dim * cfg.dim), ...per('self_attn.k_proj', kvDim * cfg.dim),
      ...per('self_attn.v_proj', kvDim * cfg.dim), ...per('self_attn.o_proj', cfg.dim * cfg.dim)];
    const ffn = [...per('mlp.gate_proj', cfg.hid * cfg.dim), ...per('mlp.down_proj', cfg.dim * cfg.hid), ...per('mlp.up_proj', cfg.hid * cfg.dim)];
    const fin: Arr[] = [['model.norm.weight', cfg.dim]];
    const rope: Arr[] = [[null, cfg.S * hs / 2], [null, cfg.S * hs / 2]];
    const cls: Arr[] = [['lm_head.weight', cfg.V * cfg.dim]];
    const v0Order = [...emb, ...attn, ...mats, ...ffnN, ...ffn, ...fin, ...rope, ...cls];
    const v1Order = [...attn, ...ffnN, ...fin, ...emb, ...mats, ...ffn, ...cls];

    /** Body where each array is filled with (its index in v0 order)·1000 + position, RoPE tables with −1. */
    function body(order: Arr[]): Buffer {
      const idx = new Map(v0Order.map(([name], i) => [name ?? `rope${i}`, i]));
      const parts = order.map(([name, numel], j) => {
        const a = new Float32Array(numel);
        const id = name === null ? -1 : must(idx.get(name), name);
        for (let i = 0; i < numel; i++) a[i] = name === null ? -1 - j : id * 1000 + i;
        return Buffer.from(a.buffer);
      });
      return Buffer.concat(parts);
    }
    const fields = (vocab: number) => {
      const h = Buffer.alloc(28);
      [cfg.dim, cfg.hid, cfg.L, cfg.H, cfg.KV, vocab, cfg.S].forEach((v, i) => h.writeInt32LE(v, 4 * i));
      return h;
    };

    it('v0 with negative vocab_size: classifier read after the RoPE tables; v1 with shared_classifier 0 agrees', () => {
      const f0 = write(Buffer.concat([fields(-cfg.V), body(v0Order)]));
      const h1 = Buffer.alloc(256);
      h1.writeUInt32LE(0x616b3432, 0);
      h1.writeInt32LE(1, 4);
      fields(cfg.V).copy(h1, 8);
      h1[36] = 0;
      const f1 = write(Buffer.concat([h1, body(v1Order)]));
      const m0 = readLlama2cModel(f0);
      const m1 = readLlama2cModel(f1);
      for (const m of [m0, m1]) {
        assert.equal(m.config.vocabSize, cfg.V);
        assert.equal(m.config.sharedClassifier, false);
        assert.equal(m.config.kvDim, kvDim);
        checkShapes(m);
        assert.equal([...m.tensors.keys()].pop(), 'lm_head.weight');
      }
      v0Order.forEach(([name], i) => {
        if (name === null) return;
        const t = must(m0.tensors.get(name), name);
        assert.equal(t[0], i * 1000, name);
        assert.equal(t[t.length - 1], i * 1000 + t.length - 1, name);
        assert.ok(bitsEqual(t, must(m1.tensors.get(name), `m1 ${name}`)), name);
      });
      const lm = must(m0.tensors.get('lm_head.weight'), 'lm_head.weight');
      assert.equal(lm[0], (v0Order.length - 1) * 1000);
    });

    it('a file whose size matches neither layout is rejected with the expected size', () => {
      const f = write(Buffer.concat([fields(cfg.V), body(v0Order)])); // positive vocab: no classifier expected
      assert.throws(() => readLlama2cModel(f), isCode('LOWBIT_BAD_FORMAT', f, 'expected', 'trailing bytes'));
    });

    it('missing file → LOWBIT_NOT_FOUND', () => {
      const f = path.join(tmp, 'does-not-exist.bin');
      assert.throws(() => readLlama2cModel(f), isCode('LOWBIT_NOT_FOUND', f));
      assert.throws(() => readLlama2cTokenizer(f, 512), isCode('LOWBIT_NOT_FOUND', f));
    });
  });
});
