/** The `lowbit` command as a user runs it (a child process of this Node). */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { packageRoot } from '../../lib/native';

export const LOWBIT_BIN = path.join(packageRoot(), 'bin', 'lowbit.js');

/** Run `lowbit …args`; exit code and both streams. */
export function lowbit(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [LOWBIT_BIN, ...args], { encoding: 'utf8', timeout: 120000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
