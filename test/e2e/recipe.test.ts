/**
 * Recipes (lib/config/recipe.ts): presets, JSON files and objects expand into the quantize config
 * (options beside them win), are stored in the checkpoint (config.json lowbit.recipe with the final
 * values, lowbit.kv / lowbit.actQuant — static scales measured on the written model) and in the quant
 * log, and loading the checkpoint applies their run-time part without flags. Bad recipes are typed
 * errors naming the option; nothing is written.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { quantize } from '../../lib/pipeline/quantize';
import { loadModel } from '../../lib/runtime/model';
import { evaluate } from '../../lib/runtime/evaluate';
import { RECIPE_PRESETS, type Recipe, type RecipeModule } from '../../lib/config/recipe';
import { useStories260K } from '../helpers/fixtures';
import { rejectsCode } from '../helpers/errors';
import { lowbit } from '../helpers/cli';
import { must } from '../helpers/assert';

describe('recipes', function () {
  this.timeout(300000);
  const fx = useStories260K('recipe');
  const { bin, tok, calibFile, dev } = fx;

  it('a preset with an override: stored with its final values, applied at load without flags', async () => {
    const out = path.join(fx.dir(), 'w4a8kv4');
    const calibration = { file: calibFile(), samples: 8, seqLen: 128 };
    await quantize(bin(), { recipe: 'w4a8kv4', groupSize: 32, format: 'dequant' }, { out, tokenizer: tok(), calibration });
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as { lowbit: { recipe: Recipe; kv: unknown; actQuant: unknown } };
    const want = RECIPE_PRESETS.w4a8kv4;
    assert.equal(cfg.lowbit.recipe.name, 'w4a8kv4');
    assert.deepEqual(cfg.lowbit.recipe.weights, { method: 'gptq', bits: 4, groupSize: 32, sym: true, clip: 'minmax', actOrder: false });
    assert.deepEqual(cfg.lowbit.kv, want.kv);
    assert.deepEqual(cfg.lowbit.actQuant, want.activations);
    const log = JSON.parse(fs.readFileSync(path.join(out, 'quant_log.json'), 'utf8')) as { recipe: Recipe };
    assert.equal(log.recipe.name, 'w4a8kv4');
    const m = await loadModel(out);
    try {
      const q = m.quantization;
      assert.equal(q.kv?.from, 'checkpoint');
      assert.equal(q.kv.bits, 4);
      assert.equal(q.kv.axis, 'channel');
      assert.equal(q.activations?.from, 'checkpoint');
      assert.equal(q.activations.bits, 8);
      const e = await evaluate(m, { text: dev(), ctx: 256, maxChunks: 2 });
      assert.ok(e.ppl < 12, `ppl ${e.ppl}`);
    } finally {
      m.dispose();
    }
    // options at load override the stored settings
    const plain = await loadModel(out, { kv: null, actQuant: null });
    assert.equal(plain.quantization.kv, null);
    assert.equal(plain.quantization.activations, null);
    plain.dispose();
  });

  it('a JSON recipe with static activation scales: measured on the written model and stored', async () => {
    const file = path.join(fx.dir(), 'mine.json');
    fs.writeFileSync(file, JSON.stringify({ weights: { method: 'rtn', bits: 8, groupSize: -1, sym: true }, activations: { bits: 8, scheme: 'static' }, kv: { bits: 8 }, exclude: ['layers.0.'] }));
    const out = path.join(fx.dir(), 'static');
    await quantize(bin(), { recipe: file, format: 'dequant' }, { out, tokenizer: tok(), calibration: { file: calibFile(), samples: 4, seqLen: 128 } });
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as { lowbit: { recipe: Recipe; actQuant: { scales: number[]; scheme: string } } };
    assert.equal(cfg.lowbit.recipe.name, 'mine');
    assert.equal(cfg.lowbit.actQuant.scheme, 'static');
    assert.equal(cfg.lowbit.actQuant.scales.length, 5 * 4);
    assert.ok(cfg.lowbit.actQuant.scales.every((x) => x > 0 && Number.isFinite(x)));
    const log = JSON.parse(fs.readFileSync(path.join(out, 'quant_log.json'), 'utf8')) as { modules: { module: string; storage: string }[] };
    const l0 = log.modules.filter((x) => x.module.includes('layers.0.')), l1 = log.modules.filter((x) => x.module.includes('layers.1.'));
    assert.ok(l0.length === 7 && l0.every((x) => x.storage === 'fp16'), 'layer 0 left alone (recipe.exclude)');
    assert.ok(l1.length === 7 && l1.every((x) => x.storage === 'dequant'));
    const m = await loadModel(out);
    assert.equal(must(m.quantization.activations, 'acts').scheme, 'static');
    m.dispose();
  });

  it('per-pattern weight settings (mixed precision) and modules left alone, first match wins', async () => {
    const out = path.join(fx.dir(), 'mixed');
    await quantize(bin(), {
      recipe: { weights: { method: 'rtn', bits: 4, groupSize: 32 }, modules: [{ pattern: 'layers.4.', skip: true }, { pattern: 'down_proj', weights: { bits: 8, groupSize: -1 } }, { pattern: 'mlp.', weights: { bits: 3 } }] },
      format: 'dequant',
    }, { out, tokenizer: tok() });
    const log = JSON.parse(fs.readFileSync(path.join(out, 'quant_log.json'), 'utf8')) as { modules: { module: string; storage: string; bits?: number; groupSize?: number; stats?: { relError: number } }[] };
    const by = (f: (n: string) => boolean) => log.modules.filter((x) => f(x.module));
    assert.ok(by((n) => n.includes('layers.4.')).every((x) => x.storage === 'fp16'));
    const rest = (n: string) => !n.includes('layers.4.');
    assert.ok(by((n) => rest(n) && n.includes('down_proj')).every((x) => x.bits === 8 && x.groupSize === 172));
    assert.ok(by((n) => rest(n) && (n.includes('gate_proj') || n.includes('up_proj'))).every((x) => x.bits === 3 && x.groupSize === 32));
    assert.ok(by((n) => rest(n) && n.includes('self_attn')).every((x) => x.bits === 4));
    const down = by((n) => rest(n) && n.includes('down_proj')), up = by((n) => rest(n) && n.includes('up_proj'));
    assert.ok(Math.max(...down.map((x) => must(x.stats, 'stats').relError)) < Math.min(...up.map((x) => must(x.stats, 'stats').relError)) / 4, 'the 8-bit modules really are finer');
  });

  it('bad recipes are typed errors naming the option, and write nothing', async () => {
    const out = path.join(fx.dir(), 'bad');
    const cal = { file: calibFile(), samples: 2, seqLen: 64 };
    await rejectsCode(quantize(bin(), { recipe: 'w9a9' }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /recipe/);
    await rejectsCode(quantize(bin(), { recipe: { weights: { method: 'rtn', bits: 4 }, colour: 1 } as unknown as Recipe }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /recipe: unknown option "colour"/);
    await rejectsCode(quantize(bin(), { recipe: { weights: { method: 'rtn', bits: 4, groupSize: 32 }, kv: { bits: 4, group: 3 } } }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /recipe\.kv\.group: 3 does not divide the head size 8/);
    await rejectsCode(quantize(bin(), { recipe: { weights: { method: 'rtn', bits: 4, groupSize: 32 }, transforms: ['smoothquant:1.2'] } }, { out, tokenizer: tok(), calibration: cal }), 'LOWBIT_INVALID_OPTION', /alpha/);
    await rejectsCode(quantize(bin(), { recipe: { weights: { method: 'rtn', bits: 4, groupSize: 32 }, modules: [{ pattern: 'mlp', weights: { bits: 8 } }] } }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /recipe\.modules: per-module weight settings need format "dequant"/);
    await rejectsCode(quantize(bin(), { recipe: { weights: { method: 'rtn', bits: 4, groupSize: 32 }, modules: [{ pattern: 'mlp', bits: 8 } as unknown as RecipeModule] }, format: 'dequant' }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /recipe\.modules\[0\]: unknown option "bits"/);
    await rejectsCode(quantize(bin(), { recipe: { weights: { method: 'rtn', bits: 4, groupSize: 32 }, modules: [{ pattern: 'mlp', weights: { groupSize: 0 } }] }, format: 'dequant' }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /groupSize/);
    await rejectsCode(quantize(bin(), { recipe: 'w4a8kv8', method: 'rtn', format: 'gguf:q4_0' }, { out: `${out}.gguf`, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /GGUF file, which cannot carry/);
    await rejectsCode(quantize(bin(), { recipe: { weights: { method: 'rtn', bits: 8, groupSize: -1 }, activations: { bits: 8, scheme: 'static' } } }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /static activation scales are measured on calibration data/);
    await rejectsCode(quantize(bin(), { recipe: { weights: { method: 'rtn', bits: 4, groupSize: 32 }, activations: { bits: 9 } } }, { out, tokenizer: tok() }), 'LOWBIT_INVALID_OPTION', /recipe\.activations\.bits/);
    assert.ok(!fs.existsSync(out) && !fs.existsSync(`${out}.gguf`));
  });

  it('CLI --recipe with flags beside it', () => {
    const out = path.join(fx.dir(), 'cli');
    const r = lowbit(...['quantize', bin(), '--tokenizer', tok(), '--recipe', 'w4a8kv8', '--method', 'rtn', '--group-size', '32', '--format', 'dequant', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as { lowbit: { recipe: Recipe } };
    assert.deepEqual(cfg.lowbit.recipe.weights, { method: 'rtn', bits: 4, groupSize: 32, sym: true, clip: 'minmax' });
    const bad = lowbit(...['quantize', bin(), '--tokenizer', tok(), '--recipe', 'nope', '--out', path.join(fx.dir(), 'cli2')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /recipe/);
  });
});
