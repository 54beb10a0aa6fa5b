/** `lowbit qat <model> [--recipe NAME|FILE | --bits N --group-size N …] --data synthetic:N|FILE --steps N --batch N --seq-len N --lr X --seed N --out DIR` */
import { Command } from 'commander';
import { qat } from '../pipeline/qat';
import type { QuantizeConfig, OutputFormat } from '../config/quantize';
import type { Progress } from '../config/run';
import { abortOnSignals, formatCount, intFlag, modelArg, numFlag, progressBar, type RunFn } from './util';

export function qatCommand(run: RunFn): Command {
  return new Command('qat')
    .description('quantization-aware training (LLM-QAT: distillation from the full-precision model on data it generates), then a quantized checkpoint')
    .argument('<model>', 'llama2.c .bin, .gguf, or a model directory')
    .requiredOption('--out <dir>', 'output checkpoint directory')
    .option('--recipe <name|file>', 'what to train for: a recipe preset or JSON file (activations per token, KV per token); flags beside it override its weights')
    .option('--bits <n>', 'weight bits (without --recipe; default 4)', intFlag('bits'))
    .option('--group-size <n>', 'weights per group (-1: per channel; default 128)', intFlag('groupSize'))
    .option('--sym', 'symmetric weights')
    .option('--asym', 'asymmetric weights')
    .option('--format <f>', 'checkpoint format: dequant, gptq, gptq-v2, ct-w4a16, ct-w8a8')
    .option('--data <d>', 'synthetic:N (N sequences the model generates itself) or a file (JSONL input_ids / text records, or UTF-8 text)', 'synthetic:256')
    .option('--steps <n>', 'optimizer steps', intFlag('steps'), 200)
    .option('--batch <n>', 'sequences per step', intFlag('batch'), 8)
    .option('--seq-len <n>', 'tokens per sequence (capped at the context)', intFlag('seqLen'), 256)
    .option('--lr <x>', 'peak learning rate (AdamW, warmup then cosine)', numFlag('lr'), 1e-4)
    .option('--warmup <n>', 'warmup steps (default steps / 20)', intFlag('warmup'))
    .option('--weight-decay <x>', 'AdamW weight decay on matrices', numFlag('weightDecay'), 0)
    .option('--seed <n>', 'seed of the data and the batches', intFlag('seed'), 0)
    .option('--checkpoint-every <n>', 'resumable checkpoint every N steps (0: none; the same command resumes)', intFlag('checkpointEvery'), 50)
    .option('--tokenizer <file>', 'llama2.c tokenizer.bin for a source without its own')
    .option('--threads <n>', 'compute threads', intFlag('threads'))
    .option('--force', 'replace an existing output directory')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no progress bar')
    .option('--download', 'fetch a Hugging Face id into the local cache first')
    .action(async function (this: Command, model: string) {
      const o = this.opts<{ out: string; recipe?: string; bits?: number; groupSize?: number; sym?: boolean; asym?: boolean; format?: OutputFormat; data: string; steps: number; batch: number; seqLen: number;
        lr: number; warmup?: number; weightDecay: number; seed: number; checkpointEvery: number; tokenizer?: string; threads?: number; force?: boolean; json?: boolean; quiet?: boolean; download?: boolean }>();
      await run(async (json) => {
        const w = { ...(o.bits !== undefined ? { bits: o.bits } : {}), ...(o.groupSize !== undefined ? { groupSize: o.groupSize } : {}), ...(o.sym ? { sym: true } : o.asym ? { sym: false } : {}), ...(o.format ? { format: o.format } : {}) };
        const config = (o.recipe ? { recipe: o.recipe, ...w } : { method: 'rtn', ...w }) as QuantizeConfig;
        const sig = abortOnSignals();
        const bar = progressBar(!o.quiet && !json);
        // training steps show their KL and the training rate beside the ETA
        let first: { step: number; t: number } | null = null;
        const onProgress = (p: Progress) => {
          if (p.phase !== 'qat' || p.loss === undefined) { bar.update(p); return; }
          first ??= { step: p.done, t: performance.now() };
          const rate = p.done > first.step ? ((p.done - first.step) * o.batch * o.seqLen) / ((performance.now() - first.t) / 1000) : 0;
          bar.update({ ...p, module: `KL ${p.loss.toFixed(4)}${rate ? `, ${rate.toFixed(0)} tokens/s` : ''}` });
        };
        try {
          const r = await qat(await modelArg(model, o.download, json || !!o.quiet), config, {
            data: o.data, steps: o.steps, batch: o.batch, seqLen: o.seqLen, lr: o.lr, ...(o.warmup !== undefined ? { warmupSteps: o.warmup } : {}), weightDecay: o.weightDecay, seed: o.seed, checkpointEvery: o.checkpointEvery,
          }, {
            out: o.out, ...(o.force ? { overwrite: true } : {}), ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}), ...(o.threads !== undefined ? { threads: o.threads } : {}),
            signal: sig.signal, onProgress, command: ['lowbit', ...process.argv.slice(2)].join(' '),
          });
          bar.stop();
          if (json) process.stdout.write(JSON.stringify({ ok: true, ...r, losses: r.losses }, null, 2) + '\n');
          else {
            const l = r.losses;
            process.stdout.write(`${r.out}: QAT ${r.steps} steps${r.resumedFrom ? ` (resumed at step ${r.resumedFrom})` : ''} on ${r.data.kind === 'synthetic' ? `${r.data.sequences} generated sequences` : r.data.file ?? ''} (${formatCount(r.data.tokens)} tokens), ${r.tokensPerSecond.toFixed(0)} tokens/s\n`);
            process.stdout.write(`  KL to the full-precision model per token: ${l[0]?.toFixed(4) ?? '-'} at step 1 → ${l[l.length - 1]?.toFixed(4) ?? '-'} at step ${l.length}\n`);
            process.stdout.write(`  ${r.quantize.quantizedModules} modules quantized (${r.quantize.bits}-bit, group ${r.quantize.groupSize === -1 ? 'channel' : r.quantize.groupSize}, ${r.quantize.sym ? 'sym' : 'asym'}), ${r.quantize.format}, ${r.seconds.toFixed(1)} s\n`);
          }
          return 0;
        } finally {
          bar.stop();
          sig.dispose();
        }
      }, !!o.json);
    });
}
