/** `lowbit eval <model> [--tokenizer FILE] --text FILE [--ctx N] [--reference <fp model>] [--kv-bits N …] [--act-bits N …] [--json]` */
import { Command } from 'commander';
import * as fs from 'node:fs';
import { loadModel } from '../runtime/model';
import { evaluate } from '../runtime/evaluate';
import { LowbitError } from '../errors';
import { abortOnSignals, addRuntimeQuantOptions, intFlag, modelArg, progressBar, quantizationLines, runtimeQuantCall, runtimeQuantFlagError, withStaticScales, type RunFn } from './util';

export function evalCommand(run: RunFn): Command {
  return addRuntimeQuantOptions(new Command('eval')
    .description('perplexity on a text (and KL divergence / top-1 agreement against a reference model)')
    .argument('<model>', 'llama2.c .bin, .gguf, or a model directory (HF or lowbit GPTQ)')
    .requiredOption('--text <file>', 'UTF-8 text to score')
    .option('--tokenizer <file>', 'llama2.c tokenizer.bin (default: the model\'s own vocabulary)')
    .option('--ctx <n>', 'window length in tokens, BOS included (default: min(512, context))', intFlag('ctx'))
    .option('--max-chunks <n>', 'score only the first N windows', intFlag('maxChunks'))
    .option('--reference <model>', 'unquantized model to compare against (same tokenizer; runs without KV or activation quantization, so the same file measures what --kv-*/--act-* cost)')
    .option('--max-context <n>', 'positions the model holds (its KV cache is allocated for them; default min(4096, the model\'s context))', intFlag('maxContext'))
    .option('--activations <a>', "how packed layers multiply: int8 (integer dot products, W4A8/W8A8) or f32", 'int8')
    .option('--no-packed', 'dequantize quantized layers to f32 at load'))
    .option('--json', 'print {ppl, nll, tokens, kl, top1, quantization} as JSON')
    .option('--download', 'fetch a Hugging Face id into the local cache first (needs the network; safetensors, config and tokenizer files only)')
    .option('--quiet', 'no progress bar')
    .action(async function (this: Command, model: string) {
      const o = this.opts<{ text: string; tokenizer?: string; ctx?: number; maxChunks?: number; reference?: string; json?: boolean; quiet?: boolean; activations: 'int8' | 'f32'; packed: boolean; download?: boolean; maxContext?: number }>();
      await run(async (json) => {
        const rq = runtimeQuantCall(this);
        let text: string;
        try {
          text = fs.readFileSync(o.text, 'utf8');
        } catch {
          throw new LowbitError('LOWBIT_NOT_FOUND', `text: cannot read ${o.text}`, { option: 'text' });
        }
        const sig = abortOnSignals();
        try {
          const file = await modelArg(model, o.download, json || !!o.quiet);
          const load = { tokenizer: o.tokenizer, activations: o.activations, packed: o.packed, maxContext: o.maxContext };
          const { actQuant, scales } = await withStaticScales(file, load, rq, sig.signal);
          // the KV / activation settings are the evaluated model's; the reference runs without them
          const m = await loadModel(file, { ...load, ...(rq.kv !== undefined ? { kv: rq.kv } : {}), ...(actQuant ? { actQuant } : {}) });
          const ref = o.reference ? await loadModel(o.reference, { tokenizer: o.tokenizer, maxContext: o.maxContext, kv: null, actQuant: null }).catch((e: unknown) => { m.dispose(); throw e; }) : undefined;
          const bar = progressBar(!o.quiet && !json);
          try {
            const r = await evaluate(m, { text, ctx: o.ctx, maxChunks: o.maxChunks, reference: ref, signal: sig.signal, onProgress: (p) => bar.update(p) });
            bar.stop();
            if (json) process.stdout.write(JSON.stringify({ ok: true, ...r, quantization: m.quantization, ...(scales ? { actScales: Array.from(scales) } : {}) }, null, 2) + '\n');
            else {
              process.stdout.write(`ppl ${r.ppl.toFixed(6)}  nll ${r.nll.toFixed(6)} nats/token  over ${r.tokens} tokens (${r.chunks} windows of ${r.ctx})\n`);
              if (r.referencePpl !== null && r.kl !== null && r.top1 !== null) {
                process.stdout.write(`reference ppl ${r.referencePpl.toFixed(6)}  KL ${r.kl.toExponential(4)} nats/token  top-1 agreement ${(100 * r.top1).toFixed(2)}%\n`);
              }
              for (const line of quantizationLines(m.quantization)) process.stdout.write(`${line}\n`);
            }
            return 0;
          } finally {
            bar.stop();
            m.dispose();
            ref?.dispose();
          }
        } catch (e) {
          throw runtimeQuantFlagError(this, e);
        } finally {
          sig.dispose();
        }
      }, !!o.json);
    });
}
