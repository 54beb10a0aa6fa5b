/** `lowbit quantize <model> --method rtn --bits 4 --group-size 128 … --out <dir>` */
import { Command, Option } from 'commander';
import { quantize, type QuantizeResult } from '../pipeline/quantize';
import type { QuantizeConfig, OutputFormat } from '../config/rtn';
import { setThreads } from '../system';
import * as fs from 'node:fs';
import { exportGguf, type ExportGgufResult, type GgufExportType } from '../pipeline/gguf-export';
import type { Progress } from '../quantize-tensor';
import { LowbitError } from '../errors';
import { abortOnSignals, formatBytes, intFlag, numFlag, progressBar, table, type RunFn } from './util';

interface QuantizeFlags {
  method: string;
  bits: number;
  groupSize: number;
  sym?: boolean;
  asym?: boolean;
  clip: 'minmax' | 'mse';
  codebook: 'uniform' | 'nf4' | 'log2';
  perTensor?: boolean;
  format: OutputFormat | `gguf:${string}`;
  tokenizer?: string[];
  out: string;
  force?: boolean;
  threads?: number;
  include?: string[];
  exclude?: string[];
  lmHead?: boolean;
  maxShard?: number;
  json?: boolean;
  quiet?: boolean;
  calib?: string;
  calibSamples?: number;
  calibSeqlen?: number;
  seed?: number;
  actOrder?: boolean;
  staticGroups?: boolean;
  damp?: number;
  blockSize?: number;
}

/** Print what a GGUF export did (JSON on stdout when asked). */
function printGgufResult(r: ExportGgufResult, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify({ ok: true, ...r }, null, 2) + '\n');
    return;
  }
  process.stdout.write(`${r.tensors} tensors as ${r.type}${r.fallbacks.length ? `, ${r.fallbacks.length} kept in F16 (${r.fallbacks[0].reason})` : ''}\n`);
  if (r.conversions.length) {
    const by = (h: string) => r.conversions.filter((c) => c.how === h);
    process.stdout.write(`GPTQ modules: ${by('exact').length} exact, ${by('rounded').length} rounded once, ${by('requantized').length} re-encoded` +
      `${by('requantized').length ? ` (${by('requantized')[0].detail})` : by('rounded').length ? ` (${by('rounded')[0].detail})` : ''}\n`);
  }
  process.stdout.write(`${formatBytes(r.sourceBytes)} → ${formatBytes(r.bytes)} (gguf) in ${r.seconds.toFixed(2)} s → ${r.file}\n`);
}

/** Print the per-module table and the summary of a run. */
export function printQuantizeResult(r: QuantizeResult): void {
  const rows = r.modules.map((m) => [m.module, `${m.rows}×${m.cols}`, m.storage, m.stats ? m.stats.relError.toFixed(4) : '-',
    m.stats ? m.stats.sqnrDb.toFixed(1) : '-', m.gptqLoss !== undefined ? m.gptqLoss.toExponential(3) : '-', m.reason ?? '']);
  process.stdout.write(table(['module', 'shape', 'stored', 'rel err', 'SQNR dB', 'GPTQ loss', 'note'], rows) + '\n\n');
  process.stdout.write(`${r.quantizedModules} modules quantized (${r.method}, ${r.bits}-bit, group ${r.groupSize}, ${r.sym ? 'sym' : 'asym'}, clip ${r.clip}${r.codebook !== 'uniform' ? `, codebook ${r.codebook}` : ''}), ` +
    `${r.skippedModules} kept in fp16; mean rel error ${r.meanRelError.toFixed(4)}\n`);
  process.stdout.write(`${formatBytes(r.sourceBytes)} → ${formatBytes(r.outputBytes)} (${r.format}) in ${r.seconds.toFixed(2)} s → ${r.out}\n`);
}

export function quantizeCommand(run: RunFn): Command {
  return new Command('quantize')
    .description('quantize every linear layer of a Hugging Face Llama-family model and write a checkpoint')
    .argument('<model>', 'model directory (config.json + *.safetensors)')
    .requiredOption('--out <dir>', 'output directory (must not exist or be empty, unless --force)')
    .addOption(new Option('--method <method>', 'quantization method').choices(['rtn', 'gptq', 'awq']).default('rtn'))
    .option('--calib <file>', 'GPTQ: calibration text (UTF-8)')
    .option('--calib-samples <n>', 'GPTQ: calibration windows', intFlag('calibSamples'), 128)
    .option('--calib-seqlen <n>', 'GPTQ: tokens per window (capped at the model context)', intFlag('calibSeqlen'), 2048)
    .option('--seed <n>', 'GPTQ: seed of the window sampler', intFlag('seed'), 0)
    .option('--act-order', 'GPTQ: quantize columns by descending Hessian diagonal (desc_act)')
    .option('--static-groups', 'GPTQ: group params from the original column order')
    .option('--damp <f>', 'GPTQ: damping, fraction of the mean Hessian diagonal', numFlag('damp'), 0.01)
    .option('--block-size <n>', 'GPTQ: columns per lazy-update block', intFlag('blockSize'), 128)
    .option('--bits <n>', 'bits per weight, 2-8 (gptq formats: 2, 3, 4, 8)', intFlag('bits'), 4)
    .option('--group-size <n>', 'input channels per group; -1 = per channel', intFlag('groupSize'), 128)
    .option('--sym', 'symmetric quantization (fixed zero point; default)')
    .option('--asym', 'asymmetric quantization (scale and zero point)')
    .addOption(new Option('--clip <how>', 'range: full min/max, or an MSE-minimising shrink search').choices(['minmax', 'mse']).default('minmax'))
    .addOption(new Option('--codebook <kind>', 'uniform grid or a non-uniform codebook (dequant format)').choices(['uniform', 'nf4', 'log2']).default('uniform'))
    .option('--per-tensor', 'one scale for the whole tensor (dequant format)')
    .addOption(new Option('--format <fmt>', 'output: HF GPTQ (v1 zeros), GPTQ v2 (true zeros), dequantized fake-quant weights, or a GGUF file with ggml block types (vocabulary: --tokenizer tokenizer.bin, or the model directory\'s tokenizer.json)')
      .choices(['gptq', 'gptq-v2', 'dequant', 'gguf:f32', 'gguf:f16', 'gguf:bf16', 'gguf:q8_0', 'gguf:q4_0', 'gguf:q4_1', 'gguf:q4_k']).default('gptq'))
    .option('--tokenizer <file...>', 'tokenizer file(s) copied into the output; a llama2.c tokenizer.bin also tokenizes the GPTQ calibration text')
    .option('--include <pattern...>', 'only modules whose name contains a pattern')
    .option('--exclude <pattern...>', 'skip modules whose name contains a pattern')
    .option('--lm-head', 'also quantize lm_head (dequant format)')
    .option('--max-shard <bytes>', 'largest safetensors shard in bytes', intFlag('maxShard'))
    .option('--threads <n>', 'compute threads (default: physical cores)', intFlag('threads'))
    .option('--force', 'replace a non-empty output directory (only once the new one is complete)')
    .option('--json', 'print a JSON summary on stdout')
    .option('--quiet', 'no progress bar')
    .action(async function (this: Command, model: string) {
      const o = this.opts<QuantizeFlags>();
      await run(async (json) => {
        if (o.sym && o.asym) throw new LowbitError('LOWBIT_INVALID_OPTION', 'sym/asym: expected one of --sym or --asym, received both', { option: 'sym' });
        if (o.threads !== undefined) setThreads(o.threads);
        const ggufType = o.format.startsWith('gguf:') ? (o.format.slice(5).toUpperCase() as GgufExportType) : null;
        if (ggufType && o.method !== 'gptq') {
          // GGUF from weights: llama.cpp's own block quantizers (bit-exact with its reference
          // encoders); from a GPTQ checkpoint: its codes as ggml blocks where the type holds them
          if (o.method !== 'rtn') throw new LowbitError('LOWBIT_UNSUPPORTED', `format ${o.format}: method ${o.method} cannot write GGUF (use rtn or gptq)`, { option: 'method' });
          const tok = o.tokenizer?.find((f) => f.endsWith('.bin'));
          printGgufResult(await exportGguf(model, o.out, { type: ggufType, tokenizer: tok, overwrite: !!o.force }), json);
          return 0;
        }
        if (ggufType) {
          // GPTQ → GGUF: GPTQ on the grid of the block type (Q4_0: 4-bit sym, Q4_1: 4-bit asym,
          // Q8_0: 8-bit sym, groups of 32), so its codes go into the blocks without a second rounding
          // (Q4_0: llama.cpp's own signed-max scale, |largest| / 8 with its sign, not 2·|largest| / 15)
          const grid: Record<string, { bits: number; sym: boolean }> = { Q4_0: { bits: 4, sym: true }, Q4_1: { bits: 4, sym: false }, Q8_0: { bits: 8, sym: true } };
          const g = grid[ggufType];
          if (g) {
            const src = (k: string) => this.getOptionValueSource(k) === 'cli';
            const clash = src('bits') && o.bits !== g.bits ? `--bits ${o.bits}` : src('groupSize') && o.groupSize !== 32 ? `--group-size ${o.groupSize}` :
              (g.sym ? o.asym : o.sym) ? (g.sym ? '--asym' : '--sym') : null;
            if (clash) throw new LowbitError('LOWBIT_INVALID_OPTION', `${clash}: format ${o.format} stores ${g.bits}-bit ${g.sym ? 'symmetric' : 'asymmetric'} groups of 32; GPTQ runs on that grid (leave the option out)`, { option: clash.split(' ')[0] });
            o.bits = g.bits;
            o.groupSize = 32;
            o.sym = g.sym;
            o.asym = !g.sym;
          }
          if (fs.existsSync(o.out) && !o.force) throw new LowbitError('LOWBIT_IO', `${o.out}: exists (pass --force to replace it)`, { file: o.out });
          if (o.actOrder && !o.staticGroups) throw new LowbitError('LOWBIT_INVALID_OPTION', `--act-order: format ${o.format} needs groups of consecutive input channels; add --static-groups`, { option: '--act-order' });
        }
        const gptq = o.method === 'gptq' ? { actOrder: !!o.actOrder, staticGroups: !!o.staticGroups, dampPercent: o.damp, blockSize: o.blockSize } : {};
        const config = {
          method: o.method as 'rtn', ...gptq, bits: o.bits, groupSize: o.groupSize, sym: !o.asym, clip: o.clip, codebook: o.codebook,
          ...(ggufType === 'Q4_0' ? { signedMax: true } : {}),
          format: (ggufType ? 'gptq' : o.format) as OutputFormat, ...(o.perTensor ? { perTensor: true } : {}), ...(o.lmHead ? { lmHead: true } : {}),
          ...(o.include ? { include: o.include } : {}), ...(o.exclude ? { exclude: o.exclude } : {}),
          ...(o.maxShard !== undefined ? { maxShardBytes: o.maxShard } : {}),
        } as QuantizeConfig;
        const tok = o.tokenizer?.find((f) => f.endsWith('.bin'));
        const calibration = o.calib ? { file: o.calib, samples: o.calibSamples, seqLen: o.calibSeqlen, seed: o.seed, tokenizer: tok } : undefined;
        const bar = progressBar(!o.quiet);
        const sig = abortOnSignals();
        try {
          let announced = false;
          const onProgress = (p: Progress) => {
            // GPTQ states its expected peak memory before calibration starts
            if (!announced && p.phase === 'calibrate' && p.module?.startsWith('expected peak')) {
              announced = true;
              if (!json) process.stderr.write(`lowbit: GPTQ calibration: ${p.module}\n`);
            }
            bar.update(p);
          };
          if (ggufType) {
            // the GPTQ checkpoint goes to a temp directory beside the output, then into the GGUF file
            const tmp = `${o.out}.gptq-tmp-${process.pid}-${Date.now().toString(36)}`;
            try {
              await quantize(model, config, { out: tmp, tokenizer: o.tokenizer, calibration, onProgress, signal: sig.signal });
              bar.stop();
              const tok = o.tokenizer?.find((f) => f.endsWith('.bin'));
              printGgufResult(await exportGguf(tmp, o.out, { type: ggufType, tokenizer: tok, overwrite: !!o.force, signal: sig.signal }), json);
            } finally {
              fs.rmSync(tmp, { recursive: true, force: true });
            }
            return 0;
          }
          const r = await quantize(model, config, { out: o.out, overwrite: !!o.force, tokenizer: o.tokenizer, calibration, onProgress, signal: sig.signal });
          bar.stop();
          if (json) process.stdout.write(JSON.stringify({ ok: true, ...r }, null, 2) + '\n');
          else printQuantizeResult(r);
          return 0;
        } finally {
          bar.stop();
          sig.dispose();
        }
      }, !!o.json);
    });
}

