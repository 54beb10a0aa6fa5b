/**
 * `lowbit demo`: quantize the built-in model end to end with a few settings and print a table.
 * Needs no network and no file outside the package: the built-in model is a small Llama-shaped
 * checkpoint generated deterministically (random weights of a real shape) in a temp directory.
 */
import { Command } from 'commander';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSyntheticModel, SYNTHETIC_PRESETS } from '../runtime/synthetic';
import { quantize, type QuantizeResult } from '../pipeline/quantize';
import type { RtnConfig } from '../config/quantize';
import { inspectModel } from '../formats/source';
import { nativeInfo } from '../ops/system';
import { abortOnSignals, formatBytes, formatCount, table, type RunFn } from './util';

/** The settings the demo runs, from the safest to the most aggressive. */
export const DEMO_SETTINGS: { label: string; config: RtnConfig }[] = [
  { label: 'RTN int8', config: { method: 'rtn', bits: 8, groupSize: 128, sym: true } },
  { label: 'RTN int4 sym', config: { method: 'rtn', bits: 4, groupSize: 128, sym: true } },
  { label: 'RTN int4 asym', config: { method: 'rtn', bits: 4, groupSize: 128, sym: false } },
  { label: 'RTN int4 asym, MSE clip', config: { method: 'rtn', bits: 4, groupSize: 128, sym: false, clip: 'mse' } },
  { label: 'RTN int4 per-channel', config: { method: 'rtn', bits: 4, groupSize: -1, sym: false } },
  { label: 'RTN int3 asym', config: { method: 'rtn', bits: 3, groupSize: 128, sym: false } },
  { label: 'RTN int2 asym g64', config: { method: 'rtn', bits: 2, groupSize: 64, sym: false } },
  { label: 'NF4 (dequant)', config: { method: 'rtn', bits: 4, groupSize: 64, codebook: 'nf4', format: 'dequant' } },
];

export function demoCommand(run: RunFn): Command {
  return new Command('demo')
    .description('quantize the built-in model with several settings and print a comparison table (no network needed)')
    .option('--keep <dir>', 'keep the generated model and outputs in this directory')
    .option('--json', 'print the results as JSON on stdout')
    .action(async function (this: Command) {
      const o = this.opts<{ keep?: string; json?: boolean }>();
      await run(async (json) => {
        const work = o.keep ? path.resolve(o.keep) : fs.mkdtempSync(path.join(os.tmpdir(), 'lowbit-demo-'));
        const sig = abortOnSignals();
        try {
          const modelDir = path.join(work, 'model');
          if (!fs.existsSync(path.join(modelDir, 'config.json'))) await writeSyntheticModel(modelDir, { shape: 'demo', dtype: 'F16', seed: 0 });
          const src = inspectModel(modelDir);
          const info = nativeInfo();
          const shape = SYNTHETIC_PRESETS.demo;
          if (!json) {
            process.stderr.write(`lowbit demo: built-in Llama-shaped model (${shape.layers} layers, hidden ${shape.hiddenSize}, ffn ${shape.intermediateSize}, ` +
              `${formatCount(src.parameters)} parameters, fp16, random weights), ${info.isa} kernels, ${info.threads} threads\n`);
          }
          const results: (QuantizeResult & { label: string })[] = [];
          for (const s of DEMO_SETTINGS) {
            const out = path.join(work, s.label.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/-+$/, ''));
            const r = await quantize(modelDir, s.config, { out, overwrite: true, signal: sig.signal });
            results.push({ ...r, label: s.label });
          }
          if (json) {
            process.stdout.write(JSON.stringify({ ok: true, model: { dir: modelDir, parameters: src.parameters, bytes: src.bytesOnDisk }, results: results.map((r) => ({
              label: r.label, method: r.method, bits: r.bits, groupSize: r.groupSize, sym: r.sym, clip: r.clip, codebook: r.codebook, format: r.format,
              outputBytes: r.outputBytes, meanRelError: r.meanRelError, mse: r.mse, seconds: r.seconds, out: r.out,
            })) }, null, 2) + '\n');
          } else {
            const rows: (string | number)[][] = [['fp16 (source)', '16', '-', '-', formatBytes(src.bytesOnDisk), '1.00x', '0', '-']];
            for (const r of results) {
              rows.push([r.label, String(r.bits), r.groupSize === -1 ? 'channel' : String(r.groupSize), r.format, formatBytes(r.outputBytes),
                `${(src.bytesOnDisk / r.outputBytes).toFixed(2)}x`, r.meanRelError.toFixed(4), `${(r.seconds * 1000).toFixed(0)} ms`]);
            }
            process.stdout.write(table(['method', 'bits', 'group', 'format', 'size on disk', 'smaller', 'rel error', 'time'], rows) + '\n');
            process.stdout.write(`\nrel error = ‖W − Ŵ‖ / ‖W‖ over all linear weights. Outputs: ${work}${o.keep ? '' : ' (temporary; use --keep DIR to keep them)'}\n`);
          }
          return 0;
        } finally {
          sig.dispose();
          if (!o.keep) fs.rmSync(work, { recursive: true, force: true });
        }
      }, !!o.json);
    });
}
