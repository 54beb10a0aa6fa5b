/** `lowbit doctor`: addon variant, CPU features, threads, CUDA toolkit and device, and why. */
import { Command } from 'commander';
import type { RunFn } from './util';
import { systemInfo } from '../ops/system';

export function doctorCommand(run: RunFn): Command {
  return new Command('doctor')
    .description('report the native addon, CPU features, threads and CUDA, and why any backend was skipped')
    .option('--json', 'print the report as JSON on stdout')
    .action(async function (this: Command) {
      const o = this.opts<{ json?: boolean }>();
      await run((json) => {
        const s = systemInfo();
        if (json) {
          process.stdout.write(JSON.stringify({ ok: s.addonLoaded, ...s }, null, 2) + '\n');
          return s.addonLoaded ? 0 : 1;
        }
        const out: string[] = [`node         ${s.node} (${s.platform})`];
        if (s.native) {
          const n = s.native;
          out.push(`addon        ${n.variant} variant, lowbit ${n.version}, ${n.compiler}`);
          out.push(`cpu          ${n.cpuModel || 'unknown'} (${n.arch}), ${n.physicalCores} physical / ${n.logicalCores} logical cores`);
          out.push(`kernels      ${n.isa} (compiled: ${n.compiledIsas.join(', ')})${n.features.avx512f && n.isa === 'avx2' ? '; AVX-512 kernels are opt-in until validated on AVX-512 hardware: LOWBIT_ISA=avx512' : ''}`);
          out.push(`features     ${Object.entries(n.features).filter(([, v]) => v).map(([k]) => k).join(' ') || 'none'}`);
          const missing = Object.entries(n.features).filter(([k, v]) => !v && /avx512|vnni|bf16|fp16|amx/.test(k)).map(([k]) => k);
          if (missing.length) out.push(`             not available on this CPU: ${missing.join(' ')}`);
          out.push(`threads      ${n.threads} (set with LOWBIT_THREADS or setThreads())`);
        } else {
          out.push('addon        NOT LOADED');
        }
        for (const a of s.attempts) out.push(`  load ${a.variant.padEnd(8)} ${a.result}  (${a.path})`);
        out.push(`cuda toolkit ${s.cuda.toolkit ?? 'not found (nvcc not on PATH)'}`);
        if (s.cuda.device && s.cuda.device.deviceCount > 0) {
          for (const d of s.cuda.device.devices) out.push(`cuda device  ${d.name}, sm_${d.major}${d.minor}, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB, ${d.multiProcessors} SMs`);
        }
        out.push(`cuda backend ${s.cuda.reason ? `not used: ${s.cuda.reason}` : 'in use'}`);
        process.stdout.write(out.join('\n') + '\n');
        return s.addonLoaded ? 0 : 1;
      }, !!o.json);
    });
}
