/**
 * Child process of the gptq-pipeline-1b benchmark: GPTQ of a whole synthetic TinyLlama-1.1B-shaped
 * model (random weights, real shapes) calibrated on real text with the Llama 2 vocabulary; prints
 * one JSON line with the times, calibration tokens/s and the peak RSS (VmHWM).
 * argv: <model dir> <out dir> <calibration text> <tokenizer.bin> <samples> <seqLen>
 */
import * as fs from 'node:fs';
import { quantize } from '../../lib/pipeline/quantize';

/** The one JSON line this child prints (gptq.ts reads it). */
export interface PipelineChildResult {
  seconds: number;
  calibrationSeconds: number;
  tokens: number;
  tokensPerSecond: number;
  expectedPeakBytes: number;
  vmHwmKiB: number | null;
  modules: number;
  outputBytes: number;
}

function vmHwmKiB(): number | null {
  const m = /VmHWM:\s+(\d+)\s+kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : null;
}

async function main(): Promise<void> {
  const [dir, out, text, tok, samples, seqLen] = process.argv.slice(2);
  const t0 = performance.now();
  const r = await quantize(dir, { method: 'gptq', bits: 4, groupSize: 128, sym: true }, {
    out, overwrite: true, calibration: { file: text, samples: Number(samples), seqLen: Number(seqLen), seed: 0, tokenizer: tok },
  });
  const cal = r.calibration;
  if (!cal) throw new Error('quantize with calibration options returned no calibration summary');
  const calibSeconds = cal.seconds;
  const seconds = (performance.now() - t0) / 1000;
  const result: PipelineChildResult = { seconds, calibrationSeconds: calibSeconds, tokens: cal.tokens,
    tokensPerSecond: cal.tokens / calibSeconds, expectedPeakBytes: cal.expectedPeakBytes, vmHwmKiB: vmHwmKiB(),
    modules: r.quantizedModules, outputBytes: r.outputBytes };
  process.stdout.write(JSON.stringify(result) + '\n');
  fs.rmSync(out, { recursive: true, force: true });
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e instanceof Error ? e.stack : undefined) ?? String(e)}\n`);
  process.exitCode = 1;
});
