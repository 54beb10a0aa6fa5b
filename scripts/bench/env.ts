/**
 * The environment block of the benchmark JSON: machine, versions, git commit, command line.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { spawnSync } from 'node:child_process';
import { addon, packageRoot } from '../../lib/native';
import { version as lowbitVersion, cudaInfo } from '../../lib';

export interface MachineInfo {
  cpuModel: string;
  /** Extra CPU identification from /proc/cpuinfo (Linux), e.g. family 25 model 1 = Zen 3. */
  cpuFamily: number | null;
  cpuModelId: number | null;
  physicalCores: number;
  logicalCores: number;
  /** lowbit's compute threads used for this run. */
  threads: number;
  memoryBytes: number;
  /** Per-core L1d/L2 and shared L3, from sysfs when available. */
  caches: Record<string, string> | null;
  /** The kernel family picked at run time. */
  isa: string;
  compiledIsas: string[];
  features: Record<string, boolean>;
  platform: string;
  gpu: { name: string; driver: string } | null;
  gpuReason: string | null;
}

export interface Versions {
  lowbit: string;
  addon: string;
  addonVariant: string;
  node: string;
  v8: string;
  compiler: string;
  nvcc: string | null;
}

function procCpu(): { family: number | null; model: number | null } {
  try {
    const txt = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const fam = /^cpu family\s*:\s*(\d+)/m.exec(txt);
    const mod = /^model\s*:\s*(\d+)/m.exec(txt);
    return { family: fam ? Number(fam[1]) : null, model: mod ? Number(mod[1]) : null };
  } catch {
    return { family: null, model: null };
  }
}

function caches(): Record<string, string> | null {
  const base = '/sys/devices/system/cpu/cpu0/cache';
  try {
    const out: Record<string, string> = {};
    for (const d of fs.readdirSync(base).filter((x) => x.startsWith('index'))) {
      const read = (f: string) => fs.readFileSync(`${base}/${d}/${f}`, 'utf8').trim();
      const type = read('type');
      if (type === 'Instruction') continue;
      out[`L${read('level')}${type === 'Data' ? 'd' : ''}`] = read('size');
    }
    return out;
  } catch {
    return null;
  }
}

function run(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 15000, cwd: packageRoot() });
  if (r.error || r.status !== 0) return null;
  return r.stdout.trim();
}

/** `nvcc --version` as "13.0 (V13.0.88)", or null when no toolkit is installed. */
export function nvccVersion(): string | null {
  const out = run('nvcc', ['--version']);
  if (!out) return null;
  const m = /release ([\d.]+), (V[\d.]+)/.exec(out);
  return m ? `${m[1]} (${m[2]})` : out.split('\n').pop() ?? null;
}

function gpu(): { gpu: MachineInfo['gpu']; reason: string | null } {
  const smi = run('nvidia-smi', ['--query-gpu=name,driver_version', '--format=csv,noheader']);
  const cuda = cudaInfo();
  if (smi) {
    const [name, driver] = smi.split('\n')[0].split(',').map((s) => s.trim());
    return { gpu: { name, driver }, reason: cuda.reason };
  }
  return { gpu: null, reason: `no NVIDIA GPU visible (nvidia-smi absent or failed); ${cuda.reason ?? 'CUDA addon loaded'}` };
}

export function machineInfo(threads: number): MachineInfo {
  const info = addon().info();
  const pc = procCpu();
  const g = gpu();
  return {
    cpuModel: info.cpuModel, cpuFamily: pc.family, cpuModelId: pc.model,
    physicalCores: info.physicalCores, logicalCores: info.logicalCores, threads,
    memoryBytes: os.totalmem(), caches: caches(),
    isa: info.isa, compiledIsas: info.compiledIsas, features: info.features,
    platform: `${process.platform}-${process.arch}`, gpu: g.gpu, gpuReason: g.reason,
  };
}

export function versions(): Versions {
  const info = addon().info();
  return {
    lowbit: lowbitVersion, addon: info.version, addonVariant: info.variant, node: process.version, v8: process.versions.v8,
    compiler: info.compiler, nvcc: nvccVersion(),
  };
}

/** `git rev-parse HEAD`, plus whether the work tree has uncommitted changes; nulls outside git. */
export function gitInfo(): { commit: string | null; dirty: boolean | null } {
  const commit = run('git', ['rev-parse', 'HEAD']);
  if (!commit) return { commit: null, dirty: null };
  const st = run('git', ['--no-optional-locks', 'status', '--porcelain', '--untracked-files=no']);
  return { commit, dirty: st === null ? null : st.length > 0 };
}

/** The exact command line: the npm script when run through npm, and the node argv. */
export function commandLine(): { npm: string | null; npmScript: string | null; argv: string[] } {
  const ev = process.env.npm_lifecycle_event;
  const extra = process.argv.slice(2);
  return {
    npm: ev ? `npm run ${ev}${extra.length ? ` -- ${extra.join(' ')}` : ''}` : null,
    npmScript: process.env.npm_lifecycle_script ?? null,
    argv: [process.execPath, ...process.argv.slice(1)],
  };
}
