/**
 * Hugging Face config.json (docs/formats.md §3.1) and the tensor names/shapes of §3.2.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LowbitError } from '../../lib/errors';
import { hfConfigToJson, parseHfConfig, readHfConfig, type ModelConfig } from '../../lib/formats/hf-config';
import { checkNonLinearTensors, LINEAR_KINDS, listLinearModules } from '../../lib/formats/hf-model';

function throwsLowbit(fn: () => unknown, code: string, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LowbitError, `expected a LowbitError, got ${String(e)}`);
    assert.equal(e.code, code, `code of: ${e.message}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
    return true;
  });
}

const LLAMA = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 64,
  intermediate_size: 160,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 100,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  rope_theta: 500000.0,
  rope_scaling: { rope_type: 'llama3', factor: 8.0 },
  hidden_act: 'silu',
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  bos_token_id: 1,
  eos_token_id: [2, 3],
};

const MISTRAL = {
  architectures: ['MistralForCausalLM'],
  model_type: 'mistral',
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 1,
  num_attention_heads: 8,
  vocab_size: 50,
  max_position_embeddings: 1024,
  rms_norm_eps: 1e-5,
  sliding_window: null,
  dtype: 'float16',
  eos_token_id: 2,
};

const QWEN2 = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  hidden_size: 48,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 6,
  num_key_value_heads: 2,
  vocab_size: 64,
  max_position_embeddings: 512,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  tie_word_embeddings: true,
  torch_dtype: 'float32',
};

describe('hf-config: readHfConfig', () => {
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-hfcfg-'));
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  function writeDir(name: string, content: unknown): string {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.json'), typeof content === 'string' ? content : JSON.stringify(content, null, 2));
    return dir;
  }

  it('llama (GQA, rope_theta, list eos, bfloat16)', () => {
    const c = readHfConfig(writeDir('llama', LLAMA));
    assert.equal(c.family, 'llama');
    assert.deepEqual(c.architectures, ['LlamaForCausalLM']);
    assert.equal(c.modelType, 'llama');
    assert.equal(c.hiddenSize, 64);
    assert.equal(c.intermediateSize, 160);
    assert.equal(c.numLayers, 2);
    assert.equal(c.numHeads, 4);
    assert.equal(c.numKvHeads, 2);
    assert.equal(c.headDim, 16);
    assert.equal(c.vocabSize, 100);
    assert.equal(c.maxPositionEmbeddings, 256);
    assert.equal(c.rmsNormEps, 1e-5);
    assert.equal(c.ropeTheta, 500000);
    assert.equal(c.tieWordEmbeddings, false);
    assert.equal(c.torchDtype, 'bfloat16');
    assert.equal(c.attentionBias, false);
    assert.equal(c.bosTokenId, 1);
    assert.equal(c.eosTokenId, 2);
    assert.deepEqual(c.eosTokenIds, [2, 3]);
    assert.deepEqual(c.raw.rope_scaling, LLAMA.rope_scaling);
  });

  it('mistral (defaults: kv heads, rope_theta, tie; `dtype` key)', () => {
    const c = readHfConfig(writeDir('mistral', MISTRAL));
    assert.equal(c.family, 'mistral');
    assert.equal(c.numKvHeads, 8);
    assert.equal(c.headDim, 8);
    assert.equal(c.ropeTheta, 10000);
    assert.equal(c.tieWordEmbeddings, false);
    assert.equal(c.torchDtype, 'float16');
    assert.equal(c.eosTokenId, 2);
    assert.equal(c.eosTokenIds, undefined);
    assert.equal(c.bosTokenId, undefined);
  });

  it('qwen2 (attention bias, tied embeddings)', () => {
    const c = readHfConfig(writeDir('qwen2', QWEN2));
    assert.equal(c.family, 'qwen2');
    assert.equal(c.attentionBias, true);
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(c.headDim, 8);
    assert.equal(c.torchDtype, 'float32');
  });

  it('explicit head_dim, attention_bias and model_type without architectures', () => {
    const c = parseHfConfig({ ...LLAMA, architectures: undefined, head_dim: 32, attention_bias: true });
    assert.equal(c.family, 'llama');
    assert.deepEqual(c.architectures, []);
    assert.equal(c.headDim, 32);
    assert.equal(c.attentionBias, true);
  });

  it('missing directory or config.json → LOWBIT_NOT_FOUND naming the path', () => {
    const missing = path.join(tmp, 'nope');
    throwsLowbit(() => readHfConfig(missing), 'LOWBIT_NOT_FOUND', missing);
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    throwsLowbit(() => readHfConfig(empty), 'LOWBIT_NOT_FOUND', path.join(empty, 'config.json'));
  });

  it('invalid JSON → LOWBIT_BAD_FORMAT naming the file', () => {
    const dir = writeDir('badjson', '{"hidden_size": 64,');
    throwsLowbit(() => readHfConfig(dir), 'LOWBIT_BAD_FORMAT', path.join(dir, 'config.json'), 'invalid JSON');
    throwsLowbit(() => readHfConfig(writeDir('array', '[1]')), 'LOWBIT_BAD_FORMAT', 'JSON object');
  });

  it('unsupported architecture → LOWBIT_UNSUPPORTED naming it and listing the supported ones', () => {
    const dir = writeDir('gpt2', { ...LLAMA, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' });
    throwsLowbit(() => readHfConfig(dir), 'LOWBIT_UNSUPPORTED', 'GPT2LMHeadModel', 'LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM');
    throwsLowbit(() => parseHfConfig({ ...LLAMA, architectures: undefined, model_type: 'gemma' }), 'LOWBIT_UNSUPPORTED', 'gemma');
    throwsLowbit(() => parseHfConfig({ ...LLAMA, architectures: undefined, model_type: undefined }), 'LOWBIT_BAD_FORMAT', 'architectures');
    throwsLowbit(() => parseHfConfig({ ...LLAMA, torch_dtype: 'float8_e4m3fn' }), 'LOWBIT_UNSUPPORTED', 'float8_e4m3fn');
  });

  it('missing or invalid fields → LOWBIT_BAD_FORMAT naming the field', () => {
    for (const key of ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'vocab_size', 'max_position_embeddings']) {
      const missing: Record<string, unknown> = Object.fromEntries(Object.entries(LLAMA).filter(([k]) => k !== key));
      throwsLowbit(() => parseHfConfig(missing, 'x/config.json'), 'LOWBIT_BAD_FORMAT', 'x/config.json', key);
      for (const v of [0, -4, 2.5, '64', null]) {
        throwsLowbit(() => parseHfConfig({ ...LLAMA, [key]: v }), 'LOWBIT_BAD_FORMAT', key, 'positive integer');
      }
    }
    throwsLowbit(() => parseHfConfig({ ...LLAMA, num_key_value_heads: 3 }), 'LOWBIT_BAD_FORMAT', 'num_key_value_heads');
    throwsLowbit(() => parseHfConfig({ ...LLAMA, num_key_value_heads: 0 }), 'LOWBIT_BAD_FORMAT', 'num_key_value_heads');
    throwsLowbit(() => parseHfConfig({ ...LLAMA, hidden_size: 66 }), 'LOWBIT_BAD_FORMAT', 'head_dim');
    throwsLowbit(() => parseHfConfig({ ...LLAMA, rms_norm_eps: -1 }), 'LOWBIT_BAD_FORMAT', 'rms_norm_eps');
    throwsLowbit(() => parseHfConfig({ ...LLAMA, rope_theta: 'big' }), 'LOWBIT_BAD_FORMAT', 'rope_theta');
    throwsLowbit(() => parseHfConfig({ ...LLAMA, tie_word_embeddings: 'no' }), 'LOWBIT_BAD_FORMAT', 'tie_word_embeddings');
    throwsLowbit(() => parseHfConfig({ ...LLAMA, dtype: 'float16' }), 'LOWBIT_BAD_FORMAT', 'torch_dtype', 'dtype');
    throwsLowbit(() => parseHfConfig({ ...LLAMA, architectures: 'LlamaForCausalLM' }), 'LOWBIT_BAD_FORMAT', 'architectures');
    throwsLowbit(() => parseHfConfig({ ...LLAMA, eos_token_id: -1 }), 'LOWBIT_BAD_FORMAT', 'eos_token_id');
  });

  it('hfConfigToJson writes the config back (unknown fields kept, `dtype` → torch_dtype)', () => {
    for (const src of [LLAMA, MISTRAL, QWEN2]) {
      const c = parseHfConfig(JSON.parse(JSON.stringify(src)));
      const json = hfConfigToJson(c);
      const again = parseHfConfig(JSON.parse(JSON.stringify(json)));
      assert.deepEqual({ ...again, raw: null }, { ...c, raw: null });
      assert.ok(!('dtype' in json));
      assert.equal(json.torch_dtype, c.torchDtype);
      for (const k of Object.keys(src)) if (k !== 'dtype') assert.ok(k in json, `${k} kept`);
    }
    const llama = parseHfConfig(LLAMA);
    const json = hfConfigToJson({ ...llama, numLayers: 3, torchDtype: 'float16' });
    assert.equal(json.num_hidden_layers, 3);
    assert.equal(json.torch_dtype, 'float16');
    assert.deepEqual(json.eos_token_id, [2, 3]);
    assert.deepEqual(json.rope_scaling, LLAMA.rope_scaling);
    assert.deepEqual(Object.keys(json).slice(0, 3), ['architectures', 'model_type', 'hidden_size']);
  });
});

// ---------------------------------------------------------------------------------------------

/** A shape-only tensor container, built from a config (§3.2), to be mutated by tests. */
class FakeTensors {
  readonly t = new Map<string, { dtype: string; shape: number[] }>();
  constructor(cfg: ModelConfig, dtype = 'BF16') {
    const d = cfg.hiddenSize;
    const q = cfg.numHeads * cfg.headDim;
    const kv = cfg.numKvHeads * cfg.headDim;
    const ffn = cfg.intermediateSize;
    this.t.set('model.embed_tokens.weight', { dtype, shape: [cfg.vocabSize, d] });
    for (let i = 0; i < cfg.numLayers; i++) {
      const a = `model.layers.${i}.self_attn`;
      const m = `model.layers.${i}.mlp`;
      this.t.set(`model.layers.${i}.input_layernorm.weight`, { dtype, shape: [d] });
      this.t.set(`model.layers.${i}.post_attention_layernorm.weight`, { dtype, shape: [d] });
      this.t.set(`${a}.q_proj.weight`, { dtype, shape: [q, d] });
      this.t.set(`${a}.k_proj.weight`, { dtype, shape: [kv, d] });
      this.t.set(`${a}.v_proj.weight`, { dtype, shape: [kv, d] });
      this.t.set(`${a}.o_proj.weight`, { dtype, shape: [d, q] });
      if (cfg.family === 'qwen2') {
        this.t.set(`${a}.q_proj.bias`, { dtype, shape: [q] });
        this.t.set(`${a}.k_proj.bias`, { dtype, shape: [kv] });
        this.t.set(`${a}.v_proj.bias`, { dtype, shape: [kv] });
      }
      this.t.set(`${m}.gate_proj.weight`, { dtype, shape: [ffn, d] });
      this.t.set(`${m}.up_proj.weight`, { dtype, shape: [ffn, d] });
      this.t.set(`${m}.down_proj.weight`, { dtype, shape: [d, ffn] });
    }
    this.t.set('model.norm.weight', { dtype, shape: [d] });
    if (!cfg.tieWordEmbeddings) this.t.set('lm_head.weight', { dtype, shape: [cfg.vocabSize, d] });
  }
  has(name: string): boolean {
    return this.t.has(name);
  }
  info(name: string): { dtype: string; shape: number[] } {
    const x = this.t.get(name);
    if (!x) throw new Error(`no tensor ${name}`);
    return x;
  }
}

describe('hf-model: listLinearModules / checkNonLinearTensors', () => {
  const llama = parseHfConfig(LLAMA);
  const qwen = parseHfConfig(QWEN2);

  it('lists the seven projections per layer in order with GQA shapes', () => {
    const mods = listLinearModules(llama, new FakeTensors(llama));
    assert.equal(mods.length, 2 * 7);
    assert.deepEqual(
      mods.slice(0, 7).map((m) => [m.name, m.kind, m.rows, m.cols]),
      [
        ['model.layers.0.self_attn.q_proj', 'q_proj', 64, 64],
        ['model.layers.0.self_attn.k_proj', 'k_proj', 32, 64],
        ['model.layers.0.self_attn.v_proj', 'v_proj', 32, 64],
        ['model.layers.0.self_attn.o_proj', 'o_proj', 64, 64],
        ['model.layers.0.mlp.gate_proj', 'gate_proj', 160, 64],
        ['model.layers.0.mlp.up_proj', 'up_proj', 160, 64],
        ['model.layers.0.mlp.down_proj', 'down_proj', 64, 160],
      ],
    );
    assert.deepEqual(mods.map((m) => m.layer), [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
    assert.deepEqual(mods.slice(7).map((m) => m.kind), [...LINEAR_KINDS]);
    assert.equal(mods[13].weight, 'model.layers.1.mlp.down_proj.weight');
    assert.ok(mods.every((m) => m.bias === null && m.dtype === 'BF16'));
  });

  it('lm_head last when asked; include/exclude filters', () => {
    const t = new FakeTensors(llama);
    const mods = listLinearModules(llama, t, { lmHead: true });
    assert.deepEqual(mods[mods.length - 1], { name: 'lm_head', layer: -1, kind: 'lm_head', weight: 'lm_head.weight', bias: null, rows: 100, cols: 64, dtype: 'BF16' });
    assert.deepEqual(
      listLinearModules(llama, t, { include: [/\.layers\.1\./], exclude: ['down_proj', /gate/] }).map((m) => m.kind),
      ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'up_proj'],
    );
    assert.equal(listLinearModules(llama, t, { include: ['mlp'] }).length, 6);
    const g = /k_proj/g; // stateful RegExp: must still match every module
    assert.equal(listLinearModules(llama, t, { include: [g] }).length, 2);
  });

  it('qwen2: q/k/v biases listed; a missing one → LOWBIT_BAD_FORMAT; lm_head of tied model → LOWBIT_UNSUPPORTED', () => {
    const t = new FakeTensors(qwen);
    const mods = listLinearModules(qwen, t);
    assert.deepEqual(mods.slice(0, 4).map((m) => m.bias), [
      'model.layers.0.self_attn.q_proj.bias',
      'model.layers.0.self_attn.k_proj.bias',
      'model.layers.0.self_attn.v_proj.bias',
      null,
    ]);
    assert.deepEqual([mods[1].rows, mods[1].cols], [16, 48]);
    throwsLowbit(() => listLinearModules(qwen, t, { lmHead: true }), 'LOWBIT_UNSUPPORTED', 'lm_head', 'tie_word_embeddings');
    t.t.delete('model.layers.1.self_attn.k_proj.bias');
    throwsLowbit(() => listLinearModules(qwen, t), 'LOWBIT_BAD_FORMAT', 'model.layers.1.self_attn.k_proj.bias');
    const t2 = new FakeTensors(qwen);
    t2.t.set('model.layers.0.self_attn.v_proj.bias', { dtype: 'BF16', shape: [48] });
    throwsLowbit(() => listLinearModules(qwen, t2), 'LOWBIT_SHAPE_MISMATCH', 'model.layers.0.self_attn.v_proj.bias', '[16]', '[48]');
  });

  it('a mis-shaped projection → LOWBIT_SHAPE_MISMATCH naming the tensor with expected vs got', () => {
    const t = new FakeTensors(llama);
    t.t.set('model.layers.1.self_attn.k_proj.weight', { dtype: 'BF16', shape: [64, 64] }); // MHA shape in a GQA model
    throwsLowbit(() => listLinearModules(llama, t), 'LOWBIT_SHAPE_MISMATCH', 'model.layers.1.self_attn.k_proj.weight', 'expected shape [32, 64]', 'got [64, 64]');
    // excluded modules are still checked
    throwsLowbit(() => listLinearModules(llama, t, { exclude: ['k_proj'] }), 'LOWBIT_SHAPE_MISMATCH', 'k_proj');
    const t2 = new FakeTensors(llama);
    t2.t.set('model.layers.0.mlp.down_proj.weight', { dtype: 'BF16', shape: [160, 64] }); // transposed
    throwsLowbit(() => listLinearModules(llama, t2), 'LOWBIT_SHAPE_MISMATCH', 'down_proj.weight', '[64, 160]', '[160, 64]');
  });

  it('a missing weight → LOWBIT_BAD_FORMAT (with a hint for quantised checkpoints); non-float → LOWBIT_UNSUPPORTED', () => {
    const t = new FakeTensors(llama);
    t.t.delete('model.layers.0.mlp.up_proj.weight');
    throwsLowbit(() => listLinearModules(llama, t), 'LOWBIT_BAD_FORMAT', 'model.layers.0.mlp.up_proj.weight', 'missing');
    t.t.set('model.layers.0.mlp.up_proj.qweight', { dtype: 'I32', shape: [8, 160] });
    throwsLowbit(() => listLinearModules(llama, t), 'LOWBIT_BAD_FORMAT', 'already quantised');
    const t2 = new FakeTensors(llama);
    t2.t.set('model.layers.0.self_attn.q_proj.weight', { dtype: 'I8', shape: [64, 64] });
    throwsLowbit(() => listLinearModules(llama, t2), 'LOWBIT_UNSUPPORTED', 'q_proj.weight', 'I8');
  });

  it('checkNonLinearTensors: embeddings, norms, lm_head vs tie_word_embeddings', () => {
    checkNonLinearTensors(llama, new FakeTensors(llama));
    checkNonLinearTensors(qwen, new FakeTensors(qwen));
    const tiedWithHead = new FakeTensors(qwen);
    tiedWithHead.t.set('lm_head.weight', { dtype: 'F32', shape: [64, 48] });
    checkNonLinearTensors(qwen, tiedWithHead); // a kept duplicate of the right shape is fine
    tiedWithHead.t.set('lm_head.weight', { dtype: 'F32', shape: [48, 64] });
    throwsLowbit(() => { checkNonLinearTensors(qwen, tiedWithHead); }, 'LOWBIT_SHAPE_MISMATCH', 'lm_head.weight');

    const noHead = new FakeTensors(llama);
    noHead.t.delete('lm_head.weight');
    throwsLowbit(() => { checkNonLinearTensors(llama, noHead); }, 'LOWBIT_BAD_FORMAT', 'lm_head.weight', 'tie_word_embeddings');
    const badEmb = new FakeTensors(llama);
    badEmb.t.set('model.embed_tokens.weight', { dtype: 'BF16', shape: [101, 64] });
    throwsLowbit(() => { checkNonLinearTensors(llama, badEmb); }, 'LOWBIT_SHAPE_MISMATCH', 'model.embed_tokens.weight', '[100, 64]', '[101, 64]');
    const badNorm = new FakeTensors(llama);
    badNorm.t.set('model.layers.1.post_attention_layernorm.weight', { dtype: 'BF16', shape: [1, 64] });
    throwsLowbit(() => { checkNonLinearTensors(llama, badNorm); }, 'LOWBIT_SHAPE_MISMATCH', 'model.layers.1.post_attention_layernorm.weight', '[64]');
    const noNorm = new FakeTensors(llama);
    noNorm.t.delete('model.norm.weight');
    throwsLowbit(() => { checkNonLinearTensors(llama, noNorm); }, 'LOWBIT_BAD_FORMAT', 'model.norm.weight');
  });
});
