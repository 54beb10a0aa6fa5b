/**
 * Recipes: one object saying how a model is compressed — weights {method, bits, group, sym, clip},
 * activations {bits, scheme, inputs}, the KV cache {bits, group, axis, window, rotate}, transforms,
 * and which modules are left alone — as a typed object (API), a JSON file (CLI `--recipe FILE`) or a
 * preset name (`--recipe w4a8kv4`). `quantize` expands it into its config (options given beside it
 * win, and the stored recipe records the final values) and stores it in the checkpoint
 * (config.json `lowbit.recipe`, with the run-time part as `lowbit.kv` / `lowbit.actQuant`, which
 * `loadModel` applies without flags) and in quant_log.json.
 *
 * Per module pattern (`modules: [{pattern, weights: {bits, groupSize, sym, clip}} | {pattern, skip: true}]`,
 * the first pattern a module's name contains wins): other weight settings (format dequant only —
 * GPTQ, compressed-tensors and GGUF checkpoints hold one setting), or left alone.
 */
import * as fs from 'node:fs';
import { LowbitError, optionError } from '../errors';
import { checkKnownKeys, checkObject, invalidOption } from './validate';
import { normalizeKv, normalizeActQuant, KV_KEYS, ACT_KEYS, type KvCacheOptions, type ActQuantOptions } from './runtime-quant';
import type { Transform } from './transform';

/** Weight settings of a recipe: the quantize config's method and quantizer fields. */
export interface RecipeWeights {
  method: 'rtn' | 'gptq';
  bits: number;
  /** -1: per channel. */
  groupSize?: number;
  sym?: boolean;
  clip?: 'minmax' | 'mse';
  actOrder?: boolean;
}

/** A compression recipe (see the file header). */
export interface Recipe {
  /** A name for the record (presets carry theirs). */
  name?: string;
  weights: RecipeWeights;
  /** Activation quantization the runtime applies (null / absent: none). */
  activations?: Omit<ActQuantOptions, 'scales'> | null;
  /** KV-cache quantization the runtime applies (null / absent: none). */
  kv?: KvCacheOptions | null;
  transforms?: (Transform | string)[];
  /** Modules left in float (name contains one of these); the embeddings and lm_head always are. */
  exclude?: string[];
  /** Per module pattern: other weight settings (format dequant), or `skip: true` (left in float). First match wins. */
  modules?: RecipeModule[];
}

/** One per-pattern entry of a recipe. */
export interface RecipeModule {
  /** Matched against module names (`model.layers.3.mlp.down_proj`): contained in the name. */
  pattern: string;
  weights?: Partial<Pick<RecipeWeights, 'bits' | 'groupSize' | 'sym' | 'clip'>>;
  /** Leave matching modules in float. */
  skip?: boolean;
}

/** The presets (`--recipe w4a8kv4`). Group size 128 suits real models; give `groupSize` beside the recipe for narrow ones. */
export const RECIPE_PRESETS: Readonly<Record<string, Recipe>> = {
  w4a16: { name: 'w4a16', weights: { method: 'gptq', bits: 4, groupSize: 128, sym: true } },
  w8a8: { name: 'w8a8', weights: { method: 'rtn', bits: 8, groupSize: -1, sym: true }, activations: { bits: 8, scheme: 'dynamic' }, transforms: ['smoothquant:0.5'] },
  w4a8: { name: 'w4a8', weights: { method: 'gptq', bits: 4, groupSize: 128, sym: true }, activations: { bits: 8, scheme: 'dynamic' } },
  w4a8kv8: { name: 'w4a8kv8', weights: { method: 'gptq', bits: 4, groupSize: 128, sym: true }, activations: { bits: 8, scheme: 'dynamic' }, kv: { bits: 8 } },
  w4a8kv4: { name: 'w4a8kv4', weights: { method: 'gptq', bits: 4, groupSize: 128, sym: true }, activations: { bits: 8, scheme: 'dynamic' }, kv: { bits: 4, axis: 'channel' } },
  w4a4kv4: { name: 'w4a4kv4', weights: { method: 'gptq', bits: 4, groupSize: 128, sym: true }, activations: { bits: 4, scheme: 'dynamic' }, kv: { bits: 4, axis: 'channel' }, transforms: ['rotate:down'] },
};

const RECIPE_KEYS = ['name', 'weights', 'activations', 'kv', 'transforms', 'exclude', 'modules'] as const;
const WEIGHT_KEYS = ['method', 'bits', 'groupSize', 'sym', 'clip', 'actOrder'] as const;

/** A recipe from a preset name, a JSON file path, or an object; checked for unknown keys and impossible settings. */
export function resolveRecipe(r: string | Recipe): Recipe {
  let recipe: Recipe;
  if (typeof r === 'string') {
    if (Object.hasOwn(RECIPE_PRESETS, r)) return structuredClone(RECIPE_PRESETS[r]);
    if (!fs.existsSync(r)) throw invalidOption('recipe', `a preset (${Object.keys(RECIPE_PRESETS).join(', ')}) or a recipe JSON file`, r);
    try {
      recipe = JSON.parse(fs.readFileSync(r, 'utf8')) as Recipe;
    } catch (e) {
      throw new LowbitError('LOWBIT_BAD_FORMAT', `${r}: not a JSON recipe (${e instanceof Error ? e.message : String(e)})`, { file: r, option: 'recipe' });
    }
    recipe.name ??= r.replace(/^.*[\\/]/, '').replace(/\.json$/, '');
  } else {
    recipe = structuredClone(r);
  }
  checkObject('recipe', recipe, 'a recipe object {weights, activations, kv, transforms, exclude}');
  checkKnownKeys('recipe', recipe, RECIPE_KEYS);
  if (recipe.modules !== undefined) {
    if (!Array.isArray(recipe.modules)) throw invalidOption('recipe.modules', 'an array of {pattern, weights} or {pattern, skip: true}', recipe.modules);
    recipe.modules.forEach((m, i) => {
      const name = `recipe.modules[${i}]`;
      checkObject(name, m, 'an object {pattern, weights} or {pattern, skip: true}');
      checkKnownKeys(name, m, ['pattern', 'weights', 'skip']);
      if (typeof m.pattern !== 'string' || m.pattern.length === 0) throw invalidOption(`${name}.pattern`, 'a non-empty string (part of module names)', m.pattern);
      if ((m.weights === undefined) === (m.skip !== true)) throw optionError(name, `${name}: give weights (other settings) or skip: true, one of them`);
      if (m.weights !== undefined) {
        checkObject(`${name}.weights`, m.weights, 'an object {bits, groupSize, sym, clip}');
        checkKnownKeys(`${name}.weights`, m.weights, ['bits', 'groupSize', 'sym', 'clip']);
      }
    });
  }
  checkObject('recipe.weights', recipe.weights, 'an object {method, bits, groupSize, sym, clip, actOrder}');
  checkKnownKeys('recipe.weights', recipe.weights, WEIGHT_KEYS);
  if (recipe.activations) checkKnownKeys('recipe.activations', recipe.activations, ACT_KEYS.filter((k) => k !== 'scales'));
  if (recipe.kv) checkKnownKeys('recipe.kv', recipe.kv, KV_KEYS);
  if (recipe.exclude !== undefined && (!Array.isArray(recipe.exclude) || !recipe.exclude.every((x) => typeof x === 'string'))) {
    throw invalidOption('recipe.exclude', 'an array of module-name patterns (strings)', recipe.exclude);
  }
  return recipe;
}

/**
 * The run-time part checked against a model's shape (head size, context, layers): what the
 * checkpoint's config.json carries as lowbit.kv / lowbit.actQuant.
 */
export function checkRecipeRuntime(recipe: Recipe, shape: { headDim: number; seqLen: number; nLayers: number }): void {
  if (recipe.kv) normalizeKv(recipe.kv, shape.headDim, shape.seqLen, 'recipe.kv');
  // static scales are measured on the quantized model after it is written: checked with placeholders here
  if (recipe.activations) normalizeActQuant({ ...recipe.activations, ...(recipe.activations.scheme === 'static' ? { scales: new Float32Array(shape.nLayers * 4).fill(1) } : {}) }, shape.nLayers, 'recipe.activations');
}
