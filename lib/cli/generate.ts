/** `lowbit generate <model> [--tokenizer FILE] --prompt TEXT [--steps N | --max-tokens N] [--temperature T] [--top-p P] [--seed S] [--kv-bits N …] [--act-bits N …] [--json]` */
import { Command } from 'commander';
import { loadModel } from '../runtime/model';
import { abortOnSignals, addRuntimeQuantOptions, intFlag, modelArg, numFlag, quantizationLines, runtimeQuantCall, runtimeQuantFlagError, withStaticScales, type RunFn } from './util';

export function generateCommand(run: RunFn): Command {
  return addRuntimeQuantOptions(new Command('generate')
    .description("generate text (llama2.c run.c's semantics: same seed, same text)")
    .argument('<model>', 'llama2.c .bin, .gguf, a model directory (HF or GPTQ), or a Hugging Face id in the local cache')
    .option('--tokenizer <file>', 'llama2.c tokenizer.bin (default: the model\'s own vocabulary, or the tokenizer next to it)')
    .option('--prompt <text>', 'prompt', '')
    .option('--steps <n>', 'positions to run, prompt included, as run.c (0: the whole context; default 256)', intFlag('steps'))
    .option('--max-tokens <n>', 'new tokens to generate after the prompt (instead of --steps)', intFlag('maxTokens'))
    .option('--temperature <t>', '0 = greedy', numFlag('temperature'), 1.0)
    .option('--top-p <p>', 'nucleus sampling threshold (0 or 1: off)', numFlag('topP'), 0.9)
    .option('--seed <s>', 'sampler seed (default: the clock)', intFlag('seed'))
    .option('--max-context <n>', 'positions the model holds (its KV cache is allocated for them; default min(4096, the model\'s context))', intFlag('maxContext'))
    .option('--activations <a>', "how packed layers multiply: int8 (integer dot products, W4A8/W8A8) or f32", 'int8')
    .option('--no-packed', 'dequantize quantized layers to f32 at load'))
    .option('--json', 'print {text, ids, stoppedBy, tokens/s, quantization} as JSON')
    .option('--download', 'fetch a Hugging Face id into the local cache first (needs the network; safetensors, config and tokenizer files only)')
    .action(async function (this: Command, model: string) {
      const o = this.opts<{ tokenizer?: string; prompt: string; steps?: number; maxTokens?: number; temperature: number; topP: number; seed?: number; json?: boolean; activations: 'int8' | 'f32'; packed: boolean; download?: boolean; maxContext?: number }>();
      await run(async (json) => {
        const rq = runtimeQuantCall(this);
        const sig = abortOnSignals();
        try {
          const file = await modelArg(model, o.download, json);
          const load = { tokenizer: o.tokenizer, activations: o.activations, packed: o.packed, maxContext: o.maxContext };
          const { actQuant, scales } = await withStaticScales(file, load, rq, sig.signal);
          const m = await loadModel(file, { ...load, ...(rq.kv !== undefined ? { kv: rq.kv } : {}), ...(actQuant ? { actQuant } : {}) });
          try {
            if (!json) for (const line of quantizationLines(m.quantization)) process.stderr.write(`lowbit: ${line}\n`);
            const r = await m.generate({
              prompt: o.prompt, ...(o.steps !== undefined ? { steps: o.steps } : {}), ...(o.maxTokens !== undefined ? { maxTokens: o.maxTokens } : {}), temperature: o.temperature, topP: o.topP, seed: o.seed ?? Date.now(), signal: sig.signal,
              onText: json ? undefined : (t) => process.stdout.write(t),
            });
            if (json) process.stdout.write(JSON.stringify({ ok: true, ...r, quantization: m.quantization, ...(scales ? { actScales: Array.from(scales) } : {}) }, null, 2) + '\n');
            else process.stdout.write(`\n`);
            if (!json) process.stderr.write(`prompt ${r.promptTokens} tok at ${r.promptTokensPerSecond.toFixed(1)} tok/s, decode ${r.generatedTokens} tok at ${r.decodeTokensPerSecond.toFixed(1)} tok/s (${r.stoppedBy})\n`);
            return 0;
          } finally {
            m.dispose();
          }
        } catch (e) {
          throw runtimeQuantFlagError(this, e);
        } finally {
          sig.dispose();
        }
      }, !!o.json);
    });
}
