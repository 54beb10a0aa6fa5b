/**
 * Quantize one model twice — RTN and GPTQ at the same bits and group size — then load each result
 * and measure it against the unquantized model on held-out text: perplexity, the mean KL divergence
 * KL(original ‖ quantized) of the next-token distributions (nats per token), and how often both
 * models rank the same next token first (top-1). Prints a table on stdout, progress on stderr.
 *
 * Shows: quantize() with each method (GPTQ with calibration data), loadModel(), evaluate() against a
 * reference model, cancelling everything with one AbortController (Ctrl-C).
 *
 * Run it from a checkout (the examples import 'lowbit' by its package name, as your code would;
 * inside the repository Node resolves that name to the package itself):
 *
 *   npx tsc -p examples      # the examples, and the library they import, into dist/
 *   node dist/examples/quantize-and-evaluate.js <model> <calibration.txt> <eval.txt> [options]
 *
 *   <model>              a Hugging Face model directory, a llama2.c .bin or an F32/F16/BF16 GGUF file
 *   --tokenizer FILE     a llama2.c tokenizer.bin, for a llama2.c model with none beside it
 *   --bits N             2–8 (default 4)
 *   --group-size N       columns per scale group (default 128); --group-size=-1: one scale per output channel
 *   --format F           gptq | gptq-v2 | dequant (default gptq: the packed Hugging Face GPTQ layout)
 *   --calib-samples N    GPTQ calibration windows (default 128)
 *   --calib-seqlen N     tokens per window (default 2048, capped at the model's context)
 *   --ctx N              evaluation window in tokens (default 512, capped at the model's context)
 *   --max-chunks N       score only the first N windows of the text (default: all of them)
 *   --keep DIR           keep the quantized models in DIR (default: a temporary directory, removed)
 *
 * On the stories260K test model (../shared/fixtures beside the checkout; its vocabulary is tok512.bin,
 * and its 64-wide attention layers take groups of 32 or 64, or --group-size=-1):
 *
 *   node dist/examples/quantize-and-evaluate.js ../shared/fixtures/stories260K/stories260K.bin \
 *     ../shared/fixtures/text/tinystories-calib.txt ../shared/fixtures/text/tinystories-dev.txt \
 *     --tokenizer ../shared/fixtures/stories260K/tok512.bin --group-size 32
 *
 * The "quantized" column counts the linear layers quantized: the packed GPTQ layout keeps layers
 * whose width is not a multiple of 32 (stories260K's 172-wide MLP) in fp16; --format dequant
 * quantizes them too.
 *
 * In your own project: npm install lowbit, copy this file and compile it with your TypeScript setup.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { quantize, loadModel, evaluate, isLowbitError, type QuantizeConfig, type CalibrationOptions, type Progress } from 'lowbit';

const USAGE = `usage: node dist/examples/quantize-and-evaluate.js <model> <calibration.txt> <eval.txt>
  [--tokenizer FILE] [--bits 4] [--group-size 128] [--format gptq|gptq-v2|dequant]
  [--calib-samples 128] [--calib-seqlen 2048] [--ctx 512] [--max-chunks N] [--keep DIR]`;

/** A command-line mistake: the usage is printed and the exit code is 2. */
class UsageError extends Error {}

/** An optional integer flag. */
function intFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n)) throw new UsageError(`--${name}: expected an integer, received ${JSON.stringify(value)}`);
  return n;
}

/** Progress on stderr: one line rewritten in place on a terminal, one line per phase otherwise. */
function progressReporter(label: string): { report: (p: Progress) => void; end: () => void } {
  let phase = '';
  return {
    report: (p) => {
      const line = `${label}: ${p.phase} ${p.done}/${p.total}${p.module === undefined ? '' : ` ${p.module}`}`;
      if (process.stderr.isTTY) process.stderr.write(`\r${line.slice(0, (process.stderr.columns || 80) - 1)}\x1b[K`);
      else if (p.phase !== phase) process.stderr.write(`${line}\n`);
      phase = p.phase;
    },
    end: () => {
      if (process.stderr.isTTY) process.stderr.write('\n');
    },
  };
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(2)} MiB`;
}

/** Left-aligned columns, two spaces apart. */
function table(header: string[], rows: string[][]): string {
  const width = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows].map((r) => r.map((c, i) => c.padEnd(width[i])).join('  ').trimEnd()).join('\n');
}

/** The command line; a mistake in it is a UsageError. */
function parseCommandLine() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        tokenizer: { type: 'string' },
        bits: { type: 'string' },
        'group-size': { type: 'string' },
        format: { type: 'string' },
        'calib-samples': { type: 'string' },
        'calib-seqlen': { type: 'string' },
        ctx: { type: 'string' },
        'max-chunks': { type: 'string' },
        keep: { type: 'string' },
      },
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseCommandLine();
  if (positionals.length !== 3) throw new UsageError(`expected 3 arguments, received ${positionals.length}`);
  const [model, calibFile, evalFile] = positionals;
  const bits = intFlag('bits', values.bits) ?? 4;
  const groupSize = intFlag('group-size', values['group-size']) ?? 128;
  // the library checks every option (bits, groupSize, format …) and names the one it refuses
  const format = (values.format ?? 'gptq') as QuantizeConfig['format'];
  const calibration: CalibrationOptions = {
    file: calibFile,
    samples: intFlag('calib-samples', values['calib-samples']) ?? 128,
    seqLen: intFlag('calib-seqlen', values['calib-seqlen']) ?? 2048,
  };
  const ctx = intFlag('ctx', values.ctx);
  const maxChunks = intFlag('max-chunks', values['max-chunks']);
  const tokenizer = values.tokenizer;
  const text = fs.readFileSync(evalFile, 'utf8');

  // one controller cancels whatever runs: quantize() and evaluate() reject with LOWBIT_ABORTED and
  // quantize() leaves no partial output
  const ac = new AbortController();
  process.once('SIGINT', () => {
    ac.abort();
  });

  const work = values.keep === undefined ? fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-example-')) : path.resolve(values.keep);
  // the unquantized model: every quantized one is scored against it on the same windows
  const reference = await loadModel(model, { tokenizer });
  try {
    const runs: { label: string; config: QuantizeConfig; calibration?: CalibrationOptions }[] = [
      { label: 'RTN', config: { method: 'rtn', bits, groupSize, format } },
      { label: 'GPTQ', config: { method: 'gptq', bits, groupSize, format }, calibration },
    ];
    const rows: string[][] = [];
    let about = '';
    for (const run of runs) {
      const progress = progressReporter(run.label);
      const q = await quantize(model, run.config, {
        out: path.join(work, run.label.toLowerCase()),
        overwrite: true,
        tokenizer,
        calibration: run.calibration,
        signal: ac.signal,
        onProgress: progress.report,
      });
      progress.end();
      // the output carries the tokenizer it was given (or found beside the model)
      const quantized = await loadModel(q.out);
      try {
        const e = await evaluate(quantized, { text, reference, ctx, maxChunks, signal: ac.signal });
        if (rows.length === 0) {
          about = `${path.basename(model)} on ${path.basename(evalFile)}: ${e.chunks} windows of ${e.ctx} tokens, ${e.tokens} predicted tokens`;
          rows.push(['original', '-', '-', '-', '-', mib(q.sourceBytes), (e.referencePpl ?? NaN).toFixed(4), '0', '100.00%', '-']);
        }
        rows.push([run.label, String(q.bits), q.groupSize === -1 ? 'channel' : String(q.groupSize), q.format,
          `${q.quantizedModules}/${q.quantizedModules + q.skippedModules}`, mib(q.outputBytes), e.ppl.toFixed(4),
          (e.kl ?? NaN).toExponential(3), `${(100 * (e.top1 ?? NaN)).toFixed(2)}%`, `${q.seconds.toFixed(1)} s`]);
      } finally {
        quantized.dispose();
      }
    }
    process.stdout.write(`${about}\n\n`);
    process.stdout.write(table(['method', 'bits', 'group', 'format', 'quantized', 'size', 'ppl', 'KL (nats/token)', 'top-1', 'quantize time'], rows) + '\n');
    process.stdout.write(`\nKL and top-1 against the original on the same windows. Outputs: ${values.keep === undefined ? '(removed; --keep DIR keeps them)' : work}\n`);
    return 0;
  } finally {
    reference.dispose();
    if (values.keep === undefined) fs.rmSync(work, { recursive: true, force: true });
  }
}

main().then((code) => {
  process.exitCode = code;
}, (e: unknown) => {
  if (e instanceof UsageError) {
    process.stderr.write(`${e.message}\n${USAGE}\n`);
    process.exitCode = 2;
  } else if (isLowbitError(e)) {
    // every library failure has a stable code and a message naming the file, tensor or option
    process.stderr.write(`${e.code}: ${e.message}\n`);
    process.exitCode = e.code === 'LOWBIT_ABORTED' ? 130 : e.code === 'LOWBIT_INVALID_OPTION' ? 2 : 1;
  } else {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
});
