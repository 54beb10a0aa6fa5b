/**
 * Steps several targets share: the expensive "full" steps (quantize with RTN into a temp output,
 * load the source and the output, run one forward pass) and the no-partial-output check.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { quantize, loadModel, type QuantizeRunOptions, type QuantizeConfig, type LanguageModel } from '../../lib/index';
import { Violation, type CaseContext } from './types';

/** Every path under `dir` (relative), sorted. */
export function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(r);
      if (e.isDirectory()) walk(path.join(d, e.name), r);
    }
  };
  walk(dir, '');
  return out.sort();
}

/** One forward pass of one token; the logits must be one row of the vocabulary. */
async function forwardOnce(ctx: CaseContext, step: string, m: LanguageModel): Promise<void> {
  try {
    const id = Math.min(Math.max(m.tokenizer?.bosId ?? 1, 0), m.config.vocabSize - 1);
    const logits = await ctx.probe(`${step}: forward`, () => m.forward([id], 0));
    if (logits && logits.length !== m.config.vocabSize) ctx.wrong(`${step}: forward`, `logits have ${logits.length} values for a vocabulary of ${m.config.vocabSize}`);
  } finally {
    m.dispose();
  }
}

/**
 * Quantize `source` (RTN 4-bit, group 32) into `<case>/out`: on success the output must load and
 * run; on a typed error nothing may be left behind (no output, no temp or staging directory).
 * Then load the source itself and run one token through it.
 */
export async function fullModelSteps(ctx: CaseContext, source: string, run: Partial<QuantizeRunOptions> = {}, config: QuantizeConfig = { method: 'rtn', bits: 4, groupSize: 32 }): Promise<void> {
  const out = path.join(ctx.dir, 'out');
  const before = listTree(ctx.dir);
  const result = await ctx.probe('quantize', () => quantize(source, config, { out, ...run }));
  if (result === undefined) {
    const after = listTree(ctx.dir);
    const left = after.filter((f) => !before.includes(f));
    if (left.length > 0) throw new Violation('partial-output', 'quantize', `quantize threw but left ${left.slice(0, 5).join(', ')}${left.length > 5 ? ` and ${left.length - 5} more` : ''}`);
  } else {
    if (!fs.existsSync(out)) ctx.wrong('quantize', `quantize resolved but ${out} does not exist`);
    const q = await ctx.probe('loadModel(output)', () => loadModel(out));
    if (q) await forwardOnce(ctx, 'output', q);
    fs.rmSync(out, { recursive: true, force: true });
  }
  const m = await ctx.probe('loadModel', () => loadModel(source));
  if (m) await forwardOnce(ctx, 'source', m);
}

/** Texts every tokenizer case encodes: ASCII, pieces of the seed vocabulary, other scripts, a lone surrogate, NUL, empty. */
export const TEXTS: readonly string[] = ['Once upon a time', ' the and up ü é 日本', '🙂\ud800x\u0000y', '', '<0x41><s></s>\n\t'];
