/** Runtime facts for users and `lowbit doctor`: addon variant, CPU features, threads, CUDA. */
import { addon, hasAddon, loadAttempts, type LoadAttempt, type NativeCudaInfo, type NativeInfo } from '../native';
import { requireThreads } from '../config/run';
import { spawnSync } from 'node:child_process';

/** What {@link systemInfo} returns. */
export interface SystemInfo {
  addonLoaded: boolean;
  native: NativeInfo | null;
  attempts: LoadAttempt[];
  cuda: CudaReport;
  node: string;
  platform: string;
}

/** CUDA state: toolkit on this machine, and the device as the CUDA addon sees it. */
export interface CudaReport {
  /** nvcc version string when a toolkit is installed, else null. */
  toolkit: string | null;
  /** Whether the loaded addon is the CUDA variant. */
  addonHasCuda: boolean;
  /** Device info from the CUDA addon, or null. */
  device: NativeCudaInfo | null;
  /** Why the CUDA backend is not in use, or null when it is. */
  reason: string | null;
}

/**
 * Set the number of compute threads of lowbit's pool (default: physical cores). One pool serves
 * every operation; concurrent calls share it rather than oversubscribing the cores.
 */
export function setThreads(n: number): void {
  addon().setThreads(requireThreads(n));
}

/** What the addon reports about itself and the machine (loads the addon; no child process). */
export function nativeInfo(): NativeInfo {
  return addon().info();
}

/** The kernel mode ('fast' or 'ref') calls run in now. */
export { getKernelMode } from '../native';

function nvccVersion(): string | null {
  const r = spawnSync('nvcc', ['--version'], { encoding: 'utf8', timeout: 10000 });
  if (r.status !== 0 || !r.stdout) return null;
  const m = /release ([\d.]+), (V[\d.]+)/.exec(r.stdout);
  return m ? `${m[1]} (${m[2]})` : r.stdout.trim().split('\n').pop() ?? null;
}

/** CUDA availability and the reason it is not used, if so. */
export function cudaInfo(): CudaReport {
  const toolkit = nvccVersion();
  if (!hasAddon()) return { toolkit, addonHasCuda: false, device: null, reason: 'the native addon is not loaded' };
  const a = addon();
  if (a.variant !== 'cuda' || !a.cudaInfo) {
    const att = loadAttempts().find((x) => x.variant === 'cuda');
    return { toolkit, addonHasCuda: false, device: null, reason: `CPU variant in use; CUDA variant: ${att ? att.result : 'not tried'}` };
  }
  const device = a.cudaInfo();
  const reason = device.error ? device.error : device.deviceCount === 0 ? 'no CUDA device visible' : null;
  return { toolkit, addonHasCuda: true, device, reason };
}

/** Everything `lowbit doctor` reports. */
export function systemInfo(): SystemInfo {
  const ok = hasAddon();
  return {
    addonLoaded: ok, native: ok ? addon().info() : null, attempts: loadAttempts(), cuda: cudaInfo(),
    node: process.version, platform: `${process.platform}-${process.arch}`,
  };
}
