/**
 * The hidden states of every calibration window between two decoder blocks (samples × seqLen ×
 * dim f32), kept in memory when they fit a budget and spilled to a temporary file when they don't
 * (issue 18): a full GPTQ calibration of a 7B model (128 windows × 2048 tokens × 4096) is 4.3 GB
 * of activations; spilled, what stays in memory is one chunk of windows. Windows are independent,
 * so every pass over them (statistics, the block's forward) goes chunk by chunk in window order,
 * and the results are the same bytes as in memory.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { LowbitError, toLowbitError } from '../errors';
import { readAllAt, writeAllAt } from '../formats/io';

/** Where and how the activations live. */
export interface ActivationPlacement {
  /** Bytes of all windows' hidden states. */
  totalBytes: number;
  /** Bytes held in memory: all of them, or one chunk when spilled. */
  memoryBytes: number;
  /** Windows per chunk (all of them when in memory). */
  chunkSamples: number;
  spilled: boolean;
}

/** Decide where `samples` windows of `rowFloats` floats live under `budgetBytes` (Infinity: in memory). */
export function placeActivations(samples: number, rowFloats: number, budgetBytes: number): ActivationPlacement {
  const row = rowFloats * 4, total = samples * row;
  if (total <= budgetBytes) return { totalBytes: total, memoryBytes: total, chunkSamples: samples, spilled: false };
  const chunk = Math.max(1, Math.min(samples, Math.floor(budgetBytes / row)));
  return { totalBytes: total, memoryBytes: chunk * row, chunkSamples: chunk, spilled: true };
}

/** Calibration activations, in memory or spilled to a file. @internal */
export class ActivationStore {
  private constructor(readonly samples: number, readonly rowFloats: number, readonly placement: ActivationPlacement,
    private readonly mem: Float32Array, private readonly file: { path: string; fh: fs.promises.FileHandle } | null) {}

  /** Create the store (a spilled one preallocates its file in `dir`, default the OS temp directory). */
  static async create(samples: number, rowFloats: number, budgetBytes: number, dir: string = os.tmpdir()): Promise<ActivationStore> {
    const placement = placeActivations(samples, rowFloats, budgetBytes);
    if (!placement.spilled) return new ActivationStore(samples, rowFloats, placement, new Float32Array(samples * rowFloats), null);
    const p = path.join(dir, `lowbit-activations-${process.pid}-${randomBytes(6).toString('hex')}.f32`);
    let fh: fs.promises.FileHandle | null = null;
    try {
      fh = await fs.promises.open(p, 'wx+');
      await fh.truncate(placement.totalBytes); // sparse: zero pages until written
    } catch (e) {
      if (fh) await fh.close().catch(() => undefined);
      await fs.promises.rm(p, { force: true }).catch(() => undefined);
      throw toLowbitError(e, p);
    }
    return new ActivationStore(samples, rowFloats, placement, new Float32Array(placement.chunkSamples * rowFloats), { path: p, fh });
  }

  /**
   * Visit the windows chunk by chunk, in order: `fn(first, count, data)` gets windows first …
   * first + count − 1 as one array; with `write`, what `fn` leaves in `data` is stored back.
   */
  async forEach(fn: (first: number, count: number, data: Float32Array) => Promise<void>, write: boolean): Promise<void> {
    if (!this.file) {
      await fn(0, this.samples, this.mem);
      return;
    }
    const { fh, path: p } = this.file;
    const rowBytes = this.rowFloats * 4;
    for (let first = 0; first < this.samples; first += this.placement.chunkSamples) {
      const count = Math.min(this.placement.chunkSamples, this.samples - first);
      const data = this.mem.subarray(0, count * this.rowFloats);
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      try {
        await readAllAt(fh, bytes, first * rowBytes);
      } catch (e) {
        throw toLowbitError(e, p);
      }
      await fn(first, count, data);
      if (write) {
        try {
          await writeAllAt(fh, bytes, first * rowBytes);
        } catch (e) {
          throw toLowbitError(e, p);
        }
      }
    }
  }

  /** Write every window's hidden states, in order, into a new file `file` (synced): a resume point. */
  async saveTo(file: string): Promise<void> {
    let out: fs.promises.FileHandle | null = null;
    try {
      out = await fs.promises.open(file, 'wx');
      const rowBytes = this.rowFloats * 4;
      const fh = out;
      await this.forEach(async (first, _count, data) => {
        await writeAllAt(fh, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), first * rowBytes);
      }, false);
      await out.sync();
    } catch (e) {
      throw toLowbitError(e, file);
    } finally {
      await out?.close().catch(() => undefined);
    }
  }

  /** Replace every window's hidden states with those {@link saveTo} wrote into `file`. */
  async loadFrom(file: string): Promise<void> {
    let src: fs.promises.FileHandle | null = null;
    try {
      src = await fs.promises.open(file, 'r');
      const size = (await src.stat()).size;
      if (size !== this.placement.totalBytes) throw new LowbitError('LOWBIT_BAD_FORMAT', `${file}: ${size} bytes of activations, expected ${this.placement.totalBytes}`, { file });
      const rowBytes = this.rowFloats * 4;
      const fh = src;
      await this.forEach(async (first, _count, data) => {
        await readAllAt(fh, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), first * rowBytes);
      }, true);
    } catch (e) {
      throw e instanceof LowbitError ? e : toLowbitError(e, file);
    } finally {
      await src?.close().catch(() => undefined);
    }
  }

  /** Close and remove the spill file. */
  async dispose(): Promise<void> {
    if (!this.file) return;
    const { fh, path: p } = this.file;
    await fh.close().catch(() => undefined);
    await fs.promises.rm(p, { force: true }).catch(() => undefined);
  }
}
