/**
 * Tensor names and shapes of a LLaMA-family Hugging Face checkpoint (docs/formats.md §3.2, §4.1).
 *
 * Shapes follow the one convention: a linear weight is `[out_features, in_features]` row-major,
 * called `rows` × `cols` here. With `d` = hidden size, `hd` = head size and `ffn` = intermediate size:
 *
 *   q_proj [heads·hd, d]   k_proj, v_proj [kv_heads·hd, d]   o_proj [d, heads·hd]
 *   gate_proj, up_proj [ffn, d]   down_proj [d, ffn]   lm_head, embed_tokens [vocab, d]   norms [d]
 *
 * The checks only need names, dtypes and shapes, so they take any object with `has` and `info`
 * (a SafetensorsReader fits).
 */
import { LowbitError } from '../errors';
import type { ModelConfig } from './hf-config';

/** The quantisable linear projections of one decoder layer, in the order lowbit processes them. */
export const LINEAR_KINDS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

/** One of {@link LINEAR_KINDS}, or `lm_head`. */
export type LinearKind = (typeof LINEAR_KINDS)[number] | 'lm_head';

/** What these checks need from a tensor container (a SafetensorsReader fits). */
export interface TensorShapeSource {
  has(name: string): boolean;
  info(name: string): { dtype: string; shape: readonly number[] };
}

/** A linear layer of the checkpoint. */
export interface LinearModule {
  /** Module path, e.g. `model.layers.3.mlp.down_proj` (or `lm_head`). */
  name: string;
  /** Decoder layer index; −1 for `lm_head`. */
  layer: number;
  /** Projection kind, e.g. `down_proj`. */
  kind: LinearKind;
  /** Weight tensor name (`<name>.weight`). */
  weight: string;
  /** Bias tensor name (`<name>.bias`) when the checkpoint has one, else null. */
  bias: string | null;
  /** out_features. */
  rows: number;
  /** in_features. */
  cols: number;
  /** safetensors dtype of the weight (`F16`, `BF16`, `F32`, …). */
  dtype: string;
}

/** Options of {@link listLinearModules}. */
export interface ListLinearModulesOptions {
  /** Also list `lm_head` (last). Not possible when the embeddings are tied. @default false */
  lmHead?: boolean;
  /**
   * Keep only modules whose name matches one of these. A string matches as a substring of the
   * module name, a RegExp by `test`. @default every module
   */
  include?: (string | RegExp)[];
  /** Drop modules whose name matches one of these (same matching as `include`). @default none */
  exclude?: (string | RegExp)[];
}

/** Floating-point dtypes a plain (unquantised) checkpoint may store. */
const FLOAT_DTYPES = ['F16', 'BF16', 'F32', 'F64'];

/** The module path of projection `kind` in decoder layer `layer`. */
export function linearModuleName(layer: number, kind: (typeof LINEAR_KINDS)[number]): string {
  const block = kind === 'gate_proj' || kind === 'up_proj' || kind === 'down_proj' ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${kind}`;
}

/** `[out_features, in_features]` of projection `kind` under `cfg` (§3.2). */
export function linearShape(cfg: ModelConfig, kind: LinearKind): [number, number] {
  const d = cfg.hiddenSize;
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  switch (kind) {
    case 'q_proj':
      return [qDim, d];
    case 'k_proj':
    case 'v_proj':
      return [kvDim, d];
    case 'o_proj':
      return [d, qDim];
    case 'gate_proj':
    case 'up_proj':
      return [cfg.intermediateSize, d];
    case 'down_proj':
      return [d, cfg.intermediateSize];
    case 'lm_head':
      return [cfg.vocabSize, d];
  }
}

/** Whether the family's config says `kind` has a bias (qwen2: q/k/v; llama attention_bias: q/k/v/o). */
function biasRequired(cfg: ModelConfig, kind: LinearKind): boolean {
  if (!cfg.attentionBias) return false;
  if (cfg.family === 'qwen2') return kind === 'q_proj' || kind === 'k_proj' || kind === 'v_proj';
  return kind === 'q_proj' || kind === 'k_proj' || kind === 'v_proj' || kind === 'o_proj';
}

function fmtShape(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

/** Check that `name` exists, has a float dtype and exactly `expected` as shape; return its dtype. */
function checkTensor(tensors: TensorShapeSource, name: string, expected: readonly number[], hint = ''): string {
  if (!tensors.has(name)) {
    throw new LowbitError('LOWBIT_BAD_FORMAT', `${name}: tensor missing from the checkpoint${hint}`, { tensor: name });
  }
  const { dtype, shape } = tensors.info(name);
  if (shape.length !== expected.length || shape.some((v, i) => v !== expected[i])) {
    throw new LowbitError(
      'LOWBIT_SHAPE_MISMATCH',
      `${name}: expected shape ${fmtShape(expected)}, got ${fmtShape(shape)}`,
      { tensor: name, expected: expected.slice(), got: shape.slice() },
    );
  }
  if (!FLOAT_DTYPES.includes(dtype)) {
    throw new LowbitError(
      'LOWBIT_UNSUPPORTED',
      `${name}: expected a floating-point tensor (${FLOAT_DTYPES.join(', ')}), got ${dtype}`,
      { tensor: name, dtype },
    );
  }
  return dtype;
}

function matches(name: string, patterns: readonly (string | RegExp)[]): boolean {
  return patterns.some((p) => {
    if (typeof p === 'string') return name.includes(p);
    p.lastIndex = 0; // a /g or /y RegExp keeps state between test() calls
    return p.test(name);
  });
}

function describeModule(tensors: TensorShapeSource, cfg: ModelConfig, name: string, layer: number, kind: LinearKind): LinearModule {
  const [rows, cols] = linearShape(cfg, kind);
  const weight = `${name}.weight`;
  const hint = tensors.has(`${name}.qweight`) ? ' (it has a qweight: this checkpoint is already quantised)' : '';
  const dtype = checkTensor(tensors, weight, [rows, cols], hint);
  const biasName = `${name}.bias`;
  let bias: string | null = null;
  if (tensors.has(biasName)) {
    checkTensor(tensors, biasName, [rows]);
    bias = biasName;
  } else if (biasRequired(cfg, kind)) {
    throw new LowbitError(
      'LOWBIT_BAD_FORMAT',
      `${biasName}: tensor missing from the checkpoint (config.json: ${cfg.family === 'qwen2' ? 'qwen2 q/k/v projections have biases' : 'attention_bias is true'})`,
      { tensor: biasName },
    );
  }
  return { name, layer, kind, weight, bias, rows, cols, dtype };
}

/**
 * The linear layers of a LLaMA-family checkpoint, in layer order, then q, k, v, o, gate, up, down
 * within a layer; `lm_head` last when `opts.lmHead`. Every layer's weights (and biases, when present
 * or required by the config) are checked against §3.2 before filtering, so an excluded module with a
 * wrong shape is still reported.
 *
 * @throws LowbitError `LOWBIT_BAD_FORMAT` (a weight or required bias is missing, naming the tensor),
 *   `LOWBIT_SHAPE_MISMATCH` (naming the tensor, expected vs got), `LOWBIT_UNSUPPORTED` (non-float
 *   weight; `lmHead` with tied embeddings)
 */
export function listLinearModules(
  cfg: ModelConfig,
  tensors: TensorShapeSource,
  opts: ListLinearModulesOptions = {},
): LinearModule[] {
  const all: LinearModule[] = [];
  for (let layer = 0; layer < cfg.numLayers; layer++) {
    for (const kind of LINEAR_KINDS) all.push(describeModule(tensors, cfg, linearModuleName(layer, kind), layer, kind));
  }
  if (opts.lmHead) {
    if (cfg.tieWordEmbeddings && !tensors.has('lm_head.weight')) {
      throw new LowbitError(
        'LOWBIT_UNSUPPORTED',
        'lm_head: cannot quantise lm_head of a model with tie_word_embeddings: true (it is model.embed_tokens)',
        { tensor: 'lm_head.weight' },
      );
    }
    all.push(describeModule(tensors, cfg, 'lm_head', -1, 'lm_head'));
  }
  const include = opts.include ?? [];
  const exclude = opts.exclude ?? [];
  return all.filter((m) => (include.length === 0 || matches(m.name, include)) && !matches(m.name, exclude));
}

/**
 * Check the tensors that stay unquantised (§3.2, §4.1): `model.embed_tokens.weight` [vocab, d],
 * every layer's `input_layernorm`/`post_attention_layernorm` and `model.norm` [d], and `lm_head.weight`
 * [vocab, d] unless `tie_word_embeddings`. A tied checkpoint that still stores `lm_head.weight` is
 * accepted when that tensor has the right shape (some exporters keep the duplicate).
 *
 * @throws LowbitError `LOWBIT_BAD_FORMAT` (missing tensor, naming it), `LOWBIT_SHAPE_MISMATCH`
 *   (naming the tensor, expected vs got), `LOWBIT_UNSUPPORTED` (non-float dtype)
 */
export function checkNonLinearTensors(cfg: ModelConfig, tensors: TensorShapeSource): void {
  const d = cfg.hiddenSize;
  checkTensor(tensors, 'model.embed_tokens.weight', [cfg.vocabSize, d]);
  for (let i = 0; i < cfg.numLayers; i++) {
    checkTensor(tensors, `model.layers.${i}.input_layernorm.weight`, [d]);
    checkTensor(tensors, `model.layers.${i}.post_attention_layernorm.weight`, [d]);
  }
  checkTensor(tensors, 'model.norm.weight', [d]);
  if (!cfg.tieWordEmbeddings || tensors.has('lm_head.weight')) {
    checkTensor(tensors, 'lm_head.weight', [cfg.vocabSize, d], ' (config.json has tie_word_embeddings: false)');
  }
}
