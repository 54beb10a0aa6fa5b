/** `lowbit quantize <model> --method rtn --bits 4 --group-size 128 … --out <dir>` */
import { Command, Option } from 'commander';
import { quantize, transformModel, type QuantizeResult, type QuantizeRunOptions } from '../pipeline/quantize';
import type { TransformReport } from '../pipeline/transform';
import { OUTPUT_FORMATS, QUANT_METHODS, type QuantizeConfig, type OutputFormat } from '../config/quantize';
import type { ExportGgufResult } from '../pipeline/gguf-export';
import type { Progress } from '../config/run';
import { isLowbitError, optionError } from '../errors';
import { abortOnSignals, formatBytes, intFlag, modelArg, numFlag, progressBar, sizeFlag, table, type RunFn } from './util';

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
  tokenizer?: string;
  allowRequantize?: boolean;
  download?: boolean;
  eval?: string;
  evalCtx?: number;
  evalChunks?: number;
  out: string;
  force?: boolean;
  threads?: number;
  maxMemory?: number;
  include?: string[];
  exclude?: string[];
  lmHead?: boolean;
  maxShard?: number;
  json?: boolean;
  quiet?: boolean;
  calib?: string;
  calibSamples?: number;
  calibSeqlen?: number;
  calibCompute?: 'f32' | 'bf16';
  seed?: number;
  transform?: string[];
  recipe?: string;
  actOrder?: boolean;
  staticGroups?: boolean;
  damp?: number;
  blockSize?: number;
}

/** Print what a GGUF output holds (after the GPTQ table when GPTQ made it). */
function printGgufResult(r: ExportGgufResult, q: QuantizeResult): void {
  if (q.modules.length) printQuantizeResult({ ...q, out: `${q.out} (via a GPTQ checkpoint)` });
  const types = Object.entries(r.tensorsByType).sort((a, b) => b[1] - a[1]).map(([t, n]) => `${n} ${t}`).join(', ');
  process.stdout.write(`${r.tensors} tensors (${types}) for type ${r.type}${r.fallbacks.length ? `; ${r.fallbacks.length} in F16 instead (${r.fallbacks[0].reason})` : ''}\n`);
  if (r.conversions.length) {
    const by = (h: string) => r.conversions.filter((c) => c.how === h);
    process.stdout.write(`GPTQ modules: ${by('exact').length} exact, ${by('rounded').length} rounded once, ${by('requantized').length} re-encoded` +
      `${by('requantized').length ? ` (${by('requantized')[0].detail ?? ''})` : by('rounded').length ? ` (${by('rounded')[0].detail ?? ''})` : ''}\n`);
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
    .description('quantize every linear layer of a Llama-family model (HF directory, llama2.c .bin or F32/F16/BF16 GGUF) and write a checkpoint or a GGUF file')
    .argument('<model>', 'an HF model directory (config.json + *.safetensors), a llama2.c .bin or an F32/F16/BF16 GGUF file')
    .requiredOption('--out <dir>', 'output directory (must not exist or be empty, unless --force)')
    .addOption(new Option('--method <method>', 'quantization method; none: apply --transform only').choices([...QUANT_METHODS, 'none', 'awq']).default('rtn'))
    .option('--recipe <name|file>', 'a compression recipe: a preset (w4a16, w8a8, w4a8, w4a8kv8, w4a8kv4, w4a4kv4) or a JSON file; flags given beside it override its weight settings; its activation and KV settings are stored in the checkpoint and applied when it is loaded')
    .option('--transform <t...>', 'transform the weights first, exactly (repeatable): rotate[:down] (Hadamard rotations, QuaRot-style; :down adds the online down_proj rotation, lowbit runtime only), smoothquant[:alpha | :search] (needs --calib; search: α per layer, least block output error under the run quantization)')
    .option('--calib <path>', 'GPTQ: calibration data: a UTF-8 text file, a .jsonl file ("text" or "input_ids" per line) or a directory of .txt files')
    .option('--calib-samples <n>', 'calibration windows (GPTQ, smoothquant)', intFlag('calibSamples'), 128)
    .option('--calib-seqlen <n>', 'tokens per calibration window (capped at the model context)', intFlag('calibSeqlen'), 2048)
    .option('--seed <n>', 'GPTQ: seed of the window sampler', intFlag('seed'), 0)
    .addOption(new Option('--calib-compute <dtype>', 'GPTQ: the calibration forward\'s matrix products: f32, or bf16 operands with f32 sums (AVX-512 BF16 where the CPU has it)').choices(['f32', 'bf16']).default('f32'))
    .option('--act-order', 'GPTQ: quantize columns by descending Hessian diagonal (desc_act)')
    .option('--static-groups', 'GPTQ: group params from the original column order')
    .option('--damp <f>', 'GPTQ: damping, fraction of the mean Hessian diagonal', numFlag('damp'), 0.01)
    .option('--block-size <n>', 'GPTQ: columns per lazy-update block', intFlag('blockSize'), 128)
    .option('--bits <n>', 'bits per weight, 2-8 (gptq formats: 2, 3, 4, 8; ct-w4a16: 2, 4, 8; ct-w8a8: 8)', intFlag('bits'), 4)
    .option('--group-size <n>', 'input channels per group; -1 = per channel', intFlag('groupSize'), 128)
    .option('--sym', 'symmetric quantization (fixed zero point; default)')
    .option('--asym', 'asymmetric quantization (scale and zero point)')
    .addOption(new Option('--clip <how>', 'range: full min/max, or an MSE-minimising shrink search').choices(['minmax', 'mse']).default('minmax'))
    .addOption(new Option('--codebook <kind>', 'uniform grid or a non-uniform codebook (dequant format)').choices(['uniform', 'nf4', 'log2']).default('uniform'))
    .option('--per-tensor', 'one scale for the whole tensor (dequant format)')
    .addOption(new Option('--format <fmt>', 'output: HF GPTQ (v1 zeros), GPTQ v2 (true zeros), dequantized fake-quant weights, compressed-tensors for vLLM (ct-w4a16: packed int weights; ct-w8a8: int8 per-channel weights, int8 per-token activations), or a GGUF file with ggml block types (vocabulary: --tokenizer tokenizer.bin, or the model directory\'s tokenizer.json)')
      .choices([...OUTPUT_FORMATS]).default('gptq'))
    .option('--tokenizer <file>', 'a tokenizer file copied into the output (default: the one next to the model); a llama2.c tokenizer.bin also tokenizes the GPTQ calibration text and is the vocabulary of a GGUF output')
    .option('--download', 'fetch a Hugging Face id into the local cache first (needs the network; safetensors, config and tokenizer files only)')
    .option('--eval <file>', 'measure the result before it is written: perplexity on this text, KL and top-1 against the source (in the result, quant_log.json and the model card)')
    .option('--eval-ctx <n>', 'with --eval: tokens per window (default min(512, context))', intFlag('evalCtx'))
    .option('--eval-chunks <n>', 'with --eval: score only the first N windows', intFlag('evalChunks'))
    .option('--allow-requantize', 'accept a GGUF source whose weights are already quantized (dequantized and quantized again: two roundings)')
    .option('--include <pattern...>', 'only modules whose name contains a pattern')
    .option('--exclude <pattern...>', 'skip modules whose name contains a pattern')
    .option('--lm-head', 'also quantize lm_head (dequant format)')
    .option('--max-shard <bytes>', 'largest safetensors shard in bytes', intFlag('maxShard'))
    .option('--threads <n>', 'compute threads (default: physical cores)', intFlag('threads'))
    .option('--max-memory <size>', 'memory budget, e.g. 8G: GPTQ spills calibration activations to a temporary file to stay under it, or refuses up front with the numbers', sizeFlag('maxMemory'))
    .option('--force', 'replace a non-empty output directory (only once the new one is complete)')
    .option('--json', 'print a JSON summary on stdout')
    .option('--quiet', 'no progress bar')
    .action(async function (this: Command, model: string) {
      const o = this.opts<QuantizeFlags>();
      await run(async (json) => {
        try {
          return await runQuantize(this, json);
        } catch (e) {
          throw quantizeFlagError(this, e);
        }
      }, !!o.json);
      async function runQuantize(cmd: Command, json: boolean): Promise<number> {
        if (o.method === 'none') return runTransformOnly(cmd, model, json);
        const call = quantizeCall(cmd, model);
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
            // a killed run's work that is not done again
            if (p.phase === 'resume' && !json) process.stderr.write(`lowbit: ${p.done} of ${p.total} layers ${p.module?.replace(/^resumed after layer \d+ /, 'read back ') ?? ''}\n`);
            bar.update(p);
          };
          const r = await quantize(await modelArg(call.model, call.download, json || !!o.quiet), call.config, {
            ...call.run, onProgress, signal: sig.signal,
            // the model card's "how it was made" (absolute paths become base names there)
            command: ['lowbit', ...process.argv.slice(2)].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(' '),
          });
          bar.stop();
          if (json) process.stdout.write(JSON.stringify({ ok: true, ...(r.gguf ? { ...r.gguf, ...(r.modules.length ? { method: r.method, calibration: r.calibration, modules: r.modules } : {}), ...(r.evaluation ? { evaluation: r.evaluation } : {}) } : r) }, null, 2) + '\n');
          else if (r.gguf) printGgufResult(r.gguf, r);
          else printQuantizeResult(r);
          if (!json && r.evaluation) {
            const e = r.evaluation;
            process.stdout.write(`eval on ${e.text} (${e.tokens} tokens, ctx ${e.ctx}): ppl ${e.ppl.toFixed(4)} (source ${e.referencePpl.toFixed(4)}), KL ${e.kl.toExponential(3)} nats/token, top-1 ${(100 * e.top1).toFixed(2)}%\n`);
          }
          return 0;
        } finally {
          bar.stop();
          sig.dispose();
        }
      }
    });
}

/** What a `lowbit quantize` command line asks of `quantize()`: the model argument, the config and the run options (progress, signal and the model card's command are the caller's). */
export interface QuantizeCall {
  model: string;
  /** `--download`: fetch the Hugging Face id into the local cache first. */
  download: boolean;
  config: QuantizeConfig;
  run: Omit<QuantizeRunOptions, 'onProgress' | 'signal' | 'command'>;
}

/**
 * The library call a parsed quantize command line stands for (`lowbit quantize` runs it, `lowbit
 * submit` queues it). Only what the user wrote goes to the library, which fills the defaults and
 * refuses an option that does not apply (commander's defaults would look like choices the user made).
 */
export function quantizeCall(cmd: Command, model: string): QuantizeCall {
  const o = cmd.opts<QuantizeFlags>();
  const given = (k: keyof QuantizeFlags) => cmd.getOptionValueSource(k) === 'cli';
  const pick = <K extends keyof QuantizeFlags>(k: K, as: string = k): Record<string, QuantizeFlags[K]> => (given(k) ? { [as]: o[k] } : {});
  if (o.sym && o.asym) throw optionError('sym', 'sym/asym: expected one of --sym or --asym, received both');
  const config = {
    ...(o.recipe ? { recipe: o.recipe, ...pick('method') } : { method: o.method }),
    ...pick('bits'), ...pick('groupSize'), ...(o.asym ? { sym: false } : o.sym ? { sym: true } : {}), ...pick('clip'), ...pick('codebook'),
    ...(o.perTensor ? { perTensor: true } : {}), ...(o.lmHead ? { lmHead: true } : {}), ...pick('format'),
    ...pick('include'), ...pick('exclude'), ...pick('maxShard', 'maxShardBytes'),
    ...(o.actOrder ? { actOrder: true } : {}), ...(o.staticGroups ? { staticGroups: true } : {}), ...pick('damp', 'dampPercent'), ...pick('blockSize'),
    ...pick('transform', 'transforms'),
  } as unknown as QuantizeConfig;
  const tok = o.tokenizer?.endsWith('.bin') ? o.tokenizer : undefined;
  const evalFlags = (['evalCtx', 'evalChunks'] as const).filter((k) => given(k));
  if (!o.eval && evalFlags.length) throw optionError(evalFlags[0], `--${evalFlags[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: applies to the evaluation; pass --eval FILE`);
  const calibFlags = (['calibSamples', 'calibSeqlen', 'seed', 'calibCompute'] as const).filter((k) => given(k));
  if (!o.calib && calibFlags.length) throw optionError(calibFlags[0], `--${calibFlags[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: applies to the calibration data; pass --calib FILE (GPTQ)`);
  const calibration = o.calib ? { file: o.calib, ...pick('calibSamples', 'samples'), ...pick('calibSeqlen', 'seqLen'), ...pick('seed'), ...pick('calibCompute', 'compute'), ...(tok ? { tokenizer: tok } : {}) } : undefined;
  return {
    model, download: !!o.download, config,
    run: {
      out: o.out, overwrite: !!o.force, ...pick('tokenizer'), ...(calibration ? { calibration } : {}), ...pick('threads'), ...pick('maxMemory'),
      ...(o.allowRequantize ? { allowRequantize: true } : {}),
      ...(o.eval ? { evaluate: { file: o.eval, ...pick('evalCtx', 'ctx'), ...pick('evalChunks', 'maxChunks') } } : {}),
    },
  };
}

/** `--method none`: the transforms only (transformModel); every quantizer flag is refused, naming it. */
async function runTransformOnly(cmd: Command, model: string, json: boolean): Promise<number> {
  const o = cmd.opts<QuantizeFlags>();
  const given = (k: keyof QuantizeFlags) => cmd.getOptionValueSource(k) === 'cli';
  if (!o.transform?.length) throw optionError('method', '--method none: applies transforms only; give at least one --transform');
  const quantizerFlags = (['recipe', 'bits', 'groupSize', 'sym', 'asym', 'clip', 'codebook', 'perTensor', 'format', 'include', 'exclude', 'lmHead', 'actOrder', 'staticGroups', 'damp', 'blockSize', 'eval', 'maxMemory', 'allowRequantize', 'maxShard'] as const).filter((k) => given(k));
  if (quantizerFlags.length) {
    const f = `--${quantizerFlags[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    throw optionError(quantizerFlags[0], `${f}: --method none quantizes nothing (it writes the transformed F32 checkpoint); leave ${f} out or choose a method`);
  }
  const call = quantizeCall(cmd, model);
  const sig = abortOnSignals();
  try {
    const r = await transformModel(await modelArg(call.model, call.download, json || !!o.quiet), o.transform, {
      out: o.out, ...(o.force ? { overwrite: true } : {}), ...(call.run.calibration ? { calibration: call.run.calibration } : {}), ...(call.run.threads !== undefined ? { threads: call.run.threads } : {}),
      ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}), signal: sig.signal, command: ['lowbit', ...process.argv.slice(2)].join(' '),
    });
    if (json) process.stdout.write(JSON.stringify({ ok: true, ...r }, null, 2) + '\n');
    else {
      process.stdout.write(`${r.out}: ${r.report.transforms.map((t) => t.kind).join(' + ')} (F32, ${formatBytes(r.outputBytes)}, ${r.seconds.toFixed(1)} s)\n`);
      for (const x of r.report.rotations ?? []) process.stdout.write(`  ${x.name}: size ${x.n}, seed ${x.seed}\n`);
      if (r.report.smoothquant) process.stdout.write(smoothQuantLines(r.report.smoothquant));
    }
    return 0;
  } finally {
    sig.dispose();
  }
}

/**
 * A rule broken by options the user wrote as flags (`--bits 3` with `--format gguf:q4_0`,
 * `--act-order` with RTN), reported with the flag as it was written; a bad value keeps the
 * library's message (the same for the CLI and the API). Any other error is returned as it is.
 */
export function quantizeFlagError(cmd: Command, e: unknown): unknown {
  if (!isLowbitError(e, 'LOWBIT_INVALID_OPTION') || e.details?.rule !== true) return e;
  const o = cmd.opts<QuantizeFlags>();
  const option = String(e.details.option);
  const flag = (Object.keys(CONFIG_KEY) as (keyof QuantizeFlags)[]).find((k) => CONFIG_KEY[k] === option && cmd.getOptionValueSource(k) === 'cli');
  if (!flag || !e.message.startsWith(`${option}:`)) return e;
  const v = o[flag];
  const text = `--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}${typeof v === 'boolean' || v === undefined ? '' : ` ${Array.isArray(v) ? v.join(' ') : String(v)}`}`;
  return optionError(option, `${text}${e.message.slice(option.length)}`, { ...e.details, flag: text });
}

/** The config key each quantize flag sets (for naming flags in errors). */
const CONFIG_KEY: Partial<Record<keyof QuantizeFlags, string>> = {
  method: 'method', bits: 'bits', groupSize: 'groupSize', clip: 'clip', codebook: 'codebook', perTensor: 'perTensor', format: 'format',
  include: 'include', exclude: 'exclude', lmHead: 'lmHead', maxShard: 'maxShardBytes', actOrder: 'actOrder', staticGroups: 'staticGroups',
  damp: 'dampPercent', blockSize: 'blockSize', sym: 'sym', asym: 'sym', calib: 'calibration', transform: 'transforms', recipe: 'recipe', tokenizer: 'tokenizer', allowRequantize: 'allowRequantize', eval: 'evaluate', maxMemory: 'maxMemory',
};

/** The CLI's lines about a SmoothQuant transform (α or the per-layer search, the scale ranges). */
function smoothQuantLines(sq: NonNullable<TransformReport['smoothquant']>): string {
  const ranges = Object.entries(sq.scaleRange).map(([k, [a, b]]) => `${k} ${a.toPrecision(3)}…${b.toPrecision(3)}`).join(', ');
  let s = `  smoothquant α ${sq.alpha} over ${sq.tokens} tokens; scale ranges ${ranges}\n`;
  if (sq.search) {
    const w = sq.search.weights;
    s += `  α searched per layer over ${sq.search.grid.join(', ')} on ${sq.search.tokens} tokens (W${w.bits} ${w.groupSize > 0 ? `g${w.groupSize}` : 'per channel'} RTN, A${sq.search.actBits} per token${sq.search.keptModules.length ? `; ${sq.search.keptModules.length} weights kept full precision` : ''}):\n`;
    sq.search.layers.forEach((x, l) => { s += `    layer ${l}: α ${x.alpha}, block error ${x.error.toExponential(3)}${x.errorAtHalf !== null ? ` (α 0.5: ${x.errorAtHalf.toExponential(3)})` : ''}\n`; });
  }
  return s;
}
