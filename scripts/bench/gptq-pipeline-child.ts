/**
 * Child process of the gptq-pipeline-1b benchmark: GPTQ of a whole synthetic TinyLlama-1.1B-shaped
 * model (random weights, real shapes) calibrated on real text with the Llama 2 vocabulary; prints
 * one JSON line with the times, calibration tokens/s and the peak RSS (VmHWM).
 * argv: <model dir> <out dir> <calibration text> <tokenizer.bin> <samples> <seqLen>
 */
import * as fs from 'node:fs';
import { quantize } from '../../lib/pipeline/quantize';

function vmHwmKiB(): number | null {
  const m = /VmHWM:\s+(\d+)\s+kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : null;
}

async function main(): Promise<void> {
  const [dir, out, text, tok, samples, seqLen] = process.argv.slice(2);
  const t0 = performance.now();
  let calibSeconds = 0;
  const r = await quantize(dir, { method: 'gptq', bits: 4, groupSize: 128, sym: true }, {
    out, overwrite: true, calibration: { file: text, samples: Number(samples), seqLen: Number(seqLen), seed: 0, tokenizer: tok },
  });
  calibSeconds = r.calibration!.seconds;
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(JSON.stringify({ seconds, calibrationSeconds: calibSeconds, tokens: r.calibration!.tokens,
    tokensPerSecond: r.calibration!.tokens / calibSeconds, expectedPeakBytes: r.calibration!.expectedPeakBytes, vmHwmKiB: vmHwmKiB(),
    modules: r.quantizedModules, outputBytes: r.outputBytes }) + '\n');
  fs.rmSync(out, { recursive: true, force: true });
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
