/** `lowbit export <model> --type Q4_0 --out model.gguf [--tokenizer tok.bin]`: a model to one GGUF file (`exportGguf`). */
import { Command, Option } from 'commander';
import { exportGguf, GGUF_EXPORT_TYPES, type ExportGgufOptions } from '../pipeline/gguf-export';
import { abortOnSignals, formatBytes, progressBar, type RunFn } from './util';

interface ExportFlags extends Pick<ExportGgufOptions, 'type' | 'tokenizer' | 'name' | 'embeddingType' | 'exclude'> {
  out: string;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
}

/** What a `lowbit export` command line asks of `exportGguf()` (signal and progress are the caller's). */
export interface ExportCall {
  model: string;
  out: string;
  options: Omit<ExportGgufOptions, 'signal' | 'onProgress'>;
}

/** The library call a parsed export command line stands for (`lowbit export` runs it, `lowbit submit` queues it). */
export function exportCall(cmd: Command, model: string): ExportCall {
  const o = cmd.opts<ExportFlags>();
  return {
    model, out: o.out,
    options: {
      type: o.type, ...(o.tokenizer !== undefined ? { tokenizer: o.tokenizer } : {}), ...(o.name !== undefined ? { name: o.name } : {}),
      ...(o.embeddingType !== undefined ? { embeddingType: o.embeddingType } : {}), ...(o.exclude !== undefined ? { exclude: o.exclude } : {}),
      ...(o.force ? { overwrite: true } : {}),
    },
  };
}

export function exportCommand(run: RunFn): Command {
  return new Command('export')
    .description('write a model as one GGUF file with ggml\'s own block types (Q8_0, Q4_0, Q4_1, Q4_K) or F32/F16/BF16; a GPTQ checkpoint\'s codes go into the blocks where they fit')
    .argument('<model>', 'a llama2.c .bin or an HF model directory (GPTQ checkpoints included)')
    .requiredOption('--out <file>', 'the .gguf file to write (must not exist, unless --force)')
    .addOption(new Option('--type <type>', 'type of the embedding and linear weights (norms stay F32)').choices([...GGUF_EXPORT_TYPES]).makeOptionMandatory())
    .option('--tokenizer <file>', 'llama2.c tokenizer.bin with the vocabulary (default: the directory\'s tokenizer.json, or a tokenizer.bin beside the model)')
    .option('--name <name>', 'general.name (default: the source\'s base name)')
    .addOption(new Option('--embedding-type <type>', 'float type of the token embedding and the output head (default: --type)').choices(['F32', 'F16', 'BF16']))
    .option('--exclude <pattern...>', 'tensors whose name contains a pattern stay in float')
    .option('--force', 'replace an existing output file')
    .option('--json', 'print the result as JSON')
    .option('--quiet', 'no progress bar')
    .action(async function (this: Command, model: string) {
      const o = this.opts<ExportFlags>();
      await run(async (json) => {
        const call = exportCall(this, model);
        const bar = progressBar(!o.quiet && !json);
        const sig = abortOnSignals();
        try {
          const r = await exportGguf(call.model, call.out, { ...call.options, signal: sig.signal, onProgress: (p) => { bar.update(p); } });
          bar.stop();
          if (json) process.stdout.write(JSON.stringify({ ok: true, ...r }, null, 2) + '\n');
          else process.stdout.write(`${r.tensors} tensors (${r.type}${r.fallbacks.length ? `; ${r.fallbacks.length} in F16 instead` : ''}): ${formatBytes(r.sourceBytes)} → ${formatBytes(r.bytes)} in ${r.seconds.toFixed(2)} s → ${r.file}\n`);
          return 0;
        } finally {
          bar.stop();
          sig.dispose();
        }
      }, !!o.json);
    });
}
