/** `lowbit inspect <model>`: architecture, tensors, dtypes, parameter count, size. */
import { Command } from 'commander';
import type { RunFn } from './util';
import { inspectModel } from '../formats/source';
import { formatBytes, formatCount, modelArg, table } from './util';

export function inspectCommand(run: RunFn): Command {
  return new Command('inspect')
    .description('describe a model (HF directory, unquantized or GPTQ; GGUF; llama2.c .bin): architecture, tensors, dtypes, parameters, size')
    .argument('<model>', 'an HF model directory (config.json + *.safetensors), a .gguf file or a llama2.c .bin')
    .option('--tensors', 'list every tensor')
    .option('--download', 'fetch a Hugging Face id into the local cache first (needs the network; safetensors, config and tokenizer files only)')
    .option('--json', 'print the full summary as JSON on stdout')
    .action(async function (this: Command, model: string) {
      const o = this.opts<{ tensors?: boolean; json?: boolean; download?: boolean }>();
      await run(async (json) => {
        const s = inspectModel(await modelArg(model, o.download, json));
        if (json) {
          process.stdout.write(JSON.stringify({ ok: true, ...s, tensors: o.tensors ? s.tensors : undefined, tensorCount: s.tensors.length }, null, 2) + '\n');
          return 0;
        }
        const q = s.quantization;
        const lines = [
          `model        ${s.dir}`,
          `architecture ${s.architectures.join(', ') || s.family} (${s.family})`,
          `layers       ${s.layers}, hidden ${s.hiddenSize}, ffn ${s.intermediateSize}, heads ${s.heads} (kv ${s.kvHeads}, head dim ${s.headDim})`,
          `vocab        ${s.vocabSize}, context ${s.maxPositionEmbeddings}, tied embeddings ${s.tieWordEmbeddings ? 'yes' : 'no'}`,
          `parameters   ${formatCount(s.parameters)} (${s.parameters})`,
          `dtype        ${s.torchDtype}; tensors by dtype: ${Object.entries(s.dtypes).map(([k, v]) => `${k} ${v}`).join(', ')}`,
          `size         ${formatBytes(s.tensorBytes)} of tensors, ${formatBytes(s.bytesOnDisk)} on disk in ${s.files.length} ${s.kind === 'hf-dir' ? 'safetensors' : s.kind === 'gguf' ? 'GGUF' : 'llama2.c'} file(s)`,
          `quantization ${q ? `GPTQ ${q.bits}-bit, group ${q.groupSize}, ${q.sym ? 'sym' : 'asym'}, format ${q.checkpointFormat}${q.descAct ? ', act-order' : ''}` : 'none'}`,
        ];
        process.stdout.write(lines.join('\n') + '\n');
        if (o.tensors) process.stdout.write('\n' + table(['tensor', 'dtype', 'shape', 'bytes'], s.tensors.map((t) => [t.name, t.dtype, `[${t.shape.join(', ')}]`, t.bytes])) + '\n');
        return 0;
      }, !!o.json);
    });
}
