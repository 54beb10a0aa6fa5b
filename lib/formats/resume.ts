/**
 * A resumable run's state, step by step, in its staging directory's `.resume` folder (issue 18):
 * after each finished step (a decoder layer, for GPTQ) the step's results and the run's state
 * needed to go on (the activations after that layer) are written, synced and renamed into place,
 * and only then `state.json` moves forward. A run killed at any point leaves either the previous
 * step's state or the new one, never a half-written file that counts; the same run started again
 * (same key: same inputs and options) reads it back and goes on from the first step not recorded.
 *
 * Files: `state.json` {key, steps, attachment}; `step-<n>.bin` — an 8-byte little-endian header
 * length, a JSON header {parts: [{name, meta, tensors: [[name, offset, length]]}]} and the
 * tensors' bytes; one attachment (the latest step's, e.g. `activations-<n>.f32`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { LowbitError, toLowbitError } from '../errors';
import { writeFileDurable } from './output';
import { writeAllAt } from './io';

/** One result of a step: a name, its JSON-able record and its tensors. */
export interface ResumePart {
  name: string;
  meta: unknown;
  tensors: Map<string, Uint8Array>;
}

interface StateFile {
  v: 1;
  key: string;
  steps: number;
  attachment: string | null;
}

async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await fs.promises.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // a file system that cannot sync a directory: the renames still order the files
  }
}

/** The state of one resumable run. @internal */
export class ResumeState {
  private constructor(readonly dir: string, readonly key: string, private state: StateFile) {}

  /**
   * Open the state in `dir` for the run named `key`: what a dead run of the same key recorded,
   * checked (every step file and the attachment present), or nothing — a state of another key, or
   * one that does not check, is discarded and the run starts over.
   */
  static async open(dir: string, key: string): Promise<ResumeState> {
    const empty: StateFile = { v: 1, key, steps: 0, attachment: null };
    let state = empty;
    try {
      const s = JSON.parse(await fs.promises.readFile(path.join(dir, 'state.json'), 'utf8')) as Partial<StateFile>;
      if (s.v === 1 && s.key === key && Number.isInteger(s.steps) && (s.steps ?? 0) > 0 && (s.attachment === null || typeof s.attachment === 'string')) {
        const steps = s.steps as number;
        let ok = s.attachment === null || fs.existsSync(path.join(dir, s.attachment));
        for (let i = 0; ok && i < steps; i++) ok = fs.existsSync(path.join(dir, `step-${i}.bin`));
        if (ok) state = { v: 1, key, steps, attachment: s.attachment ?? null };
      }
    } catch {
      // no state (a fresh run), or unreadable: start over
    }
    const r = new ResumeState(dir, key, state);
    if (state === empty) await r.clear();
    return r;
  }

  /** Steps recorded (the run goes on from this one). */
  get steps(): number {
    return this.state.steps;
  }

  /** The latest step's attachment file, or null. */
  get attachment(): string | null {
    return this.state.attachment === null ? null : path.join(this.dir, this.state.attachment);
  }

  /** Remove every file of the state (a fresh start). */
  async clear(): Promise<void> {
    try {
      await fs.promises.mkdir(this.dir, { recursive: true });
      for (const f of await fs.promises.readdir(this.dir)) await fs.promises.rm(path.join(this.dir, f), { recursive: true, force: true });
    } catch (e) {
      throw toLowbitError(e, this.dir);
    }
    this.state = { v: 1, key: this.key, steps: 0, attachment: null };
  }

  /**
   * Record step `step` (the next one): its parts, and an attachment written by `attach` into the
   * file it is given (named `attachName`), then the state. The previous attachment is removed.
   */
  async saveStep(step: number, parts: ResumePart[], attachName: string | null, attach?: (file: string) => Promise<void>): Promise<void> {
    if (step !== this.state.steps) throw new LowbitError('LOWBIT_INTERNAL', `resume: step ${step} saved after ${this.state.steps} steps`);
    const header: { parts: { name: string; meta: unknown; tensors: [string, number, number][] }[] } = { parts: [] };
    let offset = 0;
    for (const p of parts) {
      const tensors: [string, number, number][] = [];
      for (const [name, b] of p.tensors) {
        tensors.push([name, offset, b.byteLength]);
        offset += b.byteLength;
      }
      header.parts.push({ name: p.name, meta: p.meta, tensors });
    }
    const head = Buffer.from(JSON.stringify(header), 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(head.byteLength));
    await writeFileDurable(path.join(this.dir, `step-${step}.bin`), async (fh) => {
      await writeAllAt(fh, len, 0);
      await writeAllAt(fh, head, 8);
      let pos = 8 + head.byteLength;
      for (const p of parts) {
        for (const b of p.tensors.values()) {
          await writeAllAt(fh, b, pos);
          pos += b.byteLength;
        }
      }
    });
    if (attachName !== null && attach) {
      const file = path.join(this.dir, attachName);
      const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
      try {
        await attach(tmp);
        await fs.promises.rename(tmp, file);
      } catch (e) {
        await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
        throw e instanceof LowbitError ? e : toLowbitError(e, file);
      }
    }
    await syncDir(this.dir);
    const prev = this.state.attachment;
    const next: StateFile = { v: 1, key: this.key, steps: step + 1, attachment: attachName };
    await writeFileDurable(path.join(this.dir, 'state.json'), async (fh) => {
      await writeAllAt(fh, Buffer.from(JSON.stringify(next) + '\n', 'utf8'), 0);
    });
    await syncDir(this.dir);
    this.state = next;
    if (prev !== null && prev !== attachName) await fs.promises.rm(path.join(this.dir, prev), { force: true }).catch(() => undefined);
  }

  /** Read step `step`'s parts back. */
  async loadStep(step: number): Promise<ResumePart[]> {
    const file = path.join(this.dir, `step-${step}.bin`);
    if (step >= this.state.steps) throw new LowbitError('LOWBIT_INTERNAL', `resume: step ${step} is not recorded`);
    let buf: Buffer;
    try {
      buf = await fs.promises.readFile(file);
    } catch (e) {
      throw toLowbitError(e, file);
    }
    const bad = (why: string) => new LowbitError('LOWBIT_BAD_FORMAT', `${file}: resume state is damaged (${why}); remove the staging directory ${path.dirname(this.dir)} to start over`, { file });
    if (buf.byteLength < 8) throw bad('shorter than its header');
    const hl = Number(buf.readBigUInt64LE(0));
    if (8 + hl > buf.byteLength) throw bad('header past the end');
    let header: { parts: { name: string; meta: unknown; tensors: [string, number, number][] }[] };
    try {
      header = JSON.parse(buf.subarray(8, 8 + hl).toString('utf8')) as typeof header;
    } catch {
      throw bad('header is not JSON');
    }
    const base = 8 + hl;
    return header.parts.map((p) => {
      const tensors = new Map<string, Uint8Array>();
      for (const [name, off, len] of p.tensors) {
        if (base + off + len > buf.byteLength) throw bad(`tensor ${name} past the end`);
        // a copy of its own (the writer may hold it past this buffer)
        tensors.set(name, new Uint8Array(buf.subarray(base + off, base + off + len)));
      }
      return { name: p.name, meta: p.meta, tensors };
    });
  }
}
