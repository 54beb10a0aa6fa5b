/**
 * GPTQ straight into a GGUF file: calibrate and quantize a model with GPTQ on the grid of a ggml
 * block type (Q4_0 by default), write one .gguf file that llama.cpp loads, then load that file with
 * lowbit's own runtime and print a greedy sample (temperature 0), streamed as it is decoded.
 *
 * Shows: quantize(model, {method: 'gptq', format: 'gguf:q4_0'}, {out: 'x.gguf', calibration}),
 * what the GGUF writer reports (tensors by type, layers kept in a float type and why),
 * loadModel() on the GGUF and generate({prompt, maxTokens, temperature: 0, onText}).
 *
 * Run it from a checkout (the examples import 'lowbit' by its package name, as your code would;
 * inside the repository Node resolves that name to the package itself):
 *
 *   npx tsc -p examples      # the examples, and the library they import, into dist/
 *   node dist/examples/gptq-to-gguf.js <model> <calibration.txt> [options]
 *
 *   <model>              a Hugging Face model directory, a llama2.c .bin or an F32/F16/BF16 GGUF file
 *   --out FILE           the GGUF file to write (default: <model name>-gptq-<type>.gguf here)
 *   --format F           gguf:q4_0 | gguf:q4_1 | gguf:q8_0 (default gguf:q4_0)
 *   --tokenizer FILE     a llama2.c tokenizer.bin: the file's vocabulary (a llama2.c model has none of
 *                        its own; a Hugging Face directory's tokenizer.json is used when this is left out)
 *   --calib-samples N    calibration windows (default 128)
 *   --calib-seqlen N     tokens per window (default 2048, capped at the model's context)
 *   --prompt TEXT        (default "Once upon a time")
 *   --max-tokens N       new tokens to generate (default 64)
 *   --overwrite          replace an existing output file
 *
 * On the stories260K test model (../shared/fixtures beside the checkout):
 *
 *   node dist/examples/gptq-to-gguf.js ../shared/fixtures/stories260K/stories260K.bin \
 *     ../shared/fixtures/text/tinystories-calib.txt --tokenizer ../shared/fixtures/stories260K/tok512.bin \
 *     --out stories260K-gptq-q4_0.gguf
 *
 * then, with llama.cpp: llama-cli -m stories260K-gptq-q4_0.gguf -p "Once upon a time" --temp 0
 *
 * In your own project: npm install lowbit, copy this file and compile it with your TypeScript setup.
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { quantize, loadModel, isLowbitError, type GgufOutputFormat, type Progress } from 'lowbit';

const USAGE = `usage: node dist/examples/gptq-to-gguf.js <model> <calibration.txt>
  [--out FILE.gguf] [--format gguf:q4_0|gguf:q4_1|gguf:q8_0] [--tokenizer FILE]
  [--calib-samples 128] [--calib-seqlen 2048] [--prompt TEXT] [--max-tokens 64] [--overwrite]`;

/** A command-line mistake: the usage is printed and the exit code is 2. */
class UsageError extends Error {}

/** An optional integer flag. */
function intFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n)) throw new UsageError(`--${name}: expected an integer, received ${JSON.stringify(value)}`);
  return n;
}

/** The command line; a mistake in it is a UsageError. */
function parseCommandLine() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        out: { type: 'string' },
        format: { type: 'string' },
        tokenizer: { type: 'string' },
        'calib-samples': { type: 'string' },
        'calib-seqlen': { type: 'string' },
        prompt: { type: 'string' },
        'max-tokens': { type: 'string' },
        overwrite: { type: 'boolean' },
      },
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseCommandLine();
  if (positionals.length !== 2) throw new UsageError(`expected 2 arguments, received ${positionals.length}`);
  const [model, calibFile] = positionals;
  // the library checks the format (and refuses GPTQ on a type it cannot calibrate for)
  const format = (values.format ?? 'gguf:q4_0') as GgufOutputFormat;
  const out = values.out ?? `${path.basename(model).replace(/\.(gguf|bin)$/, '')}-gptq-${format.slice('gguf:'.length)}.gguf`;
  const prompt = values.prompt ?? 'Once upon a time';
  const maxTokens = intFlag('max-tokens', values['max-tokens']) ?? 64;

  const ac = new AbortController();
  process.once('SIGINT', () => {
    ac.abort();
  });

  // 1. GPTQ on the block type's own grid (Q4_0: 4-bit symmetric groups of 32 with llama.cpp's
  //    signed-max scale), so the codes go into the blocks as they are: no second rounding.
  let step = '';
  const result = await quantize(model, { method: 'gptq', format }, {
    out,
    overwrite: values.overwrite,
    tokenizer: values.tokenizer,
    calibration: {
      file: calibFile,
      samples: intFlag('calib-samples', values['calib-samples']) ?? 128,
      seqLen: intFlag('calib-seqlen', values['calib-seqlen']) ?? 2048,
    },
    signal: ac.signal,
    onProgress: (p: Progress) => {
      // one line per phase and layer: calibrate → gptq for each layer, then write the file
      const now = p.layer === undefined || p.layers === undefined ? p.phase : `${p.phase} (layer ${p.layer + 1}/${p.layers})`;
      if (now !== step) process.stderr.write(`${now}\n`);
      step = now;
    },
  });
  const gguf = result.gguf;
  if (gguf === undefined) throw new Error('quantize() wrote no GGUF file');
  const types = Object.entries(gguf.tensorsByType).map(([t, n]) => `${n} ${t}`).join(', ');
  process.stdout.write(`wrote ${gguf.file}: ${gguf.bytes} bytes (source ${gguf.sourceBytes}), ${gguf.tensors} tensors: ${types}\n`);
  process.stdout.write(`GPTQ: ${result.quantizedModules} layers, calibrated on ${result.calibration?.tokens ?? 0} tokens, ${result.seconds.toFixed(1)} s\n`);
  // layers whose width is not a whole number of blocks are stored in a float type, and said so
  for (const f of gguf.fallbacks) process.stdout.write(`  kept: ${f.name}: ${f.reason}\n`);

  // 2. Load the file as any GGUF (its vocabulary is inside) and decode greedily.
  const lm = await loadModel(gguf.file);
  try {
    process.stdout.write(`--- greedy sample (temperature 0, ${maxTokens} new tokens) ---\n`);
    const g = await lm.generate({ prompt, maxTokens, temperature: 0, signal: ac.signal, onText: (piece) => process.stdout.write(piece) });
    process.stdout.write('\n');
    process.stderr.write(`${g.generatedTokens} tokens, ${g.decodeTokensPerSecond.toFixed(0)} tokens/s\n`);
  } finally {
    lm.dispose();
  }
  return 0;
}

main().then((code) => {
  process.exitCode = code;
}, (e: unknown) => {
  if (e instanceof UsageError) {
    process.stderr.write(`${e.message}\n${USAGE}\n`);
    process.exitCode = 2;
  } else if (isLowbitError(e)) {
    // every library failure has a stable code and a message naming the file, tensor or option;
    // a failed or cancelled quantize() leaves no partial file
    process.stderr.write(`${e.code}: ${e.message}\n`);
    process.exitCode = e.code === 'LOWBIT_ABORTED' ? 130 : e.code === 'LOWBIT_INVALID_OPTION' ? 2 : 1;
  } else {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  }
});
