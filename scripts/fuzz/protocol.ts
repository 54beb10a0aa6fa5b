/** What the main thread and a fuzz worker say to each other, and the names both use. */
import * as path from 'node:path';
import type { TargetName, ViolationRecord } from './types';

/** What the main thread passes to a worker. */
export interface WorkerData {
  target: TargetName;
  seed: number;
  /** Case indices [start, end). */
  start: number;
  end: number;
  /** Every fullEvery-th case runs the full steps (0: none). */
  fullEvery: number;
  /** The worker's own directory (scratch for the corpus, the case directory). */
  dir: string;
  saveDir: string | null;
  memCapBytes: number;
  /** A file the current case is written to before it runs (the CLI's crash supervisor reads it). */
  journal: string | null;
}

/** Messages a worker sends. */
export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'start'; index: number; full: boolean; mutation: string }
  | { type: 'end'; index: number; outcome: string; full: boolean; violation: ViolationRecord | null }
  | { type: 'done' };

/** Whether case `index` runs the full steps. */
export function isFullCase(index: number, fullEvery: number): boolean {
  return fullEvery > 0 && index % fullEvery === fullEvery - 1;
}

/** Where a finding is saved: `<saveDir>/<target>-seed<S>-case<I>`. */
export function findingDir(saveDir: string, target: string, seed: number, index: number): string {
  return path.join(saveDir, `${target}-seed${seed}-case${index}`);
}

