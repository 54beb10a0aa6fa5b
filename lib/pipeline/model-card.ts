/**
 * The README.md model card written into every quantized checkpoint directory: where it came from,
 * how it was made (every setting), with which data, by which lowbit, and how to load it — in the
 * engines we know read the format, saying which of them lowbit's tests load it with. It names the
 * source by its base name only: no absolute path goes into a file meant to be shared.
 */
import type { NormalizedQuantizeConfig } from '../config/quantize';
import type { CalibrationSummary, ModuleLog } from '../methods/method';
import { LOWBIT_VERSION } from '../version';

/** What a quantize run's own evaluation measured (`evaluate` / `--eval`), quantized against the source. */
export interface QualityResult {
  /** The text's file base name, or 'text'. */
  text: string;
  ctx: number;
  tokens: number;
  ppl: number;
  referencePpl: number;
  kl: number;
  top1: number;
}

/** What the card says. */
export interface ModelCardInput {
  sourceName: string;
  config: NormalizedQuantizeConfig;
  calibration: CalibrationSummary | null;
  modules: ModuleLog[];
  /** The command line that made it, when the CLI made it (paths reduced to base names). */
  command: string | null;
  /** What the run measured on the quantized model against the source, if it was asked to. */
  evaluation: QualityResult | null;
  meanRelError: number;
}

const fence = '```';

/** The card's Markdown. */
export function modelCard(c: ModelCardInput): string {
  const q = c.config.quantizer;
  const quantized = c.modules.filter((m) => m.storage !== 'fp16');
  const kept = c.modules.filter((m) => m.storage === 'fp16');
  const packed = c.config.checkpointFormat !== 'dequant';
  const settings: [string, string][] = [
    ['method', c.config.method],
    ['bits', String(q.bits)],
    ['group size', q.groupSize === -1 ? 'per channel' : String(q.groupSize)],
    ['symmetric', q.sym ? (q.signedMax ? 'yes (signed-max grid, zeros 2^(b−1) or 2^(b−1)−1)' : 'yes') : 'no'],
    ['range', q.clip === 'mse' ? `MSE clip search (grid ${q.clipGrid}, max shrink ${q.clipMaxShrink}, norm ${q.clipNorm})` : 'min/max'],
    ['codebook', q.codebook],
    ['format', c.config.format],
  ];
  if (c.config.gptq) {
    const g = c.config.gptq;
    settings.push(['GPTQ', `act-order ${g.actOrder ? 'yes' : 'no'}, static groups ${g.staticGroups ? 'yes' : 'no'}, damping ${g.dampPercent}, block ${g.blockSize}, true-sequential ${g.trueSequential ? 'yes' : 'no'}`]);
    const damps = quantized.map((m) => m.dampUsed).filter((d): d is number => d !== undefined);
    if (damps.length) settings.push(['damping used', `${Math.min(...damps)}–${Math.max(...damps)}`]);
  }
  const lines: string[] = [
    `# ${c.sourceName} — ${c.config.method.toUpperCase()} ${q.bits}-bit${q.groupSize === -1 ? '' : ` g${q.groupSize}`}`,
    '',
    `Quantized from **${c.sourceName}** by [lowbit](https://www.npmjs.com/package/lowbit) ${LOWBIT_VERSION}: ${quantized.length} linear modules quantized, ` +
      `${kept.length} kept in their float type${kept.length ? ` (${[...new Set(kept.map((m) => m.reason ?? 'kept'))].join('; ')})` : ''}; ` +
      `mean relative weight error ${c.meanRelError.toFixed(4)}.`,
    '',
    '## Settings',
    '',
    '| setting | value |',
    '|---|---|',
    ...settings.map(([k, v]) => `| ${k} | ${v} |`),
    '',
  ];
  if (c.calibration) {
    const cal = c.calibration;
    const what = { text: 'a text file', jsonl: 'JSONL records', dir: 'a directory of .txt files', texts: 'strings given to the API' }[cal.data.kind];
    lines.push('## Calibration data', '',
      `${cal.data.records} record(s) from ${what}, ${cal.data.bytes} bytes, sha256 \`${cal.data.sha256}\`; ` +
      `${cal.samples} windows of ${cal.seqLen} tokens (${cal.tokens} tokens) sampled with seed ${cal.seed}.`, '');
  }
  if (c.evaluation) {
    const e = c.evaluation;
    lines.push('## Measured quality', '',
      `On ${e.text} (${e.tokens} tokens in windows of ${e.ctx}), by lowbit's runtime, against the source model:`, '',
      '| | perplexity | KL to source (nats/token) | top-1 agreement |', '|---|---|---|---|',
      `| source | ${e.referencePpl.toFixed(4)} | 0 | 100% |`,
      `| this model | ${e.ppl.toFixed(4)} | ${e.kl.toExponential(3)} | ${(100 * e.top1).toFixed(2)}% |`, '');
  }
  if (c.command) lines.push('## How it was made', '', `${fence}sh`, c.command, fence, '');
  lines.push('## Loading it', '');
  if (c.config.checkpointFormat === 'ct-w4a16' || c.config.checkpointFormat === 'ct-w8a8') {
    lines.push(
      `A compressed-tensors checkpoint (\`quantization_config.quant_method: compressed-tensors\`, format \`${c.config.checkpointFormat === 'ct-w4a16' ? 'pack-quantized' : 'int-quantized'}\`; the per-module record is in \`quant_log.json\`).`,
      '',
      '| engine | how | tested by lowbit |',
      '|---|---|---|',
      '| vLLM | `vllm serve <dir>` | no (the layout is checked by a plain decoder in lowbit\'s tests) |',
      '| transformers + compressed-tensors | `AutoModelForCausalLM.from_pretrained(dir)` | no |',
      '| lowbit | not read (lowbit\'s runtime reads the GPTQ and dequant formats) | — |',
      '',
    );
  } else if (packed) {
    lines.push(
      `A Hugging Face GPTQ checkpoint (\`quantization_config.quant_method: gptq\`, checkpoint_format \`${c.config.checkpointFormat === 'gptq' ? 'gptq' : 'gptq_v2'}\`; the per-module record is in \`quant_log.json\`).`,
      '',
      '| engine | how | tested by lowbit |',
      '|---|---|---|',
      '| lowbit | `lowbit generate <dir>`, `lowbit eval <dir> --text FILE`, `loadModel(dir)` (runs the packed codes) | yes |',
      '| lowbit → llama.cpp | `lowbit quantize <dir> --format gguf:q4_0 --out model.gguf` (GPTQ codes kept exactly where the block type holds them) | the GGUF file in lowbit; llama.cpp (node-llama-cpp, `npm run test:peer`) loads lowbit\'s GGUF files made from weights, not yet one made from a GPTQ checkpoint |',
      '| transformers + GPTQModel / optimum | `AutoModelForCausalLM.from_pretrained(dir)` | no (reads the layout lowbit writes, per its format description) |',
      `| vLLM | \`vllm serve <dir>\` (GPTQ kernels: 4/8 bits${c.config.checkpointFormat === 'gptq' ? '' : '; gptq_v2 zeros are not read correctly by vLLM today, vllm#26343'}) | no |`,
      '',
    );
  } else {
    lines.push(
      'The original architecture with every quantized linear layer stored dequantized (fake quantization): any engine that reads the source model reads this one.',
      '',
      '| engine | how | tested by lowbit |',
      '|---|---|---|',
      '| lowbit | `lowbit generate <dir>`, `loadModel(dir)` | yes |',
      '| transformers | `AutoModelForCausalLM.from_pretrained(dir)` | no |',
      '',
    );
  }
  return lines.join('\n');
}
