/**
 * A decode-loop probe: load a model, run a P-token prompt (default 16), then time N single-token
 * forwards back to back at positions P… (no pauses between them).
 * For A/B runs of runtime knobs such as LOWBIT_SPIN_US / LOWBIT_THREADS:
 *
 *   N=32 LOWBIT_SPIN_US=0   node dist/scripts/decode-probe.js <model dir or .gguf>
 *   N=32 LOWBIT_SPIN_US=200 node dist/scripts/decode-probe.js <model dir or .gguf>
 *
 * Prints ms/token and tokens/s (one line; JSON with --json).
 */
import { loadModel } from '../lib/runtime/model';

async function main(): Promise<void> {
  const file = process.argv[2];
  if (!file) throw new Error('usage: node dist/scripts/decode-probe.js <model> [--json]');
  const n = Number(process.env.N ?? 64), p = Number(process.env.P ?? 16);
  const m = await loadModel(file, { maxContext: Math.max(1024, p + n) });
  try {
    const V = m.config.vocabSize;
    await m.forward(Int32Array.from({ length: p }, (_, i) => (i * 7919) % V), 0, 1);
    let pos = p;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await m.forward(Int32Array.of((i * 7919) % V), pos++, 1);
    const ms = (performance.now() - t0) / n;
    const r = { model: file, prompt: p, tokens: n, msPerToken: Number(ms.toFixed(2)), tokensPerSecond: Number((1000 / ms).toFixed(2)), spinUs: process.env.LOWBIT_SPIN_US ?? '0' };
    process.stdout.write(process.argv.includes('--json') ? `${JSON.stringify(r)}\n` : `decode ${r.msPerToken} ms/token, ${r.tokensPerSecond} tokens/s (${n} tokens after a ${p}-token prompt, LOWBIT_SPIN_US=${r.spinUs})\n`);
  } finally {
    m.dispose();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`decode-probe: ${(e instanceof Error ? e.stack : undefined) ?? String(e)}\n`);
  process.exitCode = 1;
});
